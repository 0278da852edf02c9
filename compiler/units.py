"""systemd units for the host firewall: `mailpubc install-unit`.

`mailpubc.service` loads the ruleset that `mailpubc apply` last made final
(STATE/applied.nft) before the network comes up, so a reboot brings back the
last good firewall, never a half-confirmed one; when that file does not
match its digest, the fallback apply saved with it (`mailpubc.boot`). So
they are installed only once apply has saved both. `mailpubc-reapply.timer`
runs `mailpubc reapply` every quarter hour: schedules are compiled at the
zone's current UTC offset, and reapply loads again only when that changed.

The units are rendered from templates/ with absolute paths: the nft binary
found now, the state folder (MAILPUBC_STATE_DIR, else /var/lib/mailpubc), and
the Python that runs this mailpubc, so the timer uses the same installation
(a virtual environment included) as the admin who installed the units.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .datafiles import template_environment

if TYPE_CHECKING:   # mailpubc.state is imported by install(): every start's parser reads UNIT_DIR
    from pathlib import Path

    from .state import State

UNITS = ("mailpubc.service", "mailpubc-reapply.service", "mailpubc-reapply.timer")
UNIT_DIR = "/etc/systemd/system"


class UnitError(ValueError):
    """The units cannot be installed: a path a unit file cannot hold as it is,
    or nothing for the boot to load yet."""


def render(state: State, nft: str, command: list[str]) -> dict[str, str]:
    """Each unit's file name and text. `command` runs mailpubc (absolute paths)."""
    from .boot import FALLBACK
    env = template_environment()
    env.filters["word"] = _word
    values = {"state_dir": str(state.folder), "applied": str(state.applied_path),
              "fallback": str(state.folder / FALLBACK), "nft": nft, "command": command}
    return {name: env.get_template(f"{name}.j2").render(values) for name in UNITS}


def install(unit_dir: Path) -> list[Path]:
    """Write the units into `unit_dir` (made if missing); the paths written."""
    from .nft import SBIN_PATHS, binary
    nft = binary() or SBIN_PATHS[0]     # the unit may be installed before nftables
    from .state import State
    host = State(State.of(None).folder.absolute())    # the boot loads the host's ruleset
    texts = render(host, nft, [sys.executable, "-m", "mailpubc"])
    _require_saved(host)
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        path = unit_dir / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        written.append(path)
    return written


def _require_saved(state: State) -> None:
    """UnitError unless apply has saved a ruleset and its fallback that match
    their digests: without them the boot could load only the lockdown."""
    from .boot import FALLBACK, SAVED, verified
    for name in (SAVED, FALLBACK):
        text, why = verified(state, name)
        if text is None:
            raise UnitError(f"{why}; run `mailpubc apply POLICY` first: the boot unit "
                            "loads the ruleset it saves, or the fallback it saves with it")


def _word(value: str) -> str:
    """`value` as one word of a unit setting. Quotes, spaces, backslashes and `$`
    would each need systemd's own escaping rules, so they are refused; `%`,
    systemd's specifier sign, is doubled."""
    if any(c.isspace() or c in "\"'\\$" for c in value):
        raise UnitError(f"cannot write {value!r} into a systemd unit: "
                        "it holds a space, quote, backslash or $")
    return value.replace("%", "%%")
