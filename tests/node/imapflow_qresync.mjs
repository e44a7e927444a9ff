// imapflow with QRESYNC: ENABLE QRESYNC at login, SELECT INBOX (QRESYNC
// (uidvalidity modseq)) from an earlier STATUS, UID FETCH with CHANGEDSINCE
// (and VANISHED), SEARCH UNSEEN, and a UID MOVE of a message it appended.
// Prints one JSON object.
//
//   node imapflow_qresync.mjs HOST PORT USER PASS [--tls|--starttls CAFILE SERVERNAME]
import { ImapFlow } from 'imapflow';
import { clientOptions } from './options.mjs';

const client = new ImapFlow({ ...clientOptions(process.argv.slice(2)), qresync: true });
const out = { qresync: false, compressed: false, changed: [], unseen: [], moved: null };
try {
    await client.connect();
    out.qresync = client.enabled.has('QRESYNC');
    out.compressed = Boolean(client._deflate);
    out.secure = Boolean(client.secureConnection);
    const before = await client.status('INBOX', { uidValidity: true, highestModseq: true, messages: true });
    out.before = { uidValidity: String(before.uidValidity), highestModseq: String(before.highestModseq) };
    const subject = `imaptap qresync ${Date.now()}`;
    const res = await client.append('INBOX', `Subject: ${subject}\r\nFrom: a@example.org\r\n\r\nqresync\r\n`);
    out.appended = res.uid;
    const mailbox = await client.mailboxOpen('INBOX', {
        uidValidity: before.uidValidity, changedSince: before.highestModseq,
    });
    out.exists = mailbox.exists;
    out.highestModseq = String(mailbox.highestModseq);
    for (const msg of await client.fetchAll('1:*', { uid: true, flags: true },
                                           { uid: true, changedSince: before.highestModseq })) {
        out.changed.push(msg.uid);
    }
    out.unseen = await client.search({ seen: false }, { uid: true });
    const moved = await client.messageMove(String(res.uid), 'Archive', { uid: true });
    out.moved = moved ? Object.fromEntries([...(moved.uidMap || new Map())].map(([a, b]) => [a, b])) : null;
    await client.logout();
    process.stdout.write(JSON.stringify(out) + '\n');
} catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err && err.message || err), ...out }) + '\n');
    process.exitCode = 1;
}
