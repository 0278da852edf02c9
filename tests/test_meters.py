"""Per-source limits on the real kernel: what a meter keys on, what a full
meter does, and what apply, a rollback and diff do with meters.

A firewall namespace publishes smtp on itself (input chain, a listener that
greets and holds each connection) to a client namespace over a veth pair;
the client opens each connection from an address of its own choosing.
Chain policy reject: a refused connection ends at once in a reset, so no
probe waits for a timeout. The rates are per hour, so no budget refills
while a test runs.
"""

import ipaddress
import json
import select
import subprocess
import sys
from contextlib import closing
from dataclasses import replace

import pytest

from mailpubc import api, deploy, nft
from mailpubc.diagnostics import ExitCode
from mailpubc.generate import json as nft_json, text as nft_text
from mailpubc.state import State

from cli import run_mailpubc
from e2e.netns import run

PUBLISHED = {4: "198.51.100.10", 6: "2001:db8:100::10"}
POLICY = """version: 1
firewall:
  external: {{interface: eth0, addresses: [198.51.100.10, "2001:db8:100::10"]}}
  policy: {{input: reject}}
publish:
  - {{name: mail, server: localhost, external_address: 198.51.100.10, services: {services},
     limit: {limit}}}
  - {{name: mail6, server: localhost, external_address: "2001:db8:100::10",
     services: {services}, limit: {limit}}}
"""
RATE = "{new: 3/hour, burst: 3}"
SMTP, SUBMISSION = 25, 587
LISTENER = """
import selectors, socket, sys
selector = selectors.DefaultSelector()
servers = [socket.create_server(("::", int(port)), family=socket.AF_INET6,
                                dualstack_ipv6=True, backlog=128) for port in sys.argv[1:]]
for server in servers:
    selector.register(server, selectors.EVENT_READ)
while True:
    for key, _ in selector.select():
        if key.fileobj in servers:
            connection, _ = key.fileobj.accept()
            connection.sendall(b"220 meters\\r\\n")
            selector.register(connection, selectors.EVENT_READ)
        elif not key.fileobj.recv(512):
            selector.unregister(key.fileobj)
            key.fileobj.close()
"""
# One connection from each source, in turn: "open" once the greeting came.
# With --hold the connections stay open until standard input closes.
CONNECT = """
import json, socket, sys
host, port, hold, sources = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hold", sys.argv[4:]
statuses, held = [], []
for source in sources:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.settimeout(5)
    sock.bind((source, 0))
    try:
        sock.connect((host, port))
        statuses.append("open" if sock.recv(64).startswith(b"220") else "broken")
    except OSError:
        statuses.append("closed")
    (held.append if hold else lambda s: s.close())(sock)
print(json.dumps(statuses), flush=True)
if hold:
    sys.stdin.read()
"""
TIMEOUT = 60


class Lab:
    """The firewall and client namespaces, and the client's connections."""

    def __init__(self, tmp_path, namespaces):
        self.holders: list[subprocess.Popen] = []
        self.sources: set[str] = set()
        self.fw, self.client = namespaces("meters-fw"), namespaces("meters-cl")
        try:
            self._build(tmp_path)
        except BaseException:
            self.close()
            raise

    def _build(self, tmp_path):
        self.fw.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                   "netns", self.client.name)
        for ns in (self.fw, self.client):
            ns.ip("link", "set", "eth0", "up")
            for family in (4, 6):      # every address on the link itself, as on an ISP link
                ns.ip(f"-{family}", "route", "add", "default", "dev", "eth0")
        for address in PUBLISHED.values():
            self.fw.ip("addr", "add", address, "dev", "eth0", "nodad")
        listener = self.fw.spawn(sys.executable, "-c", LISTENER, str(SMTP), str(SUBMISSION),
                                 log=str(tmp_path / "listener.log"))
        self.fw.wait_listening({("tcp", SMTP), ("tcp", SUBMISSION)}, [listener])

    def connect(self, sources: list[str], family: int = 6, port: int = SMTP,
                hold: bool = False) -> list[str]:
        """A connection from each source in turn to the published address;
        with `hold`, they stay open until the lab closes."""
        for source in set(sources) - self.sources:
            self.client.ip("addr", "add", source, "dev", "eth0", "nodad")
            self.sources.add(source)
        argv = self.client.argv(sys.executable, "-c", CONNECT, PUBLISHED[family], str(port),
                                "hold" if hold else "close", *sources)
        if not hold:
            return json.loads(run(argv, timeout=TIMEOUT).stdout)
        holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.holders.append(holder)
        assert select.select([holder.stdout], [], [], TIMEOUT)[0], "the client hangs"
        return json.loads(holder.stdout.readline())

    def close(self):
        """What removing the namespaces (the `namespaces` fixture) leaves:
        the pending apply's record and the clients holding connections."""
        State.of(self.fw.name).remove("pending")      # a watcher still waiting exits
        for holder in self.holders:
            holder.kill()
            holder.wait()


@pytest.fixture
def lab(namespaces, tmp_path, monkeypatch):
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    with closing(Lab(tmp_path, namespaces)) as made:
        yield made


def policy(tmp_path, limit=RATE, services="[smtp]", name="policy") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(POLICY.format(limit=limit, services=services))
    return str(path)


def apply(lab, path, *options):
    done = run_mailpubc("apply", "--netns", lab.fw.name, *options, path,
                        stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done


def diff(lab, path) -> int:
    return run_mailpubc("diff", "--netns", lab.fw.name, path).returncode


def hosts(network: str, count: int) -> list[str]:
    """The first `count` addresses of `network`."""
    return [str(ipaddress.ip_network(network)[i]) for i in range(1, count + 1)]


# -- what a meter keys on ------------------------------------------------------------

@pytest.mark.parametrize("family, limit, sources, other", [
    (6, RATE, hosts("2001:db8:1:1::/64", 10), "2001:db8:1:2::1"),      # default: the /64
    (4, "{new: 3/hour, burst: 3, ipv4_prefix: 24}", hosts("192.0.2.0/24", 10), "203.0.113.1"),
], ids=["ipv6 /64", "ipv4_prefix 24"])
def test_addresses_of_one_network_share_its_budget(lab, tmp_path, family, limit, sources,
                                                   other):
    """Ten addresses of one network against new: 3 (burst 3): only three get
    through; an address of another network still does."""
    apply(lab, policy(tmp_path, limit))
    assert lab.connect(sources, family) == ["open"] * 3 + ["closed"] * 7
    assert lab.connect([other], family) == ["open"]


# -- a full meter ------------------------------------------------------------------------

METER_SIZE = 4


def small_meters(ruleset):
    """The plan with every meter holding at most METER_SIZE sources."""
    return replace(ruleset, sets=tuple(replace(s, size=METER_SIZE) if "dynamic" in s.flags
                                       else s for s in ruleset.sets))


@pytest.mark.parametrize("generator", ["text", "json"])
@pytest.mark.parametrize("limit, hold", [(RATE, False), ("{concurrent: 2}", True)],
                         ids=["rate", "concurrent"])
def test_a_full_meter_refuses_new_sources_only(lab, tmp_path, generator, limit, hold):
    """A meter holding as many sources as it can: a source it does not hold
    is refused (the kernel skips the verdict of a meter rule whose update
    fails: without the rule after it, every new source would pass
    unlimited), while the sources it holds keep their own budgets."""
    planned = small_meters(api.compile_path(policy(tmp_path, limit)).or_raise().ruleset)
    if generator == "text":
        nft.load(nft_text.generate(planned), netns=lab.fw.name)
    else:
        nft.load(json.dumps(nft_json.generate(planned)), json=True, netns=lab.fw.name)
    tracked = [f"2001:db8:1:{net:x}::1" for net in range(1, METER_SIZE + 1)]
    assert lab.connect(tracked, hold=hold) == ["open"] * METER_SIZE
    assert lab.connect(["2001:db8:1:99::1"], hold=hold) == ["closed"]
    # a tracked source: the rest of its burst (rate), its second connection (concurrent)
    assert lab.connect(["2001:db8:1:1::2"], hold=hold) == ["open"]


# -- rollback and diff -------------------------------------------------------------------

def confirming(lab, path):
    """apply --confirm for `path`, not confirmed: roll_back() ends it."""
    apply(lab, path, "--confirm", "600", "--no-wait")


def roll_back(lab):
    """What the watcher does at the deadline, at once."""
    state = State.of(lab.fw.name)
    token = state.read("pending")["token"]
    deploy.rollback(lab.fw.name, token)
    assert deploy.outcome_of(state, token)["status"] == ExitCode.ROLLED_BACK


def test_a_rollback_locks_out_nobody_and_restores_the_limits(lab, tmp_path):
    """A client that connected once while a confirmation waited is not
    refused for good after the rollback (its meter element, carried without
    its limit, used to be); after the rollback every source starts afresh
    under the restored limit, as after applying that table again."""
    first = policy(tmp_path)
    apply(lab, first)
    spent, window = "2001:db8:1:1::1", "2001:db8:1:2::1"
    assert lab.connect([spent] * 4) == ["open"] * 3 + ["closed"]
    confirming(lab, policy(tmp_path, services="[smtp, submission]", name="second"))
    assert lab.connect([window]) == ["open"]
    roll_back(lab)
    assert lab.connect([window] * 4) == ["open"] * 3 + ["closed"]
    assert lab.connect([spent] * 4) == ["open"] * 3 + ["closed"]
    assert diff(lab, first) == 0


def test_diff_ignores_the_live_elements_of_meters(lab, tmp_path):
    """A held connection to a concurrent-limited service puts an element in
    its meter: still no difference (so reapply does not reload and reset
    the limits), nor after a rollback restored that meter with it."""
    first = policy(tmp_path, "{new: 3/hour, burst: 3, concurrent: 2}")
    apply(lab, first)
    assert lab.connect(["2001:db8:1:1::1"], hold=True) == ["open"]
    assert diff(lab, first) == 0
    unchanged = run_mailpubc("reapply", "--netns", lab.fw.name)
    assert unchanged.returncode == 0 and "unchanged" in unchanged.stderr
    confirming(lab, policy(tmp_path, services="[smtp, submission]", name="second"))
    roll_back(lab)
    assert diff(lab, first) == 0
