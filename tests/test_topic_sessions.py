"""Sessions topic, in memory: hello, resume, deadlines, grace periods, logout, double logins."""

from __future__ import annotations

import json
from typing import Any

from meridian.crdt_models.presence import HEARTBEAT, META
from meridian.crdt_models.records import root_map
from meridian.node.protocol import CloseCode
from meridian.node.topics.sessions import HEARTBEAT_S
from tests.service_harness import EPOCH_MS, ServiceHarness, replicate


def test_hello_with_an_unknown_token_is_refused_and_closed_4101() -> None:
    harness = ServiceHarness()
    conn = harness.open()
    reply = harness.request(conn, "hello", token="forged")
    assert reply["error"]["code"] == "unauthenticated"
    assert conn.closed is not None and conn.closed[0] == CloseCode.BAD_TOKEN


def test_hello_without_a_token_is_a_bad_request() -> None:
    harness = ServiceHarness()
    conn = harness.open()
    assert harness.request(conn, "hello")["error"]["code"] == "bad_request"


def test_a_first_message_other_than_hello_closes_4103() -> None:
    harness = ServiceHarness()
    conn = harness.open()
    harness.send(conn, json.dumps({"id": "1", "type": "ping"}))
    assert conn.closed is not None and conn.closed[0] == CloseCode.PROTOCOL


def test_hello_answers_who_you_are_and_then_the_lobby() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    conn = harness.open()
    reply = harness.request(conn, "hello", token=token)
    assert reply["you"]["name"] == "alice" and reply["resume"] and reply["games"] == []
    assert conn.received.index(reply) < conn.received.index(conn.pushes("lobby")[0])
    assert harness.request(conn, "hello", token=token)["error"]["code"] == "bad_request"


def test_no_hello_within_the_deadline_closes_4001() -> None:
    harness = ServiceHarness()
    conn = harness.open()
    harness.advance(11)
    assert conn.closed is not None and conn.closed[0] == CloseCode.IDLE


def test_resume_on_a_new_connection_moves_the_session_and_closes_the_old_4104() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    old = harness.open()
    resume = harness.request(old, "hello", token=token)["resume"]
    new = harness.open()
    reply = harness.request(new, "hello", resume=resume)
    assert reply["ok"] and reply["resume"] != resume
    assert old.closed is not None and old.closed[0] == CloseCode.MOVED


def test_a_session_resumed_where_the_clock_runs_behind_stays_the_newest() -> None:
    # us's clock runs 1.5 s ahead of eu's: a session resumed on eu a moment after it was
    # resumed on us must still replace us's record, or eu would close its own new connection
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    eu.register("alice")
    replicate(eu, us)
    us.wall_ms = eu.wall_ms + 1_500
    on_us = us.open()
    resume = us.request(on_us, "hello", token=us.login("alice"))["resume"]
    replicate(us, eu)
    us.close(on_us)
    eu.advance(0.5)
    on_eu = eu.open()
    assert eu.request(on_eu, "hello", resume=resume)["ok"]
    for _ in range(3):
        replicate(eu, us)
        replicate(us, eu)
        eu.advance(1.0)
        us.advance(1.0)
    assert on_eu.closed is None, on_eu.closed


def test_a_dropped_session_can_be_resumed_within_the_grace_period_not_after() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    conn = harness.open()
    resume = harness.request(conn, "hello", token=token)["resume"]
    harness.close(conn)
    harness.advance(30)
    back = harness.open()
    resume = harness.request(back, "hello", resume=resume)["resume"]
    harness.close(back)
    harness.advance(61)
    late = harness.open()
    assert harness.request(late, "hello", resume=resume)["error"]["code"] == "unauthenticated"


def test_logout_ends_the_session_and_closes_its_connections_4101() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    conn = harness.open()
    harness.request(conn, "hello", token=token)
    assert harness.service.end_session(token)
    harness.deliver()
    assert conn.closed is not None and conn.closed[0] == CloseCode.BAD_TOKEN
    assert harness.service.session_by_token(token) is None


def test_a_newer_login_in_another_region_closes_the_older_session_4100() -> None:
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    eu_conn = eu.online("alice")
    replicate(eu, us)
    us.advance(1)
    us_conn = us.online("alice", register=False)
    replicate(us, eu)
    assert eu_conn.closed is not None and eu_conn.closed[0] == CloseCode.LOGGED_IN_ELSEWHERE
    assert us_conn.closed is None
    assert eu.service.merges.counts == {"double_login": 1}


def test_a_session_shows_in_the_admin_list_with_its_region() -> None:
    harness = ServiceHarness()
    harness.online("alice")
    sessions = harness.service.all_sessions()
    assert [(s.name, s.region, s.connected) for s in sessions] == [("alice", "eu", True)]


def test_a_resume_token_works_once_and_a_replay_closes_its_session() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    first = harness.open()
    used = harness.request(first, "hello", token=token)["resume"]
    second = harness.open()
    assert harness.request(second, "hello", resume=used)["ok"]
    thief = harness.open()
    replay = harness.request(thief, "hello", resume=used)
    assert replay["error"]["code"] == "unauthenticated"
    assert second.closed is not None and second.closed[0] == CloseCode.BAD_TOKEN
    assert harness.service.session_by_token(token) is None, "the session is over"
    assert harness.service.all_sessions() == []


def test_a_resume_whose_answer_died_with_the_process_is_taken_again_once() -> None:
    """The node spent alice's token (durably) and died before its answer with the new one
    reached her. After the restart her old token still works, once; the token of the lost
    answer is spent in its turn, so if it turns up too (a thief had the other) the session is
    revoked as for any replay."""
    eu = ServiceHarness()
    eu.register("alice")
    first = eu.open()
    old = eu.request(first, "hello", token=eu.login("alice"))["resume"]
    lost = eu.request(eu.open(), "hello", resume=old)["resume"]  # the answer she never read
    restarted = ServiceHarness(documents=eu.documents, seed=3)
    again = restarted.request(restarted.open(), "hello", resume=old)
    assert again["ok"], again
    assert again["resume"] not in (old, lost)
    replay = restarted.request(restarted.open(), "hello", resume=old)
    assert replay["error"]["code"] == "unauthenticated"  # once only: now it is a replay


def test_after_a_restart_the_lost_answers_token_and_the_old_one_together_revoke() -> None:
    eu = ServiceHarness()
    eu.register("alice")
    old = eu.request(eu.open(), "hello", token=eu.login("alice"))["resume"]
    lost = eu.request(eu.open(), "hello", resume=old)["resume"]
    restarted = ServiceHarness(documents=eu.documents, seed=3)
    assert restarted.request(restarted.open(), "hello", resume=old)["ok"]
    late = restarted.request(restarted.open(), "hello", resume=lost)
    assert late["error"]["code"] == "unauthenticated"
    assert restarted.service.all_sessions() == [], "both tokens shown: the session is over"


def test_one_resume_token_used_in_two_regions_at_once_revokes_the_session() -> None:
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    eu.register("alice")
    token = eu.login("alice")
    conn = eu.open()
    resume = eu.request(conn, "hello", token=token)["resume"]
    eu.close(conn)
    replicate(eu, us)
    on_eu, on_us = eu.open(), us.open()
    assert eu.request(on_eu, "hello", resume=resume)["ok"]
    assert us.request(on_us, "hello", resume=resume)["ok"]  # neither has seen the other's use
    replicate(eu, us)
    replicate(us, eu)
    replicate(eu, us)
    assert on_eu.closed is not None and on_us.closed is not None
    assert CloseCode.BAD_TOKEN in (on_eu.closed[0], on_us.closed[0])
    assert eu.service.all_sessions() == [] == us.service.all_sessions()


def test_a_login_where_the_clock_runs_behind_replaces_the_session_it_knew_of() -> None:
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    eu.register("alice")
    replicate(eu, us)
    us.wall_ms = eu.wall_ms + 1_500  # us's clock runs ahead
    first = us.open()
    assert us.request(first, "hello", token=us.login("alice"))["ok"]
    replicate(us, eu)
    eu.advance(0.5)  # a second login, on eu, after eu heard of the first
    second = eu.open()
    assert eu.request(second, "hello", token=eu.login("alice"))["ok"]
    for _ in range(3):
        replicate(eu, us)
        replicate(us, eu)
        eu.advance(1.0)
        us.advance(1.0)
    assert second.closed is None, second.closed
    assert first.closed is not None and first.closed[0] == CloseCode.LOGGED_IN_ELSEWHERE


def test_the_hello_reply_and_its_resume_token_wait_until_the_session_is_durable() -> None:
    """A node that crashed after handing out a resume token it had not stored would refuse
    that token after the restart, and the client would hold none that works."""
    harness = ServiceHarness()
    harness.register("alice")
    token = harness.login("alice")
    harness.progress.durable = harness.documents.event_no  # nothing written from now on is
    conn = harness.open()
    assert harness.send(conn, {"id": "h", "type": "hello", "token": token}) is None
    assert conn.replies() == [], "the new resume token is not handed out yet"
    harness.progress.durable = None
    harness.deliver()
    reply = conn.replies()[-1]
    assert reply["re"] == "h" and reply["ok"] and reply["resume"]


def test_every_presence_write_carries_the_heartbeat_and_a_lone_one_waits_a_full_period() -> None:
    """Other nodes count this node's players online while its heartbeat is fresh. Every write
    of its presence document refreshes it (a login's session here), so a write of the
    heartbeat alone goes only HEARTBEAT_S after the last write, not on a fixed beat."""
    harness = ServiceHarness()
    documents, presence = harness.documents, "presence:eu-1"

    def heartbeat_ms() -> Any:
        return root_map(documents.docs[presence], META)[HEARTBEAT]

    assert heartbeat_ms() == EPOCH_MS  # written at start: the node's players count at once
    harness.advance(HEARTBEAT_S - 2)
    harness.online("alice")  # the hello writes alice's session, and the heartbeat with it
    assert heartbeat_ms() == harness.wall_ms
    written, wall_then = documents.writes.count(presence), harness.wall_ms
    for _ in range(int(HEARTBEAT_S) - 1):
        harness.advance(1)
    assert documents.writes.count(presence) == written and heartbeat_ms() == wall_then
    harness.advance(1)
    assert documents.writes.count(presence) == written + 1
    assert heartbeat_ms() == wall_then + int(HEARTBEAT_S * 1000)


def test_a_load_entry_written_through_the_service_carries_the_heartbeat() -> None:
    """The load observer publishes every 3 s (`write_own_presence`): its entries keep the
    heartbeat fresh, and the node writes no heartbeat alone meanwhile."""
    harness = ServiceHarness()
    documents, presence = harness.documents, "presence:eu-1"
    harness.advance(0)  # the first tick writes one: the start's heartbeat has no clock time yet
    written = documents.writes.count(presence)
    for _ in range(5):
        harness.advance(3)
        harness.service.write_own_presence(lambda doc: root_map(doc, META).__setitem__("x", 1))
        assert root_map(documents.docs[presence], META)[HEARTBEAT] == harness.wall_ms
    assert documents.writes.count(presence) == written + 5  # the entries, nothing else
