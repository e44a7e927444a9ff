// A short imapflow session with literals both ways, the same bytes every
// run so that a recording of it replays: log in, append a small fixed
// message, fetch it back by UID, log out. Prints one JSON object.
//
//   node imapflow_literal.mjs HOST PORT USER PASS [--tls CAFILE SERVERNAME]
import { ImapFlow } from 'imapflow';
import { clientOptions } from './options.mjs';

const options = clientOptions(process.argv.slice(2));

const message = 'Subject: segment {5}\r\nFrom: a@example.org\r\n\r\n' +
    'a line with a literal-looking {12}\r\n'.repeat(8) + 'the end\r\n';
const client = new ImapFlow(options);
const out = { appended: null, same: false };
try {
    await client.connect();
    const res = await client.append('INBOX', message);
    out.appended = res.uid;
    const lock = await client.getMailboxLock('INBOX');
    try {
        const msg = await client.fetchOne(String(res.uid), { source: true }, { uid: true });
        out.same = msg.source.toString() === message;
    } finally {
        lock.release();
    }
    await client.logout();
    if (!out.same) throw new Error('the fetched message differs from the appended one');
    process.stdout.write(JSON.stringify(out) + '\n');
} catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err && err.message || err), ...out }) + '\n');
    process.exitCode = 1;
}
