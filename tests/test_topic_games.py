"""Games topic, in memory: moves, turns, watching, the push gate, same-ply merges."""

from __future__ import annotations

import random

from meridian.node.delivery import REPLICATION_WAIT_S
from meridian.node.game_tracker import LIVE
from meridian.node.placement_hooks import PlacementHooks
from meridian.node.topics.games import PARK_FALLBACK_S
from tests.service_harness import Connection, ServiceHarness, replicate


def seats(harness: ServiceHarness, a: Connection, b: Connection, gid: str) -> dict[int, Connection]:
    first = harness.game_view(a, gid)["you"]
    return {first: a, 1 - first: b}


def play(harness: ServiceHarness, gid: str, players: dict[int, Connection], plies: int) -> int:
    rng = random.Random(4)
    ply = 0
    for _ in range(plies):
        view = harness.game_view(players[0], gid)
        if view["status"] != "live":
            break
        mover = players[view["to_move"]]
        harness.advance(0.1)  # players think (and stay under the rate limit)
        move = rng.choice(harness.game_view(mover, gid)["legal"])
        reply = harness.request(mover, "move", game=gid, move=move)
        assert reply["ok"], reply
        ply = reply["ply"]
    return ply


def test_two_players_play_a_game_to_the_end_and_a_watcher_sees_it() -> None:
    harness = ServiceHarness()
    alice, bob, carol = harness.online("alice"), harness.online("bob"), harness.online("carol")
    gid = harness.start_game(alice, bob, "bob")
    watched = harness.request(carol, "watch", game=gid)
    assert watched["game"]["you"] is None and watched["game"]["legal"] == []
    players = seats(harness, alice, bob, gid)
    play(harness, gid, players, 500)
    final = harness.game_view(carol, gid)
    assert final["status"] == "finished" and final["result"] is not None
    assert (
        harness.game_view(alice, gid)["ply"] == final["ply"] == harness.game_view(bob, gid)["ply"]
    )
    assert any(d.startswith("log:") for d in harness.documents.docs), "the finished game is logged"
    over = harness.request(alice, "move", game=gid, move={"type": "pass"})
    assert over["error"]["code"] == "game_over"


def test_a_watcher_whose_session_continues_on_another_node_goes_on_watching() -> None:
    # carol watches on eu; her session continues on us (a drain, a failover): us pushes her the
    # game at once and every move after, without a new watch request.
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    alice, bob = eu.online("alice"), eu.online("bob")
    eu.register("carol")
    carol = eu.open()
    resume = eu.request(carol, "hello", token=eu.login("carol"))["resume"]
    gid = eu.start_game(alice, bob, "bob")
    assert eu.request(carol, "watch", game=gid)["ok"]
    players = seats(eu, alice, bob, gid)
    play(eu, gid, players, 3)
    replicate(eu, us)
    carol_us = us.open()
    assert us.request(carol_us, "hello", resume=resume)["ok"]
    assert us.game_view(carol_us, gid)["ply"] == eu.game_view(alice, gid)["ply"]
    play(eu, gid, players, 2)
    replicate(eu, us)
    assert us.game_view(carol_us, gid)["ply"] == eu.game_view(alice, gid)["ply"] > 3
    assert us.game_view(carol_us, gid)["you"] is None


def test_only_the_player_to_move_may_move_and_only_legal_moves() -> None:
    harness = ServiceHarness()
    alice, bob, carol = harness.online("alice"), harness.online("bob"), harness.online("carol")
    gid = harness.start_game(alice, bob, "bob")
    players = seats(harness, alice, bob, gid)
    mover = harness.game_view(alice, gid)["to_move"]
    waiting = players[1 - mover]
    legal = harness.game_view(players[mover], gid)["legal"][0]
    assert (
        harness.request(waiting, "move", game=gid, move=legal)["error"]["code"] == "not_your_turn"
    )
    assert harness.request(carol, "move", game=gid, move=legal)["error"]["code"] == "not_player"
    bad = harness.request(
        players[mover], "move", game=gid, move={"type": "play", "card": 999, "flag": 1}
    )
    assert bad["error"]["code"] in ("illegal_move", "bad_request")
    assert harness.request(alice, "move", game="nope", move=legal)["error"]["code"] == "not_found"
    assert harness.game_view(alice, gid)["ply"] == 0


def test_a_move_and_its_pushes_wait_until_the_move_is_durable() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = harness.start_game(alice, bob, "bob")
    players = seats(harness, alice, bob, gid)
    mover_seat = harness.game_view(alice, gid)["to_move"]
    mover, other = players[mover_seat], players[1 - mover_seat]
    harness.progress.durable = harness.documents.event_no  # nothing written from now on is
    before = len(other.received)
    sent = harness.send(
        mover,
        {"id": "m", "type": "move", "game": gid, "move": harness.game_view(mover, gid)["legal"][0]},
    )
    assert sent is None and len(other.received) == before, "nothing shows the move yet"
    harness.progress.durable = None
    harness.deliver()
    assert mover.replies()[-1]["re"] == "m" and mover.replies()[-1]["ok"]
    assert harness.game_view(other, gid)["ply"] == 1


def test_give_up_ends_the_game_for_the_other_player() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = harness.start_game(alice, bob, "bob")
    players = seats(harness, alice, bob, gid)
    mover = harness.game_view(alice, gid)["to_move"]
    assert harness.request(players[mover], "give_up", game=gid)["ok"]
    final = harness.game_view(players[1 - mover], gid)
    assert final["status"] == "finished" and final["result"]["winner"] == 1 - mover


def test_two_moves_for_one_ply_in_two_regions_keep_the_earlier_and_roll_back_the_other() -> None:
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    alice = eu.online("alice")
    replicate(eu, us)
    bob = us.online("bob")
    replicate(us, eu)
    gid = _cross_game(eu, us, alice, bob)
    mover_seat = eu.game_view(alice, gid)["to_move"]
    mover_is_alice = eu.game_view(alice, gid)["you"] == mover_seat
    assert mover_is_alice or us.game_view(bob, gid)["you"] == mover_seat
    # the mover logs in a second time in the other region and both sessions move at once
    home, away = (eu, us) if mover_is_alice else (us, eu)
    name = "alice" if mover_is_alice else "bob"
    first = alice if mover_is_alice else bob
    legal = home.game_view(first, gid)["legal"]
    second = away.online(name, register=False)
    assert home.request(first, "move", game=gid, move=legal[0])["ok"]
    away.wall_ms += 50
    assert away.request(second, "move", game=gid, move=legal[-1])["ok"]
    replicate(home, away)
    replicate(away, home)
    assert away.service.merges.counts.get("same_ply") == 1
    assert second.pushes("rollback")[-1]["ply"] == 0
    assert away.game_view(second, gid)["last_move"]["move"] == legal[0]


def _cross_game(eu: ServiceHarness, us: ServiceHarness, alice: Connection, bob: Connection) -> str:
    invite = eu.request(alice, "invite", to="bob")["invite"]
    replicate(eu, us)
    gid = str(us.request(bob, "accept", invite=invite["iid"])["game"])
    replicate(us, eu)
    return gid


def _failover_story(linked: bool) -> tuple[ServiceHarness, ServiceHarness, Connection, str, str]:
    """alice and bob play on eu; alice moves there, and eu fails before us holds that move.
    Returns (eu, us, alice's new connection to us, the game, her hello's request id)."""
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    eu.register("alice")
    alice = eu.open()
    resume = eu.request(alice, "hello", token=eu.login("alice"))["resume"]
    bob = eu.online("bob")
    gid = eu.start_game(alice, bob, "bob")
    while eu.game_view(alice, gid)["to_move"] != eu.game_view(alice, gid)["you"]:
        play(eu, gid, seats(eu, alice, bob, gid), 1)  # bob's turn: alice is to move next
    replicate(eu, us)
    move = eu.game_view(alice, gid)["legal"][0]
    assert eu.request(alice, "move", game=gid, move=move)["ok"]  # eu fails: us lacks it
    us.documents.linked = linked
    alice_us = us.open()
    us.send(alice_us, {"id": "h", "type": "hello", "resume": resume})
    return eu, us, alice_us, gid, "h"


def test_a_player_arriving_after_a_failover_is_answered_once_the_regions_told_her_game() -> None:
    """The region she failed over to asks the others for her live game before it answers her
    hello: shown the position without her last move, she would move again, and that line
    would lose to the move the lost node had replicated (docs/architecture.md, *A failover
    waits for the catch-up*)."""
    eu, us, alice, gid, hello = _failover_story(linked=True)
    assert alice.replies() == [] and alice.pushes("game") == [], "nothing before the answers"
    assert us.documents.unanswered == {f"game:{gid}"}
    replicate(eu, us)  # another region answers with the move the lost node replicated to it
    us.documents.unanswered.clear()
    us.deliver()
    assert alice.replies()[-1]["re"] == hello and alice.replies()[-1]["ok"]
    shown, made = us.game_view(alice, gid), eu.game_view(alice, gid)
    assert (shown["ply"], shown["last_move"]) == (made["ply"], made["last_move"]), "her move"
    assert shown["legal"] == made["legal"], "what she may do next is what eu would let her"


def test_a_failover_in_a_region_cut_off_answers_at_once_and_a_silent_one_within_the_wait() -> None:
    _, us, alice, _, hello = _failover_story(linked=False)
    assert alice.replies()[-1]["re"] == hello, "no region to ask: nothing to wait for"
    _, us, alice, _, hello = _failover_story(linked=True)
    us.advance(REPLICATION_WAIT_S - 0.1)
    assert alice.replies() == []
    us.advance(0.2)
    assert alice.replies()[-1]["re"] == hello and alice.replies()[-1]["ok"]


def _two_games_held_by_a_third_node(
    *, partial: bool
) -> tuple[ServiceHarness, ServiceHarness, ServiceHarness, Connection]:
    """alice starts a game on eu and another on us while they are cut off from each other; me
    holds both games, nobody plays through it and it created neither."""
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    me = ServiceHarness("me-1", "me", seed=3)
    if partial:  # the placement itself does not matter here, only that it is on
        hooks = PlacementHooks(lambda homes, nodes: [], lambda doc_id: None, lambda doc_id: None)
        me.service.games_topic.placement.hooks = hooks
    alice, bob = eu.online("alice"), eu.online("bob")
    replicate(eu, us)
    carol, alice_us = us.online("carol"), us.online("alice", register=False)
    eu.start_game(alice, bob, "bob")
    us.advance(1.0)
    us.start_game(alice_us, carol, "carol")
    replicate(eu, me)
    replicate(us, me)
    return eu, us, me, alice_us


def test_a_node_holding_both_games_of_a_player_parks_the_later_if_no_host_does() -> None:
    """Under partial replication the nodes hosting the players may each hold one of the two
    games only (the earlier game's creating node lost): a node that holds both and hosts
    neither parks the later one itself once PARK_FALLBACK_S passed and it is still live."""
    _, us, me, alice_us = _two_games_held_by_a_third_node(partial=True)
    games = me.service.state.games
    first, second = sorted(games, key=lambda gid: games[gid].info.created)
    assert games[first].status == LIVE and games[second].status == LIVE
    me.advance(PARK_FALLBACK_S - 0.5)
    assert games[second].status == LIVE, "a host may still park it"
    me.advance(1.0)
    assert games[first].status == LIVE and games[second].status != LIVE
    assert me.service.merges.counts.get("two_games") == 1
    replicate(me, us)
    assert us.game_view(alice_us, second)["status"] != "live", "her second game stopped"


def test_under_full_replication_a_node_hosting_neither_player_parks_nothing() -> None:
    """Every host holds both games there, and a node that hosts neither player may see the
    earlier game live only because its end has not reached it: it counts the merge, and
    leaves the park to the hosts."""
    _, _, me, _ = _two_games_held_by_a_third_node(partial=False)
    games = me.service.state.games
    me.advance(PARK_FALLBACK_S + 5)
    assert all(game.status == LIVE for game in games.values()) and len(games) == 2
    assert me.service.merges.counts.get("two_games") == 1
