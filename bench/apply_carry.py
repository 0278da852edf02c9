#!/usr/bin/env python3
"""Benchmark: `deploy.apply` with N run-time elements to carry; print figures.

    sudo .venv/bin/python bench/apply_carry.py [N ...]     (default: 0 1000 10000 50000)

In a network namespace of its own (removed afterwards) and a temporary state
folder: apply a policy with `dynamic_block`, add N elements with a timeout
to its IPv4 set, then time a second apply (listing, dry run, load with the
N elements carried), `diff`, and an armed `--confirm` apply rolled back by
`deploy.rollback`. Compiling is timed apart and left out.
"""

import ipaddress
import os
import shutil
import subprocess
import tempfile
import time

from mailpubc import api, deploy, nft
import sizes

POLICY = """version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  dynamic_block: banned
  management: {ssh: [192.0.2.0/28]}
publish:
  - {name: mail, server: localhost, external_address: 198.51.100.10, services: [smtp]}
"""


def timed(work):
    start = time.perf_counter()
    value = work()
    return time.perf_counter() - start, value


def run(n: int, result: api.Result, netns: str) -> None:
    deploy.apply(result, netns=netns)
    base = int(ipaddress.ip_address("100.64.0.0"))
    elements = ", ".join(f"{ipaddress.ip_address(base + i)} timeout 1h" for i in range(n))
    if n:
        nft.load(f"add element inet mailpub banned_v4 {{ {elements} }}\n", netns=netns)
    applied, _ = timed(lambda: deploy.apply(result, netns=netns))
    compared, difference = timed(lambda: deploy.diff(result, netns))
    outcome = deploy.apply(result, netns=netns, confirm=600)
    rolled, _ = timed(lambda: deploy.rollback(netns, outcome.token))
    kept = sum(1 for e in nft.list_ruleset(netns)["nftables"]
               if e.get("set", {}).get("name") == "banned_v4" for _ in e["set"].get("elem", ()))
    print(f"{n:>7} elements: apply {applied:6.3f} s, diff {compared:6.3f} s "
          f"(same: {difference.same}), rollback {rolled:6.3f} s, kept {kept}")


def main(counts: list[int]) -> None:
    os.environ["MAILPUBC_STATE_DIR"] = folder = tempfile.mkdtemp(prefix="mailpubc-bench-")
    compiled, result = timed(lambda: api.compile_text(POLICY).or_raise())
    print(f"compile {compiled:.3f} s")
    for n in counts:
        netns = f"mp-{os.getpid()}-bench-{n}"
        subprocess.run(["ip", "netns", "add", netns], check=True, timeout=15)
        try:
            run(n, result, netns)
        finally:
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=15)
    shutil.rmtree(folder)


if __name__ == "__main__":
    main(sizes.from_command_line(__doc__, [0, 1000, 10000, 50000]))
