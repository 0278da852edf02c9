"""`mailpubc integration`: configuration for the tools that feed the
policy's run-time sets (`firewall.dynamic_block`), written from the policy
so that table and set names cannot drift from what `apply` loads."""

from __future__ import annotations

import shlex
from typing import Optional

from .datafiles import template_environment
from .model import CROWDSEC, OPERATOR, DynamicBlock, Policy
from .vocab import SET_SUFFIX, TABLE_FAMILY

ACTION_NAME = "mailpubc"


DEFAULT_API_URL = "http://127.0.0.1:8080/"     # CrowdSec's local API, as Debian installs it
HINT = {OPERATOR: "`dynamic_block: NAME` under firewall",
        CROWDSEC: "`dynamic_block: [{name: NAME, feeder: crowdsec}]` under firewall"}


class NoDynamicSets(Exception):
    """The policy has no `firewall.dynamic_block` the tool may feed, or
    several and no choice among them (exit 1)."""


def fail2ban_action(policy: Policy, netns: Optional[str] = None,
                    chosen: Optional[str] = None) -> str:
    """The action file for fail2ban's action.d/; `netns`: run nft in that
    network namespace (a firewall in a namespace, as the tests have it)."""
    block = fed(policy, OPERATOR, chosen)
    nft = ["nft"] if netns is None else ["ip", "netns", "exec", netns, "nft"]
    return _render("fail2ban.conf.j2", policy, block, name=ACTION_NAME, nft=shlex.join(nft),
                   table=f"{TABLE_FAMILY} {shlex.quote(policy.firewall.table)}",
                   sets={family: shlex.quote(block.name + suffix)
                         for family, suffix in SET_SUFFIX.items()})


def crowdsec_bouncer(policy: Policy, chosen: Optional[str] = None,
                     api_url: str = DEFAULT_API_URL) -> str:
    """The firewall bouncer's configuration: set-only, into the sets of the
    dynamic_block fed by crowdsec."""
    block = fed(policy, CROWDSEC, chosen)
    return _render("crowdsec-firewall-bouncer.yaml.j2", policy, block, api_url=api_url,
                   table=f"{TABLE_FAMILY} {policy.firewall.table}",
                   table_name=policy.firewall.table,
                   sets={family: block.name + suffix for family, suffix in SET_SUFFIX.items()})


def fed(policy: Policy, feeder: str, chosen: Optional[str]) -> DynamicBlock:
    """The dynamic_block `feeder` may write into: `chosen`, or the only one
    it may feed (a set fed by another tool is never shared)."""
    fit = [block for block in policy.firewall.dynamic_blocks if block.feeder == feeder]
    if chosen is not None:
        named = next((b for b in policy.firewall.dynamic_blocks if b.name == chosen), None)
        if named is None or named.feeder != feeder:
            raise NoDynamicSets(f"{policy.source}: " + (
                f"no firewall.dynamic_block is named {chosen!r}" if named is None else
                f"dynamic_block {chosen!r} is fed by {named.feeder}, not {feeder}"))
        return named
    if len(fit) == 1:
        return fit[0]
    if fit:
        raise NoDynamicSets(f"{policy.source}: several dynamic_block are fed by {feeder} ("
                            + ", ".join(b.name for b in fit) + "): choose one with --set")
    raise NoDynamicSets(f"{policy.source}: the policy has no firewall.dynamic_block fed by "
                        f"{feeder}, so there are no run-time sets for it; add {HINT[feeder]}")


def _render(template: str, policy: Policy, block: DynamicBlock, **values) -> str:
    environment = template_environment(trim_blocks=True)
    return environment.get_template(template).render(source=policy.source, block=block.name,
                                                     **values)
