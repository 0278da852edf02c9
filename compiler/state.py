"""What `mailpubc apply` remembers, one folder per network namespace.

The host's state is in /var/lib/mailpubc (MAILPUBC_STATE_DIR overrides it,
which is what tests do), a named namespace's in BASE/netns/NAME, so work in
a test namespace never touches the host's record. The folder holds:

- `applied.nft`: the last ruleset that became final, for the boot unit to
  load with `nft -f`; written only once final (at once without --confirm,
  on confirmation with it), so a reboot out of a lockout loads a good one;
- `state.json`: what was applied (policy path, table, when);
- `pending.json`: an `apply --confirm` waiting for `mailpubc confirm`, with
  the exact previous state the rollback watcher restores;
- `outcome.json`: how the last confirmations ended (by token), for the
  waiting apply and the watcher, which take nothing else as an answer;
- `lock`: flock'ed by whoever changes the ruleset or these files.

Every file is replaced atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from .records import record

DEFAULT_BASE = "/var/lib/mailpubc"
BASE_VARIABLE = "MAILPUBC_STATE_DIR"


class LockHeld(Exception):
    """Another mailpubc process is changing this namespace's ruleset."""


class StateError(Exception):
    """The state folder cannot be used (a file where a folder must be): the
    caller's to fix, a usage error."""


@record
class State:
    folder: Path

    @staticmethod
    def of(netns: Optional[str]) -> "State":
        base = Path(os.environ.get(BASE_VARIABLE) or DEFAULT_BASE)
        return State(base / "netns" / netns if netns else base)

    @property
    def applied_path(self) -> Path:
        return self.folder / "applied.nft"

    @contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold this namespace's lock; LockHeld at once when another process
        holds it, unless `wait`. The kernel drops it when the holder dies."""
        self._make()
        with open(self.folder / "lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise LockHeld(f"another mailpubc process holds {self.folder / 'lock'}") \
                        from exc
                raise
            yield

    def read(self, name: str) -> Optional[dict]:
        """`NAME.json`, or None when there is none."""
        try:
            return json.loads((self.folder / f"{name}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unusable(exc) from exc

    def write(self, name: str, data: dict) -> None:
        self.write_file(f"{name}.json", json.dumps(data, indent=1, sort_keys=True) + "\n")

    def remove(self, name: str) -> None:
        try:
            (self.folder / f"{name}.json").unlink()
        except FileNotFoundError:
            pass

    def write_file(self, name: str, text: str, mode: int = 0o600) -> None:
        """Temporary file, fsync, rename: readers see the old file or the new one."""
        self._make()
        fd, temporary = tempfile.mkstemp(prefix=".mailpubc-", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, self.folder / name)
        except BaseException:
            os.unlink(temporary)
            raise

    def _make(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from exc

    def _unusable(self, exc: OSError) -> StateError:
        """Names the file standing where a folder must be, when that is why."""
        blocking = next((path for path in (self.folder, *self.folder.parents)
                         if path.exists() and not path.is_dir()), None)
        why = f"{blocking} is not a folder" if blocking else f"{exc.filename}: {exc.strerror}"
        return StateError(f"cannot use the state folder {self.folder}: {why} "
                          f"({BASE_VARIABLE} sets another)")
