"""Partial replication wired into one node process (``replication.game_backups``, issue 16).

`NodePlacement` is what a node with ``game_backups`` set gives its sync engine and its game
service: the placement predicate (``crdt_models.placement.GamePlacement``) and the rule that
places a new game from the keyring's regions and the round trips this process measured to
them (its linked peers' pings, or on a busy link without pings its fastest acknowledgement;
a region without a measured link comes after, by name). Both
the real node (``node.server``) and the simulator (``sim.node``) build one the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.placement import GamePlacement, place_game
from meridian.sync.engine import SyncEngine
from meridian.sync.identity import Keyring


class NodePlacement:
    """Placement of games for one node process (see module docstring)."""

    def __init__(self, k: int, keyring: Keyring) -> None:
        self.k = k
        self.keyring = keyring
        self.engine: SyncEngine | None = None  # set once the engine is built with `wants`
        self.predicate = GamePlacement(self._docs)

    def _docs(self) -> Mapping[str, Doc[Any]]:
        return {} if self.engine is None else self.engine.docs

    def wants(self, doc_id: str, region: str) -> bool:
        return self.predicate.wants(doc_id, region)

    def needs_fetch(self, doc_id: str) -> bool:
        """Whether a player here needs a document this node does not keep current: it lacks
        it, or holds a copy outside the placement that it no longer follows (it stopped
        following at a restart, and such a copy is not pulled on its own)."""
        engine = self.engine
        return engine is not None and (doc_id not in engine.docs or not engine.wants_here(doc_id))

    def regions(self) -> list[str]:
        """The regions of the cluster: those of the keyring's nodes not removed."""
        return sorted({e.region for e in self.keyring.entries.values() if not e.removed})

    def round_trips(self) -> dict[str, float]:
        """Per region, the shortest round trip measured to one of its nodes now linked."""
        found: dict[str, float] = {}
        engine = self.engine
        if engine is None:
            return found
        linked = set(engine.up_peers())
        for peer in engine.peers.values():
            # A busy link sends no pings (heartbeats go on idle links only): its fastest
            # acknowledgement then stands for the round trip (an upper bound of it).
            measured = peer.rtt if peer.rtt is not None else min(peer.lag_samples, default=None)
            if peer.node_id in linked and measured is not None:
                found[peer.region] = min(found.get(peer.region, math.inf), measured)
        return found

    def place(self, regions: Iterable[str], node_ids: Iterable[str]) -> list[str]:
        """The replicas of a new game: `regions` (the players' homes) and the regions of
        `node_ids` (the creating and inviting nodes) are required (crdt_models.placement)."""
        required = set(regions)
        for node_id in node_ids:
            entry = self.keyring.get(node_id)
            if entry is not None:
                required.add(entry.region)
        return place_game(required, self.regions(), self.round_trips(), self.k)
