"""apply, confirm, rollback, diff and reapply on the real kernel, each in a
network namespace of its own (removed afterwards) with the state folder in
a temporary directory: the host's ruleset and state are never touched."""

import fcntl
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from mailpubc import api, deploy, nft
from mailpubc.listing import Listing
from mailpubc.state import State

from cli import run_mailpubc

FOREIGN = """table ip foreign {
	set friends {
		type ipv4_addr
		elements = { 192.0.2.1, 192.0.2.2 }
	}

	chain c {
		type filter hook input priority 10; policy POLICY;
		ip saddr @friends counter accept
	}
}
"""
POLICY = """version: 1
firewall:
  table: {table}
  external: {{interface: eth0, addresses: [198.51.100.10]}}
  dynamic_block: banned
  management: {{ssh: [192.0.2.0/28]}}
publish:
  - {{name: mail, server: localhost, external_address: 198.51.100.10, services: {services}}}
"""
WAIT_SECONDS = 60       # how long a condition may take before the test fails


@pytest.fixture
def ns(namespace, tmp_path, monkeypatch):
    """A fresh namespace holding a foreign table, and a state folder of its own."""
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    nft.load(FOREIGN.replace("POLICY", "accept"), netns=namespace.name)
    yield namespace
    deploy.confirm(namespace.name)        # a watcher still waiting exits


def policy(tmp_path, name="policy", services="[smtp]", table="mailpub") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(POLICY.format(table=table, services=services))
    return str(path)


def ruleset(ns) -> str:
    """The whole listing, with the remaining time of run-time set elements
    left out: it runs down by itself."""
    return re.sub(r" expires [0-9dhms]+", "", nft.list_text("ruleset", ns.name))


def table(ns, name="mailpub", family="inet") -> str:
    return nft.list_text(f"table {family} {name}", ns.name)


def tables(ns) -> list:
    return sorted((e["table"]["family"], e["table"]["name"])
                  for e in nft.list_ruleset(ns.name)["nftables"] if "table" in e)


def banned(ns, name="mailpub") -> dict:
    """The elements of the banned_v4 set: address -> (timeout, expires)."""
    for entry in nft.list_ruleset(ns.name)["nftables"]:
        found = entry.get("set", {})
        if (found.get("table"), found.get("name")) == (name, "banned_v4"):
            return {e["elem"]["val"]: (e["elem"]["timeout"], e["elem"]["expires"])
                    for e in found.get("elem", [])}
    raise AssertionError(f"no set banned_v4 in table {name}")


def ban(ns, address, expires="30m", name="mailpub"):
    ns.run("nft", "add", "element", "inet", name, "banned_v4",
           f"{{ {address} timeout 1h expires {expires} }}")


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


def apply(ns, path, *options, **kwargs):
    return run_mailpubc("apply", "--netns", ns.name, *options, path,
                        stdin=subprocess.DEVNULL, **kwargs)


def test_apply_leaves_the_foreign_table_and_a_second_apply_changes_nothing(ns, tmp_path):
    foreign = table(ns, "foreign", "ip")
    path = policy(tmp_path)
    done = apply(ns, path)
    assert done.returncode == 0, done.stderr
    assert tables(ns) == [("inet", "mailpub"), ("ip", "foreign")]
    assert table(ns, "foreign", "ip") == foreign
    assert "warning" not in done.stderr
    state = State.of(ns.name)
    assert state.applied_path.read_text() == api.compile_path(path).text
    assert json.loads((state.folder / "state.json").read_text())["policy"] == path
    assert run_mailpubc("diff", "--netns", ns.name, path).returncode == 0
    assert apply(ns, path).returncode == 0
    same = run_mailpubc("diff", "--netns", ns.name, path)
    assert (same.returncode, same.stdout) == (0, "")


def test_diff_prints_the_changed_rule(ns, tmp_path):
    assert apply(ns, policy(tmp_path)).returncode == 0
    changed = run_mailpubc("diff", "--netns", ns.name, policy(tmp_path, "changed", "[smtp, smtps]"))
    assert changed.returncode == 1, changed.stderr
    added = [line for line in changed.stdout.splitlines() if line.startswith("+\t")]
    # the new counter's declaration, wherever difflib aligns its lines, and the rule
    assert sorted(added) == sorted(["+\tcounter publish_mail.smtps.ipv4 {", "+\t\tpackets 0 bytes 0", "+\t}",
                     '+\t\tip daddr 198.51.100.10 tcp dport 465 counter name '
                     '"publish_mail.smtps.ipv4" accept comment "mailpub publish mail smtps"'])


@pytest.mark.parametrize("before", ["no table", "older policy"])
def test_unconfirmed_apply_restores_the_exact_previous_ruleset(ns, tmp_path, before):
    if before == "older policy":
        assert apply(ns, policy(tmp_path)).returncode == 0
    previous = ruleset(ns)
    rolled = apply(ns, policy(tmp_path, "new", "[smtp, smtps]"), "--confirm", "3")
    assert rolled.returncode == 4, rolled.stderr
    assert "restored the previous state" in rolled.stderr
    assert ruleset(ns) == previous


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_rollback_happens_when_apply_dies_while_waiting(ns, tmp_path, signum):
    assert apply(ns, policy(tmp_path)).returncode == 0
    previous = ruleset(ns)
    state = State.of(ns.name)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "mailpubc", "apply", "--netns", ns.name, "--confirm", "3",
         policy(tmp_path, "new", "[smtp, smtps]")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_for(lambda: "smtps" in ruleset(ns), "the new table")
        token = state.read("pending")["token"]
        # to its whole process group, as a terminal that hangs up does
        os.killpg(waiting.pid, signum)
        assert waiting.wait(timeout=WAIT_SECONDS) == -signum
        wait_for(lambda: state.read("pending") is None, "the watcher's rollback")
    finally:
        waiting.kill()
        waiting.wait()
    assert ruleset(ns) == previous
    assert deploy.outcome_of(state, token)["status"] == 4


def test_confirm_keeps_the_new_table_and_only_then_saves_it(ns, tmp_path):
    first = policy(tmp_path)
    assert apply(ns, first).returncode == 0
    state = State.of(ns.name)
    second = policy(tmp_path, "new", "[smtp, smtps]")
    armed = apply(ns, second, "--confirm", "600", "--no-wait")
    assert armed.returncode == 0, armed.stderr
    assert f"`mailpubc confirm --netns {ns.name}`" in armed.stderr
    assert state.applied_path.read_text() == api.compile_path(first).text
    refused = apply(ns, first)
    assert refused.returncode == 2 and "confirmation is pending" in refused.stderr
    assert run_mailpubc("confirm", "--netns", ns.name).returncode == 0
    assert state.applied_path.read_text() == api.compile_path(second).text
    assert run_mailpubc("diff", "--netns", ns.name, second).returncode == 0
    assert run_mailpubc("confirm", "--netns", ns.name).returncode == 1


@pytest.mark.parametrize("waiting", [False, True])
def test_deleting_the_state_folder_does_not_cancel_the_rollback(ns, tmp_path, waiting):
    """Only a confirmation keeps the new table: the watcher (and a waiting
    apply) hold what the rollback needs, so a lost pending record is no answer."""
    assert apply(ns, policy(tmp_path)).returncode == 0
    previous = ruleset(ns)
    state = State.of(ns.name)
    command = [sys.executable, "-m", "mailpubc", "apply", "--netns", ns.name, "--confirm", "3",
               *([] if waiting else ["--no-wait"]), policy(tmp_path, "new", "[smtp, smtps]")]
    applying = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: state.read("pending") is not None and "smtps" in ruleset(ns),
                 "the new table")
        token = state.read("pending")["token"]
        shutil.rmtree(state.folder)
        _, stderr = applying.communicate(timeout=WAIT_SECONDS)
        wait_for(lambda: deploy.outcome_of(state, token) is not None, "the rollback")
    finally:
        applying.kill()
        applying.wait()
    assert applying.returncode == (4 if waiting else 0), stderr
    assert deploy.outcome_of(state, token)["status"] == 4
    assert ruleset(ns) == previous


def test_a_second_apply_while_the_lock_is_held_is_refused(ns, tmp_path):
    state = State.of(ns.name)
    state.folder.mkdir(parents=True)
    with open(state.folder / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = apply(ns, policy(tmp_path))
    assert refused.returncode == 2
    assert "another mailpubc process holds" in refused.stderr
    assert tables(ns) == [("ip", "foreign")]


def test_a_ruleset_nft_refuses_changes_nothing(ns, tmp_path):
    assert apply(ns, policy(tmp_path)).returncode == 0
    previous = ruleset(ns)
    saved = State.of(ns.name).applied_path.read_text()
    result = api.compile_path(policy(tmp_path, "new", "[smtp, smtps]"))
    # what no policy can produce: an element for a set that does not exist
    result.__dict__["text"] = result.text + "add element inet mailpub nosuch { 192.0.2.9 }\n"
    for confirm in (None, 600):
        with pytest.raises(nft.NftError, match="nosuch"):
            deploy.apply(result, netns=ns.name, confirm=confirm)
        assert ruleset(ns) == previous
        assert State.of(ns.name).applied_path.read_text() == saved
        assert State.of(ns.name).read("pending") is None


def test_dynamic_elements_survive_apply_and_rollback_with_their_timeouts(ns, tmp_path):
    assert apply(ns, policy(tmp_path)).returncode == 0
    ban(ns, "192.0.2.7")
    assert apply(ns, policy(tmp_path, "new", "[smtp, smtps]")).returncode == 0
    timeout, expires = banned(ns)["192.0.2.7"]
    assert timeout == 3600 and 0 < expires <= 1800

    armed = apply(ns, policy(tmp_path), "--confirm", "600", "--no-wait")
    assert armed.returncode == 0, armed.stderr
    ban(ns, "192.0.2.8", expires="20m")          # banned while the confirmation waits
    deploy.rollback(ns.name, State.of(ns.name).read("pending")["token"])
    assert "smtps" in table(ns)                  # rolled back to the new policy's table
    elements = banned(ns)
    assert set(elements) == {"192.0.2.7", "192.0.2.8"}
    assert 0 < elements["192.0.2.7"][1] <= 1800 and 0 < elements["192.0.2.8"][1] <= 1200


def test_renaming_the_table_leaves_only_the_new_one(ns, tmp_path):
    assert apply(ns, policy(tmp_path)).returncode == 0
    ban(ns, "192.0.2.7")
    renamed = policy(tmp_path, "renamed", table="mailpub2")
    diff = run_mailpubc("diff", "--netns", ns.name, renamed)
    assert diff.returncode == 1 and "-table inet mailpub {" in diff.stdout
    assert apply(ns, renamed).returncode == 0
    assert tables(ns) == [("inet", "mailpub2"), ("ip", "foreign")]
    assert set(banned(ns, "mailpub2")) == {"192.0.2.7"}
    assert run_mailpubc("diff", "--netns", ns.name, renamed).returncode == 0

    before = ruleset(ns)
    back = apply(ns, policy(tmp_path), "--confirm", "3")
    assert back.returncode == 4, back.stderr
    assert ruleset(ns) == before


ACCEPTED = "table inet mailpub accepts"
FOREIGN_DROPS = [   # a foreign table with a drop base chain, the warning about it
    pytest.param(FOREIGN.replace("POLICY", "drop"),
                 "table ip foreign chain c drops on hook input (policy drop): "
                 f"it drops what {ACCEPTED}", id="ip-input"),
    pytest.param("table ip x {\n\tchain pre { type filter hook prerouting priority 0; "
                 "policy drop; }\n}\n",
                 "table ip x chain pre drops on hook prerouting (policy drop): "
                 f"it drops what {ACCEPTED}", id="ip-prerouting"),
    pytest.param("table arp x {\n\tchain in { type filter hook input priority 0; "
                 "policy drop; }\n}\n",
                 "table arp x chain in drops on hook input (policy drop): it drops ARP, and "
                 f"with it every IPv4 connection {ACCEPTED}", id="arp-input"),
    pytest.param("table netdev x {\n\tchain in {\n\t\ttype filter hook ingress device ve0 "
                 "priority 0; policy drop;\n\t}\n}\n",
                 "table netdev x chain in drops on hook ingress (policy drop): it drops all "
                 f"of its device's traffic, and with it what {ACCEPTED}", id="netdev-ingress"),
    pytest.param("table bridge x {\n\tchain fw { type filter hook forward priority 0; "
                 "policy drop; }\n}\n",
                 "table bridge x chain fw drops on hook forward (policy drop): it drops the "
                 f"frames of its bridge's ports, and with them what {ACCEPTED}",
                 id="bridge-forward"),
]


@pytest.mark.parametrize("foreign, warning", FOREIGN_DROPS)
def test_foreign_drop_chains_are_warned_about(ns, tmp_path, foreign, warning):
    ns.ip("link", "add", "ve0", "type", "veth", "peer", "name", "ve1")  # netdev's device
    nft.load(foreign, netns=ns.name)
    path = policy(tmp_path)
    checked = run_mailpubc("check", "--live", "--netns", ns.name, path)
    assert checked.returncode == 0 and f"mailpubc: warning: {warning}\n" in checked.stderr
    assert run_mailpubc("check", "--live", "--strict", "--netns", ns.name, path).returncode == 1
    applied = apply(ns, path)
    assert applied.returncode == 0 and warning in applied.stderr
    assert warning in run_mailpubc("diff", "--netns", ns.name, path).stderr


def chain(family, table_name, hook=None, policy_="drop", name="c", kind="filter",
          **more) -> dict:
    """A chain as `nft -j list ruleset` lists it (nft 1.0.6 names no netdev
    device; later ones list `dev`)."""
    listed = {"family": family, "table": table_name, "name": name, "handle": 1}
    if hook:
        listed.update(type=kind, hook=hook, prio=0, policy=policy_, **more)
    return {"chain": listed}


@pytest.mark.parametrize("listed, warned", [
    (chain("ip", "f", "input"), True),
    (chain("ip6", "f", "forward"), True),
    (chain("inet", "f", "output"), True),
    (chain("inet", "f", "prerouting"), True),
    (chain("ip", "f", "postrouting"), True),
    (chain("ip", "f", "prerouting", kind="nat"), True),
    (chain("inet", "f", "ingress"), True),
    (chain("arp", "f", "input"), True),
    (chain("arp", "f", "output"), True),
    (chain("bridge", "f", "prerouting"), True),
    (chain("bridge", "f", "input"), True),
    (chain("netdev", "f", "ingress"), True),
    (chain("netdev", "f", "egress"), True),
    (chain("arp", "f", "input", policy_="accept"), False),
    (chain("netdev", "f", "ingress", policy_="accept"), False),
    (chain("arp", "f"), False),                           # a regular chain: no policy of its own
    (chain("inet", "mailpub", "input"), False),           # our own table
    (chain("inet", "old", "input"), False),               # the table this apply replaces
    (chain("ip", "mailpub", "input"), True),              # our name, another family
], ids=lambda value: "-".join(str(v) for v in value["chain"].values())
   if isinstance(value, dict) else str(value))
def test_foreign_drop_chains_of_every_family_and_hook(listed, warned):
    found = deploy.foreign_drop_chains(Listing(({"table": {}}, listed)), "mailpub", ["old"])
    assert len(found) == int(warned)
    if warned:
        listed = listed["chain"]
        assert found[0].startswith(f"table {listed['family']} {listed['table']} chain c "
                                   f"drops on hook {listed['hook']} (policy drop): it drops ")


@pytest.mark.parametrize("devices, named", [("eth0", "eth0"), (["eth0", "eth1"], "eth0, eth1")])
def test_foreign_drop_chain_names_the_devices_nft_lists(devices, named):
    found = deploy.foreign_drop_chains(Listing((chain("netdev", "f", "ingress", dev=devices),)),
                                      "mailpub")
    assert found == [f"table netdev f chain c drops on hook ingress of device {named} (policy "
                     f"drop): it drops all of its device's traffic, and with it what {ACCEPTED}"]


def test_reapply_applies_only_the_policy_text_made_final(ns, tmp_path):
    assert run_mailpubc("reapply", "--netns", ns.name).returncode == 0
    assert tables(ns) == [("ip", "foreign")]            # nothing applied yet
    path = policy(tmp_path)
    assert apply(ns, path).returncode == 0
    same = run_mailpubc("reapply", "--netns", ns.name)
    assert same.returncode == 0 and "unchanged" in same.stderr
    before, saved = table(ns), State.of(ns.name).applied_path.read_text()
    policy(tmp_path, services="[smtp, smtps]")          # the same file, edited, never applied
    edited = run_mailpubc("reapply", "--netns", ns.name)
    assert edited.returncode == 2, edited.stderr
    assert "the policy changed since it was applied: run `mailpubc apply" in edited.stderr
    assert (table(ns), State.of(ns.name).applied_path.read_text()) == (before, saved)


def test_reapply_never_brings_back_a_rolled_back_policy(ns, tmp_path):
    """The red-team's path: good.yaml applied; the same file overwritten with
    another policy, applied with --confirm and not confirmed (rolled back);
    then reapply (the quarter-hour timer does it unattended)."""
    path = policy(tmp_path, "good")
    assert apply(ns, path).returncode == 0
    good, saved = table(ns), State.of(ns.name).applied_path.read_text()
    policy(tmp_path, "good", services="[smtp, smtps]")
    rolled = apply(ns, path, "--confirm", "2")
    assert rolled.returncode == 4, rolled.stderr
    assert table(ns) == good
    again = run_mailpubc("reapply", "--netns", ns.name)
    assert again.returncode == 2 and "changed since it was applied" in again.stderr
    assert "smtps" not in table(ns)
    assert (table(ns), State.of(ns.name).applied_path.read_text()) == (good, saved)
    policy(tmp_path, "good")                            # the final text back: reapply agrees
    assert run_mailpubc("reapply", "--netns", ns.name).returncode == 0


def test_record_as_names_the_policy_reapply_compiles(ns, tmp_path):
    """A candidate applied with --record-as KEPT: state.json names KEPT, so
    reapply reads KEPT, refusing it until it holds the candidate's text."""
    candidate, kept = policy(tmp_path, "candidate"), tmp_path / "kept.yaml"
    kept.write_text("old text\n")
    assert apply(ns, candidate, "--record-as", str(kept)).returncode == 0
    assert State.of(ns.name).read("state")["policy"] == str(kept)
    early = run_mailpubc("reapply", "--netns", ns.name)
    assert early.returncode == 2 and f"{kept}: the policy changed" in early.stderr
    os.replace(candidate, kept)
    same = run_mailpubc("reapply", "--netns", ns.name)
    assert same.returncode == 0 and f"{kept}: unchanged" in same.stderr


# -- the lockout guard ---------------------------------------------------------------

def guarded(input_policy="drop", ssh=("192.0.2.0/28", "2001:db8:ff::/48", "10.1.0.0/24"),
            block=None, publish=()) -> api.Result:
    """A dual-stack policy with an internal side, as the guard's unit cases vary it."""
    firewall = {"external": {"interface": "eth0", "addresses": ["198.51.100.10",
                                                                 "2001:db8:100::10"]},
                "internal": {"interface": "eth1", "networks": ["10.1.0.0/24", "fd00:1::/64"]},
                "policy": {"input": input_policy}}
    if ssh:
        firewall["management"] = {"ssh": list(ssh)}
    if block:
        firewall["block"] = list(block)
    mail = {"name": "mail", "server": "localhost", "external_address": "198.51.100.10",
            "services": ["smtp"]}
    return api.compile_data({"version": 1, "firewall": firewall,
                             "publish": [mail, *publish]}).or_raise()


ADMIN = "192.0.2.5 50000 198.51.100.10 22"
STRANGER = "203.0.113.9 50000 198.51.100.10 22"
EVERYONE = ("0.0.0.0/0", "::/0")
SSH_PUBLISHED = {"name": "ssh-pub", "server": "localhost", "external_address": "198.51.100.10",
                 "services": ["tcp/22"]}
SSH_FORWARDED = {"name": "bastion", "server": "10.1.0.22", "external_address": "198.51.100.10",
                 "services": ["tcp/22"]}


@pytest.mark.parametrize("policy, connection", [
    ({}, ADMIN),
    ({}, "::ffff:192.0.2.5 50000 ::ffff:198.51.100.10 22"),    # a dual-stack sshd's IPv4
    ({}, "2001:db8:ff::7 50000 2001:db8:100::10 22"),
    ({}, "10.1.0.9 50000 10.1.0.254 22"),           # from inside, to an address not in the policy
    ({}, "192.0.2.5 50000 203.0.113.200 22"),       # another address of this host
    ({"input_policy": "accept"}, STRANGER),
    ({"ssh": (), "publish": [SSH_PUBLISHED]}, STRANGER),     # a publication lets anyone in
], ids=["admin", "ipv4-mapped", "ipv6", "internal", "unnamed-address", "input-accept",
        "published"])
def test_the_guard_lets_in_what_the_ruleset_lets_in(policy, connection):
    assert deploy.ssh_guard(guarded(**policy), connection) is None


@pytest.mark.parametrize("policy, connection, said", [
    ({}, STRANGER, "no rule lets in 203.0.113.9"),
    ({}, "2001:db8:77::1 50000 2001:db8:100::10 22", "the input chain's policy would drop"),
    ({}, "192.0.2.5 50000 198.51.100.10 2222", "(port 2222)"),       # sshd on another port
    ({"ssh": ()}, ADMIN, "add it to firewall.management.ssh"),
    ({"input_policy": "reject"}, STRANGER, "would reject your next login"),
    # the probe: input accept, and a block list of everyone
    ({"input_policy": "accept", "ssh": ("192.0.2.77",), "block": EVERYONE},
     "192.0.2.77 50000 198.51.100.10 22", "192.0.2.77, the address this SSH session comes "
     "from, is in firewall.block"),
    ({"input_policy": "accept", "block": EVERYONE},
     "2001:db8:ff::7 50000 2001:db8:100::10 22", "is in firewall.block"),
    ({"input_policy": "accept", "block": EVERYONE},
     "::ffff:192.0.2.5 50000 ::ffff:198.51.100.10 22", "192.0.2.5, the address"),
    ({"block": ("192.0.2.5",)}, ADMIN, "is in firewall.block"),    # blocked before management
    ({"ssh": (), "publish": [SSH_PUBLISHED]}, "203.0.113.9 50000 198.51.100.11 22",
     "no rule lets in"),                       # the publication is for 198.51.100.10 only
    ({"publish": [SSH_FORWARDED]}, ADMIN,
     "would go to 10.1.0.22:22 (publish rule bastion"),
    ({}, "garbage", "cannot read SSH_CONNECTION"),
    ({}, "192.0.2.5 50000 2001:db8:100::10 22", "cannot read"),     # families differ
    ({}, "192.0.2.5 50000 198.51.100.10 ssh", "cannot read"),
], ids=["stranger", "ipv6-stranger", "other-port", "no-management", "input-reject",
        "block-everyone", "block-everyone-ipv6", "block-everyone-mapped", "admin-blocked",
        "published-elsewhere", "forwarded", "garbage", "families", "port"])
def test_the_guard_refuses_what_would_lock_the_session_out(policy, connection, said):
    refusal = deploy.ssh_guard(guarded(**policy), connection)
    assert refusal is not None and said in refusal and "--force" in refusal, refusal


def test_the_guard_refuses_before_loading_and_force_passes(ns, tmp_path):
    """apply without --netns, run inside the test namespace: were the guard
    to let it through, only that namespace would be touched."""
    path = policy(tmp_path)
    outside = dict(os.environ, SSH_CONNECTION="203.0.113.9 50000 198.51.100.10 22")
    command = ns.argv(sys.executable, "-m", "mailpubc", "apply", path)
    refused = subprocess.run(command, capture_output=True, text=True, env=outside,
                             stdin=subprocess.DEVNULL, timeout=WAIT_SECONDS)
    assert refused.returncode == 2, refused.stderr
    assert "203.0.113.9" in refused.stderr and refused.stdout == ""
    assert tables(ns) == [("ip", "foreign")]
    forced = subprocess.run(command[:-1] + ["--force", path], capture_output=True, text=True,
                            env=outside, stdin=subprocess.DEVNULL, timeout=WAIT_SECONDS)
    assert forced.returncode == 0, forced.stderr
    assert tables(ns) == [("inet", "mailpub"), ("ip", "foreign")]


LOCKOUT = """version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  policy: {input: accept}
  management: {ssh: [192.0.2.77]}
BLOCK
publish:
  - {name: mail, server: localhost, external_address: 198.51.100.10, services: [smtp]}
"""
ECHO = """
import socket, threading
listener = socket.create_server(("198.51.100.10", 22))
def echo(connection):
    while data := connection.recv(64):
        connection.sendall(data)
while True:
    threading.Thread(target=echo, args=(listener.accept()[0],), daemon=True).start()
"""
SESSION = """
import socket, sys
def session():
    return socket.create_connection(("198.51.100.10", 22), timeout=3)
held = session()
print(held.getsockname()[1], flush=True)
for command in sys.stdin:
    try:
        if command.strip() == "type":
            held.sendall(b"x")
            print("echoed" if held.recv(64) == b"x" else "cut", flush=True)
        else:
            session().close()
            print("logged in", flush=True)
    except OSError:
        print("cut" if command.strip() == "type" else "refused", flush=True)
"""


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
def test_the_guard_refuses_a_block_list_that_locks_the_admin_out(ns, namespaces, tmp_path,
                                                                tracked):
    """The issue's probe on the kernel: input accept, the admin's address in
    management.ssh and every address in firewall.block. apply refuses; with
    --force, the admin's next login is refused, and the session open during
    the apply survives only if conntrack tracked it before (here: a table
    with `ct state` was loaded before it began), as the refusal says."""
    client = namespaces("admin")
    session = None
    try:
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
              "netns", client.name)
        for host, address, peer in ((ns, "198.51.100.10", "192.0.2.77"),
                                    (client, "192.0.2.77", "198.51.100.10")):
            host.ip("addr", "add", f"{address}/32", "dev", "eth0")
            host.ip("link", "set", "eth0", "up")
            host.ip("route", "add", peer, "dev", "eth0")
        sshd = ns.spawn(sys.executable, "-c", ECHO, log=str(tmp_path / "echo.log"))
        ns.wait_listening({("tcp", 22)}, [sshd])
        opened, locked = tmp_path / "open.yaml", tmp_path / "locked.yaml"
        opened.write_text(LOCKOUT.replace("BLOCK\n", ""))
        locked.write_text(LOCKOUT.replace("BLOCK", "  block: [0.0.0.0/0, \"::/0\"]"))
        if tracked:
            assert apply(ns, str(opened)).returncode == 0
        session = subprocess.Popen(client.argv(sys.executable, "-c", SESSION), text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def ask(command: str) -> str:
            session.stdin.write(command + "\n")
            session.stdin.flush()
            return session.stdout.readline().strip()
        port = session.stdout.readline().strip()
        admin = dict(os.environ, SSH_CONNECTION=f"192.0.2.77 {port} 198.51.100.10 22")
        command = ns.argv(sys.executable, "-m", "mailpubc", "apply", str(locked))
        refused = subprocess.run(command, capture_output=True, text=True, env=admin,
                                 stdin=subprocess.DEVNULL, timeout=WAIT_SECONDS)
        assert refused.returncode == 2, refused.stderr
        assert "192.0.2.77" in refused.stderr and "firewall.block" in refused.stderr
        assert "next login" in refused.stderr
        assert (ask("type"), ask("login")) == ("echoed", "logged in")
        forced = subprocess.run(command[:-1] + ["--force", str(locked)], capture_output=True,
                                text=True, env=admin, stdin=subprocess.DEVNULL,
                                timeout=WAIT_SECONDS)
        assert forced.returncode == 0, forced.stderr
        assert ask("login") == "refused"
        assert ask("type") == ("echoed" if tracked else "cut")
    finally:
        if session is not None:
            session.kill()
            session.communicate(timeout=WAIT_SECONDS)


def test_a_schedule_rolls_back_west_of_utc(ns, tmp_path):
    """nft lists `meta hour` in local time, which west of UTC it cannot read
    back: the saved state must still restore (here with a rename too)."""
    west = dict(os.environ, TZ="America/New_York")
    scheduled = os.path.join(os.path.dirname(__file__), "..", "golden", "schedules", "policy.yaml")
    assert apply(ns, scheduled, env=west).returncode == 0
    before = ruleset(ns)
    back = apply(ns, policy(tmp_path), "--confirm", "3", env=west)
    assert back.returncode == 4, back.stderr
    assert "warning" not in back.stderr         # the table it replaces is not foreign
    assert ruleset(ns) == before


@pytest.mark.parametrize("answer, status", [("y", 0), ("n", 4)])
def test_the_answer_on_the_terminal_decides(ns, tmp_path, answer, status):
    assert apply(ns, policy(tmp_path)).returncode == 0
    previous = ruleset(ns)
    terminal, side = pty.openpty()
    asking = subprocess.Popen(
        [sys.executable, "-m", "mailpubc", "apply", "--netns", ns.name, "--confirm", "600",
         policy(tmp_path, "new", "[smtp, smtps]")],
        stdin=side, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(side)
    try:
        wait_for(lambda: State.of(ns.name).read("pending") is not None
                 and "smtps" in ruleset(ns), "the new table")
        os.write(terminal, f"{answer}\n".encode())
        _, stderr = asking.communicate(timeout=WAIT_SECONDS)
    finally:
        asking.kill()
        asking.wait()
        os.close(terminal)
    assert asking.returncode == status, stderr
    assert "confirm? [y/N]" in stderr
    assert ("smtps" in ruleset(ns)) == (answer == "y")
    if answer == "n":
        assert ruleset(ns) == previous


@pytest.mark.parametrize("answer, status", [("y", 0), ("n", 4)])
def test_an_answer_through_a_pipe_decides(ns, tmp_path, answer, status):
    """`(sleep; echo y) | mailpubc apply --confirm`: no terminal to ask, so
    apply says how to confirm, and a line on the pipe answers."""
    assert apply(ns, policy(tmp_path)).returncode == 0
    previous = ruleset(ns)
    piped = subprocess.Popen(
        [sys.executable, "-m", "mailpubc", "apply", "--netns", ns.name, "--confirm", "600",
         policy(tmp_path, "new", "[smtp, smtps]")],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: State.of(ns.name).read("pending") is not None
                 and "smtps" in ruleset(ns), "the new table")
        _, stderr = piped.communicate(f"{answer}\n", timeout=WAIT_SECONDS)
    finally:
        piped.kill()
        piped.wait()
    assert piped.returncode == status, stderr
    assert f"`mailpubc confirm --netns {ns.name}`" in stderr
    assert "confirm? [y/N]" not in stderr
    assert ("smtps" in ruleset(ns)) == (answer == "y")
    if answer == "n":
        assert ruleset(ns) == previous


def test_a_pipe_that_ends_unanswered_leaves_it_to_confirm(ns, tmp_path):
    """`echo y | mailpubc apply --confirm 30` answers at once; a pipe that
    ends without a line (here: the policy read from it) waits for `confirm`."""
    answered = run_mailpubc("apply", "--netns", ns.name, "--confirm", "600",
                            policy(tmp_path), input="y\n", timeout=WAIT_SECONDS)
    assert answered.returncode == 0, answered.stderr
    assert State.of(ns.name).applied_path.read_text() == api.compile_path(policy(tmp_path)).text
    reading, writing = os.pipe()
    waiting = subprocess.Popen(
        [sys.executable, "-m", "mailpubc", "apply", "--netns", ns.name, "--confirm", "600", "-"],
        stdin=reading, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(reading)
    try:
        with open(writing, "w") as pipe:
            pipe.write(POLICY.format(table="mailpub", services="[smtp, smtps]"))
        wait_for(lambda: State.of(ns.name).read("pending") is not None
                 and "smtps" in ruleset(ns), "the new table")
        assert waiting.poll() is None           # still waiting: the end of input is no answer
        assert run_mailpubc("confirm", "--netns", ns.name).returncode == 0
        _, stderr = waiting.communicate(timeout=WAIT_SECONDS)
        assert waiting.returncode == 0, stderr
    finally:
        waiting.kill()
        waiting.wait()
    assert f"`mailpubc confirm --netns {ns.name}`" in stderr
    assert "smtps" in ruleset(ns)


@pytest.mark.parametrize("blocking", ["state", "state/netns/NS"])
def test_a_state_folder_that_is_a_file_is_a_usage_error(ns, tmp_path, blocking):
    file = tmp_path / blocking.replace("NS", ns.name)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("")
    path = policy(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    for command in (["apply", "--netns", ns.name, path],
                    ["confirm", "--netns", ns.name]):
        refused = run_mailpubc(*command)
        assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
        assert refused.stderr == (f"mailpubc: refusing the state folder {file}: it is not "
                                  "a folder (MAILPUBC_STATE_DIR names another)\n")
    assert tables(ns) == [("ip", "foreign")]
    assert sorted(tmp_path.rglob("*")) == before
    file.unlink()


def test_a_namespace_that_does_not_exist_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    absent = f"mp-absent-{uuid.uuid4().hex[:8]}"
    for command in (["apply", "--netns", absent, policy(tmp_path)],
                    ["confirm", "--netns", absent]):
        refused = run_mailpubc(*command)
        assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
        assert refused.stderr == (f"mailpubc: no network namespace {absent} "
                                  "(ip netns list shows them)\n")
        assert not (tmp_path / "state").exists()


def test_an_invalid_policy_is_reported_with_its_position(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.format(table="mailpub", services="[smtpx]"))
    for command, status in (("apply", 1), ("diff", 2)):
        # a namespace that does not exist: nothing could be touched anyway
        run = run_mailpubc(command, "--netns", "mp-absent", str(bad))
        assert (run.returncode, run.stdout) == (status, ""), run.stderr
        assert run.stderr == (f"{bad}:8:81: error: unknown service 'smtpx'; "
                              "did you mean 'smtp' or 'smtps'?\n")
    assert not (tmp_path / "state").exists()


def test_diff_as_json(ns, tmp_path):
    path = policy(tmp_path)
    assert apply(ns, path).returncode == 0
    same = json.loads(run_mailpubc("diff", "--format", "json", "--netns", ns.name, path).stdout)
    assert (same["changed"], same["diff"]) == (False, "")
    assert same["before"] == same["after"]          # both rulesets, not nothing
    assert same["after"].startswith("table inet mailpub {") and "dport 25" in same["after"]
    changed = run_mailpubc("diff", "--format", "json", "--netns", ns.name,
                           policy(tmp_path, "new", "[smtp, smtps]"))
    report = json.loads(changed.stdout)
    assert changed.returncode == 1 and report["changed"]
    assert "smtps" in report["after"] and "smtps" not in report["before"]
    assert report["after"].startswith("table inet mailpub {")


def test_reapply_reads_a_refreshed_list_file_and_keeps_the_table_on_a_bad_one(ns, tmp_path):
    """The README's blocklist refresh: the list file replaced, then `reapply`."""
    listed = tmp_path / "drop.txt"
    listed.write_text("; DROP\n192.0.2.7 ; SBL1\n")
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(table="mailpub", services="[smtp]").replace(
        "  dynamic_block: banned\n", "  block: [drop_list]\n")
        + "address_sets:\n  drop_list: {file: drop.txt}\n")
    assert apply(ns, str(path)).returncode == 0
    assert "192.0.2.7" in table(ns)
    listed.write_text("; DROP\n203.0.113.9 ; SBL2\n")
    refreshed = run_mailpubc("reapply", "--netns", ns.name)
    assert refreshed.returncode == 0 and "applied" in refreshed.stderr, refreshed.stderr
    assert "203.0.113.9" in table(ns) and "192.0.2.7" not in table(ns)
    listed.write_text("<html><body>rate limited</body></html>\n")
    broken = run_mailpubc("reapply", "--netns", ns.name)
    assert broken.returncode == 1, broken.stderr
    assert f"{listed}:1:1: error:" in broken.stderr and "nothing changed" in broken.stderr
    assert "203.0.113.9" in table(ns)


ZONED = {"version": 1, "firewall": {
    "external": {"interface": "eth0", "addresses": ["198.51.100.10"]},
    "internal": [{"name": "lan", "interface": "eth1", "networks": ["10.1.0.0/24"]},
                 {"name": "dmz", "interface": "eth2", "networks": ["10.2.0.0/24"]}],
    "management": {"ssh": ["lan"]}}}


@pytest.mark.parametrize("connection, said", [
    ("10.1.0.9 50000 10.1.0.254 22", None),                 # an admin in the LAN, by zone name
    ("10.2.0.9 50000 10.2.0.254 22", "no rule lets in 10.2.0.9"),      # the DMZ is not the LAN
    ("192.0.2.5 50000 198.51.100.10 22", "no rule lets in 192.0.2.5"),
], ids=["lan", "dmz", "outside"])
def test_the_guard_knows_zones(connection, said):
    refusal = deploy.ssh_guard(api.compile_data(ZONED).or_raise(), connection)
    assert refusal is None if said is None else said in refusal, refusal


def test_listed_elements_go_back_as_nft_printed_them_and_nothing_else():
    """A run-time set's elements are carried as nft listed them (an address,
    a network, a range, with their timeouts); a value that is no address
    text never reaches a transaction."""
    def listing(*elements):
        return Listing(({"set": {"family": "inet", "table": "mailpub", "name": "banned_v4",
                                 "flags": ["interval", "timeout"], "elem": list(elements)}},))
    carried = listing(
        {"elem": {"val": "192.0.2.7", "timeout": 3600, "expires": 3000}},
        {"elem": {"val": {"prefix": {"addr": "198.51.100.0", "len": 24}}}},
        {"elem": {"val": {"range": ["203.0.113.1", "203.0.113.9"]}, "timeout": 60,
                  "expires": 59}}).elements("mailpub", "banned_v4")
    assert [(e.value, e.timeout, e.expires) for e in carried] == [
        ("192.0.2.7", 3600, 3000), ("198.51.100.0/24", None, None),
        (("203.0.113.1", "203.0.113.9"), 60, 59)]
    for hostile in ("192.0.2.7 } ; flush ruleset ; {", {"prefix": {"addr": "::", "len": "1 }"}}):
        with pytest.raises(ValueError):
            listing({"elem": {"val": hostile}}).elements("mailpub", "banned_v4")


def test_diff_compares_a_block_lists_addresses_not_how_nft_writes_them(ns, tmp_path):
    """`diff` finds an unchanged table without loading the compiled block
    list (`diff._unchanged_listing`): an address added to or taken from the live
    set is a difference, one the set holds written another way is not."""
    (tmp_path / "drop.txt").write_text("192.0.2.0/25\n192.0.2.128/25\n203.0.113.1-203.0.113.6\n")
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(table="mailpub", services="[smtp]").replace(
        "  dynamic_block: banned\n", "  block: [drop_list]\n")
        + "address_sets:\n  drop_list: {file: drop.txt}\n")
    assert apply(ns, str(path)).returncode == 0

    def diff():
        return run_mailpubc("diff", "--netns", ns.name, str(path))
    assert (diff().returncode, diff().stdout) == (0, "")
    ns.run("nft", "add", "element", "inet", "mailpub", "drop_list_v4", "{ 198.51.100.77 }")
    added = diff()
    assert added.returncode == 1 and "198.51.100.77" in added.stdout, added.stdout
    ns.run("nft", "delete", "element", "inet", "mailpub", "drop_list_v4", "{ 198.51.100.77 }")
    assert diff().returncode == 0
    ns.run("nft", "delete", "element", "inet", "mailpub", "drop_list_v4", "{ 203.0.113.6 }")
    taken = diff()
    assert taken.returncode == 1 and "203.0.113.6" in taken.stdout, taken.stdout
    ns.run("nft", "delete", "element", "inet", "mailpub", "drop_list_v4",
           "{ 203.0.113.1, 203.0.113.2/31, 203.0.113.4/31 }")
    ns.run("nft", "add", "element", "inet", "mailpub", "drop_list_v4", "{ 203.0.113.1-203.0.113.6 }")
    assert "203.0.113.1-203.0.113.6" in table(ns)   # one range where apply wrote four blocks
    assert diff().returncode == 0


def test_diff_lists_a_block_list_while_it_compiles_and_never_the_run_time_sets(ns, tmp_path,
                                                                              monkeypatch):
    """`listed_early`, which `diff` and `reapply` start before they compile,
    lists whole the large sets the last apply recorded (a block list of
    1,500 addresses, not its small IPv4 half, nor the run-time sets): what
    it lists is what nft lists, and `diff` reads it."""
    large = "".join(f"2001:db8:7::{2 * i:x}\n" for i in range(1, 1501))   # none adjacent
    (tmp_path / "drop.txt").write_text("192.0.2.0/25\n" + large)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(table="mailpub", services="[smtp]").replace(
        "  dynamic_block: banned\n", "  dynamic_block: banned\n  block: [drop_list]\n")
        + "address_sets:\n  drop_list: {file: drop.txt}\n")
    assert deploy.listed_early(ns.name) is None        # nothing applied: nothing recorded
    assert apply(ns, str(path)).returncode == 0
    ns.run("nft", "add", "element", "inet", "mailpub", "banned_v6", "{ 2001:db8:9::5 }")
    listed = deploy.listed_early(ns.name).bodies()
    assert list(listed) == [("mailpub", "drop_list_v6")]
    assert listed["mailpub", "drop_list_v6"] == nft.list_set("inet", "mailpub", "drop_list_v6",
                                                             ns.name)
    result = api.compile_path(str(path))
    early = deploy.listed_early(ns.name)
    listed_after, list_set = [], nft.list_set
    monkeypatch.setattr(nft, "list_set", lambda *words: listed_after.append(words[2]) or
                        list_set(*words))
    assert deploy.diff(result, ns.name, early).same
    assert listed_after == ["drop_list_v4"]             # the large set listed once, early
    ns.run("nft", "delete", "element", "inet", "mailpub", "drop_list_v6", "{ 2001:db8:7::2 }")
    assert not deploy.diff(result, ns.name, deploy.listed_early(ns.name)).same


def test_listed_addresses_are_read_as_addresses_or_not_at_all():
    def addresses(*elements):
        return Listing(({"set": {"family": "inet", "table": "mailpub", "name": "drop_v6",
                                 "flags": ["interval"], "elem": list(elements)}},)
                       ).addresses("mailpub", "drop_v6")
    assert addresses("2001:db8::1", {"prefix": {"addr": "2001:db8:1::", "len": 48}},
                     {"range": ["2001:db8::2", "2001:db8::9"]},
                     {"elem": {"val": "2001:db8::a", "comment": "x"}}) == (
        (0x20010db8 << 96 | 1, 0x20010db8 << 96 | 0xa),
        (0x20010db8_0001 << 80, (0x20010db8_0001 << 80) | ((1 << 80) - 1)))
    for odd in ("2001:db8::1 }", {"prefix": {"addr": "2001:db8::", "len": "48"}},
                {"prefix": {"addr": "2001:db8::", "len": 129}}, {"prefix": {"addr": 7, "len": 8}},
                {"range": ["2001:db8::1", 7]},
                {"concat": ["2001:db8::1", 25]}):
        assert addresses("2001:db8::1", odd) is None, odd
