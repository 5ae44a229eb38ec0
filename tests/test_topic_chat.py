"""Chat topic, in memory: to a player, to a table, who may chat at a table, limits, pruning."""

from __future__ import annotations

from typing import Any

from meridian.crdt_models.records import root_map
from tests.service_harness import ServiceHarness


def test_a_message_to_a_player_reaches_only_that_player() -> None:
    harness = ServiceHarness()
    alice, bob, carol = harness.online("alice"), harness.online("bob"), harness.online("carol")
    assert harness.request(alice, "chat", to="bob", text="hello")["ok"]
    assert bob.pushes("chat") == [{"type": "chat", "from": "alice", "text": "hello", "to": "bob"}]
    assert carol.pushes("chat") == []


def test_the_players_and_watchers_chat_at_a_table_and_a_stranger_cannot() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    carol, dave = harness.online("carol"), harness.online("dave")
    gid = harness.start_game(alice, bob, "bob")
    harness.request(carol, "watch", game=gid)
    assert harness.request(alice, "chat", game=gid, text="good luck")["ok"]
    assert harness.request(carol, "chat", game=gid, text="go bob")["ok"]
    stranger = harness.request(dave, "chat", game=gid, text="spam")
    assert stranger["error"]["code"] == "not_player"
    texts = [m["text"] for m in bob.pushes("chat")]
    assert texts == ["good luck", "go bob"]
    assert dave.pushes("chat") == []


def test_chat_limits_and_targets() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    harness.register("bob")
    assert harness.request(alice, "chat", to="bob", text="x" * 501)["error"]["code"] == "too_large"
    assert harness.request(alice, "chat", to="bob", text="  ")["error"]["code"] == "bad_request"
    assert harness.request(alice, "chat", to="bob", text="hi")["error"]["code"] == "offline"
    assert (
        harness.request(alice, "chat", to="nobody1", text="hi")["error"]["code"] == "unknown_user"
    )
    assert harness.request(alice, "chat", game="nope", text="hi")["error"]["code"] == "not_found"


def test_chat_messages_leave_the_presence_document_after_30_seconds() -> None:
    harness = ServiceHarness()
    alice, _bob = harness.online("alice"), harness.online("bob")
    harness.request(alice, "chat", to="bob", text="hello")

    def chats() -> dict[str, Any]:
        return dict(root_map(harness.documents.docs["presence:eu-1"], "chats"))

    assert len(chats()) == 1
    harness.advance(31)
    assert chats() == {}
