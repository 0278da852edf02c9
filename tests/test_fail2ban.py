"""`mailpubc integration fail2ban` with the real fail2ban (Debian's
fail2ban-server, started by the test with its own configuration folder,
socket and in-memory database, never the system service): a jail reads a
mail log the test writes (failed SASL logins) and bans the client into the
policy's dynamic sets; the banned client then reaches no published SMTP
server, neither the firewall's own (input) nor the DNATed one behind it
(forward), over IPv4 and IPv6. `fail2ban-client unban` lets it back; a ban
outlives `mailpubc apply` and a rollback; stopping fail2ban leaves the table
and its sets in place."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from banlab import CLIENT, POLICY, PUBLISHED, build, elements, mailpubc, reachable, until
from cli import run_mailpubc
from mailpubc import nft

pytestmark = pytest.mark.usefixtures("namespaces_work")

FILTERS = Path("/etc/fail2ban/filter.d")
JAIL = """\
[DEFAULT]
backend = polling
dbfile = :memory:

[postfix-sasl]
enabled = true
filter = postfix[mode=auth]
logpath = {log}
maxretry = 2
findtime = 600
bantime = 600
action = mailpubc
"""


@pytest.fixture(scope="module")
def lab(module_namespaces, tmp_path_factory):
    if shutil.which("fail2ban-server") is None:
        pytest.skip("needs Debian's fail2ban")
    return build(module_namespaces, tmp_path_factory.mktemp("fail2ban"))


class Fail2ban:
    """fail2ban-server in the foreground with a configuration of its own."""

    def __init__(self, folder: Path, action: str):
        self.conf = folder / "conf"
        (self.conf / "filter.d").mkdir(parents=True)
        (self.conf / "action.d").mkdir()
        for name in ("common.conf", "postfix.conf"):
            shutil.copy(FILTERS / name, self.conf / "filter.d" / name)
        (self.conf / "action.d" / "mailpubc.conf").write_text(action)
        self.log = folder / "mail.log"
        self.log.write_text("")
        (self.conf / "jail.conf").write_text(JAIL.format(log=self.log))
        self.socket, self.pid = folder / "f2b.sock", folder / "f2b.pid"
        (self.conf / "fail2ban.conf").write_text(
            f"[Definition]\nloglevel = INFO\nlogtarget = {folder / 'fail2ban.log'}\n"
            f"socket = {self.socket}\npidfile = {self.pid}\ndbfile = :memory:\n")
        self.server = subprocess.Popen(
            ["fail2ban-server", "-f", "-x", "-c", str(self.conf), "-s", str(self.socket),
             "-p", str(self.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(lambda: self.client("ping").returncode == 0, "fail2ban answers")

    def client(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["fail2ban-client", "-c", str(self.conf), "-s", str(self.socket),
                               *args], capture_output=True, text=True, timeout=30)

    def failed_logins(self, address: str, count: int = 3) -> None:
        stamp = datetime.now().strftime("%b %d %H:%M:%S")
        with self.log.open("a") as log:
            for number in range(count):
                log.write(f"{stamp} mail postfix/smtpd[{4000 + number}]: warning: "
                          f"unknown[{address}]: SASL LOGIN authentication failed: "
                          "UGFzc3dvcmQ6\n")

    def stop(self) -> None:
        self.client("stop")
        try:
            self.server.wait(timeout=30)
        finally:
            if self.server.poll() is None:
                self.server.kill()


def test_fail2ban_bans_into_the_policy_sets_and_the_ban_holds(lab):
    firewall, client, policy, state, folder = lab
    assert all(reachable(client).values())
    action = run_mailpubc("integration", "fail2ban", "--netns", firewall.name, policy)
    assert action.returncode == 0, action.stderr
    fail2ban = Fail2ban(folder, action.stdout)
    try:
        for family in (4, 6):
            fail2ban.failed_logins(CLIENT[family])
            until(lambda: CLIENT[family] in elements(firewall, family),
                            f"the IPv{family} ban in banned_v{family}")
        assert "timeout" in elements(firewall, 4)      # the ticket's ban time, 600 s
        assert reachable(client) == dict.fromkeys(PUBLISHED[4] + PUBLISHED[6], False)
        # the ban outlives an apply and a rollback (apply carries the elements)
        assert mailpubc(state, "apply", "--netns", firewall.name, policy).returncode == 0
        assert CLIENT[4] in elements(firewall, 4) and CLIENT[6] in elements(firewall, 6)
        rolled = mailpubc(state, "apply", "--netns", firewall.name, "--confirm", "1", policy)
        assert rolled.returncode == 4, rolled.stderr
        assert CLIENT[4] in elements(firewall, 4) and CLIENT[6] in elements(firewall, 6)
        assert not any(reachable(client).values())
        # unbanned, the client is back
        for family in (4, 6):
            unban = fail2ban.client("set", "postfix-sasl", "unbanip", CLIENT[family])
            assert unban.returncode == 0, unban.stderr
        assert CLIENT[4] not in elements(firewall, 4)
        assert all(reachable(client).values())
        # banning an address inside a banned network is no error; unbanning it neither
        firewall.run("nft", "add", "element", "inet", "mailpub", "banned_v4",
                     "{ 192.0.2.0/24 }")
        fail2ban.failed_logins(CLIENT[4])
        until(lambda: CLIENT[4] in fail2ban.client(
            "status", "postfix-sasl").stdout, "the ban of an address already covered")
        assert "ERROR" not in (folder / "fail2ban.log").read_text()
    finally:
        fail2ban.stop()
    listed = nft.list_ruleset(netns=firewall.name)
    names = {item["set"]["name"] for item in listed["nftables"] if "set" in item}
    assert {"banned_v4", "banned_v6"} <= names          # stopping left table and sets
    assert "192.0.2.0/24" in elements(firewall, 4) or "'192.0.2.0'" in elements(firewall, 4)


def test_a_policy_without_dynamic_sets_has_no_action(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("  dynamic_block: [banned, {name: crowdsec, feeder: crowdsec}]\n", ""))
    run = run_mailpubc("integration", "fail2ban", policy)
    assert run.returncode == 1 and run.stdout == ""
    assert "no firewall.dynamic_block" in run.stderr


def test_the_documented_jails_take_the_action(tmp_path):
    """docs/integrations.md's jails, read by fail2ban itself over Debian's
    configuration: each of postfix, postfix-sasl and dovecot bans with it."""
    if shutil.which("fail2ban-client") is None:
        pytest.skip("needs Debian's fail2ban")
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "integrations.md").read_text()
    jails = docs.split("```ini\n", 1)[1].split("```", 1)[0]
    (conf / "jail.d" / "mail.local").write_text(jails)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    action = run_mailpubc("integration", "fail2ban", policy)
    (conf / "action.d" / "mailpubc.conf").write_text(action.stdout)
    dump = subprocess.run(["fail2ban-client", "-c", str(conf), "-d"], capture_output=True,
                          text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    for jail in ("postfix", "postfix-sasl", "dovecot"):
        assert f"['set', '{jail}', 'addaction', 'mailpubc']" in dump.stdout
    assert "nft add element inet mailpub <set>" in dump.stdout
    assert "['set?family=inet6', 'banned_v6']" in dump.stdout
