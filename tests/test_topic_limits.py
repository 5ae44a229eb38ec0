"""Limits topic, in memory: the per-connection token bucket and the flood cut-off."""

from __future__ import annotations

import json
import math

from meridian.node.protocol import CloseCode
from tests.service_harness import ServiceHarness


def test_over_the_burst_a_message_is_refused_by_its_id_and_refills_with_time() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    harness.advance(5)  # a full bucket
    for i in range(40):
        harness.service.receive(
            alice.conn_id, json.dumps({"id": f"p{i}", "type": "ping"}), harness.now
        )
    refused = harness.send(alice, {"id": "over", "type": "ping"})
    assert refused == {
        "re": "over",
        "ok": False,
        "error": {"code": "rate_limited", "message": "more than 20 messages/s"},
    }
    harness.advance(1)
    assert harness.request(alice, "ping")["ok"]
    assert alice.closed is None


def test_a_flood_closes_the_connection_4002() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    for i in range(201):
        harness.service.receive(
            alice.conn_id, json.dumps({"id": str(i), "type": "ping"}), harness.now
        )
    harness.deliver()
    assert alice.closed is not None and alice.closed[0] == CloseCode.FLOOD


def test_a_flood_split_across_a_second_boundary_closes_the_connection_4002() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    harness.advance(math.ceil(harness.now) + 0.9 - harness.now)  # 0.1 s before a whole second
    for i in range(300):  # 150 before the boundary, 150 after: no whole second holds 201
        at = harness.now + i * 0.2 / 300
        harness.service.receive(alice.conn_id, json.dumps({"id": str(i), "type": "ping"}), at)
    harness.deliver()
    assert alice.closed is not None and alice.closed[0] == CloseCode.FLOOD


def test_190_messages_a_second_for_a_while_are_no_flood() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    start = harness.now
    for i in range(570):  # 3 s at 190 a second, evenly spread
        at = start + i / 190
        harness.service.receive(alice.conn_id, json.dumps({"id": str(i), "type": "ping"}), at)
    harness.deliver()
    assert alice.closed is None


def test_the_message_allowance_is_per_account_whatever_the_connections() -> None:
    harness = ServiceHarness()
    harness.register("alice")
    harness.advance(5)
    answered = refused = 0
    for _ in range(10):  # reconnecting does not bring a fresh allowance
        token = harness.login("alice")
        conn = harness.open()
        harness.request(conn, "hello", token=token)
        for i in range(10):
            reply = harness.send(conn, {"id": f"p{i}", "type": "ping"})
            if reply is not None and reply["ok"]:
                answered += 1
            elif reply is not None:
                refused += 1
    assert answered <= 40 + 1 and refused > 0
    assert harness.service.limits.counts["account_messages"] == refused


def test_closing_the_socket_and_reconnecting_brings_no_fresh_allowance() -> None:
    """One socket at a time: the account's bucket outlives its last connection until it has
    refilled, so a reconnect loop gets the burst once, then the rate."""
    harness = ServiceHarness()
    harness.register("alice")
    harness.advance(5)
    answered = refused = 0
    for _ in range(10):
        conn = harness.open()
        harness.request(conn, "hello", token=harness.login("alice"))
        for i in range(40):
            reply = harness.send(conn, {"id": f"p{i}", "type": "ping"})
            assert reply is not None
            answered, refused = (answered + 1, refused) if reply["ok"] else (answered, refused + 1)
        harness.close(conn)
        harness.advance(0.0)  # a tick between: the bucket of an account with no socket
    assert answered <= 40 and refused >= 9 * 40 - 9
    harness.advance(2.0)  # refilled (40 at 20/s): now it may be forgotten, as good as full
    assert not harness.service.limits._account_buckets


def test_connections_per_address_are_limited() -> None:
    harness = ServiceHarness()
    cap = harness.service.state.limits.connections_per_address
    conns = [harness.open("6.6.6.6") for _ in range(cap + 1)]
    assert all(c.closed is None for c in conns[:cap])
    assert conns[-1].closed is not None and conns[-1].closed[0] == CloseCode.FLOOD
    assert harness.open("1.2.3.4").closed is None
    assert harness.service.limits.counts["connections_per_address"] == 1


def test_connections_per_account_are_limited() -> None:
    """The one over ``connections_per_account`` is closed with 4002 when hello binds it. (A
    hello moves its session's connection and a login replaces the account's older session, so
    through hello an account holds one connection per node; the cap is a backstop, tested here
    on the limit itself with sessions bound directly.)"""
    harness = ServiceHarness()
    uid = harness.register("alice")
    state, limits = harness.service.state, harness.service.limits
    cap = state.limits.connections_per_account
    conns = [harness.open(f"10.0.0.{index}") for index in range(cap + 1)]
    admitted = []
    for index, conn in enumerate(conns):
        bound = state.conns[conn.conn_id]
        state.bind(bound, uid, f"sid-{index}", "alice")
        admitted.append(limits.admit_session(bound))
    harness.deliver()
    assert admitted == [True] * cap + [False]
    assert conns[-1].closed is not None and conns[-1].closed[0] == CloseCode.FLOOD
    assert all(c.closed is None for c in conns[:cap])
    assert limits.counts["connections_per_account"] == 1
