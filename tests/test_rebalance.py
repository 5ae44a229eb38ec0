"""The rebalancing policy (node.rebalance): hysteresis, safe points, the per-player limit, RTT,
and rounds that even out a skew, including a process that joins empty."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridian.crdt_models.load import LoadEntry
from meridian.node.rebalance import Move, PlayerInfo, Policy, RebalanceState, plan

NOW_MS = 1_767_225_600_000
FAR = {("eu", "ap"): 250.0, ("ap", "eu"): 250.0}
NEAR = {("eu", "us"): 40.0, ("us", "eu"): 40.0}


def cluster(counts: dict[str, int]) -> tuple[list[LoadEntry], list[PlayerInfo]]:
    """Processes named region-n holding that many idle, safe players."""
    entries, players = [], []
    for node, count in counts.items():
        entries.append(LoadEntry(node, node.split("-")[0], NOW_MS, count, 0, 0, 0, 0, 0))
        players += [PlayerInfo(f"{node}-p{i}", node, False, True, float(i)) for i in range(count)]
    return entries, players


def apply(moves: list[Move], players: list[PlayerInfo]) -> list[PlayerInfo]:
    moved = {m.uid: m.target for m in moves}
    return [replace(p, node=moved.get(p.uid, p.node)) for p in players]


def counts_of(nodes: list[str], players: list[PlayerInfo]) -> dict[str, int]:
    return {node: sum(1 for p in players if p.node == node) for node in nodes}


def entries_for(nodes: dict[str, str], players: list[PlayerInfo]) -> list[LoadEntry]:
    held = counts_of(list(nodes), players)
    return [LoadEntry(n, r, NOW_MS, held[n], 0, 0, 0, 0, 0) for n, r in nodes.items()]


def run_rounds(
    nodes: dict[str, str], players: list[PlayerInfo], policy: Policy, rounds: int = 50
) -> tuple[list[PlayerInfo], list[Move]]:
    """Rounds 3 s apart, each applying its moves, until one plans none."""
    state, every = RebalanceState(), []
    for round_no in range(rounds):
        entries = entries_for(nodes, players)
        moves, state = plan(entries, players, NEAR, state, round_no * 3.0, policy)
        if not moves:
            break
        players = apply(moves, players)
        every += moves
    return players, every


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 200), min_size=2, max_size=5).filter(lambda c: sum(c) >= 20))
def test_rounds_even_out_a_skew_moving_each_player_once_then_stop(counts: list[int]) -> None:
    nodes = {f"eu-{i}": "eu" for i in range(len(counts))}
    _, players = cluster(dict(zip(nodes, counts, strict=True)))
    policy = Policy()
    mean = sum(counts) / len(counts)
    hot = {node for node, count in zip(nodes, counts, strict=True) if count > 1.25 * mean}
    players, every = run_rounds(nodes, players, policy)
    held = counts_of(list(nodes), players)
    assert max(held.values()) <= policy.start_above * mean + 1
    for node in hot:  # what started shedding went on down to the stop line
        assert held[node] <= policy.stop_below * mean + 1
    assert len({m.uid for m in every}) == len(every), "a player moved twice within 5 minutes"
    later, _ = plan(entries_for(nodes, players), players, NEAR, RebalanceState(), 1e6, policy)
    assert later == [], "once even, nothing moves (no flapping)"


def test_a_process_that_joins_empty_receives_players_until_even() -> None:
    _, players = cluster({"eu-1": 100, "eu-2": 100})
    nodes = {"eu-1": "eu", "eu-2": "eu", "eu-3": "eu"}
    players, _ = run_rounds(nodes, players, Policy())
    held = counts_of(list(nodes), players)
    assert held["eu-3"] >= 50 and max(held.values()) <= 1.25 * 200 / 3 + 1


def test_hysteresis_keeps_shedding_below_start_until_stop() -> None:
    entries, players = cluster({"eu-1": 130, "eu-2": 70})  # 1.3 x the mean of 100
    moves, state = plan(entries, players, {}, RebalanceState(), 0.0, Policy(max_moves_per_round=5))
    assert len(moves) == 5 and state.shedding == {"eu-1"}
    players = apply(moves, players)  # 125 / 75: below start, above stop
    entries = entries_for({"eu-1": "eu", "eu-2": "eu"}, players)
    moves, state = plan(entries, players, {}, state, 3.0, Policy(max_moves_per_round=5))
    assert len(moves) == 5 and state.shedding == {"eu-1"}
    fresh, _ = plan(entries, players, {}, RebalanceState(), 3.0, Policy(max_moves_per_round=5))
    assert fresh == [], "without the earlier state, 1.25 x the mean does not start shedding"


def test_only_safe_players_move_idle_ones_first() -> None:
    entries, players = cluster({"eu-1": 40, "eu-2": 0})
    players = [replace(p, in_game=i % 2 == 0, safe=i % 4 != 0) for i, p in enumerate(players)]
    moves, _ = plan(entries, players, {}, RebalanceState(), 0.0, Policy(max_moves_per_round=30))
    by_uid = {p.uid: p for p in players}
    assert moves and all(by_uid[m.uid].safe for m in moves)
    idle = [m for m in moves if not by_uid[m.uid].in_game]
    assert moves[: len(idle)] == idle, "idle players move before those in a game"


def test_a_player_moves_at_most_once_per_interval() -> None:
    entries, players = cluster({"eu-1": 10, "eu-2": 0})
    state = RebalanceState(last_moved={p.uid: 100.0 for p in players})
    moves, _ = plan(entries, players, {}, state, 100.0 + 299.0, Policy(min_interval_s=300))
    assert moves == []
    moves, _ = plan(entries, players, {}, state, 100.0 + 300.0, Policy(min_interval_s=300))
    assert moves


def test_no_move_to_a_far_region_unless_the_own_region_is_overloaded() -> None:
    # eu-1 is hot but eu-2 is cool: its region is not overloaded, and ap is 250 ms away
    entries, players = cluster({"eu-1": 60, "eu-2": 20, "ap-1": 0})
    moves, _ = plan(entries, players, FAR, RebalanceState(), 0.0, Policy(capacity=50))
    assert moves and {m.target for m in moves} == {"eu-2"}
    # the whole eu region is above its capacity: ap takes players despite its RTT
    entries, players = cluster({"eu-1": 60, "eu-2": 60, "ap-1": 0})
    moves, _ = plan(entries, players, FAR, RebalanceState(), 0.0)
    assert moves == [], "even while ap is idle"
    moves, _ = plan(entries, players, FAR, RebalanceState(), 0.0, Policy(capacity=50))
    assert moves and {m.target for m in moves} == {"ap-1"}


def test_a_near_region_takes_players_when_the_own_region_has_no_room() -> None:
    entries, players = cluster({"eu-1": 60, "us-1": 0, "ap-1": 0})
    moves, _ = plan(entries, players, {**FAR, **NEAR}, RebalanceState(), 0.0)
    assert moves and {m.target for m in moves} == {"us-1"}


def test_hysteresis_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Policy(start_above=1.1, stop_below=1.2)
