"""What `mailpubc apply` remembers, one folder per network namespace.

The host's state is in /var/lib/mailpubc (MAILPUBC_STATE_DIR overrides it,
which is what tests do), a named namespace's in BASE/netns/NAME, so work in
a test namespace never touches the host's record. The folder holds:

- `applied.nft`: the last ruleset that became final, for the boot unit to
  load; written only once final (at once without --confirm, on
  confirmation with it), so a reboot out of a lockout loads a good one;
- `fallback.nft`, `boot.json`: written with it, the fallback the boot loads
  instead when applied.nft does not match its digest (`mailpubc.boot`);
- `state.json`: what was applied (policy path, table, when);
- `pending.json`: an `apply --confirm` waiting for `mailpubc confirm`, with
  the exact previous state the rollback watcher restores;
- `outcome.json`: how the last confirmations ended (by token), for the
  waiting apply and the watcher, which take nothing else as an answer;
- `lock`: flock'ed by whoever changes the ruleset or these files.

Every file is replaced atomically (temporary file, fsync, rename, fsync of
the folder). Local users must not be able to steer root through it (boot
loads applied.nft, reapply loads the recorded policy, the lock decides who
may roll back): under any umask the folders are 0700 and the files 0600,
every folder from the base down must be root's own (the running user's), a
real folder, not writable by others, and every file is opened without
following a symbolic link and must be the running user's own regular file.
Anything else is a StateError, a usage error: nothing is read or written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from .diagnostics import UsageError
from .files import write_atomically

DEFAULT_BASE = "/var/lib/mailpubc"
BASE_VARIABLE = "MAILPUBC_STATE_DIR"


FOLDER_MODE = 0o700
FILE_MODE = 0o600
NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class LockHeld(Exception):
    """Another mailpubc process is changing this namespace's ruleset."""


class StateError(UsageError):
    """The state folder cannot be used safely (or at all): a usage error."""


@dataclass(frozen=True, slots=True)
class State:
    folder: Path
    base: Optional[Path] = None     # where the checked folders start (default: folder itself)

    @staticmethod
    def of(netns: Optional[str]) -> "State":
        base = Path(os.environ.get(BASE_VARIABLE) or DEFAULT_BASE)
        return State(base / "netns" / netns if netns else base, base)

    @property
    def applied_path(self) -> Path:
        return self.folder / "applied.nft"

    @contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold this namespace's lock; LockHeld at once when another process
        holds it, unless `wait`. The kernel drops it when the holder dies.
        Only root can open it (0600 in a 0700 folder): flock needs no more
        than a read descriptor, so a lock others could open, others could hold."""
        self.make()
        descriptor = self._open("lock", os.O_RDWR | os.O_CREAT)
        try:
            os.fchmod(descriptor, FILE_MODE)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise LockHeld(f"another mailpubc process holds {self.folder / 'lock'}") \
                        from exc
                raise
            yield
        finally:
            os.close(descriptor)

    def read(self, name: str) -> Optional[dict]:
        """`NAME.json`, or None when there is none."""
        raw = self.read_bytes(f"{name}.json")
        return None if raw is None else json.loads(raw.decode("utf-8"))

    def read_bytes(self, name: str) -> Optional[bytes]:
        """A file of the folder, or None when there is none (or no folder)."""
        try:
            descriptor = self._open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(descriptor, "rb") as stream:
            return stream.read()

    def write(self, name: str, data: dict) -> None:
        self.write_file(f"{name}.json", json.dumps(data, indent=1, sort_keys=True) + "\n")

    def remove(self, name: str) -> None:
        try:
            (self.folder / f"{name}.json").unlink()
        except FileNotFoundError:
            pass

    def write_file(self, name: str, text: str) -> None:
        """Written whole or not at all (`files.write_atomically`), mode 0600."""
        self.make()
        write_atomically(str(self.folder / name), text)

    def make(self) -> None:
        """The folder and those above it down from the base, each made 0700
        or checked (and tightened to 0700) if it is there."""
        base = self.base or self.folder
        base.parent.mkdir(parents=True, exist_ok=True)
        below = (p for p in reversed(self.folder.parents) if base in p.parents)
        for path in dict.fromkeys([base, *below, self.folder]):
            try:
                os.mkdir(path, FOLDER_MODE)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StateError(f"cannot make the state folder {path}: {exc.strerror}") \
                    from exc
            self._check_folder(path)

    @staticmethod
    def _check_folder(path: Path) -> None:
        info = os.lstat(path)
        why = (stat.S_ISLNK(info.st_mode) and "is a symbolic link"
               or not stat.S_ISDIR(info.st_mode) and "is not a folder"
               or info.st_uid != os.geteuid() and f"belongs to uid {info.st_uid}, not to "
                                                  f"uid {os.geteuid()} (root)"
               or info.st_mode & 0o022 and "is writable by other users")
        if why:
            raise StateError(f"refusing the state folder {path}: it {why} "
                             f"({BASE_VARIABLE} names another)")
        if stat.S_IMODE(info.st_mode) != FOLDER_MODE:
            os.chmod(path, FOLDER_MODE)

    def _open(self, name: str, flags: int) -> int:
        """A descriptor of `name` in the folder, never through a symbolic
        link, checked to be the running user's own regular file."""
        path = self.folder / name
        try:
            descriptor = os.open(path, flags | NO_FOLLOW, FILE_MODE)
        except FileNotFoundError:
            raise
        except NotADirectoryError as exc:
            blocking = next(p for p in (self.folder, *self.folder.parents)
                            if p.exists() and not p.is_dir())
            raise StateError(f"refusing the state folder {blocking}: it is not a folder "
                             f"({BASE_VARIABLE} names another)") from exc
        except OSError as exc:
            why = "is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise StateError(f"refusing {path}: it {why}") from exc
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(descriptor)
            raise StateError(f"refusing {path}: not a regular file of uid {os.geteuid()}")
        return descriptor
