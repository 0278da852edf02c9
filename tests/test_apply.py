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
from mailpubc.state import State

from cli import run_mailpubc
from e2e.netns import Namespace, prerequisites

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
def ns(tmp_path, monkeypatch):
    """A fresh namespace holding a foreign table, and a state folder of its own."""
    reason = prerequisites([])
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    created = Namespace(f"apply-{uuid.uuid4().hex[:8]}")
    try:
        nft.load(FOREIGN.replace("POLICY", "accept"), netns=created.name)
        yield created
        deploy.confirm(created.name)        # a watcher still waiting exits
    finally:
        created.delete()


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
    assert added == ['+\t\tip daddr 198.51.100.10 tcp dport 465 counter name "publish_mail" accept '
                     'comment "mailpub publish mail smtps"']


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


def test_foreign_drop_chains_are_warned_about(ns, tmp_path):
    nft.load(FOREIGN.replace("POLICY", "drop"), netns=ns.name)
    path = policy(tmp_path)
    warning = ("warning: table ip foreign chain c drops on hook input (policy drop): "
               "it drops what table inet mailpub accepts")
    checked = run_mailpubc("check", "--live", "--netns", ns.name, path)
    assert checked.returncode == 0 and warning in checked.stderr
    assert run_mailpubc("check", "--live", "--strict", "--netns", ns.name, path).returncode == 1
    applied = apply(ns, path)
    assert applied.returncode == 0 and warning in applied.stderr
    assert warning in run_mailpubc("diff", "--netns", ns.name, path).stderr


def test_reapply_applies_only_when_the_ruleset_changed(ns, tmp_path):
    assert run_mailpubc("reapply", "--netns", ns.name).returncode == 0
    assert tables(ns) == [("ip", "foreign")]            # nothing applied yet
    path = policy(tmp_path)
    assert apply(ns, path).returncode == 0
    same = run_mailpubc("reapply", "--netns", ns.name)
    assert same.returncode == 0 and "unchanged" in same.stderr
    policy(tmp_path, services="[smtp, smtps]")          # the same file, edited
    changed = run_mailpubc("reapply", "--netns", ns.name)
    assert changed.returncode == 0 and "applied" in changed.stderr
    assert "smtps" in table(ns)


# -- the lockout guard ---------------------------------------------------------------

def test_ssh_guard(tmp_path):
    planned = api.compile_path(policy(tmp_path)).or_raise().ruleset
    assert deploy.ssh_guard(planned, None) is None
    assert deploy.ssh_guard(planned, "192.0.2.5 50000 198.51.100.10 22") is None
    assert deploy.ssh_guard(planned, "::ffff:192.0.2.5 50000 ::ffff:198.51.100.10 22") is None
    for outside in ("203.0.113.9 50000 198.51.100.10 22",       # not in management.ssh
                    "192.0.2.5 50000 198.51.100.10 2222",       # sshd on another port
                    "2001:db8::5 50000 2001:db8::1 22",         # no IPv6 admin
                    "garbage"):
        assert "--force" in deploy.ssh_guard(planned, outside), outside
    text = POLICY.format(table="mailpub", services="[smtp]")
    opened = api.compile_text(text.replace("firewall:\n", "firewall:\n  policy: {input: accept}\n"))
    assert deploy.ssh_guard(opened.or_raise().ruleset, "203.0.113.9 50000 198.51.100.10 22") is None
    blocked = api.compile_text(text.replace("  dynamic_block: banned\n",
                                            "  dynamic_block: banned\n  block: [192.0.2.5]\n"))
    refusal = deploy.ssh_guard(blocked.or_raise().ruleset, "192.0.2.5 50000 198.51.100.10 22")
    assert "firewall.block" in refusal       # an admin in the block list is dropped first


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
        assert refused.stderr == (f"mailpubc: cannot use the state folder "
                                  f"{State.of(ns.name).folder}: {file} is not a folder "
                                  "(MAILPUBC_STATE_DIR sets another)\n")
    assert tables(ns) == [("ip", "foreign")]
    assert sorted(tmp_path.rglob("*")) == before
    file.unlink()


def test_a_namespace_that_does_not_exist_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    absent = f"mp-absent-{uuid.uuid4().hex[:8]}"
    refused = run_mailpubc("apply", "--netns", absent, policy(tmp_path))
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
        assert run.stderr == f"{bad}:8:81: error: unknown service 'smtpx'; did you mean 'smtp'?\n"
    assert not (tmp_path / "state").exists()


def test_diff_as_json(ns, tmp_path):
    path = policy(tmp_path)
    assert apply(ns, path).returncode == 0
    same = json.loads(run_mailpubc("diff", "--format", "json", "--netns", ns.name, path).stdout)
    assert same == {"changed": False, "diff": "", "before": "", "after": ""}
    changed = run_mailpubc("diff", "--format", "json", "--netns", ns.name,
                           policy(tmp_path, "new", "[smtp, smtps]"))
    report = json.loads(changed.stdout)
    assert changed.returncode == 1 and report["changed"]
    assert "smtps" in report["after"] and "smtps" not in report["before"]
    assert report["after"].startswith("table inet mailpub {")
