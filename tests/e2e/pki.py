"""A certificate authority made at test time with the openssl CLI.

Clients verify every TLS service against this CA and the address they
dialled (the certificate names every address of the lab), so a TLS probe
proves it reached the real server, not just an open port.
"""

from __future__ import annotations

from pathlib import Path

from .netns import run

SERVER_NAME = "mail.example.test"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def make_ca(directory: Path) -> Path:
    """Create ca.pem/ca.key in ``directory`` and return the certificate's path."""
    cert, key = directory / "ca.pem", directory / "ca.key"
    run(["openssl", "req", "-x509", *_EC, "-days", "2", "-subj", "/CN=mailpub e2e test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", str(key), "-out", str(cert)])
    return cert


def issue(ca: Path, directory: Path, addresses: list) -> tuple[Path, Path]:
    """A server certificate for SERVER_NAME and ``addresses``, signed by ``ca``."""
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    names = ",".join([f"DNS:{SERVER_NAME}"] + [f"IP:{a}" for a in addresses])
    run(["openssl", "req", "-new", *_EC, "-subj", f"/CN={SERVER_NAME}",
         "-addext", f"subjectAltName={names}", "-keyout", str(key), "-out", str(csr)])
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca),
         "-CAkey", str(ca.with_suffix(".key")), "-CAcreateserial", "-days", "2",
         "-copy_extensions", "copy", "-out", str(cert)])
    return cert, key
