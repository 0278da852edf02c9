"""The state folder against local users (issue #18): modes under any umask,
no symbolic link followed, folders and files that must be root's own.

The attacks are made as they were found, by another user (`nobody`,
through setpriv) where the base folder above the state is open to all, as
/var/lib is; a test that only checked modes could miss what they allow.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mailpubc import boot
from mailpubc.state import State, StateError

from cli import run_mailpubc

NOBODY = 65534
POLICY = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  management: {ssh: [192.0.2.0/28]}
publish:
  - {name: mail, server: localhost, external_address: 198.51.100.10, services: [smtp]}
"""


@pytest.fixture
def open_base(monkeypatch):
    """A base for the state in a folder every user may enter (like /var/lib)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv: the attacks are made as nobody")
    top = Path(tempfile.mkdtemp(prefix="mailpubc-state-", dir="/tmp"))
    top.chmod(0o755)
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(top / "state"))
    try:
        yield top / "state"
    finally:
        shutil.rmtree(top)


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def as_nobody(code: str) -> subprocess.CompletedProcess:
    """Python `code` run as nobody; exit 0 means what it tried worked."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=30)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def used(state: State) -> None:
    """What apply leaves: the lock taken, the records and the boot's files."""
    with state.lock():
        state.write("state", {"policy": "/etc/mailpubc/policy.yaml"})
        boot.save(state, "table inet mailpub {\n}\n", "table inet mailpub {\n}\n", "mailpub")


def test_folders_are_0700_and_files_0600_under_any_umask(open_base, umask):
    state = State.of("ns1")
    used(state)
    assert [mode(p) for p in (open_base, open_base / "netns", state.folder)] == [0o700] * 3
    files = sorted(p.name for p in state.folder.iterdir())
    assert files == ["applied.nft", "boot.json", "fallback.nft", "lock", "state.json"]
    assert {name: mode(state.folder / name) for name in files} == dict.fromkeys(files, 0o600)


def test_another_user_can_neither_hold_the_lock_nor_swap_a_file(open_base, umask):
    """Holding the lock stopped a rollback; a swapped applied.nft is what boot
    loads, a swapped state.json what reapply compiles."""
    state = State.of(None)
    used(state)
    held = as_nobody(f"import fcntl; fcntl.flock(open({str(state.folder / 'lock')!r}), "
                     "fcntl.LOCK_EX)")
    assert held.returncode != 0 and "PermissionError" in held.stderr
    swapped = as_nobody(f"open({str(state.folder / 'applied.nft.new')!r}, 'w')")
    assert swapped.returncode != 0 and "PermissionError" in swapped.stderr


def test_a_folder_of_old_loose_modes_is_tightened(open_base):
    """A state folder made by an earlier mailpubc under umask 022 (0755, files
    0644) is taken over: 0700, and the lock 0600 once taken."""
    state = State.of(None)
    open_base.mkdir(mode=0o755)
    open_base.chmod(0o755)
    (open_base / "lock").write_text("")
    (open_base / "lock").chmod(0o644)
    with state.lock():
        pass
    assert (mode(open_base), mode(open_base / "lock")) == (0o700, 0o600)


@pytest.mark.parametrize("name", ["lock", "state.json", "applied.nft"])
def test_a_symbolic_link_in_the_folder_is_refused_not_followed(open_base, name):
    state = State.of(None)
    used(state)
    target = open_base.parent / "elsewhere"
    (state.folder / name).unlink()
    (state.folder / name).symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"):
        if name == "lock":
            with state.lock():
                pass
        elif name == "state.json":
            state.read("state")
        else:
            state.read_bytes(name)
    assert not target.exists()
    if name == "applied.nft":       # the boot does not load it: it falls back
        text, why = boot.verified(state, name)
        assert text is None and "symbolic link" in why


@pytest.mark.parametrize("change, why", [
    (lambda p: os.chown(p, NOBODY, NOBODY), "belongs to uid 65534"),
    (lambda p: p.chmod(0o777), "writable by other users"),
    (lambda p: (p.rmdir(), p.symlink_to(p.parent / "real")), "symbolic link"),
], ids=["owned by nobody", "world-writable", "a link"])
def test_a_folder_another_user_controls_is_refused(open_base, change, why):
    state = State.of("ns1")
    (open_base.parent / "real").mkdir(mode=0o700)
    state.make()
    change(state.folder)
    with pytest.raises(StateError, match=why):
        state.write("state", {"policy": "/tmp/theirs.yaml"})
    assert not (open_base.parent / "real" / "state.json").exists()


def test_a_file_another_user_owns_is_refused(open_base):
    state = State.of(None)
    used(state)
    os.chown(state.folder / "state.json", NOBODY, NOBODY)
    with pytest.raises(StateError, match="not a regular file of uid 0"):
        state.read("state")


def test_apply_refuses_an_unsafe_state_folder_with_exit_2(open_base, namespace, tmp_path):
    """Through the command line: a usage error, nothing loaded, no traceback."""
    open_base.mkdir(mode=0o700)
    os.chown(open_base, NOBODY, NOBODY)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    run = run_mailpubc("apply", "--netns", namespace.name, policy)
    assert (run.returncode, run.stdout) == (2, ""), run.stderr
    assert "belongs to uid 65534" in run.stderr and "Traceback" not in run.stderr
    assert "mailpub" not in namespace.run("nft", "list", "tables").stdout
