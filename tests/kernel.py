"""What the tests on the real kernel share: network namespaces made for a
test and removed after it (tests/e2e/netns.py), nft listings compared
without their handles, and a compiled ruleset loaded from its text and
from its JSON."""

from __future__ import annotations

import contextlib
import uuid
from typing import Callable, Iterator

import failclosed
from e2e.netns import Namespace


@contextlib.contextmanager
def namespaces() -> Iterator[Callable[..., Namespace]]:
    """A maker of namespaces, `make("fw")` naming one mp-PID-fw-XXXXXXXX
    (unique across tests and runs); every one made is removed on leaving,
    the last made first, however the block ends."""
    made: list[Namespace] = []

    def make(name: str = "test") -> Namespace:
        made.append(Namespace(f"{name}-{uuid.uuid4().hex[:8]}"))
        return made[-1]
    try:
        yield make
    finally:
        for namespace in reversed(made):
            namespace.delete()


def without_handles(node):
    """A listing (or any part of one) with nft's handles left out: a reload
    numbers objects anew."""
    if isinstance(node, dict):
        return {key: without_handles(value) for key, value in node.items() if key != "handle"}
    if isinstance(node, list):
        return [without_handles(value) for value in node]
    return node


def loaded_alike(result) -> dict:
    """What the kernel lists for a compiled `result` (an api.Result), handles
    aside, after loading its nft text and, into another namespace, its
    libnftables JSON: the two must list the same, so the generators cannot
    drift apart."""
    from_text = without_handles(failclosed.load(result.text))
    from_json = without_handles(failclosed.load(result.json_text, json=True))
    assert from_json == from_text
    return from_text
