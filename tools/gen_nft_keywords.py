#!/usr/bin/env python3
"""Regenerate compiler/nft_keywords.txt: the words nft will not take as a table name.

nft cannot quote a table name, so a policy's `firewall.table` must not be one
of nft's keywords. The candidates are the token names compiled into
libnftables; each is confirmed by asking nft itself (a dry run in a private
network namespace). Run as root on a machine with the nft you target:

    python3 tools/gen_nft_keywords.py > compiler/nft_keywords.txt
"""

import re
import subprocess
import sys

LIB = "/usr/lib/x86_64-linux-gnu/libnftables.so.1"


def candidates() -> list[str]:
    text = subprocess.run(["strings", LIB], capture_output=True, text=True, check=True).stdout
    return sorted({m.group(1) for m in re.finditer(r'^"([a-z][a-z0-9_-]*)"$', text, re.M)})


def rejected_as_table_name(word: str) -> bool:
    ruleset = f"table inet {word} {{ }}\n"
    run = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input=ruleset,
                         capture_output=True, text=True, timeout=10)
    return run.returncode != 0


def main() -> int:
    version = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# nft keywords that cannot be a table name; made by tools/gen_nft_keywords.py with {version}")
    for word in candidates():
        if rejected_as_table_name(word):
            print(word)
    return 0


if __name__ == "__main__":
    sys.exit(main())
