"""What the boot loads (`mailpubc boot-load`, run by mailpubc.service), and
the files it trusts.

When a ruleset becomes final, `mailpubc apply` saves beside it in the state
folder the fallback compiled from the same policy (`plan.fallback`:
management SSH, replies, loopback, neighbour discovery, nothing else) and,
last, `boot.json`: the table and the SHA-256 of both files. A crash between
the writes leaves a file that does not match, which the boot then refuses.

At boot the unit loads fallback.nft with nft alone first, so that the
network never comes up open even if Python cannot start; then `boot-load`
replaces it, in one transaction, with the saved ruleset if that matches its
digest (missing, empty, truncated, edited or refused by nft: it does not).
Otherwise it loads the fallback, if that matches its digest, else the
lockdown (`plan.lockdown`: no SSH either), and says why. The network waits:
the unit is ordered before network-pre.target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from . import nft, plan
from .diagnostics import ExitCode
from .generate import safe_name
from .state import State, StateError

SAVED, FALLBACK, DIGESTS = "applied.nft", "fallback.nft", "boot"
DEFAULT_TABLE = "mailpub"           # the lockdown's table when boot.json names none


@dataclass(frozen=True, slots=True)
class Loaded:
    status: int                     # one of the EXIT_ codes
    message: str


def save(state: State, applied: str, fallback: str, table: str) -> None:
    """Save a final ruleset and its fallback for the boot, the digests last."""
    files = {SAVED: applied, FALLBACK: fallback}
    for name, text in files.items():
        state.write_file(name, text)
    state.write(DIGESTS, {"table": table, "sha256": {
        name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in files.items()}})


def verified(state: State, name: str) -> tuple[Optional[str], str]:
    """(the text of `name`, "") when it matches the digest apply saved, else
    (None, why not). Read once: what is checked is what gets loaded."""
    path = state.folder / name
    try:
        raw = state.read_bytes(name)
    except (OSError, StateError) as exc:
        return None, f"{path} cannot be read: {exc}"
    if raw is None:
        return None, f"{path} is missing"
    try:
        expected = state.read(DIGESTS)["sha256"][name]
    except (OSError, ValueError, TypeError, KeyError):
        return None, (f"{state.folder / (DIGESTS + '.json')} is missing or damaged, "
                      f"so {path} cannot be verified")
    if hashlib.sha256(raw).hexdigest() != expected:
        return None, (f"{path} does not match the digest apply saved "
                      "(edited, truncated or damaged since)")
    return raw.decode("utf-8"), ""


def load(state: State) -> Loaded:
    """Load the saved ruleset, else the fallback, else the lockdown: the
    first that verifies and that nft takes."""
    refused = []
    for name in (SAVED, FALLBACK):
        text, why = verified(state, name)
        if text is None:
            refused.append(why)
            continue
        try:
            nft.load(text)
        except nft.NftError as exc:
            refused.append(f"nft refused {state.folder / name}: {exc}")
            continue
        if name == SAVED:
            return Loaded(ExitCode.OK, f"loaded {state.folder / name}")
        return Loaded(ExitCode.FALLBACK, "; ".join(refused) + (
            f"; loaded the fallback {state.folder / name} instead: only management SSH "
            "is let in; `mailpubc apply POLICY` loads a policy again"))
    table = _table(state)
    from .generate import text as generate     # jinja2: only when it comes to this
    try:
        nft.load(generate.generate(plan.lockdown(table)))
    except nft.NftError as exc:
        return Loaded(ExitCode.NOTHING, "; ".join(refused) + (
            f"; nft refused the lockdown too: {exc}; no mailpubc firewall is loaded"))
    return Loaded(ExitCode.FALLBACK, "; ".join(refused) + (
        f"; loaded the lockdown (table inet {table}): nothing is let in, SSH neither; "
        "`mailpubc apply POLICY` at the console loads a policy again"))


def _table(state: State) -> str:
    """The table apply recorded in boot.json, if it still reads as a safe name."""
    try:
        return safe_name((state.read(DIGESTS) or {})["table"])
    except (OSError, ValueError, TypeError, KeyError):     # UnsafeText is a ValueError
        return DEFAULT_TABLE
