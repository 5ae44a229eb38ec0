"""Follows one game document: its canonical chain, kept up to date incrementally.

In normal play a change to a game document adds one record that extends the tip, and the tracker
applies just that move. Anything else (a record for an older ply, a competing record for the
same ply, a record whose parent is not the tip) recomputes the chain from the start with
``crdt_models.game.canonical_chain``, so the result is always the canonical one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from meridian.crdt_models.game import (
    MARKS,
    MOVES,
    SAVE,
    SUPERSEDED,
    Chain,
    GameInfo,
    MoveRecord,
    canonical_chain,
    put_move,
    read_info,
    read_marks,
    read_moves,
    step,
)
from meridian.crdt_models.records import root_map
from meridian.games.base import GameRules, IllegalMove
from meridian.games.clock import Clock

LIVE, FINISHED, SAVED, PARKED = "live", "finished", "saved", "parked"


@dataclass(frozen=True)
class BranchExit:
    """The ply a game went back to for a player who saw another branch; `exact` False when part
    of that branch has not reached this node, so `ply` is only an upper bound."""

    ply: int
    exact: bool


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
        self.records: list[MoveRecord] = []  # every record read so far, chain or not
        self.marks: list[dict[str, Any]] = []
        self._status = LIVE
        self._added_since_refresh = 0
        # Keys in the document's move and mark maps when they were last read: keys are only ever
        # added (a record's key names its content), so an unchanged count means nothing new.
        self._move_keys_read = -1
        self._mark_keys_read = -1
        self._roots_of: Doc[Any] | None = None  # the document `_root_maps` belong to
        self._root_maps: tuple[Map[Any], Map[Any]] | None = None

    @property
    def status(self) -> str:
        """live, finished, saved or parked (cached: it changes only when refresh() runs)."""
        return self._status

    def _compute_status(self) -> str:
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
        """Moves in this game document's chain."""
        return len(self.chain.moves)

    @property
    def base_ply(self) -> int:
        """Moves played before this document (a resumed game starts from a saved one's moves);
        plies shown to players count from the deal: base_ply + ply."""
        return len(self.info.start_moves)

    def refresh(self, doc: Doc[Any]) -> ChainChange:
        """Bring the chain (and the status) up to date with the document."""
        change = self._refresh_chain(doc)
        change.added += self._added_since_refresh  # moves adopted since the last refresh
        self._added_since_refresh = 0
        self._status = self._compute_status()
        return change

    def _refresh_chain(self, doc: Doc[Any]) -> ChainChange:
        moves, marks = self._roots(doc)
        mark_keys, move_keys = len(marks), len(moves)
        if mark_keys != self._mark_keys_read:
            self.marks, self._mark_keys_read = read_marks(doc), mark_keys
        if move_keys == self._move_keys_read:
            return ChainChange(0, None)  # (the usual case after this node's own move)
        self._move_keys_read = move_keys
        new = read_moves(doc, skip=self.record_keys)
        self.record_keys.update(r.key for r in new)
        self.records.extend(new)
        if not new:
            return ChainChange(0, None)
        old = [r.key for r in self.chain.moves]
        tip_before = self.chain.tip
        if self._extends_tip(new):
            # A record read before its parent arrived waits among the dropped ones: if its parent
            # is now on the chain (the old tip or one of the records just added), it may extend
            # the chain or beat the record that follows that parent: only the full resolution
            # below decides.
            joined = {tip_before, *(record.key for record in new)}
            if not any(record.parent in joined for record in self.chain.dropped):
                return ChainChange(len(new), None)
        self.chain = canonical_chain(self.rules, self.info, self.records)
        kept = sum(
            1 for a, b in zip(old, (r.key for r in self.chain.moves), strict=False) if a == b
        )
        rolled_back = kept if kept < len(old) else None
        return ChainChange(max(0, len(self.chain.moves) - kept), rolled_back)

    def adopt(self, record: MoveRecord, state: Any, clock: Clock | None) -> None:
        """Extend the chain with a record this node just wrote at the tip, whose resulting
        state and clocks the caller already computed while validating it."""
        assert record.ply == len(self.chain.moves) and record.parent == self.chain.tip
        self.record_keys.add(record.key)
        self.records.append(record)
        self.chain = Chain([*self.chain.moves, record], self.chain.dropped, state, clock)
        self._added_since_refresh += 1
        self._status = self._compute_status()

    def write_at_tip(
        self,
        seat: int,
        move: dict[str, Any],
        stamp: str,
        node: str,
        write: Callable[[Callable[[Doc[Any]], Any]], int],
    ) -> int:
        """Write `move` by `seat` after the chain's tip (`write` runs the change on the game's
        document and returns its number) and extend the chain with it; IllegalMove, and nothing
        written, if the rules or the clock refuse it. Returns the change's number."""
        record = MoveRecord(self.ply, self.chain.tip, seat, move, stamp, node)
        state, clock = step(self.rules, self.chain.state, self.chain.clock, record)
        event = write(lambda doc: self._add_record(doc, node, record))
        self.adopt(record, state, clock)  # validated just above: applied once
        return event

    def _add_record(self, doc: Doc[Any], node: str, record: MoveRecord) -> None:
        """Write `record` into the document; if every key before it was read, so is this one
        (the next refresh then need not read the moves again)."""
        moves = self._roots(doc)[0]
        before = len(moves)
        put_move(moves, record)  # (record.node is `node`: write_at_tip made it so)
        if before == self._move_keys_read:
            self._move_keys_read = before + 1  # a new record's key is new: it names its content

    def _roots(self, doc: Doc[Any]) -> tuple[Map[Any], Map[Any]]:
        """The document's move and mark maps (pycrdt's ``Doc.get`` costs about as much as
        reading both sizes: fetched once per document)."""
        if self._root_maps is None or self._roots_of is not doc:
            self._roots_of, self._root_maps = doc, (root_map(doc, MOVES), root_map(doc, MARKS))
        return self._root_maps

    def _extends_tip(self, new: list[MoveRecord]) -> bool:
        """Apply records that simply continue the chain; False if the chain must be recomputed."""
        state, clock, moves = self.chain.state, self.chain.clock, list(self.chain.moves)
        for record in sorted(new, key=lambda r: (r.ply, r.stamp)):
            tip = moves[-1].key if moves else ""
            if record.ply != len(moves) or record.parent != tip:
                return False
            try:
                state, clock = step(self.rules, state, clock, record)
            except IllegalMove:
                return False
            moves.append(record)
        self.chain = Chain(moves, self.chain.dropped, state, clock)
        return True

    def went_back_for(self, ply: int, head: str) -> int | None:
        """A player last saw this game at `ply` (counted from the deal) with `head` the key of
        its last move record: None if that is still on the chain, else the ply the game went
        back to for them (`branch_exit`)."""
        found = self.branch_exit(ply, head)
        return None if found is None else found.ply

    def branch_exit(self, ply: int, head: str) -> BranchExit | None:
        """Where the branch a player saw (`ply`, `head`, as in `went_back_for`) leaves the chain:
        None if it does not (the head is on the chain). The branch is followed from the head
        through the parents this node holds. When a record of it never reached this node (the
        head itself, or an ancestor: its region was lost, or is still cut off), the branch
        left the chain at that record's ply or below: the answer is that bound (no higher
        than the chain's length), marked not exact."""
        chain_ply = {record.key: record.ply for record in self.chain.moves}
        if ply <= self.base_ply or head in chain_ply:
            return None
        records = {record.key: record for record in self.records}
        key, at = head, ply - 1 - self.base_ply  # the missing record's ply in this document
        while key in records:
            record = records[key]
            if record.parent in chain_ply:
                return BranchExit(self.base_ply + chain_ply[record.parent] + 1, exact=True)
            if not record.parent:
                return BranchExit(self.base_ply, exact=True)
            key, at = record.parent, record.ply - 1
        return BranchExit(self.base_ply + max(0, min(at, self.ply)), exact=False)

    def moves_with_players(self) -> list[dict[str, Any]]:
        return [dict(record.move, player=record.player) for record in self.chain.moves]


def load_tracker(rules: GameRules[Any], doc: Doc[Any]) -> GameTracker | None:
    info = read_info(doc)
    if info is None:
        return None
    tracker = GameTracker(rules, info)
    tracker.refresh(doc)
    return tracker
