"""The boot and daylight-saving units of `mailpubc install-unit`, checked by
systemd's own `systemd-analyze`, and the boot unit's command run for real in
a fresh network namespace: it must rebuild exactly the ruleset that was
live. Also the Debian alternative, an `include` in /etc/nftables.conf."""

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from cli import run_mailpubc
from e2e.netns import Namespace, prerequisites
from mailpubc import cli, nft

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
    """install-unit run as an admin would, the state folder under tmp_path."""
    state = tmp_path / "state"
    run = run_mailpubc("install-unit", "--prefix", tmp_path / "units",
                       env={**os.environ, "MAILPUBC_STATE_DIR": str(state)})
    assert run.returncode == 0, run.stderr
    return tmp_path / "units", state


def settings(unit: Path) -> dict[str, str]:
    """KEY=VALUE lines of a unit file (its keys are unique), specifiers unescaped."""
    lines = [line.split("=", 1) for line in unit.read_text().splitlines()
             if "=" in line and not line.startswith("#")]
    return {key: value.replace("%%", "%") for key, value in lines}


def analyze(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, "TZ": "UTC"})


@pytest.fixture
def namespaces():
    reason = prerequisites(["nft"])
    if reason:
        pytest.skip(reason)
    made = []

    def make() -> str:
        made.append(Namespace(f"unit-{uuid.uuid4().hex[:8]}"))
        return made[-1].name
    yield make
    for namespace in made:
        namespace.delete()


def without_handles(listing: dict) -> list:
    return [{kind: {k: v for k, v in value.items() if k != "handle"}}
            for entry in listing["nftables"] for kind, value in entry.items()]


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
    assert unit["ConditionPathExists"] == str(state / "applied.nft")
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


def test_boot_unit_rebuilds_the_live_ruleset_in_a_fresh_namespace(installed, namespaces):
    folder, state = installed
    state.mkdir()
    assert run_mailpubc("-o", state / "applied.nft", POLICY).returncode == 0
    live = namespaces()
    nft.load((state / "applied.nft").read_text(), netns=live)
    booted = namespaces()
    run_in(booted, shlex.split(settings(folder / "mailpubc.service")["ExecStart"]))
    assert without_handles(nft.list_ruleset(booted)) == without_handles(nft.list_ruleset(live))


needs_apply = pytest.mark.skipif("apply" not in cli.COMMANDS,
                                 reason="mailpubc apply is not built yet")


@needs_apply
def test_boot_unit_loads_what_apply_saved(tmp_path, namespaces):
    base = tmp_path / "state"
    environment = {**os.environ, "MAILPUBC_STATE_DIR": str(base)}
    live = namespaces()
    applied = run_mailpubc("apply", "--netns", live, POLICY, env=environment)
    assert applied.returncode == 0, applied.stderr
    # the host's unit, installed for the state folder that apply kept for `live`
    run = run_mailpubc("install-unit", "--prefix", tmp_path / "units",
                       env={**os.environ, "MAILPUBC_STATE_DIR": str(base / "netns" / live)})
    assert run.returncode == 0, run.stderr
    booted = namespaces()
    run_in(booted, shlex.split(settings(tmp_path / "units" / "mailpubc.service")["ExecStart"]))
    assert without_handles(nft.list_ruleset(booted)) == without_handles(nft.list_ruleset(live))


@needs_apply
def test_reapply_unit_brings_the_live_table_back_to_the_policy(installed, namespaces):
    """The timer's service, run in a namespace standing for the host: its
    command and environment find the policy apply recorded, and load it again
    when the live table no longer matches (as after an offset change)."""
    folder, state = installed
    host = {k: v for k, v in os.environ.items()
            if k not in ("MAILPUBC_STATE_DIR", "SSH_CONNECTION")}
    netns = namespaces()
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
    booted, direct = namespaces(), namespaces()
    run_in(booted, ["nft", "-c", "-f", str(conf)])
    run_in(booted, ["nft", "-f", str(conf)])
    run_in(booted, ["nft", "-f", str(conf)])     # a reload (systemctl reload nftables) too
    nft.load((state / "applied.nft").read_text(), netns=direct)
    ours = [without_handles(nft.list_table("mailpub", netns=ns)) for ns in (booted, direct)]
    assert ours[0] == ours[1]
    assert nft.list_table("filter", netns=booted) is not None
