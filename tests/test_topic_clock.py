"""Time controls in the game service, in memory: the invitation's clock, the clocks in the game
push, who records a time-out and when, and a move in time beating a time-out recorded by a
region that could not see it."""

from __future__ import annotations

from typing import Any

import pytest

from meridian.node.topics.clocks import TIMEOUT_GRACE_MS
from tests.service_harness import Connection, ServiceHarness, replicate


def clock_game(
    harness: ServiceHarness, host: Connection, guest: Connection, clock: dict[str, int]
) -> str:
    invite = harness.request(host, "invite", to="bob", clock=clock)
    assert invite["ok"], invite
    assert invite["invite"]["clock"] == {"increment_s": 0, **clock}
    accepted = harness.request(guest, "accept", invite=invite["invite"]["iid"])
    return str(accepted["game"])


def mover_of(harness: ServiceHarness, a: Connection, b: Connection, gid: str) -> Connection:
    view = harness.game_view(a, gid)
    return a if view["you"] == view["to_move"] else b


def move(harness: ServiceHarness, conn: Connection, gid: str) -> dict[str, Any]:
    legal = harness.game_view(conn, gid)["legal"]
    return harness.request(conn, "move", game=gid, move=legal[0])


@pytest.mark.parametrize(
    ("clock", "why"),
    [
        ({"initial_s": 5}, ">= 15"),
        ({"initial_s": 600, "increment_s": 61}, "<= 60"),
        ({"initial_s": 11 * 3600}, "<= 10800"),
        ({"initial_s": 600, "byoyomi": 3}, "unknown field"),
        ({"increment_s": 5}, "missing required field"),
    ],
)
def test_an_invitation_with_a_time_control_out_of_its_limits_is_refused(
    clock: dict[str, int], why: str
) -> None:
    harness = ServiceHarness()
    alice, _bob = harness.online("alice"), harness.online("bob")
    reply = harness.request(alice, "invite", to="bob", clock=clock)
    assert reply["error"]["code"] == "bad_request" and why in reply["error"]["message"]


@pytest.mark.parametrize("oldest_peer", [2, 3, None])
def test_time_controls_wait_while_a_linked_region_runs_a_release_without_them(
    oldest_peer: int | None,
) -> None:
    """A protocol-2 region ignores clocks and refuses time-out records (it would play the game
    untimed and end it differently): during a rolling upgrade timed invitations are refused,
    untimed ones still work."""
    harness = ServiceHarness()
    harness.progress.peer_protocol = oldest_peer
    alice, _bob = harness.online("alice"), harness.online("bob")
    timed = harness.request(alice, "invite", to="bob", clock={"initial_s": 600, "increment_s": 0})
    if oldest_peer == 2:
        assert timed["error"]["code"] == "unavailable"
        assert "upgrade" in timed["error"]["message"]
        assert "invite" in harness.request(alice, "invite", to="bob")
    else:
        assert timed["invite"]["clock"] == {"initial_s": 600, "increment_s": 0}


def test_the_game_push_shows_both_clocks_and_an_increment_after_each_turn() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = clock_game(harness, alice, bob, {"initial_s": 60, "increment_s": 5})
    view = harness.game_view(alice, gid)
    assert view["clock"] == {
        "initial_ms": 60_000,
        "increment_ms": 5000,
        "remaining_ms": [60_000, 60_000],
        "running": view["to_move"],
    }
    mover = mover_of(harness, alice, bob, gid)
    seat = view["to_move"]
    harness.advance(4)
    while harness.game_view(alice, gid)["to_move"] == seat:  # one whole turn: claim, play, draw
        assert move(harness, mover, gid)["ok"]
    clock = harness.game_view(alice, gid)["clock"]
    assert clock["running"] == 1 - seat
    assert clock["remaining_ms"][seat] == 60_000 - 4000 + 5000
    carol, dave = harness.online("carol"), harness.online("dave")
    plain = harness.game_view(carol, harness.start_game(carol, dave, "dave"))
    assert plain["clock"] is None, "no time control asked for, none given"


def test_the_serving_node_records_the_time_out_at_the_deadline() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = clock_game(harness, alice, bob, {"initial_s": 30})
    seat = harness.game_view(alice, gid)["to_move"]
    mover = mover_of(harness, alice, bob, gid)
    legal = harness.game_view(mover, gid)["legal"]
    harness.advance(29.9)
    assert harness.game_view(alice, gid)["status"] == "live"
    assert harness.service.next_deadline() is not None
    harness.advance(0.2)
    view = harness.game_view(alice, gid)
    assert view["status"] == "finished"
    assert view["result"] == {"winner": 1 - seat, "reason": "time"}
    assert view["clock"]["remaining_ms"][seat] == 0 and view["clock"]["running"] is None
    assert harness.game_view(bob, gid)["result"]["reason"] == "time"
    late = harness.request(mover, "move", game=gid, move=legal[0])
    assert late["error"]["code"] == "game_over"
    assert any(d.startswith("log:") for d in harness.documents.docs), "the result is logged"


def test_a_move_after_the_deadline_is_refused_with_time_out() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = clock_game(harness, alice, bob, {"initial_s": 30})
    mover = mover_of(harness, alice, bob, gid)
    legal = harness.game_view(mover, gid)["legal"]
    harness.wall_ms += 30_001  # the clock passed the deadline; no tick ran yet
    reply = harness.request(mover, "move", game=gid, move=legal[0])
    assert reply["error"]["code"] == "time_out"
    assert harness.game_view(alice, gid)["result"]["reason"] == "time"


def test_a_timed_game_cannot_be_paused() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = clock_game(harness, alice, bob, {"initial_s": 30})
    for player in (alice, bob):
        reply = harness.request(player, "move", game=gid, move={"type": "pause"})
        assert reply["error"]["code"] == "illegal_move" and "paused" in reply["error"]["message"]
    assert harness.game_view(alice, gid)["clock"]["running"] is not None


def test_a_client_cannot_send_a_time_out() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = clock_game(harness, alice, bob, {"initial_s": 30})
    mover = mover_of(harness, alice, bob, gid)
    harness.wall_ms += 31_000
    reply = harness.request(mover, "move", game=gid, move={"type": "timeout"})
    assert reply["error"]["code"] == "bad_request"


def cross_clock_game(clock: dict[str, int]) -> tuple[str, dict[str, Any]]:
    """alice on eu, bob on us, a game with `clock`; its gid and who is where."""
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    alice = eu.online("alice")
    replicate(eu, us)
    bob = us.online("bob")
    replicate(us, eu)
    invite = eu.request(alice, "invite", to="bob", clock=clock)["invite"]
    replicate(eu, us)
    gid = str(us.request(bob, "accept", invite=invite["iid"])["game"])
    replicate(us, eu)
    seat = eu.game_view(alice, gid)["to_move"]
    alice_moves = eu.game_view(alice, gid)["you"] == seat
    who = {
        "seat": seat,
        "mover": (eu, alice) if alice_moves else (us, bob),
        "waiter": (us, bob) if alice_moves else (eu, alice),
    }
    return gid, who


def test_when_the_movers_node_is_gone_the_opponents_node_records_the_time_out_after_the_grace() -> (
    None
):
    gid, who = cross_clock_game({"initial_s": 30})
    (_mover_node, _mover), (waiter_node, waiter) = who["mover"], who["waiter"]
    # The mover's node is cut off: nothing it does reaches the waiter's node.
    waiter_node.advance(31)
    assert waiter_node.game_view(waiter, gid)["status"] == "live", "not the serving node: it waits"
    waiter_node.advance(TIMEOUT_GRACE_MS / 1000)
    view = waiter_node.game_view(waiter, gid)
    assert view["result"] == {"winner": 1 - who["seat"], "reason": "time"}


def test_a_move_in_time_beats_a_time_out_recorded_by_a_node_whose_clock_runs_ahead() -> None:
    gid, who = cross_clock_game({"initial_s": 30})
    (mover_node, mover), (waiter_node, waiter) = who["mover"], who["waiter"]
    # The regions cannot talk. The waiter's node runs 15 s ahead: by its clock the grace is over
    # while the mover, on a node with the right time, still has time and moves.
    waiter_node.wall_ms += 15_000
    waiter_node.advance(26)
    assert waiter_node.game_view(waiter, gid)["result"]["reason"] == "time"
    mover_node.advance(25)
    assert move(mover_node, mover, gid)["ok"]
    replicate(waiter_node, mover_node)
    replicate(mover_node, waiter_node)
    for node, conn in ((mover_node, mover), (waiter_node, waiter)):
        view = node.game_view(conn, gid)
        assert view["status"] == "live" and view["ply"] == 1, "the move stamped in time won"
    assert waiter.pushes("rollback")[-1]["ply"] == 0


def test_a_player_who_moves_to_another_region_keeps_the_time_they_had() -> None:
    gid, who = cross_clock_game({"initial_s": 60})
    (mover_node, mover), (waiter_node, waiter) = who["mover"], who["waiter"]
    mover_node.advance(10)
    assert move(mover_node, mover, gid)["ok"]
    replicate(mover_node, waiter_node)
    # The mover's node dies; the mover logs in on the waiter's node and plays on from there.
    name = "alice" if mover_node.service.state.region == "eu" else "bob"
    moved = waiter_node.online(name, register=False)
    waiter_node.advance(5)
    view = waiter_node.game_view(moved, gid)
    seat = who["seat"]
    if view["to_move"] == seat:
        assert move(waiter_node, moved, gid)["ok"]
    clock = waiter_node.game_view(waiter, gid)["clock"]
    assert clock["remaining_ms"][seat] <= 60_000 - 10_000
    assert clock["remaining_ms"][seat] >= 60_000 - 16_000
