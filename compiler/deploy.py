"""Putting a compiled policy to work: apply, confirm or roll back, diff, reapply.

`apply` loads the compiled ruleset in one nft transaction, which nft applies
whole or not at all. Into that same transaction go the elements operators
added at run time to the table's timeout sets (`dynamic_block`: a reload
must not unban anyone), with their remaining timeouts, and, when
`firewall.table` was renamed, the deletion of the table applied before.
Only those tables change; nft leaves every other table as it was.

`apply --confirm S` first records the exact previous state (each table's
`nft list table` text, or its absence) in the state folder and starts a
detached watcher (its own session: no SIGHUP from a dropped SSH session,
and a SIGKILL of apply does not reach it). The watcher keeps that record
from its start, and unless an outcome with its token (written by `confirm`)
comes first, restores that state after S seconds, again in one transaction
that carries the run-time elements back: a lost state folder is no answer.

Meters (the sets `limit` rules fill) are the part of a table no load can
keep: nft lists each source a meter tracks, but not the state the kernel
keeps for it (the tokens left of its burst, the connections it holds), and
an element loaded back starts afresh. So every load, `apply` as well as a
rollback, starts the limits afresh: a rollback restores the meters as the
saved listing holds them, each source with a full budget, exactly as if
that table had been applied again. Meters are never carried from one table
to the next (`carried_sets`); which sets are meters, only the plan can tell.

State lives in `mailpubc.state`; nft is reached only through `mailpubc.nft`.
Nothing here prints: the command line reports the `Outcome`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import select
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, TextIO

from . import api, boot, bridges, nft, plan
from .addresses import Address
from .explain import Explainer, describe, parse_destination
from .generate import safe_name
from .records import record
from .state import LockHeld, State

EXIT_OK, EXIT_INVALID, EXIT_REFUSED, EXIT_NFT, EXIT_ROLLED_BACK = 0, 1, 2, 3, 4
FAMILY = "inet"
POLL_SECONDS = 0.2
OUTCOMES_KEPT = 32      # a watcher polling every POLL_SECONDS finds its own among them
GRACE_SECONDS = 10      # a waiting apply rolls back itself when the watcher is this late
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class Refused(Exception):
    """apply does not go ahead (exit 2): lock held, a confirmation pending, lockout guard."""


@record
class Outcome:
    status: int                         # one of the EXIT_ codes
    message: str
    token: Optional[str] = None         # set while a confirmation is pending
    warnings: tuple[str, ...] = ()


@record
class Difference:
    same: bool
    before: str                         # readable listings of the live tables and of the policy
    after: str
    text: str                           # unified diff of the two, "" when same


# -- pure parts: guard, warnings, transactions ---------------------------------

def ssh_guard(result: api.Result, ssh_connection: Optional[str],
              at: Optional[datetime] = None) -> Optional[str]:
    """Why loading the compiled policy would lock out the SSH client named in
    SSH_CONNECTION ("CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT"), or None
    when it lets the client's next login in. explain's evaluator, which the
    end-to-end suite holds to the kernel, walks a new connection from the
    client to the address (one of this host's) and port it reached. The
    session itself survives only where conntrack tracked it before the load:
    elsewhere its next packet is a new connection too."""
    if not ssh_connection:
        return None
    try:
        client, _, server, port = ssh_connection.split()
        client, server = _unmapped(client), _unmapped(server)
        destination = f"[{server}]:{port}" if server.version == 6 else f"{server}:{port}"
        explainer = Explainer(result.policy, result.ruleset, at or datetime.now(timezone.utc),
                              local=[server])
        answer = explainer.explain(str(client), destination, "tcp")
    except ValueError:      # QueryError too: a port or a pair of families explain refuses
        return f"cannot read SSH_CONNECTION {ssh_connection!r}; use --force to apply anyway"
    session = "this session survives only if conntrack already tracks it"
    if answer.verdict != "accept":
        if answer.origin is not None and answer.origin.kind == "block":
            return (f"refusing to apply: {client}, the address this SSH session comes from, "
                    f"is in {answer.origin.name}, which drops its new connections, so your "
                    f"next login would be refused ({session}); use --force")
        return (f"refusing to apply: no rule lets in {client}, the address this SSH session "
                f"comes from (port {port}): {describe(answer.origin, answer.chain)} would "
                f"{answer.verdict} your next login ({session}); add it to "
                "firewall.management.ssh, or use --force")
    if parse_destination(answer.translated_destination, "tcp") != (server, int(port)):
        translation = next(step for step in answer.steps
                           if step.action.startswith(("dnat", "redirect")))
        return (f"refusing to apply: a new SSH connection from {client} to {destination} "
                f"would go to {answer.translated_destination} ({describe(translation.origin)}), "
                "not to this host's sshd, so it would lock you out; use --force")
    return None


def _unmapped(text: str) -> Address:
    """An address of SSH_CONNECTION without its zone; an IPv4-mapped one is the
    IPv4 address its packets carry (a dual-stack sshd reports it so)."""
    address = ipaddress.ip_address(text.split("%")[0])
    return address.ipv4_mapped or address if address.version == 6 else address


# what a drop base chain of another family drops, and with it what our table accepts
DROPPED_WITH = {"arp": "ARP, and with it every IPv4 connection",
                "bridge": "the frames of its bridge's ports, and with them what",
                "netdev": "all of its device's traffic, and with it what"}


def foreign_drop_chains(listing: list, table: str, replaced: Iterable[str] = ()) -> list[str]:
    """Warnings for base chains of other tables (not `table`, nor the tables
    apply `replaced`) with policy drop, of any family, type and hook: a packet
    must pass every base chain on its way, so each drops what our table
    accepts, and in the families of DROPPED_WITH more than that."""
    ours = {(FAMILY, name) for name in (table, *replaced)}
    found = []
    for entry in listing:
        chain = entry.get("chain")
        if (chain and chain.get("hook") and chain.get("policy") == "drop"
                and (chain["family"], chain["table"]) not in ours):
            devices = chain.get("dev") or []        # nft after 1.0.6: a name or a list
            devices = [devices] if isinstance(devices, str) else devices
            on = f" of device {', '.join(devices)}" if devices else ""
            found.append(f"table {chain['family']} {chain['table']} chain {chain['name']} "
                         f"drops on hook {chain['hook']}{on} (policy drop): it drops "
                         f"{DROPPED_WITH.get(chain['family'], 'what')} "
                         f"table {FAMILY} {table} accepts")
    return found


def carried_sets(ruleset: plan.Ruleset) -> list[str]:
    """The sets of the plan whose elements operators add at run time
    (dynamic_block's: flags timeout). Meters, the sets the rules fill (flags
    dynamic), are not: nft lists a meter's elements but not the state the
    kernel keeps in each (the tokens a source has left, the connections it
    holds), and an element put back by `add element` has no limit of its
    own, so the meter rule would turn its source away at every retry, each
    retry renewing it. Only the plan can tell them apart: nft 1.0.6 lists
    `flags dynamic, timeout` as ["timeout"] and `flags dynamic` as none."""
    return [s.name for s in ruleset.sets if "timeout" in s.flags and "dynamic" not in s.flags]


def changing_sets(ruleset: plan.Ruleset) -> set[str]:
    """The sets of the plan whose elements change by themselves: the
    operators' run-time sets and the meters."""
    return {s.name for s in ruleset.sets if {"timeout", "dynamic"} & set(s.flags)}


def carry_commands(listing: list, source: str, target: str, names: Iterable[str]) -> str:
    """nft commands that give each named set of table `target` the elements
    the same set holds live in table `source`, with their remaining
    timeouts. A set not in `source` is left as it is."""
    live = {e["set"]["name"]: e["set"] for e in listing
            if "set" in e and (e["set"]["family"], e["set"]["table"]) == (FAMILY, source)}
    lines = []
    for name in names:
        if name not in live:
            continue
        lines.append(f"flush set {FAMILY} {safe_name(target)} {safe_name(name)}\n")
        elements = [text for element in live[name].get("elem", ())
                    if (text := _element(element, live[name].get("timeout"))) is not None]
        if elements:
            lines.append(f"add element {FAMILY} {safe_name(target)} {safe_name(name)} "
                         f"{{ {', '.join(elements)} }}\n")
    return "".join(lines)


def _element(element, set_timeout: Optional[int]) -> Optional[str]:
    """One listed element as nft element text; None if it is about to expire."""
    inner = element.get("elem", {}) if isinstance(element, dict) else {}
    value = inner.get("val", element)
    if isinstance(value, str):
        text = str(ipaddress.ip_address(value))
    elif "prefix" in value:
        text = str(ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}"))
    else:
        low, high = map(ipaddress.ip_address, value["range"])
        text = f"{low}-{high}"
    expires = inner.get("expires")
    if expires is None:
        return text
    if expires < 1:
        return None
    return f"{text} timeout {inner.get('timeout', set_timeout or expires)}s expires {expires}s"


def _replace(table: str) -> str:
    """Declare, then delete: the delete never fails, whether the table exists or not."""
    return f"table {FAMILY} {safe_name(table)}\ndelete table {FAMILY} {safe_name(table)}\n"


def _has_table(listing: list, table: str) -> bool:
    return any(e.get("table", {}).get("family") == FAMILY and e["table"]["name"] == table
               for e in listing if "table" in e)


def _timeout_sets(listing: list, table: str) -> set[str]:
    """The sets of `table` in the listing that take elements with timeouts."""
    return {e["set"]["name"] for e in listing
            if "set" in e and (e["set"]["family"], e["set"]["table"]) == (FAMILY, table)
            and "timeout" in e["set"].get("flags", ())}


def transaction(text: str, ruleset: plan.Ruleset, listing: list, old: Optional[str]) -> str:
    """The compiled ruleset, the deletion of the renamed-away table `old`, and
    the run-time elements of the live table (or of `old`): one nft file."""
    table = ruleset.table
    parts = [text]
    if old:
        parts.append(_replace(old))
    source = table if _has_table(listing, table) else old
    if source:
        parts.append(carry_commands(listing, source, table, carried_sets(ruleset)))
    return "".join(parts)


def restore_text(pending: dict, listing: list) -> str:
    """The transaction that brings back the state recorded in `pending`:
    each recorded table deleted and its saved listing loaded again, with the
    run-time elements the new table holds now in the sets `_arm` chose (its
    operators' sets, never its meters)."""
    previous = pending["previous"]
    parts = [_replace(name) for name in sorted(previous)]
    for name in sorted(previous):
        saved = previous[name]
        if saved["text"] is not None:
            parts.append(saved["text"])
            parts.append(carry_commands(listing, pending["table"], name, saved["carried"]))
    return "".join(parts)


# -- apply, confirm, roll back ----------------------------------------------------

def live_warnings(table: str, netns: Optional[str] = None) -> list[str]:
    """foreign_drop_chains of the live ruleset; the table apply recorded last
    is not foreign (a rename deletes it)."""
    recorded = (State.of(netns).read("state") or {}).get("table")
    return foreign_drop_chains(nft.list_ruleset(netns)["nftables"], table,
                               [recorded] if recorded else [])


def apply(result: api.Result, *, netns: Optional[str] = None, confirm: Optional[float] = None,
          force: bool = False, policy_path: Optional[str] = None,
          environ=os.environ) -> Outcome:
    """Load the compiled policy; with `confirm`, arm the rollback watcher
    first and return the pending token (see `await_confirmation`). Raises
    Refused, nft.NftError (nothing changed) or PolicyError; nft.NoNamespace
    or state.StateError (usage) before anything is written."""
    ruleset = result.or_raise().ruleset
    table = ruleset.table
    nft.require_netns(netns)
    state = State.of(netns)
    try:
        with state.lock():
            if _pending(state):
                raise Refused(f"a confirmation is pending ({state.folder}): run "
                              f"`{_confirm_command(netns)}`, or wait for its rollback")
            if netns is None and not force:
                why = ssh_guard(result, environ.get("SSH_CONNECTION"))
                if why:
                    raise Refused(why)
            listing = nft.list_ruleset(netns)["nftables"]
            recorded = (state.read("state") or {}).get("table")
            old = recorded if recorded != table and recorded and _has_table(listing, recorded) \
                else None
            warnings = tuple(foreign_drop_chains(listing, table, [old] if old else [])
                             + bridges.warnings(result.policy.firewall, netns))
            text = transaction(result.text, ruleset, listing, old)
            checked = nft.dry_run(text, netns=netns)
            if not (checked.ran and checked.ok):
                raise nft.NftError(checked.message)
            record = {"policy": policy_path, "digest": result.digest, "table": table}
            if confirm is None:
                nft.load(text, netns=netns)
                _finish(state, result.text, result.fallback_text, record)
                return Outcome(EXIT_OK, f"applied table {FAMILY} {table}", warnings=warnings)
            token = _arm(state, netns, confirm, listing, [table] + ([old] if old else []),
                         carried_sets(ruleset), result.text, result.fallback_text, record)
            try:
                nft.load(text, netns=netns)
            except nft.NftError as exc:
                _conclude(state, token, EXIT_NFT, f"nft refused the ruleset: {exc}")
                raise
            return Outcome(EXIT_OK, f"applied table {FAMILY} {table}; rolled back in "
                           f"{confirm:g}s unless confirmed (`{_confirm_command(netns)}`)",
                           token, warnings)
    except LockHeld as exc:
        raise Refused(f"{exc}; try again when it is done") from exc


def _confirm_command(netns: Optional[str]) -> str:
    """How a user confirms the pending apply in `netns`: said wherever no terminal is asked."""
    return "mailpubc confirm" + (f" --netns {netns}" if netns else "")


def _boot_id() -> str:
    return BOOT_ID.read_text().strip()


def _pending(state: State) -> Optional[dict]:
    """The pending confirmation; one from before a reboot is void (the boot
    loads applied.nft, the last final ruleset) and is removed."""
    pending = state.read("pending")
    if pending and pending["boot"] != _boot_id():
        state.remove("pending")
        return None
    return pending


def _arm(state: State, netns: Optional[str], seconds: float, listing: list,
         tables: list[str], carried: list[str], text: str, fallback: str,
         record: dict) -> str:
    """Record the tables' state as they are now, then start the watcher with
    that record on its standard input: it holds it from its first instant.
    A rollback carries back the elements of the new plan's run-time sets
    (`carried`) that a saved table has as timeout sets (`add element ...
    timeout` fails on any other); a meter never, though it too lists as a
    timeout set."""
    token = uuid.uuid4().hex
    previous = {name: {"text": (nft.list_text(f"table {FAMILY} {safe_name(name)}", netns)
                                if _has_table(listing, name) else None),
                       "carried": [n for n in carried if n in _timeout_sets(listing, name)]}
                for name in tables}
    pending = {"token": token, "boot": _boot_id(), "deadline": time.monotonic() + seconds,
               "table": tables[0], "previous": previous, "applied": text, "fallback": fallback,
               "record": record}
    state.write("pending", pending)
    watcher = subprocess.Popen([sys.executable, "-m", "mailpubc", "rollback-watch",
                                *(["--netns", netns] if netns else []), token],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True,
                               close_fds=True)
    try:
        with watcher.stdin:
            watcher.stdin.write(json.dumps(pending).encode())
    except BrokenPipeError:
        state.remove("pending")     # no watcher: nothing is loaded without one
        raise
    return token


def _finish(state: State, text: str, fallback: str, record: dict) -> None:
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
        pending = _pending(state)
        if not pending:
            return False
        _finish(state, pending["applied"], pending["fallback"], pending["record"])
        _conclude(state, pending["token"], EXIT_OK,
                  f"confirmed table {FAMILY} {pending['table']}")
        return True


def _conclude(state: State, token: str, status: int, message: str) -> None:
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
        pending = _pending(state)
        if not pending or pending["token"] != token:
            pending = held
        if not pending:
            return
        try:
            nft.load(restore_text(pending, nft.list_ruleset(netns)["nftables"]), netns=netns)
            outcome = (EXIT_ROLLED_BACK, "not confirmed: restored the previous state of "
                       f"table {FAMILY} {pending['table']}")
        except nft.NftError as exc:
            outcome = (EXIT_NFT, f"not confirmed, and the rollback failed: {exc}")
        _conclude(state, token, *outcome)


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
        return Outcome(EXIT_ROLLED_BACK, "the pending confirmation vanished; check the ruleset")
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


# -- diff and reapply ------------------------------------------------------------

def normalise(listing: list, tables: Iterable[str], changing: Iterable[str]) -> list:
    """The listing's entries of our `tables`, without what changes by itself:
    handles, counter values, the elements of the `changing` sets
    (`changing_sets`: a meter's elements come and go with the clients, and
    nft's listing cannot tell a meter from a set the policy fills)."""
    changing = set(changing)
    ours = {(FAMILY, name) for name in tables}
    kept = []
    for entry in listing:
        (kind, value), = entry.items()
        owner = (value.get("family"), value.get("name" if kind == "table" else "table"))
        if kind == "metainfo" or owner not in ours:
            continue
        value = _zero_counters({k: v for k, v in value.items() if k != "handle"})
        if kind == "set" and value["name"] in changing:
            value.pop("elem", None)
        if kind == "counter":
            value.update(packets=0, bytes=0)
        kept.append({kind: value})
    return kept


def _zero_counters(value):
    if isinstance(value, dict):
        return {k: ({"packets": 0, "bytes": 0} if k == "counter" and isinstance(v, dict)
                    and "packets" in v else _zero_counters(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_zero_counters(v) for v in value]
    return value


def _readable(entries: list) -> str:
    """Normalised entries as nft lists them: loaded into a scratch namespace."""
    if not entries:
        return ""

    def listed() -> str:
        nft.load(json.dumps({"nftables": entries}), json=True)
        return nft.list_text("ruleset")
    return nft.scratch(listed)


def diff(result: api.Result, netns: Optional[str] = None) -> Difference:
    """What `apply` would change: the live table (and a recorded table a
    rename would delete) against the policy's, as nft lists them."""
    table = result.or_raise().ruleset.table
    live = nft.list_ruleset(netns)["nftables"]
    recorded = (State.of(netns).read("state") or {}).get("table")
    tables = {table} | ({recorded} if recorded and _has_table(live, recorded) else set())
    before, after = _compared(result, live, tables)
    after_text = _readable(after)
    if before == after:
        return Difference(True, after_text, after_text, "")
    before_text = _readable(before)
    where = f"live (netns {netns})" if netns else "live"
    text = "".join(difflib.unified_diff(before_text.splitlines(keepends=True),
                                        after_text.splitlines(keepends=True),
                                        fromfile=where, tofile=result.source))
    return Difference(False, before_text, after_text, text)


def _compared(result: api.Result, live: list, tables: Iterable[str]) -> tuple[list, list]:
    """The live entries of `tables` and the compiled ruleset's (loaded in a
    scratch namespace), both as `diff` compares them."""
    def candidate() -> list:
        nft.load(result.text)
        return nft.list_ruleset()["nftables"]
    changing = changing_sets(result.ruleset)
    return (normalise(live, tables, changing),
            normalise(nft.scratch(candidate), [result.ruleset.table], changing))


def live_matches(result: api.Result, netns: Optional[str] = None) -> bool:
    """Whether the live table is what the policy compiles to, as `diff` sees
    it; if not, it was applied from another policy or the policy changed since."""
    table = result.or_raise().ruleset.table
    before, after = _compared(result, nft.list_ruleset(netns)["nftables"], [table])
    return before == after


def applied_policy(netns: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """The policy file the last final apply came from, and the SHA-256 of
    the text it read there, if recorded."""
    recorded = State.of(netns).read("state") or {}
    return recorded.get("policy"), recorded.get("digest")


def reapply(netns: Optional[str] = None) -> tuple[Optional[api.Result], Outcome]:
    """Compile the policy last made final again and apply it if the ruleset it
    gives differs from the live one: schedules bake in their zone's UTC
    offset, so a daylight saving change calls for this, and list files it
    names are read afresh. Only the very text that was made final: a policy
    file edited since, or replaced by one an unconfirmed apply rolled back,
    is refused and nothing is loaded (the timer runs this unattended, where
    no lockout guard asks)."""
    path, digest = applied_policy(netns)
    if path is None:
        return None, Outcome(EXIT_OK, "nothing applied yet (or from stdin): nothing to reapply")
    result = api.compile_path(path)
    if digest is None or result.digest != digest:
        return None, Outcome(EXIT_REFUSED, f"{path}: the policy changed since it was applied: "
                             f"run `mailpubc apply {path}`; nothing loaded")
    if not result.ok:
        return result, Outcome(EXIT_INVALID, f"{path} no longer compiles; nothing changed")
    if diff(result, netns).same:
        return result, Outcome(EXIT_OK, f"{path}: unchanged")
    return result, apply(result, netns=netns, policy_path=path)
