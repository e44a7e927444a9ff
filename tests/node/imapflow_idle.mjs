// One imapflow IDLE ended by a NOOP, timed: imapflow sends DONE, waits for
// IDLE's tagged completion, then runs the NOOP. Behind a proxy that holds
// that completion, the wait shows how long the client was stuck, and the
// commands after it show whether it carried on. Prints one JSON object.
//
//   node imapflow_idle.mjs HOST PORT USER PASS
import { ImapFlow } from 'imapflow';
import { clientOptions } from './options.mjs';

const client = new ImapFlow(clientOptions(process.argv.slice(2)));
const out = { idleEndMs: null, messagesAfter: null };
try {
    await client.connect();
    await client.mailboxOpen('INBOX');
    const idling = client.idle();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    await client.noop();
    await idling;
    out.idleEndMs = Date.now() - started;
    const status = await client.status('INBOX', { messages: true });
    out.messagesAfter = status.messages;
    await client.logout();
    process.stdout.write(JSON.stringify(out) + '\n');
} catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err && err.message || err), ...out }) + '\n');
    process.exitCode = 1;
}
