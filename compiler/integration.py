"""`mailpubc integration`: configuration for the tools that feed the
policy's run-time sets (`firewall.dynamic_block`), written from the policy
so that table and set names cannot drift from what `apply` loads."""

from __future__ import annotations

import shlex
from typing import Optional

from .datafiles import template_environment
from .model import Policy
from .vocab import SET_SUFFIX, TABLE_FAMILY

ACTION_NAME = "mailpubc"


class NoDynamicSets(Exception):
    """The policy has no `firewall.dynamic_block` to ban into (exit 1)."""


def fail2ban_action(policy: Policy, netns: Optional[str] = None) -> str:
    """The action file for fail2ban's action.d/; `netns`: run nft in that
    network namespace (a firewall in a namespace, as the tests have it)."""
    name = policy.firewall.dynamic_block
    if name is None:
        raise NoDynamicSets(f"{policy.source}: the policy has no firewall.dynamic_block, "
                            "so there are no run-time sets to ban into; add "
                            "`dynamic_block: NAME` under firewall")
    nft = ["nft"] if netns is None else ["ip", "netns", "exec", netns, "nft"]
    environment = template_environment(trim_blocks=True)
    return environment.get_template("fail2ban.conf.j2").render(
        source=policy.source, name=ACTION_NAME, nft=shlex.join(nft),
        table=f"{TABLE_FAMILY} {shlex.quote(policy.firewall.table)}",
        sets={family: shlex.quote(name + suffix) for family, suffix in SET_SUFFIX.items()})
