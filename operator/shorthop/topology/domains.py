"""A node's effective place in the network hierarchy.

Two rules turn raw level values into the chain of domains a node hangs off (shared by ``graph``
and ``index`` so both see the same tree):

1. Trailing missing levels are dropped: a node without a leaf label attaches to the deepest
   level it has, paying the uplinks of the levels below (as if it sat alone in its own leaf).
   A missing level *above* a known one stays as an "unknown" segment of the path, so nodes that
   share a spine but lack a core label still share that spine.
2. All nodes of one multi-node NVLink domain share one chain: the longest common prefix of their
   chains. An NVLink domain is a unit in the network (an NVL72 rack sits under one leaf); when its
   members disagree, shorthop keeps only what they agree on. This also guarantees that no
   shortest path leaves a node through an NVLink peer to reach the network more cheaply.

Domains are identified by their whole path (``(zone, block, rack)`` prefix), as in Kueue's TAS:
two racks with the same name in different blocks are different racks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

Chain = tuple[str | None, ...]


def trim(chain: Chain) -> Chain:
    """Drop trailing missing levels.

    >>> trim(("z1", None, "r1", None))
    ('z1', None, 'r1')
    """
    end = len(chain)
    while end and chain[end - 1] is None:
        end -= 1
    return chain[:end]


def common_prefix(chains: Sequence[Chain]) -> Chain:
    """The longest prefix every chain shares.

    >>> common_prefix([("z1", "b1", "r1"), ("z1", "b1", "r2")])
    ('z1', 'b1')
    """
    if not chains:
        return ()
    prefix: list[str | None] = []
    for values in zip(*chains, strict=False):
        if any(v != values[0] for v in values):
            break
        prefix.append(values[0])
    return trim(tuple(prefix))


def effective_chains(members: Iterable[tuple[str, str | None, Chain]]) -> dict[str, Chain]:
    """Effective chains for ``(node, clique, raw chain)`` triples (rule 1 and rule 2)."""
    by_clique: dict[str, list[tuple[str, Chain]]] = defaultdict(list)
    result: dict[str, Chain] = {}
    for name, clique, chain in members:
        if clique is None:
            result[name] = trim(chain)
        else:
            by_clique[clique].append((name, trim(chain)))
    for group in by_clique.values():
        shared = common_prefix([chain for _, chain in group])
        for name, _ in group:
            result[name] = shared
    return result
