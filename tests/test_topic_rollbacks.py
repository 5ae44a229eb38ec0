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
