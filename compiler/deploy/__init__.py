"""Putting a compiled policy to work: apply, confirm or roll back, diff, reapply.

`apply` loads the compiled ruleset in one nft transaction, which nft applies
whole or not at all. Into that same transaction go the elements operators
added at run time to the table's timeout sets (`dynamic_block`: a reload
must not unban anyone), with their remaining timeouts, and, when
`firewall.table` was renamed, the deletion of the table applied before.
Only those tables change; nft leaves every other table as it was.
`apply --confirm S` arms a rollback first (`deploy.confirm`).

Meters (the sets `limit` rules fill) are the part of a table no load can
keep: nft lists each source a meter tracks, but not the state the kernel
keeps for it (the tokens left of its burst, the connections it holds), and
an element loaded back starts afresh. So every load, `apply` as well as a
rollback, starts the limits afresh: a rollback restores the meters as the
saved listing holds them, each source with a full budget, exactly as if
that table had been applied again. Meters are never carried from one table
to the next (`transaction.carried_sets`); which sets are meters, only the
plan can tell.

The package, by job: `transaction` (what one load does, as data: printed by
`generate.text.transaction_text`), `confirm` (the confirm/rollback protocol),
`guard` (what apply checks before it loads), `diff`; nft listings are read
through `mailpubc.listing`. State lives in `mailpubc.state`; nft is reached
only through `mailpubc.nft`. Nothing here prints: the command line reports
the `Outcome`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from .. import api, bridges, nft
from ..diagnostics import ExitCode
from ..generate.text import transaction_text
from ..listing import Listing
from ..state import LockHeld, State
from ..vocab import TABLE_FAMILY
from .confirm import (Outcome, arm, await_confirmation, conclude, confirm, confirm_command,
                      finish, outcome_of, pending_of, rollback, watch)
from .diff import Difference, diff, normalise, rules_match, unchanged
from .guard import foreign_drop_chains, live_warnings, ssh_guard
from .transaction import (applying, carried_sets, changing_sets, large_sets, listed_early,
                          live, renamed_from, with_whole_sets)

if TYPE_CHECKING:
    from ..api import Result

__all__ = ["Difference", "Outcome", "Refused", "apply", "applied_policy",
           "await_confirmation", "carried_sets", "changing_sets", "confirm", "diff",
           "foreign_drop_chains", "listed_early", "live_warnings", "normalise", "outcome_of",
           "reapply", "rollback", "rules_match", "ssh_guard", "unchanged", "watch"]


class Refused(Exception):
    """apply does not go ahead (exit 2): lock held, a confirmation pending, lockout guard."""


def apply(result: Result, *, netns: Optional[str] = None, confirm: Optional[float] = None,
          force: bool = False, policy_path: Optional[str] = None,
          environ=os.environ) -> Outcome:
    """Load the compiled policy; with `confirm`, arm the rollback watcher
    first and return the pending token (see `await_confirmation`). Raises
    Refused, nft.NftError (nothing changed) or PolicyError; nft.NoNamespace
    or state.StateError (usage) before anything is written."""
    ruleset = result.or_raise().ruleset
    nft.require_netns(netns)
    state = State.of(netns)
    try:
        with state.lock():
            _refuse_unless_clear(state, result, netns, force, environ)
            listing = live(netns)
            old = renamed_from(state, listing, ruleset.table)
            listing = with_whole_sets(listing, netns, [(name, carried_sets(ruleset)) for name
                                                       in [ruleset.table] + ([old] if old else [])])
            warnings = tuple(foreign_drop_chains(listing, ruleset.table, [old] if old else [])
                             + bridges.warnings(result.policy.firewall, netns))
            text = transaction_text(applying(result.text, ruleset, listing, old))
            _dry_run(text, netns)
            record = {"policy": policy_path, "digest": result.digest, "table": ruleset.table,
                      "large_sets": large_sets(ruleset)}
            if confirm is None:
                return _load_final(state, result, text, record, warnings, netns)
            return _load_pending(state, result, text, record, warnings, netns, confirm,
                                 listing, [ruleset.table] + ([old] if old else []))
    except LockHeld as exc:
        raise Refused(f"{exc}; try again when it is done") from exc


def _refuse_unless_clear(state: State, result: Result, netns: Optional[str], force: bool,
                         environ) -> None:
    """Refused while a confirmation is pending, or when the lockout guard
    (asked only for the host's own ruleset, unless forced) says no."""
    if pending_of(state):
        raise Refused(f"a confirmation is pending ({state.folder}): run "
                      f"`{confirm_command(netns)}`, or wait for its rollback")
    if netns is None and not force:
        why = ssh_guard(result, environ.get("SSH_CONNECTION"))
        if why:
            raise Refused(why)


def _dry_run(text: str, netns: Optional[str]) -> None:
    checked = nft.dry_run(text, netns=netns)
    if not (checked.ran and checked.ok):
        raise nft.NftError(checked.message)


def _load_final(state: State, result: Result, text: str, record: dict,
                warnings: tuple[str, ...], netns: Optional[str]) -> Outcome:
    nft.load(text, netns=netns)
    finish(state, result.text, result.fallback_text, record)
    return Outcome(ExitCode.OK, f"applied table {TABLE_FAMILY} {record['table']}", warnings=warnings)


def _load_pending(state: State, result: Result, text: str, record: dict,
                  warnings: tuple[str, ...], netns: Optional[str], seconds: float,
                  listing: Listing, tables: list[str]) -> Outcome:
    """Arm the rollback of `tables`, then load: a load nft refuses ends the pending apply."""
    token = arm(state, netns, seconds, listing, tables, carried_sets(result.ruleset),
                result.text, result.fallback_text, record)
    try:
        nft.load(text, netns=netns)
    except nft.NftError as exc:
        conclude(state, token, ExitCode.NFT, f"nft refused the ruleset: {exc}")
        raise
    return Outcome(ExitCode.OK, f"applied table {TABLE_FAMILY} {record['table']}; rolled back in "
                   f"{seconds:g}s unless confirmed (`{confirm_command(netns)}`)",
                   token, warnings)


def applied_policy(netns: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """The policy file the last final apply came from, and the SHA-256 of
    the text it read there, if recorded."""
    recorded = State.of(netns).read("state") or {}
    return recorded.get("policy"), recorded.get("digest")


def reapply(netns: Optional[str] = None) -> tuple[Optional[Result], Outcome]:
    """Compile the policy last made final again and apply it if the ruleset it
    gives differs from the live one: schedules bake in their zone's UTC
    offset, so a daylight saving change calls for this, and list files it
    names are read afresh. Only the very text that was made final: a policy
    file edited since, or replaced by one an unconfirmed apply rolled back,
    is refused and nothing is loaded (the timer runs this unattended, where
    no lockout guard asks)."""
    path, digest = applied_policy(netns)
    if path is None:
        return None, Outcome(ExitCode.OK, "nothing applied yet (or from stdin): nothing to reapply")
    early = listed_early(netns)
    result = api.compile_path(path)
    if digest is None or result.digest != digest:
        return None, Outcome(ExitCode.REFUSED, f"{path}: the policy changed since it was applied: "
                             f"run `mailpubc apply {path}`; nothing loaded")
    if not result.ok:
        return result, Outcome(ExitCode.INVALID, f"{path} no longer compiles; nothing changed")
    same = unchanged(result, netns, early)
    del early       # a block list as listed: apply needs the memory more
    if same:
        return result, Outcome(ExitCode.OK, f"{path}: unchanged")
    return result, apply(result, netns=netns, policy_path=path)
