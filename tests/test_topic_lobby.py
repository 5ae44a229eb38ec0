"""Lobby topic, in memory: the public list, invitations, accepting, declining."""

from __future__ import annotations

from typing import Any

from meridian.crdt_models.game import GAME_PREFIX
from meridian.node.placement_hooks import PlacementHooks
from meridian.node.presence_view import PICTURE_S_PER_CONN, PICTURE_SCALE_FROM, picture_interval
from meridian.node.topics import lobby
from meridian.node.topics.sessions import HEARTBEAT_S
from tests.service_harness import Connection, ServiceHarness, replicate


def listed(conn: Connection) -> list[str]:
    """The public list as a client builds it: the ``lobby`` push, then every ``lobby_update``."""
    names: set[str] = set()
    for push in conn.pushes():
        if push["type"] == "lobby":
            names = {entry["name"] for entry in push["players"]}
        elif push["type"] == "lobby_update":
            names = (names - set(push["gone"])) | {entry["name"] for entry in push["changed"]}
    return sorted(names)


def test_the_lobby_lists_everyone_online_and_updates_when_someone_joins() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    assert listed(alice) == ["alice"]
    harness.online("bob")
    assert listed(alice) == ["alice", "bob"]
    update = alice.pushes("lobby_update")[-1]
    assert [e["name"] for e in update["changed"]] == ["bob"]
    assert update["changed"][0]["status"] == "idle"


def test_an_invitation_reaches_both_players_and_accepting_starts_a_game() -> None:
    harness = ServiceHarness()
    alice, bob, carol = harness.online("alice"), harness.online("bob"), harness.online("carol")
    invite = harness.request(alice, "invite", to="bob")["invite"]
    assert bob.pushes("invites")[-1]["incoming"][0]["iid"] == invite["iid"]
    assert alice.pushes("invites")[-1]["outgoing"][0]["to"] == "bob"
    accepted = harness.request(bob, "accept", invite=invite["iid"])
    gid = accepted["game"]
    assert harness.game_view(alice, gid)["status"] == "live"
    assert harness.game_view(bob, gid)["players"] == ["alice", "bob"]
    assert alice.pushes("invites")[-1]["outgoing"] == []
    assert status_of(carol, "alice") == ("playing", "bob", gid)  # carol is told at once
    assert status_of(alice, "bob")[0] == "idle"  # alice has a game to look at: later
    harness.advance(lobby.LOBBY_AT_TABLE_S)
    assert status_of(alice, "bob") == ("playing", "alice", gid)


def test_a_player_at_a_table_is_told_the_lists_changes_together_and_at_once_after_it() -> None:
    """While alice plays, the public list's changes reach her at most every LOBBY_AT_TABLE_S,
    all of them in one update; once her game ends she is told again at every change."""
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    gid = harness.start_game(alice, bob, "bob")
    harness.advance(lobby.LOBBY_AT_TABLE_S)
    told = len(alice.pushes("lobby_update"))
    carol = harness.online("carol")
    harness.advance(0.5)
    harness.online("dave")
    assert len(alice.pushes("lobby_update")) == told
    harness.advance(lobby.LOBBY_AT_TABLE_S)
    assert len(alice.pushes("lobby_update")) == told + 1
    assert listed(alice) == ["alice", "bob", "carol", "dave"] == listed(carol)
    assert harness.request(alice, "give_up", game=gid)["ok"]
    harness.online("erin")
    assert listed(alice) == ["alice", "bob", "carol", "dave", "erin"]


def test_invitations_to_yourself_unknown_offline_or_busy_players_are_refused() -> None:
    harness = ServiceHarness()
    alice, bob, carol = harness.online("alice"), harness.online("bob"), harness.online("carol")
    harness.register("dave")
    assert harness.request(alice, "invite", to="alice")["error"]["code"] == "bad_request"
    assert harness.request(alice, "invite", to="nobody1")["error"]["code"] == "unknown_user"
    assert harness.request(alice, "invite", to="dave")["error"]["code"] == "offline"
    harness.start_game(bob, carol, "carol")
    assert harness.request(alice, "invite", to="bob")["error"]["code"] == "busy"


def test_declining_and_retracting_withdraw_the_invitation() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    first = harness.request(alice, "invite", to="bob")["invite"]
    assert harness.request(alice, "decline", invite=first["iid"])["error"]["code"] == "not_found"
    assert harness.request(bob, "decline", invite=first["iid"])["ok"]
    assert bob.pushes("invites")[-1]["incoming"] == []
    second = harness.request(alice, "invite", to="bob")["invite"]
    assert harness.request(bob, "retract", invite=second["iid"])["error"]["code"] == "not_found"
    assert harness.request(alice, "retract", invite=second["iid"])["ok"]
    assert harness.request(bob, "accept", invite=second["iid"])["error"]["code"] == "not_found"


def test_an_invitation_ends_when_its_sender_disconnects() -> None:
    harness = ServiceHarness()
    alice, bob = harness.online("alice"), harness.online("bob")
    invite = harness.request(alice, "invite", to="bob")["invite"]
    harness.close(alice)
    assert bob.pushes("invites")[-1]["incoming"] == []
    assert harness.request(bob, "accept", invite=invite["iid"])["error"]["code"] == "not_found"


def test_an_invitation_ends_when_its_sender_continues_on_another_node() -> None:
    """The old node can no longer withdraw it for the sender (a drain, a failover), so no node
    lists it; the sender invites again from the new node and the invitee accepts that one."""
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    eu.register("alice")
    alice = eu.open()
    resume = eu.request(alice, "hello", token=eu.login("alice"))["resume"]
    bob = eu.online("bob")
    stale = eu.request(alice, "invite", to="bob")["invite"]
    replicate(eu, us)
    alice_us = us.open()
    assert us.request(alice_us, "hello", resume=resume)["ok"]
    replicate(us, eu)
    replicate(eu, us)
    assert bob.pushes("invites")[-1]["incoming"] == []
    assert alice_us.pushes("invites")[-1]["outgoing"] == []
    assert eu.request(bob, "accept", invite=stale["iid"])["error"]["code"] == "not_found"
    fresh = us.request(alice_us, "invite", to="bob")["invite"]
    replicate(us, eu)
    assert [i["iid"] for i in bob.pushes("invites")[-1]["incoming"]] == [fresh["iid"]]
    assert eu.request(bob, "accept", invite=fresh["iid"])["ok"]


def status_of(conn: Connection, name: str) -> tuple[str, str, str]:
    """(status, opponent, game) of `name` in the public list as `conn` was last told it."""
    entry: dict[str, Any] = {}
    for push in conn.pushes():
        if push["type"] in ("lobby", "lobby_update"):
            key = "players" if push["type"] == "lobby" else "changed"
            entry = next((e for e in push[key] if e["name"] == name), entry)
    return entry["status"], entry["opponent"], entry["game"]


def test_a_node_without_the_game_shows_its_players_at_a_table_until_it_ends() -> None:
    """Partial replication: us holds no copy of the game alice and bob play on eu. Their
    sessions, which every node holds, say where they sit, so us lists them as playing and
    refuses an invitation to them; once the game ends, both are free again."""
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    for node in (eu, us):  # partial replication: the game is placed on eu alone
        node.service.games_topic.placement.hooks = PlacementHooks(
            lambda homes, nodes: ["eu"], lambda doc_id: None, lambda doc_id: None
        )
    alice, bob = eu.online("alice"), eu.online("bob")
    gid = eu.start_game(alice, bob, "bob")
    replicate(eu, us, but=GAME_PREFIX)
    carol = us.online("carol")
    assert us.service.state.games.get(gid) is None
    assert status_of(carol, "alice") == ("playing", "bob", gid)
    assert status_of(carol, "bob") == ("playing", "alice", gid)
    assert us.request(carol, "invite", to="alice")["error"]["code"] == "busy"
    assert eu.request(alice, "give_up", game=gid)["ok"]
    replicate(eu, us, but=GAME_PREFIX)
    assert status_of(carol, "alice") == ("idle", "", "")
    assert us.request(carol, "invite", to="alice")["ok"]


def test_a_player_sees_the_opponent_drop_and_come_back() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    alice = harness.open()
    resume = harness.request(alice, "hello", token=token)["resume"]
    bob = harness.online("bob")
    harness.start_game(alice, bob, "bob")
    harness.close(alice)
    assert bob.pushes("opponent")[-1]["state"] == "dropped"
    harness.request(harness.open(), "hello", resume=resume)
    assert bob.pushes("opponent")[-1]["state"] == "back"


def test_a_large_lobby_shows_the_first_names_and_their_changes_only(monkeypatch: Any) -> None:
    monkeypatch.setattr(lobby, "LOBBY_MAX_ENTRIES", 2)
    harness = ServiceHarness()
    carol, alice = harness.online("carol"), harness.online("alice")
    harness.online("dave")  # the third name in order: beyond the cap, nobody is told
    assert all(
        "dave" not in [e["name"] for e in u["changed"]] for u in carol.pushes("lobby_update")
    )
    bob = harness.online("bob")  # among the first two names: carol leaves the list shown
    assert listed(bob) == ["alice", "bob"]
    update = alice.pushes("lobby_update")[-1]
    assert [e["name"] for e in update["changed"]] == ["bob"] and update["gone"] == ["carol"]
    assert harness.request(bob, "invite", to="dave")["ok"]  # not shown, still invitable


def test_a_large_lobby_is_read_page_by_page_in_name_order(monkeypatch: Any) -> None:
    monkeypatch.setattr(lobby, "LOBBY_MAX_ENTRIES", 2)
    monkeypatch.setattr(lobby, "LOBBY_PAGE_ENTRIES", 2)
    harness = ServiceHarness()
    names = ["erin", "carol", "alice", "dave", "bob"]
    players = [harness.online(name) for name in names]
    seen, after = [], None
    for _ in range(len(names)):
        page = harness.request(players[0], "lobby_page", **({"after": after} if after else {}))
        seen += [entry["name"] for entry in page["players"]]
        after = page["next"]
        if not after:
            break
    assert seen == sorted(names)
    last = harness.request(players[0], "lobby_page", after="zed")
    assert (last["players"], last["next"]) == ([], "")


def test_the_refresh_interval_grows_with_connections_only_on_a_large_node() -> None:
    assert picture_interval(0.2, PICTURE_SCALE_FROM) == 0.2
    assert picture_interval(0.2, 10_000) == 10_000 * PICTURE_S_PER_CONN == 1.0


def test_a_heartbeat_alone_does_not_rebuild_the_picture_but_a_login_does() -> None:
    harness = ServiceHarness()
    harness.online("alice")
    harness.advance(1.0)
    picture = harness.service.state.picture
    for _ in range(int(HEARTBEAT_S) + 2):  # a heartbeat of this node's presence among them
        harness.advance(1.0)
    assert harness.service.state.picture is picture
    harness.online("bob")
    assert "bob" in harness.service.state.picture.lobby


def test_a_player_whose_own_table_report_is_missing_is_busy_by_the_opponents_report() -> None:
    """Partial replication, the game placed on eu alone: bob plays through ap, which holds no
    copy and so never reports his table (or was lost before it could); alice's session, hosted
    by eu, reports hers against him. us, without the game, refuses to start a second game for
    bob (a player in two live games that no node holding both could park)."""
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    ap = ServiceHarness("ap-1", "ap", seed=3)
    for node in (eu, us, ap):
        node.service.games_topic.placement.hooks = PlacementHooks(
            lambda homes, nodes: ["eu"], lambda doc_id: None, lambda doc_id: None
        )
    alice = eu.online("alice")
    replicate(eu, ap)
    bob = ap.online("bob")
    replicate(ap, eu)
    invite = ap.request(bob, "invite", to="alice")["invite"]
    replicate(ap, eu)
    gid = eu.request(alice, "accept", invite=invite["iid"])["game"]
    replicate(eu, us, but=GAME_PREFIX)
    replicate(ap, us, but=GAME_PREFIX)
    carol = us.online("carol")
    assert us.service.state.games.get(gid) is None
    refused = us.request(carol, "invite", to="bob")
    assert refused["error"]["code"] == "busy" and "playing alice" in refused["error"]["message"]
    assert us.request(carol, "invite", to="alice")["error"]["code"] == "busy"
    fetched: list[str] = []
    us.service.games_topic.placement.hooks = PlacementHooks(
        lambda homes, nodes: ["eu"], fetched.append, lambda doc_id: None
    )
    us.online("bob", register=False)  # his node lost: he logs in again on us
    assert fetched == [GAME_PREFIX + gid], "his game is fetched for him by alice's report"
