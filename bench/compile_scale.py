#!/usr/bin/env python3
"""Benchmark: compile a policy with N addresses in nested sets; print figures.

    python3 bench/compile_scale.py [N ...]     (default: 1000 20000 50000)

The policy has N single addresses spread over 20 leaf sets of external
clients, nested two levels deep under one set used by management SSH, and
N/10 internal addresses used by an outbound rule, both families. It prints
the time of each pipeline stage (best of 3) and of the nft dry run.
"""

import ipaddress
import tempfile
import time

from mailpubc import loader, nft, plan, resolve, schema, semantics
from mailpubc.generate import text as generate_text
import sizes


def make_policy(n: int) -> str:
    leaves = 20
    lines = ["version: 1", "firewall:", "  external:", "    interface: eth0",
             '    addresses: [198.51.100.10, "2001:db8:100::10"]',
             "  internal:", "    interface: eth1", '    networks: [10.0.0.0/8, "fd00::/8"]',
             "  management:", "    ssh: [everyone]", "address_sets:",
             "  everyone: [" + ", ".join(f"group{g}" for g in range(4)) + "]"]
    for g in range(4):
        lines.append(f"  group{g}: [" + ", ".join(f"leaf{i}" for i in range(g, leaves, 4)) + "]")
    base4 = int(ipaddress.ip_address("100.64.0.0"))
    base6 = int(ipaddress.ip_address("2001:db8:1000::"))
    for i in range(leaves):
        entries = []
        for k in range(i, n, leaves):
            if k % 2:
                entries.append(f'"{ipaddress.ip_address(base6 + k * 7)}"')
            else:
                entries.append(str(ipaddress.ip_address(base4 + k * 3)))
        lines.append(f"  leaf{i}: [" + ", ".join(entries) + "]")
    inside = [str(ipaddress.ip_address(int(ipaddress.ip_address("10.2.0.0")) + k * 5))
              for k in range(max(1, n // 10))]
    lines.append("  relays: [" + ", ".join(inside) + "]")
    lines += ["outbound:", "  - name: relay-out", "    from: relays", "    services: [smtp, dns]"]
    return "\n".join(lines) + "\n"


def best_of(runs, action):
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(n: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(make_policy(n))
        file.flush()
        stages = []
        t, document = best_of(3, lambda: loader.load(file.name))
        stages.append(("load", t))
        t, (problems, _) = best_of(3, lambda: schema.validate(document))
        assert not problems
        stages.append(("schema", t))
        t, (policy, problems) = best_of(3, lambda: resolve.resolve(document))
        assert not problems
        stages.append(("resolve", t))
        t, problems = best_of(3, lambda: semantics.check(policy))
        assert not problems
        stages.append(("semantics", t))
        t, ruleset = best_of(3, lambda: plan.plan(policy))
        stages.append(("plan", t))
        t, text = best_of(3, lambda: generate_text.generate(ruleset))
        stages.append(("generate", t))
        total = sum(t for _, t in stages)
        t_nft, result = best_of(1, lambda: nft.dry_run(text))
        figures = " ".join(f"{name}={t * 1000:.0f}ms" for name, t in stages)
        print(f"addresses={n} compile={total * 1000:.0f}ms ({figures}) "
              f"output={len(text) / 1024:.0f}KiB nft-dry-run={t_nft * 1000:.0f}ms "
              f"({'ok' if result.ok else 'FAILED: ' + result.message[:200]})")


if __name__ == "__main__":
    for size in sizes.from_command_line(__doc__, [1000, 20000, 50000]):
        measure(size)
