"""The pool of bots waiting for people (node.botpool): whom to start, whom to let go."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meridian.node.botpool import BUSY, COMING, IDLE, Seat, plan_pool

LINGER_S = 30.0


def seat(name: str, state: str, standby: bool = False, idle_since: float = 0.0) -> Seat:
    return Seat(name, standby, state, idle_since)


def test_a_busy_bot_for_people_brings_a_standby_and_a_coming_one_counts_as_ready() -> None:
    seats = [seat("bot1", BUSY), seat("bot2", IDLE)]
    assert plan_pool(seats, 2, 100.0, LINGER_S, 8).start == 1
    seats.append(seat("bot7", COMING, standby=True))
    assert plan_pool(seats, 2, 100.0, LINGER_S, 8).start == 0  # on its way: no second one
    everyone_busy = [seat("bot1", BUSY), seat("bot2", BUSY)]
    assert plan_pool(everyone_busy, 2, 0.0, LINGER_S, 8).start == 2


def test_no_more_standbys_than_the_cap_however_many_people_play() -> None:
    seats = [seat("bot1", BUSY), seat("bot2", BUSY)]
    seats += [seat(f"bot{i}", BUSY, standby=True) for i in range(7, 14)]  # 7 of 8 standbys
    assert plan_pool(seats, 2, 0.0, LINGER_S, 8).start == 1
    seats.append(seat("bot14", BUSY, standby=True))
    assert plan_pool(seats, 2, 0.0, LINGER_S, 8).start == 0


def test_a_surplus_standby_leaves_after_lingering_and_the_first_bots_never_do() -> None:
    seats = [
        seat("bot1", IDLE, idle_since=0.0),
        seat("bot2", IDLE, idle_since=0.0),
        seat("bot7", IDLE, standby=True, idle_since=50.0),
        seat("bot8", IDLE, standby=True, idle_since=40.0),
    ]
    assert plan_pool(seats, 2, 60.0, LINGER_S, 8).leave == ()  # time for a rematch
    assert plan_pool(seats, 2, 75.0, LINGER_S, 8).leave == ("bot8",)  # the longest idle
    assert plan_pool(seats, 2, 80.0, LINGER_S, 8).leave == ("bot8", "bot7")
    busy_standby = [*seats[:2], seat("bot7", BUSY, standby=True)]
    assert plan_pool(busy_standby, 2, 999.0, LINGER_S, 8).leave == ()  # it plays a person


STATES = st.sampled_from([COMING, IDLE, BUSY])


@given(
    firsts=st.lists(STATES, min_size=1, max_size=4),
    standbys=st.lists(st.tuples(STATES, st.floats(0, 100)), max_size=8),
    now=st.floats(0, 200),
)
def test_the_pool_aims_at_wanted_bots_ready_and_lets_only_surplus_standbys_go(
    firsts: list[str], standbys: list[tuple[str, float]], now: float
) -> None:
    wanted = len(firsts)
    seats = [seat(f"bot{i + 1}", state) for i, state in enumerate(firsts)]
    seats += [seat(f"s{i}", state, True, since) for i, (state, since) in enumerate(standbys)]
    moves = plan_pool(seats, wanted, now, LINGER_S, 8)
    ready = sum(1 for s in seats if s.state != BUSY)
    assert not (moves.start and moves.leave)
    assert len(standbys) + moves.start <= 8
    if ready < wanted:
        assert moves.start == min(wanted - ready, 8 - len(standbys))
    gone = {s.name: s for s in seats if s.name in moves.leave}
    assert len(gone) == len(moves.leave) <= max(0, ready - wanted)
    assert all(
        s.standby and s.state == IDLE and now - s.idle_since >= LINGER_S for s in gone.values()
    )
