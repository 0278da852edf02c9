"""The boot and daylight-saving units of `mailpubc install-unit`, checked by
systemd's own `systemd-analyze`, and the boot unit's commands run for real
in a fresh network namespace, as systemd runs them: the saved ruleset must
come back exactly, and a saved ruleset that is missing or damaged must leave
the fallback (management SSH only) loaded, never an open network. Also the
Debian alternative, an `include` in /etc/nftables.conf."""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from cli import run_mailpubc
from e2e.netns import Namespace
from kernel import without_handles
from mailpubc import api, boot, cli, nft, plan
from mailpubc.diagnostics import ExitCode
from mailpubc.state import State

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "seed.yaml"
UNITS = ("mailpubc.service", "mailpubc-reapply.service", "mailpubc-reapply.timer")

# Debian's /etc/nftables.conf as shipped, with the one line the README adds.
NFTABLES_CONF = """\
#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}

include "STATE/applied.nft"
"""


@pytest.fixture
def installed(tmp_path):
    """install-unit run as an admin would, the state folder under tmp_path
    holding what apply saves for the boot."""
    state = tmp_path / "state"
    result = api.compile_path(str(POLICY))
    boot.save(State(state), result.text, result.fallback_text, result.ruleset.table)
    run = run_mailpubc("install-unit", "--prefix", tmp_path / "units",
                       env={**os.environ, "MAILPUBC_STATE_DIR": str(state)})
    assert run.returncode == 0, run.stderr
    return tmp_path / "units", state


def settings(unit: Path) -> dict[str, str]:
    """KEY=VALUE lines of a unit file (of a repeated key, the last), specifiers unescaped."""
    lines = [line.split("=", 1) for line in unit.read_text().splitlines()
             if "=" in line and not line.startswith("#")]
    return {key: value.replace("%%", "%") for key, value in lines}


def analyze(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, "TZ": "UTC"})


def run_in(namespace: str, argv: list[str], env: dict | None = None) -> None:
    run = subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert run.returncode == 0, run.stderr


def test_units_pass_systemd_analyze_verify_without_a_warning(installed):
    folder, _ = installed
    assert sorted(p.name for p in folder.iterdir()) == sorted(UNITS)
    verify = analyze("verify", *(str(folder / name) for name in UNITS))
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr


def test_boot_unit_runs_before_the_network_from_the_state_folder(installed):
    folder, state = installed
    unit = settings(folder / "mailpubc.service")
    assert unit["DefaultDependencies"] == "no"
    assert "network-pre.target" in unit["Before"].split()
    assert unit["Wants"] == "network-pre.target"
    assert unit["WantedBy"] == "sysinit.target"
    assert (unit["Type"], unit["RemainAfterExit"]) == ("oneshot", "yes")
    assert not [key for key in unit if key.startswith(("Condition", "Assert"))]
    assert f"MAILPUBC_STATE_DIR={state}" in shlex.split(unit["Environment"])
    reapply = settings(folder / "mailpubc-reapply.service")
    assert reapply["Environment"] == f"MAILPUBC_STATE_DIR={state}"
    assert shlex.split(reapply["ExecStart"])[-1] == "reapply"


def test_a_path_systemd_would_split_is_refused(tmp_path):
    run = run_mailpubc("install-unit", "--prefix", tmp_path,
                       env={**os.environ, "MAILPUBC_STATE_DIR": str(tmp_path / "my state")})
    assert run.returncode == 2 and run.stdout == ""
    assert "holds a space" in run.stderr and list(tmp_path.iterdir()) == []


def test_timer_fires_five_seconds_after_every_quarter_hour(installed):
    folder, _ = installed
    spec = settings(folder / "mailpubc-reapply.timer")["OnCalendar"]
    shown = analyze("calendar", "--iterations=6", spec)
    assert shown.returncode == 0, shown.stderr
    elapses = [datetime.strptime(line.split(": ", 1)[1], "%a %Y-%m-%d %H:%M:%S UTC")
               for line in shown.stdout.splitlines()
               if line.strip().startswith(("Next elapse:", "Iter. #"))]
    assert len(elapses) == 6
    assert all(t.minute % 15 == 0 and t.second == 5 for t in elapses)
    assert {(b - a).total_seconds() for a, b in zip(elapses, elapses[1:])} == {900}


needs_apply = pytest.mark.skipif("apply" not in cli.COMMANDS,
                                 reason="mailpubc apply is not built yet")

# -- the boot fails closed ---------------------------------------------------------
#
# The seed's firewall at 198.51.100.11 (its firewall-mail publishes smtp
# there) and a client holding an address of the seed's `admins` and one of
# no one's; the firewall listens on 25 and 22.

FIREWALL, ADMIN, STRANGER = "198.51.100.11", "192.0.2.1", "203.0.113.5"
LISTEN = f"""
import socket, time
servers = [socket.create_server(("{FIREWALL}", port)) for port in (25, 22)]
print("ready", flush=True)
time.sleep(3600)
"""
# each argument SOURCE>PORT: a TCP connection from SOURCE; prints open or closed
CONNECT = f"""
import socket, sys
for pair in sys.argv[1:]:
    source, port = pair.split(">")
    try:
        socket.create_connection(("{FIREWALL}", int(port)), timeout=1,
                                 source_address=(source, 0)).close()
        print("open")
    except OSError:
        print("closed")
"""
SAVED = {(STRANGER, 25): "open", (ADMIN, 22): "open", (STRANGER, 22): "closed"}
FALLBACK = {(STRANGER, 25): "closed", (ADMIN, 22): "open", (STRANGER, 22): "closed"}
LOCKDOWN = {(STRANGER, 25): "closed", (ADMIN, 22): "closed", (STRANGER, 22): "closed"}
FALLBACK_RULES = {"mailpub neighbour discovery", "mailpub mld", "mailpub replies",
                  "mailpub invalid", "mailpub loopback", "mailpub icmp errors",
                  "mailpub icmpv6 errors", "mailpub management ssh",
                  "mailpub antispoofing firewall.anti_spoofing"}


def _first_lines(text: str) -> str:
    return "".join(text.splitlines(keepends=True)[:4])


def _corrupt(text: str) -> str:
    return text.replace("accept", "acept", 1)


def _opened(text: str) -> str:
    """A local user's edit that nft takes: input lets everything in."""
    chain = text.index("chain input {")
    return text[:chain] + text[chain:].replace("policy drop;", "policy accept;", 1)


# name: (what becomes of applied.nft, whether its digest is made to match,
#        what the unit's boot-load says, what the network sees afterwards)
DAMAGES = {
    "good": (lambda text: text, False, "loaded", SAVED),
    "missing": (None, False, "applied.nft is missing", FALLBACK),
    "empty": (lambda text: "", False, "does not match the digest", FALLBACK),
    "first four lines": (_first_lines, False, "does not match the digest", FALLBACK),
    "truncated": (lambda text: text[:len(text) // 2], False, "does not match the digest",
                  FALLBACK),
    "corrupt word": (_corrupt, False, "does not match the digest", FALLBACK),
    "edited": (_opened, False, "does not match the digest", FALLBACK),
    "refused by nft": (_corrupt, True, "nft refused", FALLBACK),
}


@pytest.fixture
def host(tmp_path, namespaces):
    """apply run in a namespace standing for the host, and install-unit for
    the state folder apply kept for it: (live namespace, state, units)."""
    base = tmp_path / "state"
    live = namespaces().name
    applied = run_mailpubc("apply", "--netns", live, POLICY,
                           env={**os.environ, "MAILPUBC_STATE_DIR": str(base)})
    assert applied.returncode == 0, applied.stderr
    state = base / "netns" / live
    run = run_mailpubc("install-unit", "--prefix", tmp_path / "units",
                       env={**os.environ, "MAILPUBC_STATE_DIR": str(state)})
    assert run.returncode == 0, run.stderr
    return live, state, tmp_path / "units" / "mailpubc.service"


@pytest.fixture
def lab(namespaces):
    """A firewall namespace with nothing loaded yet, listening on 25 and 22,
    and a client on a veth pair: (firewall, client)."""
    firewall, client = namespaces("boot-fw"), namespaces("boot-client")
    firewall.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", client.name)
    for namespace in (firewall, client):
        namespace.ip("link", "set", "eth0", "up")
    firewall.ip("addr", "add", f"{FIREWALL}/24", "dev", "eth0")
    for source in (ADMIN, STRANGER):
        client.ip("addr", "add", f"{source}/24", "dev", "eth0")
        firewall.ip("route", "add", f"{source.rsplit('.', 1)[0]}.0/24", "dev", "eth0")
    client.ip("route", "add", "198.51.100.0/24", "dev", "eth0")
    server = firewall.spawn(sys.executable, "-c", LISTEN, log="/dev/null")
    firewall.wait_listening({("tcp", 25), ("tcp", 22)}, [server])
    return firewall, client


def connections(client: Namespace) -> dict:
    """Whether each probe of SAVED gets through: open or closed."""
    run = client.run(sys.executable, "-c", CONNECT, *(f"{s}>{p}" for s, p in SAVED),
                     timeout=30)
    return dict(zip(SAVED, run.stdout.split()))


def start(unit: Path, namespace: str, runtime: Path) -> tuple[int, str]:
    """Start the unit in `namespace` as systemd does: skipped when a
    ConditionPathExists fails; else its Environment (%t is `runtime`, where
    its RuntimeDirectory is made) and each ExecStart in turn, stopping at
    the first that fails unless its line starts with "-". The unit's result
    (0 active, else the exit status that failed it) and what its commands said."""
    lines = [line.split("=", 1) for line in unit.read_text().splitlines()
             if "=" in line and not line.startswith("#")]
    if any(key == "ConditionPathExists" and not Path(value).exists() for key, value in lines):
        return 0, "skipped"
    environment = {"PATH": os.environ["PATH"]}
    said = []
    for key, value in lines:
        value = value.replace("%t", str(runtime)).replace("%%", "%")
        if key == "RuntimeDirectory":
            (runtime / value).mkdir(parents=True)
        elif key == "Environment":
            environment.update(word.split("=", 1) for word in shlex.split(value))
        elif key == "ExecStart":
            ignored = value.startswith("-")
            argv = shlex.split(value.removeprefix("-"))
            run = subprocess.run(["ip", "netns", "exec", namespace, *argv],
                                 capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL, env=environment)
            said.append(run.stderr)
            if run.returncode != 0 and not ignored:
                return run.returncode, "".join(said)
    return 0, "".join(said)


def rule_comments(listing: dict) -> set[str]:
    return {entry["rule"]["comment"] for entry in listing["nftables"]
            if "rule" in entry and entry["rule"]["table"] == "mailpub"}


def chain_policies(listing: dict) -> dict[str, str]:
    return {entry["chain"]["name"]: entry["chain"]["policy"] for entry in listing["nftables"]
            if "policy" in entry.get("chain", {})}


def fallback_listing(namespaces) -> list:
    """What the fallback of POLICY lists as, loaded into a namespace of its own."""
    reference = namespaces().name
    nft.load(api.compile_path(str(POLICY)).fallback_text, netns=reference)
    return without_handles(nft.list_ruleset(reference))


@pytest.mark.parametrize("damage", DAMAGES)
def test_boot_loads_the_saved_ruleset_or_fails_closed(host, lab, namespaces, tmp_path, damage):
    """The unit's commands on a fresh namespace, for the saved ruleset as
    apply left it and as a crash, a full disk or a local user leave it: the
    saved ruleset only when it is what apply saved; otherwise the fallback,
    management SSH from the admins and nothing else, and the unit fails."""
    live, state, unit = host
    change, matching, said, seen = DAMAGES[damage]
    applied = state / "applied.nft"
    if change is None:
        applied.unlink()
    else:
        applied.write_text(change(applied.read_text()))
    if matching:
        digests = json.loads((state / "boot.json").read_text())
        digests["sha256"]["applied.nft"] = hashlib.sha256(applied.read_bytes()).hexdigest()
        (state / "boot.json").write_text(json.dumps(digests))
    firewall, client = lab
    status, output = start(unit, firewall.name, tmp_path / "run")
    assert said in output
    listing = nft.list_ruleset(firewall.name)
    if seen is SAVED:
        assert status == 0, output
        assert without_handles(listing) == without_handles(nft.list_ruleset(live))
    else:
        assert status == ExitCode.FALLBACK, output
        assert without_handles(listing) == fallback_listing(namespaces)
        assert rule_comments(listing) == FALLBACK_RULES
        assert chain_policies(listing) == {"input": "drop", "forward": "drop",
                                           "output": "accept", "antispoofing": "accept"}
    assert connections(client) == seen


def test_without_a_fallback_either_the_boot_locks_down(host, lab, tmp_path):
    """Neither file verifies (the state folder half deleted): the lockdown,
    which lets nothing in, the admins' SSH neither."""
    _, state, unit = host
    (state / "applied.nft").write_text("")
    (state / "fallback.nft").unlink()
    firewall, client = lab
    status, output = start(unit, firewall.name, tmp_path / "run")
    assert status == ExitCode.FALLBACK and "fallback.nft is missing" in output, output
    assert "loaded the lockdown" in output
    listing = nft.list_ruleset(firewall.name)
    assert chain_policies(listing) == {"input": "drop", "forward": "drop", "output": "drop"}
    assert "mailpub management ssh" not in rule_comments(listing)
    assert connections(client) == LOCKDOWN


def test_the_fallback_stays_when_python_cannot_start(host, lab, namespaces, tmp_path):
    """The Python the unit names is gone (a removed virtual environment):
    the first command, nft alone, has loaded the fallback."""
    _, _, unit = host
    unit.write_text(unit.read_text().replace(sys.executable, str(tmp_path / "gone" / "python")))
    firewall, client = lab
    status, _ = start(unit, firewall.name, tmp_path / "run")
    assert status != 0
    assert without_handles(nft.list_ruleset(firewall.name)) == fallback_listing(namespaces)
    assert connections(client) == FALLBACK


def test_apply_saves_the_fallback_only_when_its_ruleset_becomes_final(tmp_path, namespaces):
    """An apply waiting for confirmation leaves the boot's files as they
    were; confirming it saves its ruleset and its fallback, both verified."""
    environment = {**os.environ, "MAILPUBC_STATE_DIR": str(tmp_path / "state")}
    live = namespaces().name
    other = tmp_path / "other.yaml"
    other.write_text(POLICY.read_text().replace("ssh: [admins]", "ssh: [203.0.113.0/24]"))
    first, second = api.compile_path(str(POLICY)), api.compile_path(str(other))
    assert first.fallback_text != second.fallback_text
    state = State(tmp_path / "state" / "netns" / live)

    def saved() -> tuple:
        return boot.verified(state, "applied.nft")[0], boot.verified(state, "fallback.nft")[0]
    assert run_mailpubc("apply", "--netns", live, POLICY, env=environment).returncode == 0
    armed = run_mailpubc("apply", "--netns", live, "--confirm", "600", "--no-wait", other,
                         env=environment)
    assert armed.returncode == 0, armed.stderr
    assert saved() == (first.text, first.fallback_text)
    assert run_mailpubc("confirm", "--netns", live, env=environment).returncode == 0
    assert saved() == (second.text, second.fallback_text)


GOLDEN = sorted(path for path in (ROOT / "golden").glob("*/policy.yaml")
                if not path.parent.name.startswith("err-"))


@pytest.mark.parametrize("opened", [False, True], ids=["as written", "input forward accept"])
@pytest.mark.parametrize("path", GOLDEN, ids=lambda path: path.parent.name)
def test_the_fallback_lets_in_only_management_ssh(path, opened, tmp_path):
    """Of every golden policy, also with input and forward policies that
    accept: the fallback drops on input and forward, keeps the policy's
    output verdict, its management SSH rules and its blocks exactly, accepts
    nothing else, translates nothing, and nft takes it."""
    folder = tmp_path / "policy"
    shutil.copytree(path.parent, folder)        # list files stay beside it
    if opened:
        data = yaml.safe_load(path.read_text())
        data["firewall"].setdefault("policy", {}).update(input="accept", forward="accept")
        (folder / "policy.yaml").write_text(yaml.safe_dump(data))
    result = api.compile_path(str(folder / "policy.yaml")).or_raise()
    fallback = plan.fallback(result.policy)
    chains = {chain.name: chain for chain in fallback.chains}
    policy_chains = {chain.name: chain for chain in result.ruleset.chains}
    assert {name: chain.hook.policy for name, chain in chains.items()
            if name in ("input", "forward")} == {"input": "drop", "forward": "drop"}
    assert chains["output"].hook.policy == policy_chains["output"].hook.policy
    assert not [chain for chain in fallback.chains if chain.hook and chain.hook.type == "nat"]
    for name in ("input", "forward"):
        kept = [rule for rule in policy_chains[name].rules
                if rule.origin.kind == "block" or rule.origin == plan.Origin("management", "ssh")]
        assert [rule for rule in chains[name].rules if rule in kept] == kept
    accepts = {rule.origin for chain in fallback.chains for rule in chain.rules
               if plan.ACCEPT in rule.statements}
    assert {origin.kind for origin in accepts} <= {"fixed", "management"}
    assert {origin.name for origin in accepts if origin.kind == "management"} <= {"ssh"}
    checked = nft.dry_run(result.fallback_text)
    assert checked.ran and checked.ok, checked.message


def test_install_unit_refuses_before_apply_saved_a_ruleset(tmp_path):
    """Without what apply saves the boot could load only the lockdown."""
    run = run_mailpubc("install-unit", "--prefix", tmp_path / "units",
                       env={**os.environ, "MAILPUBC_STATE_DIR": str(tmp_path / "state")})
    assert (run.returncode, run.stdout) == (2, "")
    assert "applied.nft is missing" in run.stderr and "mailpubc apply" in run.stderr
    assert not (tmp_path / "units").exists()


@needs_apply
def test_reapply_unit_brings_the_live_table_back_to_the_policy(installed, namespaces):
    """The timer's service, run in a namespace standing for the host: its
    command and environment find the policy apply recorded, and load it again
    when the live table no longer matches (as after an offset change)."""
    folder, state = installed
    host = {k: v for k, v in os.environ.items()
            if k not in ("MAILPUBC_STATE_DIR", "SSH_CONNECTION")}
    netns = namespaces().name
    run_in(netns, [sys.executable, "-m", "mailpubc", "apply", str(POLICY)],
           {**host, "MAILPUBC_STATE_DIR": str(state)})
    applied = without_handles(nft.list_ruleset(netns))
    nft.load("add rule inet mailpub input tcp dport 9 accept\n", netns=netns)
    assert without_handles(nft.list_ruleset(netns)) != applied
    unit = settings(folder / "mailpubc-reapply.service")
    name, value = unit["Environment"].split("=", 1)
    run_in(netns, shlex.split(unit["ExecStart"]), {**host, name: value})
    assert without_handles(nft.list_ruleset(netns)) == applied


def test_debian_nftables_conf_can_include_the_applied_ruleset(tmp_path, namespaces):
    state = tmp_path / "state"
    state.mkdir()
    assert run_mailpubc("-o", state / "applied.nft", POLICY).returncode == 0
    conf = tmp_path / "nftables.conf"
    conf.write_text(NFTABLES_CONF.replace("STATE", str(state)))
    booted, direct = namespaces().name, namespaces().name
    run_in(booted, ["nft", "-c", "-f", str(conf)])
    run_in(booted, ["nft", "-f", str(conf)])
    run_in(booted, ["nft", "-f", str(conf)])     # a reload (systemctl reload nftables) too
    nft.load((state / "applied.nft").read_text(), netns=direct)
    ours = [without_handles(nft.list_table("mailpub", netns=ns)) for ns in (booted, direct)]
    assert ours[0] == ours[1]
    assert nft.list_table("filter", netns=booted) is not None
