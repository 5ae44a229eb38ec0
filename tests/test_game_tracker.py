"""GameTracker: where a player's view leaves the canonical chain (for rollbacks), and records
that arrive before their parents."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc

import meridian.games.battleline as battleline
from meridian.crdt_models.game import (
    GameInfo,
    GameWriter,
    MoveRecord,
    canonical_chain,
    start_state,
)
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.node.game_tracker import GameTracker, load_tracker

RULES = battleline.rules_module()


def _record(state: Any, ply: int, parent: str, stamp: str, pick: int = 0) -> MoveRecord:
    player = RULES.to_move(state)
    assert player is not None, "the game is not over"
    move = RULES.legal_moves(state)[pick]
    return MoveRecord(ply, parent, player, move, stamp, "eu-1")


def _tracker_with_fork() -> tuple[GameTracker, list[MoveRecord], list[MoveRecord]]:
    """A chain a0 a1 a2 and a losing branch b2 b3 that left it after a1 (b2 stamped later)."""
    clock = HybridLogicalClock("eu-1", iter(range(1_000, 10_000, 10)).__next__)
    info = GameInfo(
        "g1", "battleline", ["u0", "u1"], ["p0", "p1"], 7, 0, clock.now().encode(), "eu-1"
    )
    tracker = GameTracker(RULES, info)
    state, main = start_state(RULES, info), list[MoveRecord]()
    for ply in range(3):
        main.append(_record(state, ply, main[-1].key if main else "", clock.now().encode()))
        state = RULES.apply_move(state, main[-1].player, main[-1].move)
    fork_state = start_state(RULES, info)
    for record in main[:2]:
        fork_state = RULES.apply_move(fork_state, record.player, record.move)
    b2 = _record(fork_state, 2, main[1].key, clock.now().encode(), pick=-1)
    after_b2 = RULES.apply_move(fork_state, b2.player, b2.move)
    b3 = _record(after_b2, 3, b2.key, clock.now().encode())
    tracker.records = [*main, b2, b3]
    tracker.chain = canonical_chain(RULES, info, tracker.records)
    assert [r.key for r in tracker.chain.moves] == [r.key for r in main]
    return tracker, main, [b2, b3]


def test_a_view_still_on_the_chain_needs_no_rollback() -> None:
    tracker, main, _branch = _tracker_with_fork()
    assert tracker.went_back_for(3, main[2].key) is None
    assert tracker.went_back_for(1, main[0].key) is None


def test_a_view_on_a_losing_branch_went_back_to_where_the_branch_left() -> None:
    tracker, _main, branch = _tracker_with_fork()
    assert tracker.went_back_for(4, branch[1].key) == 2
    assert tracker.went_back_for(3, branch[0].key) == 2


def test_a_head_this_node_never_received_went_back_below_the_ply_seen() -> None:
    tracker, _main, _branch = _tracker_with_fork()
    assert tracker.went_back_for(5, "9:unknown") == 3  # the chain here is 3 plies long
    assert tracker.went_back_for(2, "1:unknown") == 1
    assert tracker.went_back_for(0, "") is None


def test_a_branch_missing_a_record_here_gives_a_bound_at_that_record() -> None:
    tracker, main, branch = _tracker_with_fork()
    tracker.records = [record for record in tracker.records if record.key != branch[0].key]
    found = tracker.branch_exit(4, branch[1].key)  # b3 is here, its parent b2 is not
    assert found is not None and found.ply == 2 and not found.exact
    tracker.records.append(branch[0])
    exact = tracker.branch_exit(4, branch[1].key)
    assert exact is not None and exact.ply == 2 and exact.exact
    assert tracker.branch_exit(3, main[2].key) is None


def test_a_record_that_arrived_before_its_parent_joins_the_chain_when_the_parent_comes() -> None:
    """The tracker's fast path (a new record that extends the tip) must still look at records
    waiting for a parent: one that arrived first joins the chain once its parent arrives."""
    clock = HybridLogicalClock("eu-1", iter(range(1_000, 10_000, 10)).__next__)
    info = GameInfo(
        "g1", "battleline", ["u0", "u1"], ["p0", "p1"], 7, 0, clock.now().encode(), "eu-1"
    )
    source: Doc[Any] = Doc()
    writer = GameWriter(source, "eu-1")
    writer.create(info)
    updates, state, parent = [source.get_update()], start_state(RULES, info), ""
    for ply in range(3):
        before = source.get_state()
        record = _record(state, ply, parent, clock.now().encode())
        writer.add_move(record.ply, record.parent, record.player, record.move, record.stamp)
        updates.append(source.get_update(before))
        state, parent = RULES.apply_move(state, record.player, record.move), record.key
    replica: Doc[Any] = Doc()
    for update in (updates[0], updates[1]):
        replica.apply_update(update)
    tracker = load_tracker(RULES, replica)
    assert tracker is not None and tracker.ply == 1
    replica.apply_update(updates[3])  # ply 2's record, before its parent
    tracker.refresh(replica)
    assert tracker.ply == 1, "it waits: its parent is not here"
    replica.apply_update(updates[2])  # the parent arrives: both extend the chain
    tracker.refresh(replica)
    assert tracker.ply == 3
    assert tracker.chain.tip == parent
