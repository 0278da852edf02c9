"""DNAT pairing on the real kernel, IPv4 and IPv6: a publication's forward
accept takes only connections translated from the address and port it was
published on. Another table that translates a port of its own to the
server's port (as a container runtime's rules might) gets nothing through
mailpubc's forward chain: with one rule a publication pair, and with the pairs
dispatched (beyond DISPATCH_THRESHOLD: a chain an address, whose rules
leave the address to the map but keep `ct original proto-dst`). The same
ruleset without its `ct original proto-dst` matches lets that connection
through, so the probe can tell."""

from __future__ import annotations

import re
import sys

import pytest

from banlab import SMTPD, mailpubc, reaches, wire
from mailpubc import nft

EXTRA_PORTS = range(2001, 2017)     # 16 more services: 17 pairs a family, beyond the threshold
POLICY = """\
version: 1
firewall:
  external: {{interface: eth0, addresses: [198.51.100.11, "2001:db8:100::11"]}}
  internal: {{interface: eth1, networks: [10.1.0.0/24, "fd00:1::/64"]}}
services: {{{services}}}
publish:
  - {{name: mx4, server: 10.1.0.25, external_address: 198.51.100.11, services: [smtp{more}]}}
  - {{name: mx6, server: "fd00:1::25", external_address: "2001:db8:100::11",
     services: [smtp{more}]}}
"""
PUBLISHED = {4: "198.51.100.11", 6: "2001:db8:100::11"}
# The foreign tables: before mailpubc's DNAT, port 8025 of the published
# address to the server's 25.
FOREIGN_DNAT = """table ip sneaky {
	chain prerouting {
		type nat hook prerouting priority dstnat - 10; policy accept;
		iifname "eth0" ip daddr 198.51.100.11 tcp dport 8025 dnat ip to 10.1.0.25:25
	}
}
table ip6 sneaky {
	chain prerouting {
		type nat hook prerouting priority dstnat - 10; policy accept;
		iifname "eth0" ip6 daddr 2001:db8:100::11 tcp dport 8025 dnat ip6 to [fd00:1::25]:25
	}
}
"""


@pytest.mark.parametrize("dispatched", [False, True], ids=["one rule a pair", "dispatched"])
def test_a_foreign_dnat_onto_the_published_port_gets_nothing_through(namespaces, tmp_path,
                                                                    dispatched):
    pytest.importorskip("aiosmtpd", reason="needs aiosmtpd (pip install -e .[test])")
    firewall, client, server = (namespaces(n) for n in ("pair-fw", "pair-cl", "pair-mx"))
    wire(firewall, client, server)
    smtpd = server.spawn(sys.executable, "-c", SMTPD, log=str(tmp_path / "smtpd.log"))
    server.wait_listening({("tcp", 25)}, [smtpd])
    ports = EXTRA_PORTS if dispatched else ()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(services=", ".join(f"p{port}: [tcp/{port}]" for port in ports),
                                    more="".join(f", p{port}" for port in ports)))
    state = tmp_path / "state"
    assert mailpubc(state, "apply", "--netns", firewall.name, policy).returncode == 0
    listed = nft.list_table("mailpub", netns=firewall.name)
    assert any("forward_1" in str(entry) for entry in listed["nftables"]) == dispatched
    assert {family: reaches(client, address) for family, address in PUBLISHED.items()} == {
        4: True, 6: True}
    nft.load(FOREIGN_DNAT, netns=firewall.name)
    assert {family: reaches(client, address, 8025) for family, address in PUBLISHED.items()} \
        == {4: False, 6: False}
    compiled = mailpubc(state, "--no-nft-check", policy).stdout
    nft.load(re.sub(r" ct original proto-dst \d+", "", compiled), netns=firewall.name)
    # unpaired, they would have got through
    assert {family: reaches(client, address, 8025) for family, address in PUBLISHED.items()} \
        == {4: True, 6: True}
