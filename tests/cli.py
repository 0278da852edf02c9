"""Running the `mailpubc` command as users do: a real subprocess."""

import subprocess
import sys


def run_mailpubc(*args, timeout: float = 120, **options) -> subprocess.CompletedProcess:
    """`python -m mailpubc ARGS` with output captured as text; `options` go to subprocess.run."""
    return subprocess.run([sys.executable, "-m", "mailpubc", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **options)
