#!/usr/bin/env python3
"""The benchmark: mailpubc against the floor and against Aerleon, in one run.

    python3 bench/run.py                       # N = 1000, 20000, 100000; 5 runs each
    python3 bench/run.py --sizes 200 --runs 1  # what CI runs: it must not rot
    python3 bench/run.py --overlap             # rules that overlap and shadow each other
    python3 bench/run.py --publications --sizes 100,1000 --no-aerleon   # P publications

For each N it writes a policy of N random internal hosts (a fifth of them
IPv6) in G nested address sets, used by R outbound rules (each to its own
destination), and the same
filter as an Aerleon policy with its definitions. It then runs, alternately
and `--runs` times each: the floor (a Python process that only loads the
policy with PyYAML's C loader), `mailpubc --no-nft-check`, `mailpubc` (with
its nft dry run) and Aerleon's `aclgen` (nftables target). Each figure is
the median of the runs: wall time, peak RSS of the process, output size,
the time `nft -c -f` takes to check that output, and its rule count.

Aerleon is installed from the package index into its own virtual
environment (`--aerleon-venv`, made on first use); `--no-aerleon` skips it.
Nothing here asserts a time: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = [("smtp", "tcp", 25), ("submission", "tcp", 587), ("imaps", "tcp", 993),
            ("pop3s", "tcp", 995), ("dns", "udp", 53)]
RULE_LINE = re.compile(r"\b(accept|drop|reject|dnat|snat|masquerade|redirect|jump)\b")


@dataclass
class Figures:
    wall: float
    rss_mb: float
    output: int = 0
    check: float = 0.0
    rules: int = 0


# -- inputs ---------------------------------------------------------------------

def hosts(n: int, seed: int) -> list[str]:
    """N distinct internal hosts, one in five IPv6."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < n:
        if rng.random() < 0.2:
            found.add("fd00::" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(3)))
        else:
            found.add(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    return sorted(found)


def groups(n: int, sets: int, seed: int) -> list[list[str]]:
    """The hosts dealt into `sets` sets; set k also names set k+1 (nesting)."""
    everyone = hosts(n, seed)
    return [everyone[k::sets] for k in range(sets)]


def destination(rule: int, version: int) -> str:
    """Each rule its own destination, so that no rule shadows another
    (`--overlap`: none, every rule to any destination)."""
    return f"203.0.113.{rule + 1}" if version == 4 else f"2001:db8:3::{rule + 1:x}"


def mailpubc_policy(dealt: list[list[str]], rules: int, overlap: bool = False) -> str:
    lines = ["version: 1", "firewall:", "  external:", "    interface: eth0",
             '    addresses: [198.51.100.10, "2001:db8:100::10"]',
             "  internal:", "    interface: eth1", '    networks: [10.0.0.0/8, "fd00::/8"]',
             "address_sets:"]
    for k, members in enumerate(dealt):
        nested = [f"set{k + 1}"] if k + 1 < len(dealt) else []
        quoted = [f'"{m}"' if ":" in m else m for m in members]
        lines.append(f"  set{k}: [" + ", ".join(nested + quoted) + "]")
    lines.append("outbound:")
    for r in range(rules):
        name, _, _ = SERVICES[(r + r // len(dealt)) % len(SERVICES)]
        lines += [f"  - name: rule{r}", f"    from: set{r % len(dealt)}", f"    services: [{name}]"]
        if not overlap:
            lines.append(f'    to: [{destination(r, 4)}, "{destination(r, 6)}"]')
    return "\n".join(lines) + "\n"


def publications_policy(count: int) -> str:
    """`--publications`: P publications, each a server of its own behind its
    own external address, with smtp, submission and imaps (issue #22's
    case, where Foomuuri took 2.4× from 100 to 1,000). Compiled only, never
    loaded: the external addresses come from 100.64.0.0/10."""
    external = [f"100.64.{i // 250}.{i % 250 + 1}" for i in range(count)]
    lines = ["version: 1", "firewall:", "  external:", "    interface: eth0",
             "    addresses: [" + ", ".join(external) + "]",
             "  internal:", "    interface: eth1", "    networks: [10.1.0.0/16]", "publish:"]
    for i, address in enumerate(external):
        lines += [f"  - name: mx{i}", f"    server: 10.1.{i // 250}.{i % 250 + 1}",
                  f"    external_address: {address}", "    services: [smtp, submission, imaps]"]
    lines += ["outbound:", "  - {name: mx-out, from: [10.1.0.0/16], services: [smtp, dns]}"]
    return "\n".join(lines) + "\n"


def aerleon_inputs(dealt: list[list[str]], rules: int, folder: Path, overlap: bool = False) -> Path:
    """The same filter for Aerleon: definitions (networks, services) and a
    policy of R terms on the forward hook, both families."""
    definitions = folder / "def"
    definitions.mkdir()
    networks = ["networks:"]
    for k, members in enumerate(dealt):
        networks.append(f"  SET{k}:")
        networks.append("    values:")
        if k + 1 < len(dealt):
            networks.append(f"      - name: SET{k + 1}")
        networks += [f"      - address: {m}" for m in members]
    for r in range(rules):
        networks += [f"  DEST{r}:", "    values:", f"      - address: {destination(r, 4)}/32",
                     f"      - address: {destination(r, 6)}/128"]
    (definitions / "networks.yaml").write_text("\n".join(networks) + "\n")
    services = ["services:"]
    for name, protocol, port in SERVICES:
        services += [f"  {name.upper()}:", f"    - port: {port}", f"      protocol: {protocol}"]
    (definitions / "services.yaml").write_text("\n".join(services) + "\n")
    terms = []
    for r in range(rules):
        name, protocol, _ = SERVICES[(r + r // len(dealt)) % len(SERVICES)]
        terms += [f"      - name: rule{r}", f"        source-address: SET{r % len(dealt)}"]
        terms += [] if overlap else [f"        destination-address: DEST{r}"]
        terms += [f"        destination-port: {name.upper()}", f"        protocol: {protocol}",
                  "        action: accept"]
    policy = ["filters:", "  - header:", "      targets:", "        nftables: mixed FORWARD",
              "    terms:"] + terms
    policies = folder / "policies"
    policies.mkdir()
    (policies / "bench.yaml").write_text("\n".join(policy) + "\n")
    return policies / "bench.yaml"


# -- running ------------------------------------------------------------------------

# Each tool runs as installed: with Python's bytecode cache, which pip writes
# for an installed package (Aerleon's venv has it) but PYTHONDONTWRITEBYTECODE
# would deny an editable checkout, making it compile its source on every run.
TOOL_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def run(argv: list[str], stdout_path: Path | None = None, cwd: Path | None = None) -> Figures:
    """Wall time and peak RSS of one process (wait4 gives that child's own rusage)."""
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, cwd=cwd, env=TOOL_ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stdout_path:
        out.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                         f"{proc.stderr.read().decode()[-2000:]}")
    return Figures(wall, usage.ru_maxrss / 1024)


def nft_check(ruleset: Path) -> tuple[float, int]:
    """Time of `nft -c -f` on a ruleset, and its rule count."""
    start = time.perf_counter()
    subprocess.run(["nft", "-c", "-f", str(ruleset)], check=True, capture_output=True)
    took = time.perf_counter() - start
    text = ruleset.read_text()
    return took, sum(1 for line in text.splitlines() if RULE_LINE.search(line))


def aerleon_venv(path: Path) -> Path:
    aclgen = path / "bin" / "aclgen"
    if not aclgen.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "aerleon"], check=True)
    return aclgen


def median(figures: list[Figures]) -> Figures:
    return Figures(*(statistics.median(getattr(f, name) for f in figures)
                     for name in ("wall", "rss_mb", "output", "check", "rules")))


def measure(n: int, args, work: Path, aclgen: Path | None) -> dict[str, Figures]:
    dealt = groups(n, args.sets, seed=n)
    policy = work / f"policy-{n}.yaml"
    policy.write_text(publications_policy(n) if args.publications
                      else mailpubc_policy(dealt, args.rules, args.overlap))
    mailpubc = [sys.executable, "-m", "mailpubc"]
    tools = {
        "floor (PyYAML C load)": ([sys.executable, "-c",
                                   "import sys, yaml; yaml.load(open(sys.argv[1]), "
                                   "Loader=yaml.CSafeLoader)", str(policy)], None, None),
        "mailpubc --no-nft-check": (mailpubc + ["--no-nft-check", str(policy)],
                                    work / f"out-{n}-fast.nft", None),
        "mailpubc": (mailpubc + [str(policy)], work / f"out-{n}.nft", None),
    }
    if aclgen is not None and not args.publications:
        folder = work / f"aerleon-{n}"
        folder.mkdir()
        pol = aerleon_inputs(dealt, args.rules, folder, args.overlap)
        tools["Aerleon aclgen"] = ([str(aclgen), "--policy_file", str(pol),
                                    "--definitions_directory", str(folder / "def"),
                                    "--output_directory", str(folder / "out"),
                                    "--base_directory", str(folder / "policies"),
                                    "--max_renderers", "1"], None, folder)
    for argv, out, cwd in tools.values():   # untimed: writes the bytecode caches
        run(argv, out, cwd)
    results: dict[str, list[Figures]] = {name: [] for name in tools}
    for _ in range(args.runs):           # alternate: each tool once per round
        for name, (argv, out, cwd) in tools.items():
            results[name].append(run(argv, out, cwd))
    summary = {name: median(figures) for name, figures in results.items()}
    outputs = {"mailpubc --no-nft-check": work / f"out-{n}-fast.nft", "mailpubc": work / f"out-{n}.nft"}
    if "Aerleon aclgen" in tools:
        outputs["Aerleon aclgen"] = work / f"aerleon-{n}" / "out" / "bench.nft"
    for name, path in outputs.items():
        summary[name].output = path.stat().st_size
        summary[name].check, summary[name].rules = nft_check(path)
    return summary


def table(n: int, summary: dict[str, Figures]) -> str:
    floor = summary["floor (PyYAML C load)"].wall
    fast = summary["mailpubc --no-nft-check"]
    rows = [f"### N = {n:,}", "",
            "| tool | wall s | × floor | peak RSS MB | output KB | nft -c s | rules |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, f in summary.items():
        rows.append(f"| {name} | {f.wall:.3f} | {f.wall / floor:.1f} | {f.rss_mb:.0f} | "
                    f"{f.output / 1024:.0f} | {f.check:.3f} | {f.rules} |")
    default = summary["mailpubc"]
    rows.append("")
    rows.append(f"- default vs floor + its own nft -c: "
                f"{default.wall / (floor + default.check):.2f}×")
    aerleon = summary.get("Aerleon aclgen")
    if aerleon:
        rows.append(f"- Aerleon / mailpubc --no-nft-check: {aerleon.wall / fast.wall:.1f}× the time, "
                    f"output {fast.output / aerleon.output:.1%} of Aerleon's")
    return "\n".join(rows) + "\n"


def comma_separated_sizes(text: str) -> list[int]:
    """--sizes 200,1000 (argparse turns the ValueError of a word into a usage error)."""
    return [int(size) for size in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=comma_separated_sizes, default="1000,20000,100000",
                        help="the values of N, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sets", type=int, default=5, help="nested address sets (G)")
    parser.add_argument("--rules", type=int, default=20, help="outbound rules (R)")
    parser.add_argument("--overlap", action="store_true",
                        help="rule i from set i mod G to any destination: later rules overlap "
                             "(and shadow) earlier ones, as real policies do")
    parser.add_argument("--publications", action="store_true",
                        help="N publications of three services each instead (no Aerleon)")
    parser.add_argument("--aerleon-venv", type=Path, default=ROOT / "bench" / ".aerleon-venv")
    parser.add_argument("--no-aerleon", action="store_true")
    parser.add_argument("--aerleon-max", type=int, default=20000,
                        help="run Aerleon only up to this N (it takes minutes beyond)")
    args = parser.parse_args()
    if shutil.which("nft") is None:
        raise SystemExit("bench: nft is needed (apt-get install nftables)")
    aclgen = None if args.no_aerleon else aerleon_venv(args.aerleon_venv)
    sizes = args.sizes
    print(f"# mailpubc benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{args.runs} alternating runs, medians; G={args.sets}, R={args.rules}"
          + (", overlapping rules" if args.overlap else "")
          + (", N publications" if args.publications else "") + "\n")
    walls = {}
    with tempfile.TemporaryDirectory(prefix="mailpubc-bench-") as tmp:
        for n in sizes:
            summary = measure(n, args, Path(tmp), aclgen if n <= args.aerleon_max else None)
            walls[n] = summary["mailpubc --no-nft-check"].wall
            print(table(n, summary), flush=True)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"- growth {small:,} -> {large:,}: {walls[large] / walls[small]:.1f}× the time "
              f"for {large / small:.0f}× the " + ("publications" if args.publications
                                                   else "addresses"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
