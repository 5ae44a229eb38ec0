"""How the checkers see the nodes' documents under partial replication (``game_backups``).

With ``replication.game_backups`` set a game is kept only by the nodes of its replica regions
(``crdt_models.placement``, read from the game's info record) and by nodes that follow it (a
player of it came to them: ``SyncEngine.follow``); any other node may lack it. The checkers
written for full replication (every document identical on every node) judge the *placed view*
instead of the raw final states: in it, a node that does not keep a game shows the copy of the
first node (by id) that keeps it and holds it; a node that keeps a game shows its own copy, or
none. So a replica that lacks a game, or holds another state of it, still fails them, and
what the nodes really hold stays in `PlacedStates.held`, which ``game-copies`` counts.

The convergence watch (``sim.world``) compares a document only among the nodes that keep it
(`keepers`), for the same reason. Without ``game_backups`` both are the identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from meridian.sim.history import DocState, FinalStates

if TYPE_CHECKING:
    from meridian.sim.node import SimNode


class PlacedStates(dict[str, dict[str, DocState]]):
    """The placed view of the final states; `held` is what the nodes really hold."""

    held: FinalStates


def placement_of(nodes: Iterable[SimNode], doc_id: str) -> frozenset[str]:
    """The document's replica regions as the first node holding its record reads them (empty:
    every region keeps it)."""
    for node in nodes:
        if node.up and node.placement is not None:
            placed = node.placement.predicate.replicas(doc_id)
            if placed is not None:
                return placed
    return frozenset()


def keeps(node: SimNode, doc_id: str, placed: frozenset[str]) -> bool:
    """Whether the node is to hold the document current: its region is a replica, or it
    follows it."""
    return not placed or node.region in placed or doc_id in node.engine.followed


def keepers(nodes: list[SimNode], doc_id: str) -> list[SimNode]:
    """The nodes (of `nodes`, all up) that keep the document."""
    if all(node.placement is None for node in nodes):
        return nodes
    placed = placement_of(nodes, doc_id)
    return [node for node in nodes if keeps(node, doc_id, placed)]


def placed_view(final: FinalStates, nodes: Mapping[str, SimNode]) -> FinalStates:
    """The final states as the checkers judge them (see module docstring)."""
    if all(node.placement is None for node in nodes.values()):
        return final
    view = PlacedStates({node_id: dict(states) for node_id, states in final.items()})
    view.held = final
    up = [nodes[node_id] for node_id in sorted(final)]
    doc_ids = sorted({doc_id for states in final.values() for doc_id in states})
    for doc_id in doc_ids:
        placed = placement_of(up, doc_id)
        if not placed:
            continue
        kept = [n.node_id for n in up if keeps(n, doc_id, placed) and doc_id in final[n.node_id]]
        source = next((n for n in kept if nodes[n].region in placed), kept[0] if kept else None)
        for node in up:
            if keeps(node, doc_id, placed):
                continue
            if source is None:
                view[node.node_id].pop(doc_id, None)
            else:
                view[node.node_id][doc_id] = final[source][doc_id]
    return view
