"""The resolved model: equal meaning gives equal models, wherever it was written."""

import pytest

from mailpubc.diagnostics import PolicyError
from mailpubc.api import compile_path
from mailpubc.vocab import PortRange

POLICY = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  internal: {interface: eth1, networks: [10.1.0.0/24]}
address_sets:
  relays: [10.1.0.25, 10.1.0.26]
outbound:
  - {name: out, from: relays, services: [smtp]}
"""

SAME_MEANING = """\
# the same policy, laid out differently: other positions, same meaning
version: 1

firewall:
  external:
    interface: eth0
    addresses:
      - 198.51.100.10
  internal:
    interface: eth1
    networks: ["10.1.0.0/24"]
  policy: {input: drop, forward: drop, output: accept}

address_sets:
  relays: [10.1.0.26-10.1.0.26, 10.1.0.25/32]

outbound:
  - name: out
    from: [relays]
    to: any
    schedule: always
    services:
      - smtp
"""


def compile_text(tmp_path, text, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return compile_path(str(path)).or_raise()


def test_positions_take_no_part_in_equality(tmp_path):
    first = compile_text(tmp_path, POLICY, "a.yaml")
    second = compile_text(tmp_path, SAME_MEANING, "b.yaml")
    assert first.policy == second.policy
    assert first.ruleset == second.ruleset
    assert first.text == second.text
    assert first.policy.outbound[0].position != second.policy.outbound[0].position


def chain_of_sets(length, cyclic=False):
    lines = ["address_sets:"]
    for i in range(length - 1):
        lines.append(f"  s{i}: [s{i + 1}]")
    lines.append(f"  s{length - 1}: [{'s0' if cyclic else '10.1.0.25'}]")
    return "\n".join(lines) + "\n"


def test_a_long_chain_of_nested_sets_resolves_without_recursion(tmp_path):
    text = POLICY.replace("address_sets:\n  relays: [10.1.0.25, 10.1.0.26]\n",
                          chain_of_sets(5000)).replace("from: relays", "from: s0")
    compiled = compile_text(tmp_path, text)
    assert 'ip saddr @s0_v4 tcp dport 25 counter name "outbound_out.smtp.ipv4" accept' in compiled.text
    assert compiled.policy.address_sets[0].addresses.v4 == ((0x0A010019, 0x0A010019),)


def test_a_long_cycle_is_reported_once(tmp_path):
    text = POLICY.replace("address_sets:\n  relays: [10.1.0.25, 10.1.0.26]\n",
                          chain_of_sets(3000, cyclic=True)).replace("from: relays", "from: s0")
    with pytest.raises(PolicyError) as caught:
        compile_text(tmp_path, text)
    cycles = [d for d in caught.value.diagnostics if "cycle" in d.message]
    assert len(cycles) == 1
    assert cycles[0].message.startswith("address sets refer to each other in a cycle: s0 -> s1 -> ")
    assert cycles[0].position.line == 6


def test_a_rule_emitted_in_one_family_defines_only_that_familys_set(tmp_path):
    """IPv4 sources to a dual-stack smart host: the rule exists for IPv4 only,
    and no IPv6 set is defined that nothing would use."""
    text = POLICY.replace("  relays: [10.1.0.25, 10.1.0.26]\n",
                          "  relays: [10.1.0.25, 10.1.0.26]\n"
                          '  smarthost: [203.0.113.25, "2001:db8::25"]\n'
                          ).replace("from: relays,", "from: relays, to: smarthost,")
    compiled = compile_text(tmp_path, text)
    assert [s.name for s in compiled.ruleset.sets] == ["relays_v4", "smarthost_v4"]
    assert 'ip saddr @relays_v4 ip daddr @smarthost_v4 tcp dport 25 counter name "outbound_out.smtp.ipv4" accept' in compiled.text
    assert "ip6" not in compiled.text.split("chain forward")[1].split("chain output")[0]


def test_managesieve_http_and_https_are_built_in(tmp_path):
    """The contract's second round: tcp/4190, tcp/80, tcp/443."""
    result = compile_text(tmp_path, """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
publish:
  - {name: web, server: localhost, external_address: 198.51.100.10,
     services: [managesieve, http, https]}
""")
    assert [(s.name, s.ports) for s in result.policy.publish[0].services] == [
        ("managesieve", (PortRange("tcp", 4190, 4190),)), ("http", (PortRange("tcp", 80, 80),)),
        ("https", (PortRange("tcp", 443, 443),))]
    assert not result.warnings
