// One imapflow session, driven by imaptap's tests: log in, let imapflow
// negotiate COMPRESS=DEFLATE when offered, append a message, fetch it back,
// and print what the client saw as one JSON object on stdout.
//
//   node imapflow_session.mjs HOST PORT USER PASS [--tls|--starttls CAFILE SERVERNAME]
import { ImapFlow } from 'imapflow';
import { clientOptions } from './options.mjs';

const client = new ImapFlow(clientOptions(process.argv.slice(2)));
const out = { compressed: false, subjects: [], appended: null, bodyLength: null };
try {
    await client.connect();
    out.compressed = Boolean(client._deflate);
    out.secure = Boolean(client.secureConnection);
    out.capabilities = [...client.capabilities.keys()];
    // IMAPFLOW_FIXED: the same message every run, for replays
    const subject = process.env.IMAPFLOW_FIXED ? 'imaptap fixed subject' : `imaptap compress ${Date.now()}`;
    const body = `Subject: ${subject}\r\nFrom: a@example.org\r\n\r\n` + 'line of text\r\n'.repeat(2000);
    const res = await client.append('INBOX', body);
    out.appended = { uid: res.uid, subject, length: body.length };
    const lock = await client.getMailboxLock('INBOX');
    try {
        for await (const msg of client.fetch('1:*', { envelope: true, source: true })) {
            out.subjects.push(msg.envelope.subject);
            if (msg.uid === res.uid) out.bodyLength = msg.source.length;
        }
    } finally {
        lock.release();
    }
    // IDLE, ended by the next command (imapflow sends DONE first)
    await client.mailboxOpen('INBOX');
    const idling = client.idle();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await client.noop();
    await idling;
    out.idled = true;
    await client.logout();
    process.stdout.write(JSON.stringify(out) + '\n');
} catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err && err.message || err), ...out }) + '\n');
    process.exitCode = 1;
}
