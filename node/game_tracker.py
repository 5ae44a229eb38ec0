"""Follows one game document: its canonical chain, kept up to date incrementally.

In normal play a change to a game document adds one record that extends the tip, and the tracker
applies just that move. Anything else (a record for an older ply, a competing record for the
same ply, a record whose parent is not the tip) recomputes the chain from the start with
``crdt_models.game.canonical_chain``, so the result is always the canonical one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from crdt_models.game import (
    SAVE,
    SUPERSEDED,
    Chain,
    GameInfo,
    MoveRecord,
    canonical_chain,
    read_info,
    read_marks,
    read_moves,
)
from games.base import GameRules, IllegalMove

LIVE, FINISHED, SAVED, PARKED = "live", "finished", "saved", "parked"


@dataclass
class ChainChange:
    """What an update did to the chain: moves added, and the ply a merge rolled back to."""

    added: int
    rolled_back_to: int | None


class GameTracker:
    def __init__(self, rules: GameRules[Any], info: GameInfo) -> None:
        self.rules = rules
        self.info = info
        self.chain: Chain[Any] = canonical_chain(rules, info, [])
        self.record_keys: set[str] = set()
        self.marks: list[dict[str, Any]] = []

    @property
    def status(self) -> str:
        if self.rules.result(self.chain.state) is not None:
            return FINISHED
        kinds = {mark["kind"] for mark in self.marks}
        if SUPERSEDED in kinds:
            return PARKED
        if SAVE in kinds:
            return SAVED
        return LIVE

    @property
    def ply(self) -> int:
        return len(self.chain.moves)

    def refresh(self, doc: Doc[Any]) -> ChainChange:
        """Bring the chain up to date with the document."""
        self.marks = read_marks(doc)
        records = read_moves(doc)
        new = [r for r in records if r.key not in self.record_keys]
        self.record_keys.update(r.key for r in new)
        if not new:
            return ChainChange(0, None)
        if self._extends_tip(new):
            return ChainChange(len(new), None)
        old = [r.key for r in self.chain.moves]
        self.chain = canonical_chain(self.rules, self.info, records)
        kept = sum(
            1 for a, b in zip(old, (r.key for r in self.chain.moves), strict=False) if a == b
        )
        rolled_back = kept if kept < len(old) else None
        return ChainChange(max(0, len(self.chain.moves) - kept), rolled_back)

    def _extends_tip(self, new: list[MoveRecord]) -> bool:
        """Apply records that simply continue the chain; False if the chain must be recomputed."""
        state, moves = self.chain.state, list(self.chain.moves)
        for record in sorted(new, key=lambda r: (r.ply, r.stamp)):
            tip = moves[-1].key if moves else ""
            if record.ply != len(moves) or record.parent != tip:
                return False
            try:
                state = self.rules.apply_move(state, record.player, record.move)
            except IllegalMove:
                return False
            moves.append(record)
        self.chain = Chain(moves, self.chain.dropped, state)
        return True

    def moves_with_players(self) -> list[dict[str, Any]]:
        return [dict(record.move, player=record.player) for record in self.chain.moves]


def load_tracker(rules: GameRules[Any], doc: Doc[Any]) -> GameTracker | None:
    info = read_info(doc)
    if info is None:
        return None
    tracker = GameTracker(rules, info)
    tracker.refresh(doc)
    return tracker
