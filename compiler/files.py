"""Writing a file whole or not at all: the one atomic writer (the compiled
ruleset of `-o`, the graph, the state folder's files)."""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str, text: str, mode: int = 0o600) -> None:
    """A temporary file in the same folder (created afresh, 0600), written
    and synced, given `mode`, renamed over `path`, and the folder synced:
    readers see the old file or the new one, after a crash too. OSError as
    the system raises it; the temporary file never stays."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".mailpubc-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if mode != 0o600:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
