"""The one way mailpubc and its tests talk to nft: dry run, load, list.

Preferred is libnftables through python-nftables: the same parser and
evaluation as `nft -f`, in process. Debian ships that binding for its own
Python only, so when it cannot be imported normally it is loaded from
Debian's folder (it is a pure-Python ctypes wrapper). The fallback is the
`nft` binary. Rulesets always go through a file, never a buffer, so nft
points its errors at the right line, and a load is one `nft -f`: one
transaction, which nft applies whole or not at all.

A dry run needs netlink rights (CAP_NET_ADMIN): without them it runs as
`nft -c` in a private network namespace of a new user namespace
(`unshare -rn`), where it has them.

Inside a named network namespace (`ip netns` names, /run/netns/NAME), the
work runs on a new thread that first enters that namespace with setns():
setns(CLONE_NEWNET) moves only the calling thread, so libnftables opens its
netlink socket there, an `nft` binary it starts inherits the namespace, and
the rest of the process never moves. That needs no second interpreter and
no `ip netns exec`. Python 3.11 has no os.setns, hence libc's through ctypes.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json as jsonlib
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future


DEBIAN_BINDING = "/usr/lib/python3/dist-packages/nftables/__init__.py"
TIMEOUT_SECONDS = 120
METHODS = ("libnftables", "nft")
CLONE_NEWNET = 0x40000000
NO_RIGHTS = "Operation not permitted"

T = TypeVar("T")


class NftError(RuntimeError):
    """nft refused a load or listing, or could not run; the message says why."""


class NoNamespace(NftError):
    """The network namespace asked for does not exist: wrong usage, not nft's refusal."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    ran: bool       # False when nft could not be run at all
    ok: bool
    method: str     # how it ran, or what was tried
    message: str    # nft's complaints, or why it did not run


def dry_run(ruleset: str, *, json: bool = False, netns: Optional[str] = None,
            methods: tuple[str, ...] = METHODS) -> CheckResult:
    """Check `ruleset` (nft text, or libnftables JSON) without applying it;
    in `netns`, against what that namespace holds."""
    with _file(ruleset) as path:
        return in_netns(netns, lambda: _run(["-f", path], json=json, check=True,
                                             methods=methods))[0]


def load(ruleset: str, *, json: bool = False, netns: Optional[str] = None,
         methods: tuple[str, ...] = METHODS) -> None:
    """Apply `ruleset` in one transaction; NftError, and nothing changed, if refused."""
    with _file(ruleset) as path:
        _expect(in_netns(netns, lambda: _run(["-f", path], json=json, methods=methods)))


def list_ruleset(netns: Optional[str] = None, methods: tuple[str, ...] = METHODS,
                 terse: bool = False) -> dict:
    """`nft -j list ruleset`, parsed; `terse` (`nft -t`): no set's elements,
    which is most of a listing with a block list of 200,000 networks."""
    return jsonlib.loads(_expect(in_netns(
        netns, lambda: _run(["list", "ruleset"], json=True, methods=methods, terse=terse))))


def list_set(family: str, table: str, name: str, netns: Optional[str] = None,
             methods: tuple[str, ...] = METHODS) -> dict:
    """`nft -j list set FAMILY TABLE NAME`: the set's listed body, elements included."""
    return _set_body(_expect(in_netns(netns, lambda: _run(
        ["list", "set", family, table, name], json=True, methods=methods))))


def _set_body(listed: str) -> dict:
    return next(entry["set"] for entry in jsonlib.loads(listed)["nftables"] if "set" in entry)


def listing_sets(family: str, table: str, names: Iterable[str],
                 netns: Optional[str] = None) -> Optional[Future]:
    """The sets `names` of a table, listed whole while the caller goes on
    (diff compiles meanwhile): a Future of their `nft -j list set` bodies
    by name, a set nft cannot list left out. Through the nft binary, a
    child a set, given TZ=UTC in an environment of its own: `_run` sets
    the process's (`_utc`), which a compile reads for its schedules. On a
    daemon thread, so an early exit does not wait for it; None without
    the binary."""
    import threading    # late: only diff and reapply list ahead
    from concurrent.futures import Future
    if binary() is None:
        return None
    environment = {**os.environ, "TZ": "UTC"}
    names = list(names)
    future = Future()

    def listed() -> dict[str, dict]:
        found = {}
        for name in names:
            result, output = _binary(["list", "set", family, table, name], json=True,
                                     check=False, environment=environment)
            if result.ok:
                found[name] = _set_body(output)
        return found

    def work() -> None:
        try:
            future.set_result(listed() if netns is None else _entered(netns, listed))
        except Exception as exc:    # the caller lists as usual, and meets it there
            future.set_exception(exc)
    threading.Thread(target=work, daemon=True).start()
    return future


def list_table(table: str, family: str = "inet", netns: Optional[str] = None,
               methods: tuple[str, ...] = METHODS, terse: bool = False) -> Optional[dict]:
    """The ruleset listing cut down to one table and what it holds (as `nft -j
    list table` shows it); None when there is no such table. Cut from the
    whole listing rather than asked for, so a missing table is told apart from
    any other refusal without reading nft's error text."""
    from .listing import Listing       # late: the commands that only check need no listing
    listing = Listing.of(list_ruleset(netns, methods, terse))
    ours = list(listing.owned([table], family))
    if not any("table" in e for e in ours):
        return None
    return {"nftables": [e for e in listing.entries if "metainfo" in e] + ours}


def list_text(what: str, netns: Optional[str] = None,
              methods: tuple[str, ...] = METHODS) -> str:
    """`nft list WHAT` as nft prints it (WHAT e.g. "table inet mailpub"):
    text that `nft -f` loads back, set elements and counter values included."""
    return _expect(in_netns(netns, lambda: _run(["list", *what.split()], json=False,
                                                 methods=methods)))


def require_netns(netns: Optional[str]) -> None:
    """NoNamespace unless `netns` is None or a namespace that can be entered:
    to refuse a wrong --netns before anything is written for it."""
    in_netns(netns, lambda: None)


def scratch(work: Callable[[], T]) -> T:
    """`work()` in a new, empty network namespace that ends with it (a thread
    of its own unshares it; the namespace goes when the thread does): to see
    how nft lists a ruleset without touching any real one. Needs root."""
    def isolated() -> T:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise NftError(f"cannot make a scratch network namespace: {os.strerror(error)}")
        return work()
    with _one_thread() as pool:
        return pool.submit(isolated).result()


# -- running nft ----------------------------------------------------------------

@contextmanager
def _file(ruleset: str) -> Iterator[str]:
    """The ruleset in a new file of its own (mode 0600) in the temporary folder
    (TMPDIR, TEMP or TMP, else /tmp), removed afterwards. Made here: tempfile
    and what it imports would be 5 ms of each `check` (issue #12)."""
    folder = next(filter(None, map(os.environ.get, ("TMPDIR", "TEMP", "TMP"))), "/tmp")
    path = os.path.join(folder, f"mailpubc-nft-{os.urandom(8).hex()}.nft")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "w", encoding="utf-8") as file:
            file.write(ruleset)
        yield path
    finally:
        os.unlink(path)


def _expect(outcome: tuple[CheckResult, str]) -> str:
    """The output of a run that went through, else NftError."""
    result, output = outcome
    if not (result.ran and result.ok):
        raise NftError(result.message if result.ran
                       else f"nft could not run: {result.message}")
    return output


def _run(words: list[str], *, json: bool, check: bool = False,
         methods: tuple[str, ...], terse: bool = False) -> tuple[CheckResult, str]:
    """Run `nft [-j] [-c] [-t] WORDS...` with the first method that can; its result and output."""
    reasons = []
    with _utc():
        for method in methods:
            run = _libnftables if method == "libnftables" else _binary
            result, output = run(words, json, check, terse)
            if result.ran:
                return result, output
            reasons.append(result.message)
    return CheckResult(False, False, "none", "; ".join(reasons)), ""


@contextmanager
def _utc() -> Iterator[None]:
    """Run nft in UTC. nft lists `meta hour` in its process's local time, and
    west of UTC it lists times it cannot read back ("1193041:28:16"-"03:59:59"
    in New York), so a saved listing would not restore; in UTC listings load
    back unchanged. Compiled rulesets hold numbers, the same in every zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def _import_binding():
    try:
        import nftables  # type: ignore[import-not-found]
        return nftables
    except ImportError:
        pass
    if not os.path.exists(DEBIAN_BINDING):
        return None
    spec = importlib.util.spec_from_file_location(
        "nftables", DEBIAN_BINDING, submodule_search_locations=[os.path.dirname(DEBIAN_BINDING)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["nftables"] = module    # its __init__ imports its own submodule
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError):
        del sys.modules["nftables"]
        return None
    return module


def _libnftables(words: list[str], json: bool, check: bool,
                 terse: bool = False) -> tuple[CheckResult, str]:
    binding = _import_binding()
    if binding is None:
        return CheckResult(False, False, "libnftables",
                           "python-nftables is not installed (Debian: python3-nftables)"), ""
    try:
        nft = binding.Nftables()
    except OSError as exc:
        return CheckResult(False, False, "libnftables",
                           f"libnftables cannot be loaded: {exc}"), ""
    nft.set_dry_run(check)
    nft.set_json_output(json)   # also what makes libnftables read JSON input
    nft.set_terse_output(terse)
    if words[0] == "-f":
        rc, output, errors = nft.cmd_from_file(words[1])
    else:
        rc, output, errors = nft.cmd(" ".join(words))
    if rc != 0 and NO_RIGHTS in errors:
        return CheckResult(False, False, "libnftables",
                           "libnftables needs netlink rights (CAP_NET_ADMIN)"), ""
    return CheckResult(True, rc == 0, "libnftables", errors.strip()), output


SBIN_PATHS = ("/usr/sbin/nft", "/sbin/nft")   # where nft lives when sbin is not on PATH


def binary() -> Optional[str]:
    """The nft program's path, or None when it is not installed."""
    return shutil.which("nft") or next((p for p in SBIN_PATHS if os.access(p, os.X_OK)), None)


def _binary(words: list[str], json: bool, check: bool, terse: bool = False,
            environment: Optional[dict] = None) -> tuple[CheckResult, str]:
    """`environment`: the child's, in place of this process's."""
    import subprocess   # late: the libnftables path, the usual one, needs no child process
    nft = binary()
    if nft is None:
        return CheckResult(False, False, "nft", "the nft binary is not installed"), ""
    command = [nft, *(["-j"] if json else []), *(["-c"] if check else []),
               *(["-t"] if terse else []), *words]
    label = "nft -c" if check else "nft"
    attempts = [(label, command)]
    unshare = shutil.which("unshare")
    if check and unshare is not None:     # a private namespace only makes sense for a check
        attempts.append((f"{label} in a private network namespace", [unshare, "-rn", *command]))
    reasons = []
    for method, argv in attempts:
        try:
            run = subprocess.run(argv, capture_output=True, text=True, env=environment,
                                 stdin=subprocess.DEVNULL, timeout=TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{method} could not run: {exc}")
            continue
        if run.returncode != 0 and NO_RIGHTS in run.stderr:
            reasons.append(f"{method} has no netlink rights")
            continue
        return CheckResult(True, run.returncode == 0, method, run.stderr.strip()), run.stdout
    return CheckResult(False, False, "nft", "; ".join(reasons)), ""


# -- network namespaces ------------------------------------------------------------

def in_netns(netns: Optional[str], work: Callable[[], T]) -> T:
    """`work()` inside network namespace `netns` (None: where we are), on a
    thread of its own that ends with it (see the module docstring)."""
    if netns is None:
        return work()
    with _one_thread() as pool:
        return pool.submit(_entered, netns, work).result()


def _one_thread():
    """A pool of one thread, imported late: most runs (`check`) need none."""
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(1)


def _entered(netns: str, work: Callable[[], T]) -> T:
    try:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NoNamespace(f"no network namespace {netns} (ip netns list shows them)") from exc
    except OSError as exc:
        raise NoNamespace(f"no network namespace {netns}: {exc.strerror}") from exc
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise NftError(f"cannot enter network namespace {netns}: {os.strerror(error)}")
    finally:
        os.close(fd)
    return work()
