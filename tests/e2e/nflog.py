"""Read one nflog group inside a namespace: ``nflog.py GROUP``.

The kernel log ignores `log` statements in namespaces other than the first
(unless a host-wide sysctl says otherwise); `log group N` hands the packet to
nfnetlink_log, which any process in the namespace can read.  This binds
GROUP over NETLINK_NETFILTER, prints ``ready`` once bound, collects entries
until its standard input closes, reads what is still queued, and prints
them as JSON: ``[{"prefix": ..., "source": ...}, ...]``, the source read
from the logged packet's IP header.
"""

import ipaddress
import json
import select
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULNL_CFG_CMD_BIND = 1, 1
NFULA_CFG_QTHRESH = 4
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
DRAIN_IDLE = 0.5        # seconds without a message that end the final read


def _attributes(data: bytes):
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        yield kind & 0x7FFF, data[4:length]
        data = data[(length + 3) & ~3:]


def _bind(sock: socket.socket, group: int) -> None:
    # each entry sent at once, not batched for up to a second (qthreshold 1)
    attr = (struct.pack("=HHB3x", 5, NFULA_CFG_CMD, NFULNL_CFG_CMD_BIND)
            + struct.pack("=HH", 8, NFULA_CFG_QTHRESH) + struct.pack("!I", 1))
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group) + attr
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                         NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    sock.send(header + body)
    reply = sock.recv(65536)
    if struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR and struct.unpack_from("=i", reply, 16)[0]:
        raise OSError(f"cannot bind nflog group {group}: error {struct.unpack_from('=i', reply, 16)[0]}")


def _entries(datagram: bytes):
    while len(datagram) >= 16:
        length, kind = struct.unpack_from("=IH", datagram)
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            found = dict(_attributes(datagram[20:length]))
            payload = found.get(NFULA_PAYLOAD, b"")
            source = (ipaddress.ip_address(payload[12:16]) if payload[:1] and payload[0] >> 4 == 4
                      else ipaddress.ip_address(payload[8:24]) if payload[:1] else None)
            yield {"prefix": found.get(NFULA_PREFIX, b"").rstrip(b"\0").decode(),
                   "source": str(source) if source else None}
        datagram = datagram[(length + 3) & ~3:]


def main() -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    _bind(sock, int(sys.argv[1]))
    print("ready", flush=True)
    found, stopping = [], False
    while True:
        ready, _, _ = select.select([sock] + ([] if stopping else [sys.stdin]), [], [],
                                    DRAIN_IDLE if stopping else None)
        if sock in ready:
            found.extend(_entries(sock.recv(1 << 20)))
        elif stopping:
            break
        if sys.stdin in ready and not sys.stdin.readline():
            stopping = True
    print(json.dumps(found))


if __name__ == "__main__":
    main()
