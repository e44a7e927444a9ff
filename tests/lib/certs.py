"""Certificates for TLS tests, made with the openssl command line tool.

    pki = TestPKI(dir)            # a CA of its own
    cert, key = pki.server("localhost", "127.0.0.1")
    pki.ca_cert                   # what a client must trust
"""

import os
import ssl
import subprocess


def client_context(cafile):
    """A client's TLS context trusting cafile only, checking host names."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


def _run(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class TestPKI:
    def __init__(self, directory, name="imaptap test server CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_key = os.path.join(directory, "test-ca.key")
        self.ca_cert = os.path.join(directory, "test-ca.crt")
        _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "30",
              "-subj", "/CN=" + name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign"], directory)

    def server(self, *names, stem="server"):
        """A leaf for names (DNS names or IP addresses) signed by this CA."""
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        crt = os.path.join(self.dir, stem + ".crt")
        ext = os.path.join(self.dir, stem + ".ext")
        sans = ",".join(("IP:" if all(c in "0123456789.:" for c in n) else "DNS:") + n
                        for n in names)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % sans)
        _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", key, "-out", csr, "-subj", "/CN=" + names[0]], self.dir)
        _run(["x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
              "-CAcreateserial", "-out", crt, "-days", "30", "-extfile", ext], self.dir)
        os.chmod(key, 0o644)  # Dovecot's processes read it
        return crt, key

    def crafted(self, cn, dns=(), ips=(), stem="crafted"):
        """A leaf with names as a hostile server would make them: the
        subject CN and each DNS name written byte for byte (commas,
        control bytes), one subjectAltName entry each; then ips."""
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        crt = os.path.join(self.dir, stem + ".crt")
        conf = os.path.join(self.dir, stem + ".cnf")
        lines = ["[req]", "distinguished_name = dn", "prompt = no",
                 "string_mask = utf8only", "utf8 = yes", "[dn]", "CN = " + cn,
                 "[ext]", "subjectAltName = @alt", "basicConstraints = CA:FALSE",
                 "extendedKeyUsage = serverAuth", "[alt]"]
        # a section entry is one name whole: no splitting at commas
        lines += ["DNS.%d = %s" % (i + 1, n) for i, n in enumerate(dns)]
        lines += ["IP.%d = %s" % (i + 1, n) for i, n in enumerate(ips)]
        with open(conf, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        _run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", key, "-out", csr, "-config", conf], self.dir)
        _run(["x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
              "-CAcreateserial", "-out", crt, "-days", "30", "-extfile", conf,
              "-extensions", "ext"], self.dir)
        os.chmod(key, 0o644)  # Dovecot's processes read it
        return crt, key
