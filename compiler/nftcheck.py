"""Check stage: have nft itself parse the ruleset, without applying it.

Preferred is libnftables through python-nftables with dry run set: the same
parser and evaluation as `nft -f`, in process, touching nothing. Debian ships
that binding for its own Python only, so when it cannot be imported normally
it is loaded from Debian's folder (it is a pure-Python ctypes wrapper). The
fallback is the `nft` binary with `-c`. A dry run needs netlink rights
(CAP_NET_ADMIN): without them it runs in a private network namespace of a
new user namespace (`unshare -rn`), where it has them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEBIAN_BINDING = Path("/usr/lib/python3/dist-packages/nftables/__init__.py")
TIMEOUT_SECONDS = 120
METHODS = ("libnftables", "nft")


@dataclass(frozen=True)
class CheckResult:
    ran: bool       # False when nft could not be run at all
    ok: bool
    method: str     # how it ran, or what was tried
    message: str    # nft's complaints, or why it did not run


def dry_run(ruleset: str, methods: tuple[str, ...] = METHODS, json: bool = False) -> CheckResult:
    """Check `ruleset` (libnftables JSON when `json`) with the first method that can run."""
    reasons = []
    for method in methods:
        result = _libnftables(ruleset, json) if method == "libnftables" else _binary(ruleset, json)
        if result.ran:
            return result
        reasons.append(result.message)
    return CheckResult(False, False, "none", "; ".join(reasons))


def _import_binding():
    try:
        import nftables  # type: ignore[import-not-found]
        return nftables
    except ImportError:
        pass
    if not DEBIAN_BINDING.exists():
        return None
    spec = importlib.util.spec_from_file_location(
        "nftables", DEBIAN_BINDING, submodule_search_locations=[str(DEBIAN_BINDING.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["nftables"] = module    # its __init__ imports its own submodule
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError):
        del sys.modules["nftables"]
        return None
    return module


def _libnftables(ruleset: str, json: bool) -> CheckResult:
    binding = _import_binding()
    if binding is None:
        return CheckResult(False, False, "libnftables",
                           "python-nftables is not installed (Debian: python3-nftables)")
    try:
        nft = binding.Nftables()
    except OSError as exc:
        return CheckResult(False, False, "libnftables", f"libnftables cannot be loaded: {exc}")
    nft.set_dry_run(True)
    nft.set_json_output(json)     # libnftables then parses its input as JSON too
    # from a file, not a buffer: nft then points its errors at the right line
    with tempfile.NamedTemporaryFile("w", suffix=".nft", prefix="mailpubc-check-") as file:
        file.write(ruleset)
        file.flush()
        rc, _, errors = nft.cmd_from_file(file.name)
    if rc != 0 and "Operation not permitted" in errors:
        return CheckResult(False, False, "libnftables",
                           "libnftables needs netlink rights (CAP_NET_ADMIN)")
    return CheckResult(True, rc == 0, "libnftables", errors.strip())


def _binary(ruleset: str, json: bool) -> CheckResult:
    nft = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
    if nft is None:
        return CheckResult(False, False, "nft", "the nft binary is not installed")
    check = [nft, "-j", "-c", "-f", "-"] if json else [nft, "-c", "-f", "-"]
    attempts = [("nft -c", check)]
    unshare = shutil.which("unshare")
    if unshare is not None:
        attempts.append(("nft -c in a private network namespace",
                         [unshare, "-rn", *check]))
    reasons = []
    for method, command in attempts:
        try:
            run = subprocess.run(command, input=ruleset, capture_output=True, text=True,
                                 timeout=TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{method} could not run: {exc}")
            continue
        if run.returncode != 0 and "Operation not permitted" in run.stderr:
            reasons.append(f"{method} has no netlink rights")
            continue
        return CheckResult(True, run.returncode == 0, method, run.stderr.strip())
    return CheckResult(False, False, "nft", "; ".join(reasons))
