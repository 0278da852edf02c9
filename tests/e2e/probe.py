"""Client side of every lab check, run inside a host's namespace.

``probe.py JSON`` takes one request and prints one JSON result.  It speaks
the real protocols with real clients (smtplib, imaplib, poplib, dnspython)
and TLS verified against the lab's CA.  A result's ``status`` is

- ``open``: the whole exchange worked;
- ``closed``: no connection could be made (refused, reset, unreachable, or
  no answer within CONNECT_TIMEOUT);
- ``broken``: something answered but the exchange failed, which is neither,
  so an expectation of ``open`` and one of ``closed`` both fail on it.
"""

import errno
import imaplib
import json
import poplib
import resource
import select
import smtplib
import socket
import ssl
import struct
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

CONNECT_TIMEOUT = 2.0
IO_TIMEOUT = 8.0


class Closed(Exception):
    """No connection could be made."""


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def tcp_check(host: str, port: int) -> None:
    """Raise Closed unless a TCP handshake with host:port completes."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise Closed(f"tcp/{port}: {_why(exc)}") from exc


def smtp_client(req: dict) -> smtplib.SMTP:
    host, port, service = req["host"], req["port"], req["service"]
    if service == "smtps":
        client = smtplib.SMTP_SSL(host, port, timeout=IO_TIMEOUT, context=_tls(req))
    else:
        client = smtplib.SMTP(host, port, timeout=IO_TIMEOUT)
    client.ehlo("probe.example.test")
    if service == "submission":
        client.starttls(context=_tls(req))
        client.ehlo("probe.example.test")
    return client


def imap_client(req: dict) -> imaplib.IMAP4:
    host, port = req["host"], req["port"]
    if req["service"] == "imaps":
        client = imaplib.IMAP4_SSL(host, port, ssl_context=_tls(req), timeout=IO_TIMEOUT)
    else:
        client = imaplib.IMAP4(host, port, timeout=IO_TIMEOUT)
    client.login(*req["account"])
    return client


def pop3_client(req: dict) -> poplib.POP3:
    host, port = req["host"], req["port"]
    if req["service"] == "pop3s":
        client = poplib.POP3_SSL(host, port, context=_tls(req), timeout=IO_TIMEOUT)
    else:
        client = poplib.POP3(host, port, timeout=IO_TIMEOUT)
    client.user(req["account"][0])
    client.pass_(req["account"][1])
    return client


def _tls(req: dict) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=req["cafile"])


def _dns_query(req: dict, transport: str, name: str, rdtype: str):
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    query = dns.message.make_query(name, rdtype)
    try:
        if transport == "udp":
            answer = dns.query.udp(query, req["host"], port=req["port"], timeout=CONNECT_TIMEOUT)
        else:
            tcp_check(req["host"], req["port"])
            answer = dns.query.tcp(query, req["host"], port=req["port"], timeout=IO_TIMEOUT)
    except dns.exception.Timeout as exc:
        raise Closed(f"{transport}/{req['port']}: no answer in time") from exc
    except PermissionError as exc:
        # What sendto() gets when the sender's own output chain drops the query.
        raise Closed(f"{transport}/{req['port']}: {_why(exc)}") from exc
    if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
        raise RuntimeError(f"{transport}: {dns.rcode.to_text(answer.rcode())}, "
                           f"{len(answer.answer)} answers")
    return answer


def _both_transports(req: dict, name: str, rdtype: str) -> dict:
    """Ask over UDP and TCP at once; open only if both answer, closed only if neither."""
    def ask(transport: str):
        try:
            return "open", _dns_query(req, transport, name, rdtype)
        except Closed as exc:
            return f"closed ({exc})", None
        except Exception as exc:  # noqa: BLE001 - any other failure is "broken"
            return f"broken ({_why(exc)})", None

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(("udp", "tcp"), pool.map(ask, ("udp", "tcp"))))
    transports = {t: state.split(" ")[0] for t, (state, _) in results.items()}
    states = set(transports.values())
    return {"status": states.pop() if len(states) == 1 else "broken", "transports": transports,
            "detail": "; ".join(f"{t}: {state}" for t, (state, _) in results.items()),
            "answers": [answer for _, answer in results.values() if answer is not None]}


def reach(req: dict) -> dict:
    """Open a session of ``service`` with host:port and log in where there is a login."""
    service = req["service"]
    if service == "dns":
        result = _both_transports(req, req["zone"], "SOA")
        del result["answers"]
        return result
    tcp_check(req["host"], req["port"])
    if service == "dns-zone-transfer":
        import dns.query
        import dns.zone
        zone = dns.zone.from_xfr(dns.query.xfr(req["host"], req["zone"], port=req["port"],
                                               timeout=IO_TIMEOUT, lifetime=IO_TIMEOUT))
        return {"status": "open", "detail": f"AXFR of {req['zone']}: {len(zone.nodes)} names"}
    if service in ("smtp", "smtps", "submission"):
        smtp_client(req).quit()
    elif service in ("imap", "imaps"):
        imap_client(req).logout()
    elif service in ("pop3", "pop3s"):
        pop3_client(req).quit()
    return {"status": "open", "detail": f"{service} session on port {req['port']} worked"}


def deliver(req: dict) -> dict:
    """Send a message with a unique subject, then find it with each reader."""
    subject = f"mailpub-e2e {uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"] = "probe@example.test"
    message["To"] = f"{req['account'][0]}@example.test"
    message["Subject"] = subject
    message.set_content("Sent through the firewall under test.\n")
    tcp_check(req["host"], req["port"])
    client = smtp_client(req)
    client.send_message(message)
    client.quit()
    found = {}
    for reader in req.get("read_with", []):
        sub = dict(req, service=reader["service"], port=reader["port"])
        found[reader["service"]] = _find(sub, subject)
    missing = [s for s, ok in found.items() if not ok]
    if missing:
        return {"status": "broken", "subject": subject,
                "detail": f"sent, but not found via {', '.join(missing)}"}
    return {"status": "open", "subject": subject,
            "detail": f"sent via {req['service']}, read back via {', '.join(found) or 'nothing'}"}


def _find(req: dict, subject: str) -> bool:
    if req["service"] in ("imap", "imaps"):
        client = imap_client(req)
        client.select("INBOX", readonly=True)
        _, data = client.search(None, "SUBJECT", f'"{subject}"')
        client.logout()
        return bool(data[0].split())
    client = pop3_client(req)
    count = client.stat()[0]
    found = any(subject.encode() in b"\n".join(client.top(i, 0)[1])
                for i in range(1, count + 1))
    client.quit()
    return found


def whoami(req: dict) -> dict:
    """Ask the remote DNS server which address it sees us coming from."""
    rdtype = "AAAA" if ":" in req["host"] else "A"
    result = _both_transports(req, req["whoami_zone"], rdtype)
    result["addresses"] = sorted({str(rr) for a in result.pop("answers")
                                  for rrset in a.answer for rr in rrset})
    return result


def sweep(req: dict) -> dict:
    """TCP connect to every port in [first, last] at once, in large batches.

    A port is open when its handshake completed.  Ports the caller expects
    open but that did not answer in the fast pass are tried again alone with
    a longer timeout, so a slow server is not mistaken for a closed port.
    """
    host, first, last = req["host"], req["first"], req["last"]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    batch = min(16384, hard - 64)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _resolve_neighbour(host, family)
    open_ports, counts = set(), {"refused": 0, "unreachable": 0, "no answer": 0}
    started = time.monotonic()
    for low in range(first, last + 1, batch):
        ports = range(low, min(low + batch, last + 1))
        found, batch_counts = _sweep_batch(host, family, ports, req["timeout"])
        open_ports |= found
        for key, value in batch_counts.items():
            counts[key] += value
    for port in set(req["expected"]) - open_ports:
        if _connects(host, port):
            open_ports.add(port)
    counts["seconds"] = round(time.monotonic() - started, 2)
    return {"status": "open", "open": sorted(open_ports), "counts": counts}


def _resolve_neighbour(host: str, family: int) -> None:
    """Send one datagram first, so that the burst does not overflow the
    queue of packets waiting for ARP/NDP to resolve the next hop."""
    with socket.socket(family, socket.SOCK_DGRAM) as nudge:
        nudge.sendto(b"", (host, 9))
    time.sleep(0.1)


def _connects(host: str, port: int) -> bool:
    try:
        tcp_check(host, port)
        return True
    except Closed:
        return False


def _sweep_batch(host: str, family: int, ports: range, timeout: float):
    poller = select.epoll()
    pending = {}
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        # Close with RST: no FIN handshakes or TIME_WAIT for thousands of sockets.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.connect_ex((host, port))
        pending[sock.fileno()] = (sock, port)
        poller.register(sock.fileno(), select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP)
    found, counts = set(), {"refused": 0, "unreachable": 0, "no answer": 0}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        # After the deadline, one last look collects handshakes that completed
        # while this process was not scheduled.
        for fd, _ in poller.poll(max(left, 0)):
            sock, port = pending.pop(fd)
            poller.unregister(fd)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error == 0:
                found.add(port)
            else:
                counts["refused" if error == errno.ECONNREFUSED else "unreachable"] += 1
            sock.close()
        if left <= 0:
            break
    counts["no answer"] = len(pending)
    for sock, _ in pending.values():
        sock.close()
    poller.close()
    return found, counts


def connections(req: dict) -> dict:
    """Open ``count`` TCP connections to host:port one after another, each
    open once the server's greeting arrives.  With ``hold`` every connection
    stays open until the last was tried (simultaneous connections); without,
    each is closed at once with a reset, so that the firewall's conntrack
    entry closes too and only the rate of new connections is tested. With
    ``sources``, connection i comes from ``sources[i]`` (modulo their number)."""
    held, statuses = [], []
    sources = req.get("sources") or [None]
    for index in range(req["count"]):
        source = sources[index % len(sources)]
        try:
            sock = socket.create_connection((req["host"], req["port"]), timeout=CONNECT_TIMEOUT,
                                            source_address=source and (source, 0))
        except OSError as exc:
            statuses.append(f"closed ({_why(exc)})")
            continue
        sock.settimeout(IO_TIMEOUT)
        try:
            statuses.append("open" if sock.recv(512) else "broken (no greeting)")
        except OSError as exc:
            statuses.append(f"broken ({_why(exc)})")
        if req.get("hold"):
            held.append(sock)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    for sock in held:
        sock.close()
    return {"status": "open", "results": statuses, "detail": ", ".join(statuses)}


def flood(req: dict) -> dict:
    """Send ``count`` UDP datagrams to host:port as fast as they go."""
    family = socket.AF_INET6 if ":" in req["host"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for _ in range(req["count"]):
            try:
                sock.sendto(b"flood", (req["host"], req["port"]))
            except OSError:         # an ICMP error from an earlier datagram
                pass
    return {"status": "open", "detail": f"sent {req['count']} datagrams"}


def datagrams(req: dict) -> dict:
    """Send ``count`` UDP datagrams to host:port from ``source`` (an address
    the caller put on this host, to forge one from another network), spaced
    so that one arrives even if the first meets a neighbour lookup."""
    family = socket.AF_INET6 if ":" in req["host"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if req.get("source"):
            sock.bind((req["source"], 0))
        for _ in range(req["count"]):
            try:
                sock.sendto(b"datagram", (req["host"], req["port"]))
            except OSError:         # an ICMP error from an earlier datagram
                pass
            time.sleep(0.1)
    return {"status": "open", "detail": f"sent {req['count']} datagrams"}


def listen(req: dict) -> dict:
    """Receive UDP datagrams on ``port`` until standard input closes (after
    printing "ready"), then for ``drain`` seconds more; the peers seen."""
    family = socket.AF_INET6 if req["family"] == 6 else socket.AF_INET
    peers = []
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", req["port"]))
        print("ready", flush=True)
        deadline, watched = None, [sock, sys.stdin]
        while deadline is None or time.monotonic() < deadline:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            for ready in select.select(watched, [], [], wait)[0]:
                if ready is sock:
                    peers.append(sock.recvfrom(2048)[1][0])
                elif not sys.stdin.readline():
                    watched = [sock]
                    deadline = time.monotonic() + req["drain"]
    return {"status": "open", "peers": peers, "detail": f"received from {peers}"}


KINDS = {"reach": reach, "deliver": deliver, "whoami": whoami, "sweep": sweep,
         "connections": connections, "flood": flood, "datagrams": datagrams,
         "listen": listen}


def main() -> None:
    req = json.loads(sys.argv[1])
    try:
        result = KINDS[req["kind"]](req)
    except Closed as exc:
        result = {"status": "closed", "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the caller judges
        result = {"status": "broken", "detail": _why(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
