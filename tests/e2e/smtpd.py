"""The lab's SMTP server: aiosmtpd on 25 (plain), 465 (implicit TLS) and 587
(STARTTLS required).

Every accepted message goes into a Maildir that Dovecot serves, and into a
JSON-lines log with the peer address the server saw and whether the session
was encrypted: tests read the peer to check SNAT (outbound) and that DNAT
keeps the client's own address (publishing).

Run inside a namespace as root: it binds its ports, then drops to the
mailbox owner so that Dovecot can read what it wrote.
"""

import argparse
import asyncio
import json
import mailbox
import os
import pwd
import ssl
from email.parser import BytesHeaderParser

from aiosmtpd.smtp import SMTP


class MaildirHandler:
    def __init__(self, maildir: str, log):
        self.maildir = mailbox.Maildir(maildir, create=False)
        self.log = log

    async def handle_DATA(self, server, session, envelope):
        self.maildir.add(envelope.original_content)
        headers = BytesHeaderParser().parsebytes(envelope.original_content)
        record = {
            "peer": session.peer[0],
            "port": server.transport.get_extra_info("sockname")[1],
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "subject": headers.get("Subject", ""),
        }
        self.log.write(json.dumps(record) + "\n")
        self.log.flush()
        return "250 OK delivered"


async def serve(args: argparse.Namespace) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    handler = MaildirHandler(args.maildir, open(args.log, "a"))
    loop = asyncio.get_running_loop()

    def factory(**options):
        return lambda: SMTP(handler, hostname=args.hostname, **options)

    servers = [
        await loop.create_server(factory(tls_context=tls), host=None, port=25),
        await loop.create_server(factory(), host=None, port=465, ssl=tls),
        await loop.create_server(factory(tls_context=tls, require_starttls=True),
                                 host=None, port=587),
    ]
    owner = pwd.getpwnam(args.user)
    os.setgid(owner.pw_gid)
    os.setuid(owner.pw_uid)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--hostname", default="mail.example.test")
    asyncio.run(serve(parser.parse_args()))
