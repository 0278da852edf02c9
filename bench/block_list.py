#!/usr/bin/env python3
"""Benchmark: a blocklist of N random IPv4 networks in a list file (Spamhaus
DROP layout, trailing `; SBL` comments); print the CLI's wall time with
`--no-nft-check` and with the default nft dry run.

    python3 bench/block_list.py [N ...]     (default: 100000)
"""

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sizes

POLICY = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  block: [drop_list]
  dynamic_block: banned
address_sets:
  drop_list: {file: drop.txt}
publish:
  - {name: mail, server: localhost, external_address: 198.51.100.10, services: [smtp]}
"""


def make_list(n: int, rng: random.Random) -> str:
    lines = ["; Spamhaus DROP List (random networks)"]
    for i in range(n):
        prefix = rng.randint(16, 32)
        value = rng.getrandbits(32) & ~((1 << (32 - prefix)) - 1)
        address = ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))
        lines.append(f"{address}/{prefix} ; SBL{i}")
    return "\n".join(lines) + "\n"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(counts: list[int]) -> None:
    for n in counts:
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "drop.txt").write_text(make_list(n, random.Random(n)))
            policy = Path(folder, "policy.yaml")
            policy.write_text(POLICY)
            command = [sys.executable, "-m", "mailpubc"]
            fast = timed(command + ["--no-nft-check", str(policy)])
            checked = timed(command + [str(policy)])
            print(f"{n} networks: {fast:.2f} s without the nft check, {checked:.2f} s with it")


if __name__ == "__main__":
    main(sizes.from_command_line(__doc__, [100_000]))
