"""Accept-and-close TCP listener: proof that a connection got somewhere.

The lab redirects every TCP port that no real server uses on its hosts to
this listener, and puts one on the firewall's ssh port, so a rule that lets
too much through shows up as an open port instead of a quiet RST.
Run inside a namespace: ``canary.py PORT...``.
"""

import asyncio
import sys


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def main(ports: list[int]) -> None:
    servers = [await asyncio.start_server(_close, host=None, port=p) for p in ports]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main([int(p) for p in sys.argv[1:]]))
