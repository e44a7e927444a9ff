// Two imapflow connections, as a mail app holds them: one IDLEs on INBOX,
// the other fetches the envelopes of INBOX and appends a message; the IDLE connection must hear of it (the
// EXISTS) after the APPEND went out. Prints one JSON object with the
// times; exits 1 when the EXISTS never came.
//
//   node imapflow_two.mjs HOST PORT USER PASS
// ONLY_IDLE=1 in the environment: the second connection is never opened.
import { ImapFlow } from 'imapflow';
import { clientOptions } from './options.mjs';

const options = clientOptions(process.argv.slice(2));
const idler = new ImapFlow(options);
const out = { appendSentMs: null, existsMs: null, existsAfterAppend: null, exists: null };
const t0 = Date.now();
try {
    await idler.connect();
    await idler.mailboxOpen('INBOX');
    const heard = new Promise((resolve) => {
        idler.on('exists', (data) => { out.existsMs = Date.now() - t0; out.exists = data.count; resolve(); });
        setTimeout(resolve, Number(process.env.EXISTS_WAIT_MS || 8000));
    });
    const idling = idler.idle();
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (!process.env.ONLY_IDLE) {
        const worker = new ImapFlow(options);
        await worker.connect();
        await worker.mailboxOpen('INBOX');
        out.fetched = 0;
        for await (const msg of worker.fetch('1:*', { envelope: true })) {
            out.fetched += msg.envelope ? 1 : 0;
        }
        out.appendSentMs = Date.now() - t0;
        await worker.append('INBOX', 'From: a@example.org\r\nSubject: two\r\n\r\nhello\r\n');
        await worker.logout();
    }
    await heard;
    await idler.noop();
    await idling;
    await idler.logout();
    out.existsAfterAppend = out.existsMs !== null && out.appendSentMs !== null &&
        out.existsMs >= out.appendSentMs;
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exitCode = out.existsMs === null ? 1 : 0;
} catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err && err.message || err), ...out }) + '\n');
    process.exitCode = 1;
}
