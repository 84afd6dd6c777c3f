"""A throw-away certificate authority and a server certificate for 127.0.0.1 (openssl), for
Redis and sentinels that speak TLS only."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def redis_args(self) -> list[str]:
        """redis-server's (and a sentinel's) TLS flags; clients are not asked for certificates."""
        return ["--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
                "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no"]


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    d, ssl = directory, ["openssl"]
    ca, cert, key = d / "ca.pem", d / "server.pem", d / "server.key"
    subprocess.run([*ssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key", "-out",
                    ca, "-days", "1", "-subj", "/CN=workhorse-test-ca"], check=True, capture_output=True)
    subprocess.run([*ssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                    d / "server.csr", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run([*ssl, "x509", "-req", "-in", d / "server.csr", "-CA", ca, "-CAkey", d / "ca.key",
                    "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", d / "ext"],
                   check=True, capture_output=True)
    return Certificates(ca, cert, key)
