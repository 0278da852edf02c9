"""`outbound[].user` (meta skuid) on a real kernel: in a firewall namespace
whose output policy drops, a process of the rule's user opens SMTP to a real
SMTP server (aiosmtpd) in another namespace and a process of another user
cannot; explain agrees for both users. And the compile on a host that lacks
a user the policy names."""

from __future__ import annotations

import pwd
import subprocess
import sys

import pytest

from cli import run_mailpubc
from mailpubc.api import compile_text
from mailpubc.explain import explain
from mailpubc import nft

pytestmark = pytest.mark.usefixtures("namespaces_work")

SERVER = "203.0.113.25"
POLICY = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [203.0.113.1]}
  policy: {output: drop}
outbound:
  - {name: by-uid, from: localhost, user: 4242, services: [smtp], to: [203.0.113.25]}
  - {name: by-name, from: localhost, user: nobody, services: [smtp], to: [203.0.113.25]}
  - {name: dns-out, from: localhost, services: [dns]}
"""
SMTP_CLIENT = ("import smtplib, sys; s = smtplib.SMTP(sys.argv[1], 25, timeout=3); "
               "print(s.ehlo()[0]); s.quit()")


@pytest.fixture(scope="module")
def lab(module_namespaces):
    """A firewall namespace with the policy loaded, linked to a server
    namespace where aiosmtpd listens on tcp/25."""
    pytest.importorskip("aiosmtpd", reason="needs aiosmtpd (pip install -e .[test])")
    firewall, server = module_namespaces("fw"), module_namespaces("smtp")
    firewall.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", server.name)
    firewall.ip("addr", "add", "203.0.113.1/24", "dev", "eth0")
    server.ip("addr", "add", f"{SERVER}/24", "dev", "eth0")
    for namespace in (firewall, server):
        namespace.ip("link", "set", "eth0", "up")
    smtpd = server.spawn(sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{SERVER}:25",
                         log="/dev/null")
    server.wait_listening({("tcp", 25)}, [smtpd])
    result = compile_text(POLICY).or_raise()
    nft.load(result.text, netns=firewall.name)
    return firewall, result


def _smtp_as(firewall, user: str) -> bool:
    """Does a process of `user` in the firewall namespace get an SMTP greeting?"""
    group = user if user.isdigit() else str(pwd.getpwnam(user).pw_gid)
    run = subprocess.run(firewall.argv("setpriv", f"--reuid={user}", f"--regid={group}",
                                       "--clear-groups", sys.executable, "-c", SMTP_CLIENT,
                                       SERVER),
                         capture_output=True, text=True, timeout=20)
    return run.returncode == 0 and run.stdout.strip() == "250"


@pytest.mark.parametrize("user,allowed", [("4242", True), ("nobody", True), ("4343", False),
                                          ("0", False)])
def test_only_the_rule_user_opens_smtp_and_explain_agrees(lab, user, allowed):
    firewall, result = lab
    assert _smtp_as(firewall, user) is allowed
    answer = explain(result, "localhost", f"{SERVER}:25", "tcp", user=user)
    assert (answer.verdict == "accept") is allowed, answer.text()


def test_the_ruleset_names_the_user_as_written():
    text = compile_text(POLICY).or_raise().text
    assert 'meta skuid 4242 tcp dport 25' in text
    assert 'meta skuid "nobody" tcp dport 25' in text


def test_explain_user_needs_localhost():
    run = run_mailpubc("explain", "-", "--from", "192.0.2.1", "--to", f"{SERVER}:25",
                       "--user", "nobody", input=POLICY)
    assert run.returncode == 2 and "use it with --from localhost" in run.stderr


def test_a_user_this_host_lacks_is_a_warning_and_a_clean_failure_of_the_dry_run(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("user: nobody", "user: mailpubc-no-such-user"))
    run = run_mailpubc(policy)
    assert run.returncode == 1 and run.stdout == ""
    assert "user 'mailpubc-no-such-user' does not exist on this host" in run.stderr
    assert "nft cannot load this ruleset on this host" in run.stderr
    assert "please report" not in run.stderr
    run = run_mailpubc("--no-nft-check", policy)
    assert run.returncode == 0 and 'meta skuid "mailpubc-no-such-user"' in run.stdout
