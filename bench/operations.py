#!/usr/bin/env python3
"""Benchmark: what an operator runs every day, at block-list scale; print figures.

    sudo .venv/bin/python bench/operations.py [B]     (default: 200000)

In a network namespace of its own (removed afterwards) and a temporary state
folder: a policy whose `firewall.block` is a list file of B random networks
(bench/block_list.py's), applied, then 50,000 elements with timeouts added
to its `dynamic_block` set. Then, each as the command line runs it (a
process of its own: wall time and peak RSS), `apply` (the same policy
again, the elements carried), `diff`, `stats`, `reapply` (nothing
changed), the rollback of an `apply --confirm` (the rollback alone timed;
the RSS is its whole process's) and `reapply` once the list file holds
other networks; and
for reference, `nft -f` of the compiled ruleset followed by the elements
into the empty namespace, then the same checked (`nft -c -f`) and loaded
again where the table is live (what apply's dry run and load do: replacing
a table deletes its elements too), and one `nft -j list table` (what diff
and stats read at most).
"""

import ipaddress
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sizes
from block_list import POLICY, make_list

ELEMENTS = 50_000
# an unconfirmed apply, then its rollback alone timed (in the process that
# armed it, as the watcher would run it at the deadline)
ROLLBACK = """
import sys, time
from mailpubc import api, deploy
result = api.compile_path(sys.argv[2])
token = deploy.apply(result, netns=sys.argv[1], confirm=600).token
start = time.perf_counter()
deploy.rollback(sys.argv[1], token)
print(time.perf_counter() - start, file=sys.stderr)
"""


def timed(argv: list[str], stdin: str | None = None) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of one process; the time it prints last
    on standard error instead, when it prints one (the rollback)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if stdin:
        proc.stdin.write(stdin)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):     # diff exits 1 when it differs
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read()[-2000:]}")
    wall, said = time.perf_counter() - start, proc.stderr.read().split()
    try:
        wall = float(said[-1])
    except (IndexError, ValueError):
        pass
    return wall, usage.ru_maxrss / 1024


def elements() -> str:
    base = int(ipaddress.ip_address("100.64.0.0"))
    listed = ", ".join(f"{ipaddress.ip_address(base + 2 * i)} timeout 1h"
                       for i in range(ELEMENTS))
    return f"add element inet mailpub banned_v4 {{ {listed} }}\n"


def main(counts: list[int]) -> None:
    mailpubc = [sys.executable, "-m", "mailpubc"]
    for b in counts:
        netns = f"mp-{os.getpid()}-ops"
        with tempfile.TemporaryDirectory(prefix="mailpubc-ops-") as folder:
            os.environ["MAILPUBC_STATE_DIR"] = str(Path(folder, "state"))
            Path(folder, "drop.txt").write_text(make_list(b, random.Random(b)))
            policy = Path(folder, "policy.yaml")
            policy.write_text(POLICY)
            compiled = Path(folder, "rules.nft")
            subprocess.run(mailpubc + ["-o", str(compiled), str(policy)], check=True)
            subprocess.run(["ip", "netns", "add", netns], check=True, timeout=15)
            nft = ["ip", "netns", "exec", netns, "nft"]
            try:
                figures = {"nft -f ruleset + elements": timed(
                    nft + ["-f", "-"], compiled.read_text() + elements())}
                subprocess.run(nft + ["flush", "ruleset"], check=True)
                subprocess.run(mailpubc + ["apply", "--netns", netns, str(policy)], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run(nft + ["-f", "-"], input=elements(), text=True, check=True)
                figures["nft -j list table"] = timed(nft + ["-j", "list", "table", "inet",
                                                          "mailpub"])
                for name, check in (("nft -c -f", ["-c"]), ("nft -f", [])):
                    figures[f"{name} ruleset + elements, replacing the live table"] = timed(
                        nft + check + ["-f", "-"], compiled.read_text() + elements())
                for command in ("apply", "diff", "stats"):
                    figures[f"mailpubc {command}"] = timed(
                        mailpubc + [command, "--netns", netns, str(policy)])
                figures["mailpubc reapply, unchanged"] = timed(
                    mailpubc + ["reapply", "--netns", netns])
                figures["rollback of apply --confirm"] = timed(
                    [sys.executable, "-c", ROLLBACK, netns, str(policy)])
                Path(folder, "drop.txt").write_text(make_list(b, random.Random(b + 1)))
                figures["mailpubc reapply, the list file refreshed"] = timed(
                    mailpubc + ["reapply", "--netns", netns])
            finally:
                subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=15)
        print(f"### {b:,} networks in the list file, {ELEMENTS:,} run-time elements\n")
        print("| operation | wall s | peak RSS MB |\n| --- | ---: | ---: |")
        for name, (wall, rss) in figures.items():
            print(f"| {name} | {wall:.2f} | {rss:.0f} |")
        reference, listing = figures["nft -f ruleset + elements"][0], figures["nft -j list table"][0]
        replacing = figures["nft -f ruleset + elements, replacing the live table"][0]
        checked = figures["nft -c -f ruleset + elements, replacing the live table"][0] + replacing
        apply, rollback = figures["mailpubc apply"][0], figures["rollback of apply --confirm"][0]
        print(f"\n- apply: {apply / reference:.2f}× nft -f into an empty namespace, "
              f"{apply / replacing:.2f}× nft -f replacing the live table, {apply / checked:.2f}× "
              f"nft -c -f and nft -f replacing it (the dry run and load the contract names)\n"
              f"- rollback: {rollback / reference:.2f}× nft -f into an empty namespace, "
              f"{rollback / replacing:.2f}× nft -f replacing the live table\n"
              f"- diff: {figures['mailpubc diff'][0] / listing:.2f}× one listing; "
              f"stats: {figures['mailpubc stats'][0] / listing:.2f}× one listing\n")


if __name__ == "__main__":
    main(sizes.from_command_line(__doc__, [200_000], metavar="B"))
