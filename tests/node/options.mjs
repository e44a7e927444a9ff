// The ImapFlow options a test script's command line gives:
//
//   HOST PORT USER PASS [--tls|--starttls CAFILE SERVERNAME]
//
// --tls: implicit TLS; --starttls: a plain connection that must be
// upgraded with STARTTLS; either trusts only CAFILE.
import fs from 'node:fs';

export function clientOptions(argv) {
    const [host, port, user, pass, ...rest] = argv;
    const options = {
        host,
        port: Number(port),
        secure: false,
        auth: { user, pass },
        logger: false,
        disableAutoIdle: true,
    };
    if (rest[0] === '--tls' || rest[0] === '--starttls') {
        options.secure = rest[0] === '--tls';
        options.doSTARTTLS = rest[0] === '--starttls' ? true : undefined;
        options.tls = { ca: [fs.readFileSync(rest[1])], servername: rest[2], rejectUnauthorized: true };
    }
    return options;
}
