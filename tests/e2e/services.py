"""Real servers for the lab hosts, each with a throwaway configuration.

- ``smtp``: smtpd.py (aiosmtpd) delivering into the host's Maildir;
- ``dovecot``: Debian's Dovecot serving that Maildir over IMAP4/POP3 (+TLS),
  started with ``-c`` so no system configuration is read;
- ``dns``: Knot DNS, authoritative for ``example.net`` (transfers allowed to
  anyone) and for ``whoami.test`` (mod-whoami answers with the client's
  address, which is how tests see DNS SNAT);
- ``ssh``: canary.py on tcp/22 and tcp/2222, a stand-in for the firewall's
  sshd on the default port and on the ssh_port scenarios choose;
- every host but the firewall also gets a catch-all: an nft table of its own
  (not the firewall's) redirecting every TCP port no real server uses to
  canary.py, so that traffic the firewall should have stopped, in either
  direction, meets a listener and shows as "open".
"""

from __future__ import annotations

import os
import pwd
import sys
import time
from pathlib import Path

from .netns import CommandError
from .topology import CANARY_PORT, SERVER_PORTS, Host

HERE = Path(__file__).resolve().parent
MAIL_USER = "mail"
ACCOUNT = ("alice", "lab-secret")
ZONE = "example.net"
WHOAMI_ZONE = "whoami.test"


def start(host: Host, workdir: Path, cert: Path, key: Path) -> None:
    """Start every server the host wants and wait until they all listen."""
    home = workdir / host.name
    home.mkdir()
    home.chmod(0o755)           # Dovecot's mail processes run as MAIL_USER
    procs, ports = [], set()
    for server in host.servers:
        procs.append(_STARTERS[server](host, home, cert, key))
        ports |= SERVER_PORTS[server]
    if host.side != "firewall":
        _catch_all(host, home, {p for proto, p in ports if proto == "tcp"})
        procs.append(host.ns.spawn(sys.executable, str(HERE / "canary.py"), str(CANARY_PORT),
                                   log=str(home / "canary.log")))
        ports.add(("tcp", CANARY_PORT))
    host.ns.wait_listening(ports, procs)
    if "dns" in host.servers:
        _wait_zones_loaded(home / "knot.log")


def smtp_log(host: Host, workdir: Path) -> Path:
    return workdir / host.name / "smtp.jsonl"


def _maildir(home: Path) -> Path:
    """The host's Maildir, owned by MAIL_USER: smtpd writes it, Dovecot reads it."""
    owner = pwd.getpwnam(MAIL_USER)
    maildir = home / "Maildir"
    for sub in ("", "cur", "new", "tmp"):
        (maildir / sub).mkdir(exist_ok=True)
        os.chown(maildir / sub, owner.pw_uid, owner.pw_gid)
    return maildir


def _smtp(host: Host, home: Path, cert: Path, key: Path):
    maildir = _maildir(home)
    return host.ns.spawn(sys.executable, str(HERE / "smtpd.py"), "--maildir", str(maildir),
                         "--log", str(home / "smtp.jsonl"), "--cert", str(cert),
                         "--key", str(key), "--user", MAIL_USER,
                         log=str(home / "smtpd.out"))


def _dovecot(host: Host, home: Path, cert: Path, key: Path):
    maildir = _maildir(home)
    owner = pwd.getpwnam(MAIL_USER)
    user, password = ACCOUNT
    (home / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    conf = home / "dovecot.conf"
    conf.write_text(f"""\
protocols = imap pop3
listen = *, ::
base_dir = {home}/dovecot-run
state_dir = {home}/dovecot-state
log_path = {home}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {owner.pw_uid}
first_valid_gid = {owner.pw_gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {home}/passwd
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={maildir}
}}
mail_location = maildir:{maildir}
""")
    return host.ns.spawn("dovecot", "-F", "-c", str(conf), log=str(home / "dovecot.out"))


def _knot(host: Host, home: Path, cert: Path, key: Path):
    zones = home / "zones"
    zones.mkdir()
    (home / "knot-db").mkdir()
    soa = "@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\n"
    (zones / f"{ZONE}.zone").write_text(
        f"$ORIGIN {ZONE}.\n$TTL 300\n{soa}"
        "ns A 203.0.113.53\nmx A 203.0.113.25\n@ MX 10 mx\nwww A 203.0.113.80\n")
    (zones / f"{WHOAMI_ZONE}.zone").write_text(
        f"$ORIGIN {WHOAMI_ZONE}.\n$TTL 300\n{soa}ns A 203.0.113.53\n")
    conf = home / "knot.conf"
    conf.write_text(f"""\
server:
    rundir: {home}
    pidfile: {home}/knot.pid
    listen: [ 0.0.0.0@53, ::@53 ]
log:
  - target: {home}/knot.log
    any: info
database:
    storage: {home}/knot-db
control:
    listen: {home}/knot.sock
acl:
  - id: transfer-to-anyone
    address: [ 0.0.0.0/0, ::/0 ]
    action: transfer
template:
  - id: default
    storage: {zones}
    file: "%s.zone"
zone:
  - domain: {ZONE}
    acl: transfer-to-anyone
  - domain: {WHOAMI_ZONE}
    module: mod-whoami
""")
    return host.ns.spawn("knotd", "-c", str(conf), log=str(home / "knotd.out"))


def _wait_zones_loaded(log: Path, timeout: float = 10, zones: int = 2) -> None:
    """Knot listens before its zones are loaded; queries must not race that."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("loaded, serial") < zones:
        if time.monotonic() > deadline:
            raise CommandError(f"Knot did not load its zones in {timeout}s; see {log}")
        time.sleep(0.05)


def _ssh_canary(host: Host, home: Path, cert: Path, key: Path):
    ports = sorted(port for _, port in SERVER_PORTS["ssh"])
    return host.ns.spawn(sys.executable, str(HERE / "canary.py"), *map(str, ports),
                         log=str(home / "ssh-canary.log"))


def _catch_all(host: Host, home: Path, served: set[int]) -> None:
    match = f"tcp dport != {{ {', '.join(map(str, sorted(served)))} }}" if served \
        else "meta l4proto tcp"
    rules = home / "catch-all.nft"
    rules.write_text(f"""\
table inet catchall {{
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		{match} redirect to :{CANARY_PORT}
	}}
}}
""")
    host.ns.run("nft", "-f", str(rules))


_STARTERS = {"smtp": _smtp, "dovecot": _dovecot, "dns": _knot, "ssh": _ssh_canary}
