"""Network namespaces (and scratch directories) that always go away again.

Every namespace is named ``mp-<pid>-<name>``, every scratch directory
``/tmp/mp-<pid>-*``, so that a run only ever touches its own, and so that
those left by a run that was killed outright (SIGKILL leaves no chance to
clean up) can be recognised by their dead pid and removed by the next run.  Removal happens from pytest finalizers, from
``atexit`` and from SIGTERM/SIGHUP handlers; SIGINT becomes KeyboardInterrupt,
which runs the first two.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PREFIX = f"mp-{os.getpid()}-"
_STALE = re.compile(r"^mp-(\d+)-")
_live: dict[str, "Namespace"] = {}
_dirs: set[Path] = set()


class CommandError(RuntimeError):
    """A command in the lab failed; the message carries its output."""


def run(args: list[str], *, timeout: float = 15,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with a timeout, raising CommandError with its output."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout}s: {' '.join(args)}") from exc
    if check and proc.returncode != 0:
        raise CommandError(f"exit {proc.returncode}: {' '.join(args)}\n"
                           f"{proc.stdout}{proc.stderr}".rstrip())
    return proc


class Namespace:
    """One named network namespace with its loopback up and DAD off."""

    def __init__(self, name: str):
        self.name = PREFIX + name
        run(["ip", "netns", "add", self.name])
        _live[self.name] = self
        self.processes: list[subprocess.Popen] = []
        try:
            self.ip("link", "set", "lo", "up")
            # Addresses must be usable at once, not after a second of DAD.
            self.sysctl("net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0")
        except CommandError:
            self.delete()
            raise

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.name, *args])

    def argv(self, *cmd: str) -> list[str]:
        """The command line that runs ``cmd`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, timeout: float = 15,
            check: bool = True) -> subprocess.CompletedProcess:
        return run(self.argv(*cmd), timeout=timeout, check=check)

    def sysctl(self, *settings: str) -> None:
        self.run("sysctl", "-q", "-w", *settings)

    def spawn(self, *cmd: str, log: str) -> subprocess.Popen:
        """Start a long-running server in this namespace, output to ``log``."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.argv(*cmd), stdout=out,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def listening(self) -> set[tuple[str, int]]:
        """The (proto, port) pairs that have a listening socket here."""
        found = set()
        for proto, flag in (("tcp", "-Hltn"), ("udp", "-Hlun")):
            for line in self.run("ss", flag).stdout.splitlines():
                local = line.split()[3]
                found.add((proto, int(local.rsplit(":", 1)[1])))
        return found

    def wait_listening(self, wanted: set[tuple[str, int]], procs: list[subprocess.Popen],
                       timeout: float = 10) -> None:
        """Wait until every wanted port listens, failing early if a server died."""
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.listening()
            if not missing:
                return
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = (f"server exited with {dead[0].returncode}: {' '.join(dead[0].args)}"
                       if dead else f"not listening after {timeout}s")
                raise CommandError(f"{self.name}: {why}; missing {sorted(missing)}")
            time.sleep(0.05)

    def delete(self) -> None:
        """Stop what runs inside, then remove the namespace; never raises."""
        for proc in self.processes:
            _terminate(proc)
        _kill_pids(self.name)
        run(["ip", "netns", "delete", self.name], check=False)
        _live.pop(self.name, None)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=2)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=2)


def _kill_pids(name: str) -> None:
    """Kill whatever still runs in namespace ``name`` (e.g. daemon children)."""
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def scratch_dir() -> Path:
    """A new short directory under /tmp, removed with the namespaces."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
    _dirs.add(path)
    return path


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _dirs.discard(path)


def cleanup() -> None:
    """Remove every namespace and scratch directory this run still has."""
    for ns in list(_live.values()):
        ns.delete()
    for path in list(_dirs):
        remove_dir(path)


def reap_stale() -> None:
    """Remove what earlier runs left whose process no longer exists."""
    def dead(name: str) -> bool:
        match = _STALE.match(name)
        return bool(match) and not os.path.exists(f"/proc/{match.group(1)}")

    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split(" ")[0]
        if dead(name):
            _kill_pids(name)
            run(["ip", "netns", "delete", name], check=False)
    for path in Path("/tmp").glob("mp-*"):
        if dead(path.name):
            shutil.rmtree(path, ignore_errors=True)


def _on_signal(signum, frame) -> None:
    cleanup()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_cleanup() -> None:
    """Make sure namespaces are removed however the process ends (bar SIGKILL)."""
    atexit.register(cleanup)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def prerequisites(programs: list[str]) -> str | None:
    """Why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "e2e tests need root to create network namespaces"
    missing = [p for p in ["ip", "nft", *programs] if shutil.which(p) is None]
    if missing:
        return f"e2e tests need these programs, not found: {', '.join(missing)}"
    probe = PREFIX + "probe"
    made = run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    run(["ip", "netns", "delete", probe], check=False)
    return None
