"""The hybrid logical clock: monotonic, causal, bounded, and its text encoding sorts like stamps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meridian.crdt_models.hlc import (
    MAX_COUNTER,
    MAX_WALL_MS,
    ClockAheadError,
    HybridLogicalClock,
    Stamp,
)

MAX_AHEAD_MS = 1_000
BASE_MS = 1_732_000_000_000

node_ids = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)
stamps = st.builds(
    Stamp,
    wall_ms=st.integers(0, MAX_WALL_MS),
    counter=st.integers(0, MAX_COUNTER),
    node_id=node_ids,
)


@dataclass
class FakePhysicalClock:
    """A settable physical clock; tests move it forwards and backwards at will."""

    ms: int = BASE_MS

    def __call__(self) -> int:
        return self.ms


# One step of a run: move the physical clock by `jump` ms (may be negative), then either stamp
# a local event (remote is None) or observe a remote stamp `offset` ms from the physical clock
# (offsets above MAX_AHEAD_MS must be refused).
steps = st.lists(
    st.tuples(
        st.integers(-5_000, 5_000),
        st.none()
        | st.tuples(
            st.integers(-10_000, 2 * MAX_AHEAD_MS),
            st.sampled_from([0, 1, MAX_COUNTER - 1, MAX_COUNTER]),
            node_ids,
        ),
    ),
    max_size=60,
)


def step(
    clock: HybridLogicalClock, physical_ms: int, remote_spec: tuple[int, int, str] | None
) -> Stamp:
    """Apply one step; a refused remote stamp must leave the clock unchanged."""
    if remote_spec is None:
        return clock.now()
    offset, counter, node_id = remote_spec
    remote = Stamp(max(0, physical_ms + offset), counter, node_id)
    if offset > MAX_AHEAD_MS:
        before = clock.last
        with pytest.raises(ClockAheadError):
            clock.observe(remote)
        assert clock.last == before
        return clock.now()
    stamp = clock.observe(remote)
    assert (stamp.wall_ms, stamp.counter) > (remote.wall_ms, remote.counter)
    return stamp


@given(steps)
def test_stamps_strictly_increase_whatever_the_physical_clock_does(
    run: list[tuple[int, tuple[int, int, str] | None]],
) -> None:
    physical = FakePhysicalClock()
    clock = HybridLogicalClock("eu-1", physical, max_ahead_ms=MAX_AHEAD_MS)
    previous = clock.last
    for jump, remote_spec in run:
        physical.ms = max(0, physical.ms + jump)
        stamp = step(clock, physical.ms, remote_spec)
        assert stamp > previous
        assert stamp == clock.last
        assert stamp.node_id == "eu-1"
        # Remote stamps never pull us further than MAX_AHEAD_MS ahead of the physical clock
        # (+1 ms when the counter overflows).
        assert stamp.wall_ms <= max(previous.wall_ms, physical.ms + MAX_AHEAD_MS) + 1
        previous = stamp


@given(
    st.builds(Stamp, st.integers(0, 2**50), st.integers(0, MAX_COUNTER), node_ids),
    st.integers(0, 2**50),
    st.integers(0, 2**50),
)
def test_observe_result_exceeds_local_and_remote(
    remote: Stamp, local_ms: int, physical_ms: int
) -> None:
    physical = FakePhysicalClock(physical_ms)
    clock = HybridLogicalClock(
        "eu-1", physical, max_ahead_ms=MAX_WALL_MS, last=Stamp(local_ms, 7, "eu-1")
    )
    before = clock.last
    merged = clock.observe(remote)
    assert (merged.wall_ms, merged.counter) > (remote.wall_ms, remote.counter)
    assert merged > before
    assert merged.wall_ms >= physical_ms


@given(stamps, stamps)
def test_encoded_order_equals_stamp_order(a: Stamp, b: Stamp) -> None:
    assert (a.encode() < b.encode()) == (a < b)
    assert (a.encode() == b.encode()) == (a == b)


@given(stamps)
def test_encode_decode_round_trip(stamp: Stamp) -> None:
    assert Stamp.decode(stamp.encode()) == stamp


def test_encoding_is_fixed_width_text() -> None:
    assert Stamp(1_732_000_000_000, 0, "eu-1").encode() == "0001732000000000.00000.eu-1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1732000000000.0.eu-1",  # not zero-padded
        "0001732000000000.00000.",  # no node id
        "0001732000000000.00000.EU-1",  # upper case node id
        "0001732000000000-00000-eu-1",
        "9999999999999999.00000.eu-1",  # wall_ms above 2**53
    ],
)
def test_decode_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"stamp|wall_ms"):
        Stamp.decode(text)


@pytest.mark.parametrize(
    ("wall_ms", "counter", "node_id"),
    [(-1, 0, "a"), (2**53, 0, "a"), (0, MAX_COUNTER + 1, "a"), (0, 0, ""), (0, 0, "a.b")],
)
def test_stamp_rejects_out_of_range_fields(wall_ms: int, counter: int, node_id: str) -> None:
    with pytest.raises(ValueError, match="Stamp"):
        Stamp(wall_ms, counter, node_id)


@given(st.integers(0, 2**45), st.integers(0, MAX_COUNTER), st.integers(-(10**6), 10**6))
def test_resuming_from_last_never_goes_backwards(
    last_ms: int, last_counter: int, skew: int
) -> None:
    persisted = Stamp(last_ms, last_counter, "eu-1")
    physical = FakePhysicalClock(max(0, last_ms + skew))  # restarted with a clock jumped back
    clock = HybridLogicalClock("eu-1", physical, last=persisted)
    assert clock.now() > persisted


@given(st.integers(1, 10**9), st.integers(0, MAX_COUNTER))
def test_remote_too_far_ahead_is_rejected_and_changes_nothing(excess: int, counter: int) -> None:
    physical = FakePhysicalClock()
    clock = HybridLogicalClock("eu-1", physical, max_ahead_ms=MAX_AHEAD_MS)
    before = clock.now()
    remote = Stamp(BASE_MS + MAX_AHEAD_MS + excess, counter, "us-1")
    with pytest.raises(ClockAheadError, match="ahead"):
        clock.observe(remote)
    assert clock.last == before


def test_remote_exactly_at_the_limit_is_accepted() -> None:
    clock = HybridLogicalClock("eu-1", FakePhysicalClock(), max_ahead_ms=MAX_AHEAD_MS)
    merged = clock.observe(Stamp(BASE_MS + MAX_AHEAD_MS, 3, "us-1"))
    assert merged == Stamp(BASE_MS + MAX_AHEAD_MS, 4, "eu-1")


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = HybridLogicalClock(
        "eu-1", FakePhysicalClock(), last=Stamp(BASE_MS, MAX_COUNTER, "eu-1")
    )
    assert clock.now() == Stamp(BASE_MS + 1, 0, "eu-1")


def test_now_follows_the_physical_clock_when_it_moves_forward() -> None:
    physical = FakePhysicalClock()
    clock = HybridLogicalClock("eu-1", physical)
    assert clock.now() == Stamp(BASE_MS, 0, "eu-1")
    assert clock.now() == Stamp(BASE_MS, 1, "eu-1")
    physical.ms += 5
    assert clock.now() == Stamp(BASE_MS + 5, 0, "eu-1")


def test_now_after_is_above_a_stamp_from_a_clock_that_runs_ahead() -> None:
    clock = HybridLogicalClock("eu-1", FakePhysicalClock(), max_ahead_ms=MAX_AHEAD_MS)
    ahead = Stamp(BASE_MS + 500, 3, "us-1").encode()  # written where the clock runs 0.5 s ahead
    assert clock.now_after(ahead) > Stamp.decode(ahead)
    assert clock.now() > Stamp.decode(ahead), "and so is every later stamp here"


def test_now_after_an_unreadable_or_runaway_stamp_is_a_plain_now() -> None:
    physical = FakePhysicalClock()
    clock = HybridLogicalClock("eu-1", physical, max_ahead_ms=MAX_AHEAD_MS)
    assert clock.now_after("not a stamp").wall_ms == BASE_MS
    runaway = Stamp(BASE_MS + 10 * MAX_AHEAD_MS, 0, "us-1").encode()
    assert clock.now_after(runaway).wall_ms == BASE_MS, "a runaway clock is not followed"
