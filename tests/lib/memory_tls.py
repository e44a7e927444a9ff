"""A TLS connection made in memory with Python's ssl (OpenSSL): real
records for captures and key logs, without sockets."""

import ssl


def tls_contexts(pki, stem):
    """(client context trusting pki's CA, server context with a fresh
    certificate for localhost)."""
    crt, key = pki.server("localhost", stem=stem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    return ssl.create_default_context(cafile=pki.ca_cert), sctx


class MemoryTLS:
    """A client (side 0) and a server (side 1) joined by memory BIOs; each
    chunk of records a side sends goes to sent(side, data) before the other
    side reads it. The handshake is done when the object is made."""

    def __init__(self, cctx, sctx, sent):
        self.sent = sent
        self.bios = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]
        self.ends = [cctx.wrap_bio(*self.bios[0], server_hostname="localhost"),
                     sctx.wrap_bio(*self.bios[1], server_side=True)]
        done = [False, False]
        while not all(done):
            for side in (0, 1):
                if not done[side]:
                    try:
                        self.ends[side].do_handshake()
                        done[side] = True
                    except ssl.SSLWantReadError:
                        pass
                self.move()

    def move(self):
        for side in (0, 1):
            data = self.bios[side][1].read()
            if data:
                self.sent(side, data)
                self.bios[1 - side][0].write(data)

    def say(self, side, data):
        """side writes data (a record of its own), the other side reads it."""
        self.ends[side].write(data)
        self.move()
        return self.ends[1 - side].read(4096)
