"""Limits topic, in memory: the per-connection token bucket and the flood cut-off."""

from __future__ import annotations

import json

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
