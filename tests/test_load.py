"""What users rely on when they load the output with `nft -f`, on a real
kernel: it loads into an empty network namespace, loading it again replaces
the first load in one transaction, other tables are left alone, and a load
that fails leaves the previous ruleset in place. Loads and listings go
through mailpubc.nft, which does one `nft -f` per load."""

from pathlib import Path

import pytest

from cli import run_mailpubc
from mailpubc import nft

from kernel import without_handles

ROOT = Path(__file__).resolve().parent.parent


def compiled(policy: Path) -> str:
    run = run_mailpubc(policy)
    assert run.returncode == 0, run.stderr
    return run.stdout


def comments(listing: dict) -> list[str]:
    return [e["rule"].get("comment") for e in listing["nftables"] if "rule" in e]


def test_loads_twice_and_replaces_only_its_own_table(namespace):
    ruleset = compiled(ROOT / "examples" / "seed.yaml")
    nft.load("table inet other {\n\tchain keep {\n\t}\n}\n", netns=namespace.name)
    nft.load(ruleset, netns=namespace.name)
    first = nft.list_ruleset(namespace.name)
    # a rule added by hand to our table is gone after the reload: replaced, not merged
    nft.load('add rule inet mailpub input tcp dport 9 accept comment "by hand"\n',
             netns=namespace.name)
    assert "by hand" in comments(nft.list_table("mailpub", netns=namespace.name))
    nft.load(ruleset, netns=namespace.name)
    second = nft.list_ruleset(namespace.name)
    assert without_handles(second) == without_handles(first)
    assert "by hand" not in comments(second)
    other = nft.list_table("other", netns=namespace.name)["nftables"]
    assert [e["chain"]["name"] for e in other if "chain" in e] == ["keep"]


def test_failed_load_leaves_previous_ruleset(namespace):
    nft.load(compiled(ROOT / "golden" / "scenario2" / "policy.yaml"), netns=namespace.name)
    before = nft.list_ruleset(namespace.name)
    # the next version of the ruleset, broken half way through its last chain
    text = compiled(ROOT / "examples" / "seed.yaml")
    with pytest.raises(nft.NftError, match="nowhere"):
        nft.load(text[: text.rindex("snat ip to")] + "snat ip to nowhere\n}\n}\n",
                 netns=namespace.name)
    assert nft.list_ruleset(namespace.name) == before


def test_defines_stay_in_the_table_when_a_file_that_includes_it_defines_the_same(
        namespace, tmp_path):
    """/etc/nftables.conf may define names of its own and include our file:
    our sets written through defines (golden/set-defines) load with theirs,
    neither changing the other."""
    ours = tmp_path / "mailpubc.nft"
    ours.write_text(compiled(ROOT / "golden" / "set-defines" / "policy.yaml"))
    assert "redefine dns_servers_v4 = {" in ours.read_text()
    nft.load(f'define dns_servers_v4 = {{ 192.0.2.53 }}\ninclude "{ours}"\n'
             "table inet theirs {\n\tset resolvers {\n\t\ttype ipv4_addr\n"
             "\t\telements = { $dns_servers_v4 }\n\t}\n}\n", netns=namespace.name)
    listing = nft.list_ruleset(namespace.name)["nftables"]
    sets = {(s["set"]["table"], s["set"]["name"]): s["set"].get("elem") for s in listing if "set" in s}
    assert sets["theirs", "resolvers"] == ["192.0.2.53"]
    assert sets["mailpub", "dns_servers_v4"] == [{"prefix": {"addr": "10.1.0.26", "len": 31}},
                                                 "10.1.0.53"]
