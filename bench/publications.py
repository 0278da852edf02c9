#!/usr/bin/env python3
"""Benchmark: the rules a new connection walks, against the number of publications.

    python3 bench/publications.py [P ...]      (default: 1 50 500)

For each P it compiles a policy of P published address x service pairs
(five TCP services an external address, each address its own server) and
asks `explain` for a new connection from outside to the last pair
published: the rules it was tried against in prerouting and in forward,
each with the chain its verdict map jumped to (`Explanation.walked`, counted
on the plan, which the generated ruleset prints rule for rule). It does so
twice: as compiled (a verdict map beyond plan.DISPATCH_THRESHOLD pairs) and
with dispatch turned off (one rule a pair, as before), and times `nft -c` of
each output (median of 3, in a private network namespace; needs root).
Nothing here asserts anything: it prints figures.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone

from mailpubc import api, plan
from mailpubc.explain import Explainer
import sizes

SERVICES = ("smtp", "submission", "imaps", "pop3s", "imap")
PORTS = {"smtp": 25, "submission": 587, "imaps": 993, "pop3s": 995, "imap": 143}


def policy(pairs: int) -> tuple[str, str]:
    """The policy text, and the destination of its last pair (ADDR:PORT)."""
    addresses = -(-pairs // len(SERVICES))
    lines = ["version: 1", "firewall:", "  external:", "    interface: eth0",
             "    addresses: [" + ", ".join(f"198.51.100.{i + 1}" for i in range(addresses)) + "]",
             "  internal:", "    interface: eth1", "    networks: [10.1.0.0/16]", "publish:"]
    left = pairs
    for i in range(addresses):
        services = SERVICES[:min(left, len(SERVICES))]
        left -= len(services)
        lines += [f"  - name: pub{i + 1}", f"    server: 10.1.{i // 250}.{i % 250 + 1}",
                  f"    external_address: 198.51.100.{i + 1}",
                  f"    services: [{', '.join(services)}]"]
    return "\n".join(lines) + "\n", f"198.51.100.{addresses}:{PORTS[services[-1]]}"


def walked(result: api.Result, destination: str) -> dict[str, int]:
    """Rules tried per hook: each base chain with the chains it jumped to."""
    answer = Explainer(result.ruleset, datetime.now(timezone.utc)).explain(
        "203.0.113.7", destination, "tcp")
    assert answer.verdict == "accept", answer.text()
    counts = {"prerouting": 0, "forward": 0}
    for chain, count in answer.walked:
        hook = chain.rsplit("_", 1)[0] if chain[-1].isdigit() else chain
        if hook in counts:
            counts[hook] += count
    return counts


def nft_check(text: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as out:
        out.write(text)
        out.flush()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(["unshare", "-n", "nft", "-c", "-f", out.name], check=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(pair_counts: list[int]) -> None:
    print(f"threshold: {plan.DISPATCH_THRESHOLD} pairs a chain\n")
    print("| P | form | rules walked: prerouting | forward | rules in the ruleset | nft -c |")
    print("| --- | --- | --- | --- | --- | --- |")
    for pairs in pair_counts:
        text, destination = policy(pairs)
        compiled = api.compile_text(text, f"p{pairs}.yaml").or_raise()
        for form, limit in (("dispatch", plan.DISPATCH_THRESHOLD), ("one rule a pair", 10 ** 9)):
            result = dataclasses.replace(
                compiled, ruleset=plan.plan(compiled.policy, dispatch_threshold=limit))
            counts = walked(result, destination)
            rules = sum(len(chain.rules) for chain in result.ruleset.chains)
            print(f"| {pairs} | {form} | {counts['prerouting']} | {counts['forward']} | "
                  f"{rules} | {nft_check(result.text):.3f} s |")


if __name__ == "__main__":
    main(sizes.from_command_line(__doc__, [1, 50, 500], metavar="P"))
