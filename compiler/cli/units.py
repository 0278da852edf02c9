"""`mailpubc install-unit` and `mailpubc boot-load` (what the boot unit runs)."""

from __future__ import annotations

import argparse

from ..diagnostics import ExitCode, UsageError
from .common import say



def add(commands) -> None:
    from .. import units
    install = commands.add_parser(
        "install-unit", help="install the systemd units (boot, daylight saving time)",
        description="Write mailpubc.service (loads the last applied ruleset at boot, or "
                    "its fallback; apply must have made one final first) and "
                    "mailpubc-reapply.service/.timer (applies again when the time zone's "
                    "offset changes); then: systemctl daemon-reload && systemctl enable "
                    "mailpubc.service mailpubc-reapply.timer")
    install.add_argument("--prefix", metavar="DIR", default=units.UNIT_DIR,
                         help=f"the folder for the unit files (default {units.UNIT_DIR})")
    install.set_defaults(run=install_units)
    boot_load = commands.add_parser(
        "boot-load", help="load the saved ruleset, or its fallback (mailpubc.service runs it)",
        description="Load the ruleset apply saved if it matches its digest; else the "
                    "fallback apply saved with it (management SSH only), else a lockdown. "
                    "Exit 0 the saved ruleset, 1 the fallback or the lockdown, 3 nothing.")
    boot_load.set_defaults(run=boot_load_ruleset)


def install_units(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import units
    try:
        written = units.install(Path(args.prefix))
    except (units.UnitError, OSError) as exc:
        raise UsageError(f"cannot install the units: {exc}") from exc
    for path in written:
        print(f"wrote {path}")
    print("now: systemctl daemon-reload && "
          "systemctl enable mailpubc.service mailpubc-reapply.timer")
    return ExitCode.OK


def boot_load_ruleset(args: argparse.Namespace) -> int:
    from .. import boot
    from ..state import State
    loaded = boot.load(State.of(None))
    say(loaded.message)
    return loaded.status
