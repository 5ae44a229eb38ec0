"""Rollback notices, in memory: each client is told exactly the ply a game went back to for
what it was shown, after crossing a partition (hello's ``seen``) or after it stopped watching."""

from __future__ import annotations

from typing import Any

from meridian.node.rollback_notices import UNSEEN_HEAD_WAIT_S
from tests.service_harness import Connection, ServiceHarness, replicate


class Split:
    """A game between alice and bob known to eu and us, each player logged in on both sides,
    and then the regions cut off from each other (nothing is replicated until `heal`)."""

    def __init__(self) -> None:
        self.eu, self.us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
        eu, us = self.eu, self.us
        alice, bob = eu.online("alice"), eu.online("bob")
        self.gid = eu.start_game(alice, bob, "bob")
        replicate(eu, us)
        self.on_eu = self._by_seat(eu, alice, bob)
        us.wall_ms = eu.wall_ms + 1_000  # the twins' sessions are the newest
        twins = us.online("alice", register=False), us.online("bob", register=False)
        self.on_us = self._by_seat(us, *twins)

    def _by_seat(
        self, harness: ServiceHarness, alice: Connection, bob: Connection
    ) -> dict[int, Connection]:
        seat = harness.game_view(alice, self.gid)["you"]
        return {seat: alice, 1 - seat: bob}

    def travel(self, head: str, ply: int) -> Connection:
        """alice, last shown `ply` with `head` on eu, says hello on us (as the newest session)."""
        self.us.wall_ms = max(self.us.wall_ms, self.eu.wall_ms) + 5_000
        conn = self.us.open()
        token = self.us.login("alice")
        seen: dict[str, Any] = {self.gid: {"ply": ply, "head": head}}
        assert self.us.request(conn, "hello", token=token, seen=seen)["ok"]
        return conn

    def play(self, harness: ServiceHarness, players: dict[int, Connection], plies: int) -> str:
        """`plies` moves on one side (its first legal or last legal move); the last head."""
        pick = 0 if harness is self.eu else -1
        for _ in range(plies):
            harness.advance(0.1)
            view = harness.game_view(players[0], self.gid)
            mover = players[view["to_move"]]
            move = harness.game_view(mover, self.gid)["legal"][pick]
            assert harness.request(mover, "move", game=self.gid, move=move)["ok"]
        return str(harness.game_view(players[0], self.gid)["head"])

    def heal(self) -> None:
        replicate(self.eu, self.us)
        replicate(self.us, self.eu)

    def rollbacks(self, conn: Connection) -> list[int]:
        return [p["ply"] for p in conn.pushes("rollback") if p["game"] == self.gid]


def test_a_player_who_crossed_a_partition_is_told_the_fork_once_the_branch_arrives() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)  # us moves first: its move wins the same-ply merge
    split.eu.wall_ms = split.us.wall_ms + 1_000
    head = split.play(split.eu, split.on_eu, 2)  # alice is shown plies 1 and 2 on eu
    # alice crosses to us, which holds neither of those moves: it cannot know where her branch
    # left its chain, only that it left at ply 1 or below (its own chain is 1 ply long)
    travelled = split.travel(head, 2)
    split.us.advance(UNSEEN_HEAD_WAIT_S + 0.1)
    assert split.rollbacks(travelled) == [1]
    split.heal()
    # eu's moves arrive: her branch left us's chain at the deal, below what she was told
    assert split.rollbacks(travelled) == [1, 0]
    assert split.us.game_view(travelled, split.gid)["ply"] == 1
    split.us.advance(1.0)
    replicate(split.eu, split.us)
    assert split.rollbacks(travelled) == [1, 0], "told once"


def test_a_player_whose_unseen_branch_wins_is_not_told_again() -> None:
    split = Split()
    head = split.play(split.eu, split.on_eu, 2)  # eu moves first: its branch wins
    split.us.wall_ms = split.eu.wall_ms + 1_000
    split.play(split.us, split.on_us, 1)
    travelled = split.travel(head, 2)
    split.us.advance(UNSEEN_HEAD_WAIT_S + 0.1)
    assert split.rollbacks(travelled) == [1]
    split.heal()
    # us goes back to the deal for everyone here (its own move lost), and shows eu's branch
    assert split.rollbacks(travelled)[-1] == 0
    assert split.us.game_view(travelled, split.gid)["head"] == head
    assert not split.us.service.games_topic.rollbacks.unsettled, "the branch is settled"


def test_a_watcher_who_stopped_watching_is_told_what_it_saw_was_undone() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)  # us moves first: its move wins
    split.eu.wall_ms = split.us.wall_ms + 1_000
    carol, dave = split.eu.online("carol"), split.eu.online("dave")
    assert split.eu.request(carol, "watch", game=split.gid)["ok"]
    assert split.eu.request(dave, "watch", game=split.gid)["ok"]
    split.play(split.eu, split.on_eu, 2)
    assert split.eu.game_view(carol, split.gid)["ply"] == 2
    assert split.eu.request(carol, "unwatch")["ok"]
    erin = split.eu.online("erin")  # never watched
    split.heal()
    assert split.rollbacks(carol) == [0], "carol saw plies 1 and 2, both undone"
    assert split.rollbacks(dave) == [0]  # still watching: told with the players
    assert split.rollbacks(erin) == []
    split.eu.advance(1.0)
    split.heal()
    assert split.rollbacks(carol) == [0], "told once"


def test_a_watcher_who_left_before_the_fork_is_not_told() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)
    split.eu.wall_ms = split.us.wall_ms + 1_000
    carol = split.eu.online("carol")
    assert split.eu.request(carol, "watch", game=split.gid)["ok"]  # shown the deal only
    assert split.eu.request(carol, "unwatch")["ok"]
    split.play(split.eu, split.on_eu, 2)
    split.heal()
    assert split.rollbacks(split.on_eu[0]) == [0]
    assert split.rollbacks(carol) == [], "nothing carol saw was undone"


def hello_on(harness: ServiceHarness, name: str, seen: dict[str, Any], wall_ms: int) -> Connection:
    """`name` says hello on `harness` as the newest session, reporting `seen`."""
    harness.wall_ms = max(harness.wall_ms, wall_ms) + 5_000
    conn = harness.open()
    assert harness.request(conn, "hello", token=harness.login(name), seen=seen)["ok"]
    return conn


def test_a_bound_travels_with_the_player_and_is_settled_by_a_third_node() -> None:
    split = Split()
    ap = ServiceHarness("ap-1", "ap", seed=3)
    replicate(split.eu, ap)
    split.play(split.us, split.on_us, 1)  # us moves first: its move wins the same-ply merge
    replicate(split.us, ap)  # ap is on us's side of the partition
    split.eu.wall_ms = split.us.wall_ms + 1_000
    head = split.play(split.eu, split.on_eu, 2)  # alice is shown plies 1 and 2 on eu
    on_us = split.travel(head, 2)  # us lacks her line: it can only bound it
    split.us.advance(UNSEEN_HEAD_WAIT_S + 0.1)
    [bound] = [p for p in on_us.pushes("rollback") if p["game"] == split.gid]
    assert (bound["ply"], bound["settled"], bound["line"]) == (1, False, {"ply": 2, "head": head})
    # she moves on to ap, which lacks her line too, reporting it as lost beside us's view
    shown = split.us.game_view(on_us, split.gid)
    lost = {"ply": 2, "head": head, "told": 1}
    seen = {split.gid: {"ply": shown["ply"], "head": shown["head"], "lost": [lost]}}
    on_ap = hello_on(ap, "alice", seen, split.us.wall_ms)
    ap.advance(UNSEEN_HEAD_WAIT_S + 0.1)
    assert split.rollbacks(on_ap) == [], "nothing new to say until ap can place the line"
    replicate(split.eu, ap)  # the heal reaches ap: her line left at the deal
    notices = [p for p in on_ap.pushes("rollback") if p["game"] == split.gid]
    assert [(p["ply"], p["settled"], p["line"]["head"]) for p in notices] == [(0, True, head)]


def test_a_lost_line_a_node_can_place_is_settled_at_hello() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)
    split.eu.wall_ms = split.us.wall_ms + 1_000
    head = split.play(split.eu, split.on_eu, 2)
    split.heal()  # us now holds both lines
    seen = {split.gid: {"ply": 1, "head": "", "lost": [{"ply": 2, "head": head, "told": 1}]}}
    conn = hello_on(split.us, "alice", seen, split.eu.wall_ms)
    notices = [p for p in conn.pushes("rollback") if p["game"] == split.gid]
    assert [(p["ply"], p["settled"]) for p in notices] == [(0, True)]


def test_a_watcher_who_moved_to_another_node_is_told_there() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)  # us moves first: its move wins
    split.eu.wall_ms = split.us.wall_ms + 1_000
    ap = ServiceHarness("ap-1", "ap", seed=3)
    carol = split.eu.online("carol")
    assert split.eu.request(carol, "watch", game=split.gid)["ok"]
    head = split.play(split.eu, split.on_eu, 2)
    assert split.eu.game_view(carol, split.gid)["head"] == head
    replicate(split.eu, ap)  # ap is on eu's side: carol's view is on its chain
    on_ap = hello_on(ap, "carol", {split.gid: {"ply": 2, "head": head}}, split.eu.wall_ms)
    assert split.rollbacks(on_ap) == []
    replicate(split.us, ap)  # the heal: the game goes back to the deal on ap
    assert split.rollbacks(on_ap) == [0], "carol watched plies 1 and 2 on eu"


def test_a_watcher_whose_connection_a_newer_login_replaced_is_told_on_the_new_one() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)
    split.eu.wall_ms = split.us.wall_ms + 1_000
    carol = split.eu.online("carol")
    assert split.eu.request(carol, "watch", game=split.gid)["ok"]
    split.play(split.eu, split.on_eu, 2)
    split.eu.advance(1.0)
    again = split.eu.online("carol", register=False)  # a second login of carol, here
    split.eu.advance(1.0)
    assert carol.closed is not None and again.closed is None
    split.heal()
    assert split.rollbacks(again) == [0], "carol saw plies 1 and 2 on her first connection"


def test_a_player_waiting_for_a_notice_gets_no_newer_view_before_it() -> None:
    split = Split()
    split.play(split.us, split.on_us, 1)
    split.eu.wall_ms = split.us.wall_ms + 1_000
    head = split.play(split.eu, split.on_eu, 2)
    travelled = split.travel(head, 2)  # us lacks her line: its view of the game waits
    split.us.advance(0.5)
    split.play(split.us, split.on_us, 1)  # a move on us meanwhile
    assert [p for p in travelled.pushes("game") if p["game"] == split.gid] == []
    split.us.advance(UNSEEN_HEAD_WAIT_S)
    kinds = [p["type"] for p in travelled.pushes() if p.get("game") == split.gid]
    assert kinds[:2] == ["rollback", "game"], "the bound first, then the view (with the move)"
    assert split.us.game_view(travelled, split.gid)["ply"] == 2
