"""The confirm/rollback protocol of `apply --confirm S`.

`arm` first records the exact previous state (each table's `nft list table`
text, or its absence) in the state folder and starts a detached watcher
(its own session: no SIGHUP from a dropped SSH session, and a SIGKILL of
apply does not reach it). The watcher keeps that record from its start,
and unless an outcome with its token (written by `confirm`) comes first,
restores that state after S seconds, again in one transaction that carries
the run-time elements back: a lost state folder is no answer. Each pending
apply ends in one outcome (`conclude`), which the waiting apply, the
watcher and `confirm` look up by token.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

from .. import boot, nft
from ..diagnostics import ExitCode
from ..generate import counter_name_ok, safe_name
from ..generate.text import transaction_text
from ..listing import Listing
from ..state import State
from ..vocab import TABLE_FAMILY
from .transaction import live, restoring, with_whole_sets

POLL_SECONDS = 0.2
OUTCOMES_KEPT = 32      # a watcher polling every POLL_SECONDS finds its own among them
GRACE_SECONDS = 10      # a waiting apply rolls back itself when the watcher is this late
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int                         # one of the EXIT_ codes
    message: str
    token: Optional[str] = None         # set while a confirmation is pending
    warnings: tuple[str, ...] = ()


def confirm_command(netns: Optional[str]) -> str:
    """How a user confirms the pending apply in `netns`: said wherever no terminal is asked."""
    return "mailpubc confirm" + (f" --netns {netns}" if netns else "")


def _boot_id() -> str:
    return BOOT_ID.read_text().strip()


def pending_of(state: State) -> Optional[dict]:
    """The pending confirmation; one from before a reboot is void (the boot
    loads applied.nft, the last final ruleset) and is removed."""
    pending = state.read("pending")
    if pending and pending["boot"] != _boot_id():
        state.remove("pending")
        return None
    return pending


def arm(state: State, netns: Optional[str], seconds: float, listing: Listing,
        tables: list[str], carried: list[str], text: str, fallback: str,
        record: dict) -> str:
    """Record the tables' state as they are now, then start the watcher with
    that record on its standard input: it holds it from its first instant.
    A rollback carries back the elements of the new plan's run-time sets
    (`carried`) that a saved table has as timeout sets (`add element ...
    timeout` fails on any other); a meter never, though it too lists as a
    timeout set. It records each counter of a saved table with its count, in
    the listing's order (those with names the text generator can print)."""
    token = uuid.uuid4().hex
    previous = {name: {"text": (nft.list_text(f"table {TABLE_FAMILY} {safe_name(name)}", netns)
                                if listing.has_table(name) else None),
                       "carried": [n for n in carried if n in listing.timeout_sets(name)],
                       "counters": {counter: [body["packets"], body["bytes"]]
                                    for counter, body in listing.counters(name).items()
                                    if counter_name_ok(counter)}}
                for name in tables}
    pending = {"token": token, "boot": _boot_id(), "deadline": time.monotonic() + seconds,
               "table": tables[0], "previous": previous, "applied": text, "fallback": fallback,
               "record": record}
    state.write("pending", pending)
    _start_watcher(state, netns, pending)
    return token


def _start_watcher(state: State, netns: Optional[str], pending: dict) -> None:
    watcher = subprocess.Popen([sys.executable, "-m", "mailpubc", "rollback-watch",
                                *(["--netns", netns] if netns else []), pending["token"]],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True,
                               close_fds=True)
    try:
        with watcher.stdin:
            watcher.stdin.write(json.dumps(pending).encode())
    except BrokenPipeError:
        state.remove("pending")     # no watcher: nothing is loaded without one
        raise


def finish(state: State, text: str, fallback: str, record: dict) -> None:
    """The ruleset is final: save it and its fallback for the boot, and what was applied."""
    boot.save(state, text, fallback, record["table"])
    state.write("state", {**record, "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime())})


def confirm(netns: Optional[str] = None) -> bool:
    """Make the pending apply final; False when none is pending. A `netns`
    that does not exist is NoNamespace, before any state folder is made."""
    nft.require_netns(netns)
    state = State.of(netns)
    with state.lock(wait=True):
        pending = pending_of(state)
        if not pending:
            return False
        finish(state, pending["applied"], pending["fallback"], pending["record"])
        conclude(state, pending["token"], ExitCode.OK,
                 f"confirmed table {TABLE_FAMILY} {pending['table']}")
        return True


def conclude(state: State, token: str, status: int, message: str) -> None:
    """End the pending apply `token`: its outcome joins the last few (the
    waiting apply and the watcher look for their own token there), and its
    pending record goes."""
    kept = [o for o in (state.read("outcome") or {}).get("outcomes", ()) if o["token"] != token]
    kept.append({"token": token, "status": status, "message": message})
    state.write("outcome", {"outcomes": kept[-OUTCOMES_KEPT:]})
    pending = state.read("pending")
    if pending and pending["token"] == token:
        state.remove("pending")


def outcome_of(state: State, token: str) -> Optional[dict]:
    """How the apply `token` ended ({"token", "status", "message"}), None while undecided."""
    return next((o for o in (state.read("outcome") or {}).get("outcomes", ())
                 if o["token"] == token), None)


def rollback(netns: Optional[str], token: str, held: Optional[dict] = None) -> None:
    """Restore the state recorded for `token` unless it was decided already;
    `held` is that record as read before, for when the state folder lost it."""
    state = State.of(netns)
    with state.lock(wait=True):
        if outcome_of(state, token):
            return
        pending = pending_of(state)
        if not pending or pending["token"] != token:
            pending = held
        if not pending:
            return
        try:
            listing = with_whole_sets(live(netns), netns, [(pending["table"], [
                name for saved in pending["previous"].values() for name in saved["carried"]])])
            nft.load(transaction_text(restoring(pending, listing)), netns=netns)
            outcome = (ExitCode.ROLLED_BACK, "not confirmed: restored the previous state of "
                       f"table {TABLE_FAMILY} {pending['table']}")
        except nft.NftError as exc:
            outcome = (ExitCode.NFT, f"not confirmed, and the rollback failed: {exc}")
        conclude(state, token, *outcome)


def watch(netns: Optional[str], token: str, held: dict) -> None:
    """The detached watcher, `held` the pending record apply gave it: roll
    back at the deadline unless an outcome for `token` came first. A pending
    record gone without one (the state folder deleted) is no confirmation."""
    state = State.of(netns)
    if held["token"] != token:
        return
    while outcome_of(state, token) is None:
        left = held["deadline"] - time.monotonic()
        if left <= 0:
            rollback(netns, token, held)
            return
        time.sleep(min(left, POLL_SECONDS))


def await_confirmation(token: str, netns: Optional[str] = None,
                       answers: Optional[TextIO] = None) -> Outcome:
    """Wait until the pending apply is confirmed or rolled back. With
    `answers` (a terminal, or a pipe), its first line decides: y confirms,
    anything else rolls back at once; at its end without a line, the wait
    goes on. Should the watcher be gone, this rolls back itself."""
    state = State.of(netns)
    held = state.read("pending")
    if not held or held["token"] != token:
        return Outcome(ExitCode.ROLLED_BACK, "the pending confirmation vanished; check the ruleset")
    line = b""
    while (outcome := outcome_of(state, token)) is None:
        if time.monotonic() > held["deadline"] + GRACE_SECONDS:
            rollback(netns, token, held)
        elif answers is not None and select.select([answers], [], [], POLL_SECONDS)[0]:
            # os.read, not readline: a writer that keeps a line open must not stop the wait
            chunk = os.read(answers.fileno(), 1024)
            line += chunk
            if b"\n" in line or not chunk:
                answers = None          # one line decides; its end without one does not
                if line.split(b"\n")[0].strip().lower() in (b"y", b"yes"):
                    confirm(netns)
                elif line:
                    rollback(netns, token, held)
        else:
            time.sleep(POLL_SECONDS)
    return Outcome(outcome["status"], outcome["message"])
