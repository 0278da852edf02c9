"""`mailpubc stats` on the real kernel: examples/seed.yaml loaded in a
firewall namespace, a client namespace on a veth pair (198.51.100.0/24),
real TCP connections to the firewall's own SMTP (firewall-mail) and the
counts read back. Namespaces go away afterwards (tests/e2e/netns.py).

The named counter sits on a rule's accept of a new connection: replies and
the rest of a connection are accepted earlier (`ct state
established,related`), so N connections count exactly N packets, their SYNs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from mailpubc import api, nft

from cli import run_mailpubc
from e2e.netns import Namespace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/seed.yaml"          # relative: positions in the output name it so
README = ROOT / "README.md"
CONNECTIONS = 3
SERVER = """
import socket, sys
servers = [socket.create_server(("198.51.100.11", port)) for port in (25, 22)]
print("ready", flush=True)
while True:
    servers[0].accept()[0].close()
"""
CLIENT = """
import socket, sys
for _ in range(int(sys.argv[1])):
    socket.create_connection(("198.51.100.11", 25), timeout=5).close()
"""


def stats(*args: str):
    return run_mailpubc("stats", *args, EXAMPLE, cwd=ROOT)


def firewall(namespaces, name: str, ruleset: str | None) -> Namespace:
    """A namespace made by `namespaces` with `ruleset` loaded."""
    ns = namespaces(name)
    if ruleset is not None:
        nft.load(ruleset, netns=ns.name)
    return ns


@pytest.fixture(scope="module")
def counted(module_namespaces):
    """The seed applied, CONNECTIONS connections made to 198.51.100.11:25;
    the firewall namespace."""
    fw = firewall(module_namespaces, "stats-fw",
                  api.compile_path(str(ROOT / EXAMPLE)).or_raise().text)
    client = module_namespaces("stats-client")
    fw.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client.name)
    for address in ("198.51.100.10/24", "198.51.100.11/24"):
        fw.ip("addr", "add", address, "dev", "eth0")
    client.ip("addr", "add", "198.51.100.20/24", "dev", "eth0")
    for ns in (fw, client):
        ns.ip("link", "set", "eth0", "up")
    server = fw.spawn(sys.executable, "-c", SERVER, log="/dev/null")
    fw.wait_listening({("tcp", 25), ("tcp", 22)}, [server])
    client.run(sys.executable, "-c", CLIENT, str(CONNECTIONS), timeout=30)
    return fw


def test_counts_the_connections_on_their_rule_only(counted):
    run = stats("--netns", counted.name, "--format", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["table"] == "mailpub"
    rules = {(r["kind"], r["rule"], r["service"], r["family"]): r for r in report["rules"]}
    assert set(rules) == {("publish", "exchange", service, "ipv4") for service in
                          ("smtp", "submission", "imap", "imaps", "pop3", "pop3s")} | {
                          ("publish", "firewall-mail", service, "ipv4")
                          for service in ("smtp", "smtps", "imaps", "pop3s")} | {
                          ("outbound", "smtp-out", "smtp", "ipv4"),
                          ("outbound", "dns-out", "dns", "ipv4"),
                          ("management", "ssh", None, "ipv4"), ("management", "ssh", None, "ipv6")}
    mail = rules.pop(("publish", "firewall-mail", "smtp", "ipv4"))
    assert mail["counter"] == "publish_firewall-mail.smtp.ipv4"
    assert mail["packets"] == CONNECTIONS
    assert mail["bytes"] >= CONNECTIONS * 40        # an IPv4 and a TCP header each, at least
    assert re.fullmatch(r"examples/seed\.yaml:\d+:\d+", mail["position"])
    assert all(r["packets"] == 0 and r["bytes"] == 0 for r in rules.values())


def test_a_table_from_another_policy_is_noted(counted, tmp_path):
    """Counters share rule names across policies: stats says when the live
    table is not what the policy compiles to, on stderr and in the JSON."""
    same = stats("--netns", counted.name, "--format", "json")
    assert (same.returncode, same.stderr) == (0, "")
    assert json.loads(same.stdout)["matches_policy"] is True
    other = tmp_path / "other.yaml"
    other.write_text((ROOT / EXAMPLE).read_text().replace(
        "services: [smtp, smtps, imaps, pop3s]", "services: [smtp]"))
    runs = {output: run_mailpubc("stats", "--netns", counted.name, "--format", output, other)
            for output in ("json", "text")}
    for run in runs.values():
        assert run.returncode == 0, run.stderr
        assert run.stderr == (f"mailpubc: note: table inet mailpub is not what {other} "
                              f"compiles to: it was applied from another policy, or {other} "
                              "changed since (`mailpubc diff` shows how); a counter of the "
                              "same name may count another rule\n")
    report = json.loads(runs["json"].stdout)
    assert report["matches_policy"] is False
    mail = next(r for r in report["rules"] if r["rule"] == "firewall-mail")
    assert mail["packets"] == CONNECTIONS           # the live table's counter, same name
    assert mail["service"] == "smtp"


def test_other_elements_in_the_same_rules_are_no_mismatch(counted):
    """stats asks whether a counter counts the same rule: a set holding other
    elements (a list file refreshed, say) changes no rule, so no note; the
    elements are never listed (`deploy.rules_match`)."""
    counted.run("nft", "add", "element", "inet", "mailpub", "admins_v4", "{ 203.0.113.99 }")
    try:
        run = stats("--netns", counted.name, "--format", "json")
        assert (run.returncode, run.stderr) == (0, "")
        assert json.loads(run.stdout)["matches_policy"] is True
        diff = run_mailpubc("diff", "--netns", counted.name, EXAMPLE, cwd=ROOT)
        assert diff.returncode == 1 and "203.0.113.99" in diff.stdout    # diff sees elements
    finally:
        counted.run("nft", "delete", "element", "inet", "mailpub", "admins_v4",
                    "{ 203.0.113.99 }")


def test_readme_shows_real_output(counted):
    run = stats("--netns", counted.name)
    assert run.returncode == 0, run.stderr
    block = re.search(r"\$ mailpubc stats examples/seed.yaml\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no `$ mailpubc stats examples/seed.yaml` block"
    assert block.group(1) == run.stdout


def test_a_table_without_the_counters_gives_no_counts(namespaces):
    """The same table with every counter taken out: stats says so, and the
    counts above could not have passed against it."""
    text = api.compile_path(str(ROOT / EXAMPLE)).or_raise().text
    stripped = re.sub(r'\tcounter \S+ \{\s*\}\n|counter name "[^"]+" ', "", text)
    assert "counter" not in stripped
    fw = firewall(namespaces, "stats-stripped", stripped)
    run = stats("--netns", fw.name, "--format", "json")
    assert run.returncode == 0, run.stderr
    rules = json.loads(run.stdout)["rules"]
    assert len(rules) == len(api.compile_path(str(ROOT / EXAMPLE)).ruleset.counters) == 14
    assert all(r["packets"] is None and r["bytes"] is None for r in rules)
    metrics = stats("--netns", fw.name, "--format", "prometheus")
    assert metrics.returncode == 0, metrics.stderr
    assert "mailpubc_accepted" in metrics.stdout and "_total{" not in metrics.stdout
    run = stats("--netns", fw.name)
    assert "note: publish firewall-mail: table inet mailpub has no counter" in run.stdout


def test_an_unapplied_table_exits_2(namespaces):
    fw = firewall(namespaces, "stats-empty", None)
    run = stats("--netns", fw.name)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (f"mailpubc: table inet mailpub is not loaded in network "
                          f"namespace {fw.name}; apply the policy first\n")
