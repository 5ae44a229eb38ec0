"""Archive topic, in memory: saving, the saved list, resuming, and the log of finished games."""

from __future__ import annotations

import json
import random

from meridian.crdt_models.archive import read_archive
from meridian.node.service_host import PICTURE_INTERVAL_S
from tests.service_harness import Connection, ServiceHarness


def _moves(harness: ServiceHarness, gid: str, players: list[Connection], plies: int) -> None:
    rng = random.Random(1)
    for _ in range(plies):
        view = harness.game_view(players[0], gid)
        mover = next(c for c in players if harness.game_view(c, gid)["you"] == view["to_move"])
        harness.advance(0.1)
        legal = harness.game_view(mover, gid)["legal"]
        assert harness.request(mover, "move", game=gid, move=rng.choice(legal))["ok"]


def test_a_saved_game_is_listed_for_both_and_resumes_at_the_same_position() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = harness.start_game(alice, bob, "bob")
    _moves(harness, gid, [alice, bob], 6)
    position = harness.game_view(alice, gid)["view"]
    assert harness.request(alice, "save", game=gid)["ok"]
    assert harness.game_view(bob, gid)["status"] == "saved"
    listed = harness.request(bob, "saved")["games"]
    assert [(g["gid"], g["moves"]) for g in listed] == [(gid, 6)]
    invite = harness.request(bob, "invite", to="alice", resume=gid)["invite"]
    resumed = harness.request(alice, "accept", invite=invite["iid"])["game"]
    view = harness.game_view(bob, resumed)
    assert view["status"] == "live" and view["ply"] == 6
    assert harness.game_view(alice, resumed)["view"] == position
    assert harness.request(alice, "saved")["games"] == []


def test_only_a_saved_game_between_the_two_players_can_be_resumed() -> None:
    harness = ServiceHarness()
    alice, bob, carol = harness.online("alice"), harness.online("bob"), harness.online("carol")
    gid = harness.start_game(alice, bob, "bob")
    harness.request(alice, "save", game=gid)
    refused = harness.request(carol, "invite", to="alice", resume=gid)
    assert refused["error"]["code"] == "not_found"
    assert harness.request(carol, "save", game=gid)["error"]["code"] == "not_player"


def test_a_finished_game_is_logged_once_with_its_moves() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = harness.start_game(alice, bob, "bob")
    _moves(harness, gid, [alice, bob], 3)
    mover = harness.game_view(alice, gid)["to_move"]
    giver = alice if harness.game_view(alice, gid)["you"] == mover else bob
    harness.request(giver, "give_up", game=gid)
    logs = [d for d in harness.documents.docs if d.startswith("log:")]
    assert len(logs) == 1
    entry = read_archive(harness.documents.docs[logs[0]])[gid]
    assert len(entry.moves) == 4 and entry.result is not None
    writes = harness.documents.writes.count(logs[0])
    harness.service.doc_changed(f"game:{gid}", 0)
    harness.deliver()
    assert harness.documents.writes.count(logs[0]) == writes


def test_a_game_saved_here_leaves_the_table_at_the_next_deadline_without_other_changes() -> None:
    """The node's host runs `process` only for document changes and at `next_deadline`: a game
    ended by a request here changes no document that is not already read, so the deadline must
    bring its players back from the table (an invitation right after the save was refused as
    "you are at a table" until some other change came)."""
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = harness.start_game(alice, bob, "bob")
    _moves(harness, gid, [alice, bob], 2)
    service = harness.service
    save = {"id": "save", "type": "save", "game": gid}
    service.receive(alice.conn_id, json.dumps(save), harness.now)  # as the host does: no process
    due = service.next_deadline()
    assert due is not None and due <= harness.now + PICTURE_INTERVAL_S
    service.process(due)
    assert service.state.picture.playing == {}


def test_right_after_a_save_the_players_may_invite_before_the_picture_is_refreshed() -> None:
    """The picture of who sits at which table is refreshed at most every few tenths of a
    second (here 5 s); a game that ended here in between no longer counts as a table."""
    harness = ServiceHarness(picture_interval_s=5.0)
    alice, bob = harness.online("alice"), harness.online("bob")
    harness.advance(6)  # (each step waits for the next refresh of the picture)
    invite = harness.request(alice, "invite", to="bob")["invite"]
    harness.advance(6)
    gid = harness.request(bob, "accept", invite=invite["iid"])["game"]
    harness.advance(6)
    _moves(harness, gid, [alice, bob], 2)
    assert harness.request(alice, "save", game=gid)["ok"]
    assert harness.service.state.picture.playing  # still the picture of before the save
    assert harness.request(alice, "invite", to="bob", resume=gid)["ok"]
