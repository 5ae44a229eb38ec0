"""Partial replication of games (issue 16): where a game is kept, and which region wants what.

A game document (``game:<gid>``) is kept by its *replica regions*, written once into its info
record (``GameInfo.replicas``) by the node that creates it; every other document (accounts,
presence, the log, saved games, key-value documents) is kept by every region.

**The rule** (`place_game`): the *required* regions (the two players' home regions, the
creating node's region and the inviter's node's region) plus `k` = ``replication.game_backups``
others, and more others until there are at least k + 2: so a game survives the loss of any one
region with k + 1 live copies even when both players share a home. The others are taken in the
creating node's order of preference: regions it measured a round trip to first, nearest first,
then the rest by name (ties by name). The set is computed once; every node reads the same
placement from the record, never from its own measurements.

**The predicate** (`GamePlacement.wants`): what the sync engine is given (it knows nothing of
games): whether a region wants a document. True for every document but a game; for a game,
whether its record lists the region, and True while this node cannot tell (it lacks the
document or its info record: the peer that sends it decided by the record it holds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.game import GAME_PREFIX, read_info
from meridian.crdt_models.records import RecordError


def place_game(
    required: Iterable[str],
    regions: Iterable[str],
    rtt_s: Mapping[str, float],
    k: int,
) -> list[str]:
    """The replica regions of a new game, sorted by name (see module docstring).

    `regions` are the cluster's regions, `rtt_s` the creating node's round trips to some of
    them; required regions outside `regions` are kept (a home region is a home region)."""
    chosen = set(required)
    others = sorted(
        (r for r in set(regions) if r not in chosen),
        key=lambda r: (rtt_s.get(r, math.inf), r),
    )
    wanted = max(len(chosen) + k, k + 2)
    chosen.update(others[: max(0, wanted - len(chosen))])
    return sorted(chosen)


class GamePlacement:
    """The placement predicate over one node's documents (`docs`: id -> Doc).

    A game's placement is read from its info record once and cached (the record is written
    once); a document that is not a game is wanted everywhere."""

    def __init__(self, docs: Callable[[], Mapping[str, Doc[Any]]]) -> None:
        self._docs = docs
        self._replicas: dict[str, frozenset[str]] = {}

    def replicas(self, doc_id: str) -> frozenset[str] | None:
        """The game's replica regions; empty: every region; None: not known here (yet)."""
        cached = self._replicas.get(doc_id)
        if cached is not None:
            return cached
        doc = self._docs().get(doc_id)
        if doc is None:
            return None
        try:
            info = read_info(doc)
        except RecordError:
            return None  # a record no rule accepts: peers refuse it, nothing to place by
        if info is None:
            return None
        placed = self._replicas[doc_id] = frozenset(info.replicas)
        return placed

    def wants(self, doc_id: str, region: str) -> bool:
        """Whether `region` keeps the document (see module docstring)."""
        if not doc_id.startswith(GAME_PREFIX):
            return True
        placed = self.replicas(doc_id)
        return not placed or region in placed

    def forget(self, doc_id: str) -> None:
        self._replicas.pop(doc_id, None)
