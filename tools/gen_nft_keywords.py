#!/usr/bin/env python3
"""Regenerate compiler/nft_keywords.txt: the words nft will not take as a table name.

nft cannot quote a table name, so a policy's `firewall.table` must not be a
word nft's scanner turns into a keyword. Candidates come from two sources,
and nft itself decides which of them it refuses (a dry run of
`table inet WORD` lines in a private network namespace):

- the token names compiled into libnftables: bison keeps each keyword
  token's quoted name (`"accept"`, `"auto-merge"`) for its error messages;
- every word of one to three letters. The scanner also spells some operators
  as words (`and` for `&`, `eq` for `==`); those return the operator's token,
  whose name is the symbol, so the word's text is only in flex's compiled
  tables and `strings` cannot find it. Trying all short words catches these
  and any new short spelling; the two longer spellings in nft's scanner.l
  (`lshift`, `rshift`) are listed in SPELLED_OPERATORS.

Run as root on a machine with the nft you target:

    python3 tools/gen_nft_keywords.py > compiler/nft_keywords.txt
"""

import itertools
import re
import string
import subprocess
import sys

LIB = "/usr/lib/x86_64-linux-gnu/libnftables.so.1"
SPELLED_OPERATORS = ("lshift", "rshift")
SHORT_WORD_LENGTH = 3
BATCH = 200


def candidates() -> list[str]:
    text = subprocess.run(["strings", LIB], capture_output=True, text=True, check=True).stdout
    words = {m.group(1) for m in re.finditer(r'^"([a-z][a-z0-9_-]*)"$', text, re.M)}
    words.update(SPELLED_OPERATORS)
    for length in range(1, SHORT_WORD_LENGTH + 1):
        words.update(map("".join, itertools.product(string.ascii_lowercase, repeat=length)))
    return sorted(words)


def refused_as_table_names(words: list[str]) -> set[str]:
    """The words nft refuses in `table inet WORD`, one line each, BATCH lines
    per dry run. After a refused word the scanner may stay in that word's
    state (after `ct`, `daddr` is a keyword too), so only a run's first error
    counts and the next run starts on the line after it."""
    refused: set[str] = set()
    start = 0
    while start < len(words):
        batch = words[start:start + BATCH]
        run = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"],
                             input="".join(f"table inet {w}\n" for w in batch),
                             capture_output=True, text=True, timeout=60)
        if run.returncode == 0:
            start += len(batch)
            continue
        lines = [int(n) for n in re.findall(r"^/dev/stdin:(\d+):", run.stderr, re.M)]
        if not lines:
            raise RuntimeError(f"nft failed without naming a line:\n{run.stderr}")
        refused.add(batch[min(lines) - 1])
        start += min(lines)
    return refused


def main() -> int:
    version = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# nft keywords that cannot be a table name; made by tools/gen_nft_keywords.py with {version}")
    for word in sorted(refused_as_table_names(candidates())):
        print(word)
    return 0


if __name__ == "__main__":
    sys.exit(main())
