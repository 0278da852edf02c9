"""Python's cycle collector, held off where mailpubc makes many objects that live on."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def paused():
    """Python's cycle collector held off while a policy compiles (and, from
    the command line, while the command runs): a compile makes hundreds of
    thousands of objects that live until it ends (positions, intervals, plan
    parts) and few cycles, and each of the collector's passes walked them
    again: 1,000 publications took 220 ms to compile with it and 170 ms
    without (issue #22). It runs again after, as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
