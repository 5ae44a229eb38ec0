"""The clock arithmetic (games.clock) and the clock in the canonical chain (crdt_models.game):
remaining time from the move stamps, the deadline boundary, and a move in time beating a
time-out recorded concurrently, whatever the order the records arrive in."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridian.crdt_models.game import GameInfo, MoveRecord, canonical_chain, move_key
from meridian.crdt_models.hlc import Stamp
from meridian.games.battleline import RandomBot, rules_module
from meridian.games.clock import TIMEOUT, Clock, TimeControl

START_MS = 1_767_225_600_000
RULES = rules_module()

controls = st.builds(
    TimeControl, st.integers(1, 3_600_000), st.sampled_from([0, 1000, 5000, 60_000])
)
# (who hands the turn on, time taken): a turn either passes to the other player or stays.
steps = st.lists(st.tuples(st.booleans(), st.integers(0, 200_000)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(controls, steps)
def test_remaining_time_is_the_start_less_the_time_used_plus_an_increment_per_turn(
    control: TimeControl, plays: list[tuple[bool, int]]
) -> None:
    clock = Clock.start(control, 0, START_MS)
    used, turns = [0, 0], [0, 0]
    at, running = START_MS, 0
    for hands_on, took in plays:
        at += took
        if clock.is_late(at):
            assert used[running] + took > control.initial_ms + turns[running] * control.increment_ms
            break
        nxt = 1 - running if hands_on else running
        clock = clock.after(at, nxt)
        used[running] += took
        turns[running] += hands_on
        running = nxt
        for seat in (0, 1):
            expected = control.initial_ms - used[seat] + turns[seat] * control.increment_ms
            assert clock.remaining_ms[seat] == expected
        assert clock.running == running and clock.since_ms == at


@given(controls, st.integers(0, 10**7))
def test_a_record_at_the_deadline_is_in_time_and_one_a_millisecond_later_is_late(
    control: TimeControl, since: int
) -> None:
    clock = Clock.start(control, 1, START_MS + since)
    deadline = START_MS + since + control.initial_ms
    assert clock.deadline_ms == deadline
    assert not clock.is_late(deadline) and clock.is_late(deadline + 1)
    assert clock.remaining_at(deadline) == (control.initial_ms, 0)
    assert clock.remaining_at(deadline + 10**6) == (control.initial_ms, 0), "never below zero"


@given(controls, st.lists(st.integers(0, 10**7), min_size=2, max_size=10))
def test_shown_time_only_goes_down_while_a_clock_runs(
    control: TimeControl, nows: list[int]
) -> None:
    clock = Clock.start(control, 0, START_MS)
    shown = [clock.remaining_at(START_MS + t)[0] for t in sorted(nows)]
    assert shown == sorted(shown, reverse=True)
    assert all(0 <= s <= control.initial_ms for s in shown)


def test_no_clock_runs_while_nobody_is_to_move_and_a_pause_earns_no_increment() -> None:
    clock = Clock.start(TimeControl(60_000, 5000), 0, START_MS).after(START_MS + 10_000, None)
    assert clock.remaining_ms == (50_000, 60_000) and clock.deadline_ms is None
    assert clock.remaining_at(START_MS + 10**9) == (50_000, 60_000)
    assert not clock.is_late(START_MS + 10**9)


def test_labels() -> None:
    assert TimeControl(600_000, 5000).label == "10+5"
    assert TimeControl(30_000).label == "30s+0"
    with pytest.raises(ValueError):
        TimeControl(0)


# --- the chain -----------------------------------------------------------------------------


def stamp(ms: int, node: str = "eu-1", counter: int = 0) -> str:
    return Stamp(START_MS + ms, counter, node).encode()


def info(clock_ms: int = 60_000, increment_ms: int = 0) -> GameInfo:
    return GameInfo(
        "g1", "battleline", ["a", "b"], ["alice", "bob"], 7, 0, stamp(0), "eu-1",
        clock_ms=clock_ms, increment_ms=increment_ms,
    )  # fmt: skip


def moves_in_time(game: GameInfo, plies: int, gap_ms: int) -> list[MoveRecord]:
    """`plies` random legal records, each `gap_ms` after the one before."""
    state, bot = RULES.replay(game.seed, [], game.first), RandomBot(3)
    records: list[MoveRecord] = []
    for ply in range(plies):
        mover = RULES.to_move(state)
        assert mover is not None
        move: dict[str, Any] = bot.choose(state, mover)
        parent = records[-1].key if records else ""
        records.append(MoveRecord(ply, parent, mover, move, stamp((ply + 1) * gap_ms), "eu-1"))
        state = RULES.apply_move(state, mover, move)
    return records


def timeout_at(chain: list[MoveRecord], player: int, ms: int, node: str) -> MoveRecord:
    parent = chain[-1].key if chain else ""
    return MoveRecord(len(chain), parent, player, {"type": TIMEOUT}, stamp(ms, node), node)


def test_the_first_movers_clock_runs_from_the_games_creation() -> None:
    game = info(60_000)
    chain = canonical_chain(RULES, game, moves_in_time(game, 1, 20_000))
    assert chain.clock is not None
    assert chain.clock.remaining_ms[0] == 40_000 and chain.clock.since_ms == START_MS + 20_000


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 8), st.integers(-2000, 2000), st.booleans(), st.randoms())
def test_a_move_in_time_beats_a_concurrent_timeout_and_a_late_one_loses_to_it(
    plies: int, offset_ms: int, timeout_from_higher_node: bool, rnd: random.Random
) -> None:
    game = info(30_000)
    played = moves_in_time(game, plies, 1000)
    before = canonical_chain(RULES, game, played)
    assert before.clock is not None and before.clock.running is not None
    deadline = before.clock.deadline_ms
    assert deadline is not None
    running = before.clock.running
    state = before.state
    move = RandomBot(5).choose(state, running)
    parent = played[-1].key if played else ""
    at = deadline - START_MS + offset_ms
    rival = MoveRecord(plies, parent, running, move, stamp(at, "us-1"), "us-1")
    timeout_node = "zz-1" if timeout_from_higher_node else "aa-1"
    timeout = timeout_at(
        played, running, deadline - START_MS + 1 + rnd.randrange(3000), timeout_node
    )
    records = [*played, rival, timeout]
    rnd.shuffle(records)
    chain = canonical_chain(RULES, game, records)
    last = chain.moves[-1]
    if offset_ms <= 0:
        assert last.key == rival.key, "a move stamped at or before the deadline wins"
        result = RULES.result(chain.state)
        assert result is None or result["reason"] != "time"
    else:
        assert last.key == timeout.key, "a move stamped after the deadline is not taken"
        assert RULES.result(chain.state) == {"winner": 1 - running, "reason": "time"}
        assert chain.clock is not None and chain.clock.remaining_ms[running] == 0


def test_a_timeout_is_not_taken_before_the_deadline_for_the_wrong_player_or_without_a_clock() -> (
    None
):
    game = info(30_000)
    early = timeout_at([], 0, 30_000, "eu-1")  # exactly at the deadline: still in time
    wrong = timeout_at([], 1, 31_000, "eu-1")  # player 0's clock runs, not player 1's
    assert canonical_chain(RULES, game, [early, wrong]).moves == []
    due = timeout_at([], 0, 30_001, "eu-1")
    assert canonical_chain(RULES, game, [due]).moves == [due]
    assert canonical_chain(RULES, info(0), [due]).moves == [], "no clock, no time-out"


def test_two_nodes_recording_the_same_timeout_agree_on_the_result() -> None:
    game = info(30_000)
    a, b = timeout_at([], 0, 30_500, "us-1"), timeout_at([], 0, 30_400, "eu-1")
    for records in ([a, b], [b, a]):
        chain = canonical_chain(RULES, game, records)
        assert chain.moves == [b] and RULES.result(chain.state) == {"winner": 1, "reason": "time"}
    assert move_key(0, b.stamp) < move_key(0, a.stamp)
