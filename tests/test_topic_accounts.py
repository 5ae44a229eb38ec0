"""Accounts topic, in memory: registration, names, renames, the name merge, disabling."""

from __future__ import annotations

import pytest

from meridian.node.protocol import CloseCode, Refused
from tests.service_harness import ServiceHarness, cheap_hash, replicate


def test_a_registered_player_can_log_in_by_any_case_of_the_name() -> None:
    harness = ServiceHarness()
    uid = harness.register("Alice")
    assert [a.uid for a in harness.service.login_candidates("alice")] == [uid]
    assert harness.service.accounts.account(uid).home == "eu"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["alice", "ALICE", "Alice"])
def test_a_name_is_unique_ignoring_case(name: str) -> None:
    harness = ServiceHarness()
    harness.register("alice")
    with pytest.raises(Refused) as refused:
        harness.service.register(name, cheap_hash("x" * 8), None)
    assert refused.value.code == "name_taken"


@pytest.mark.parametrize("name", ["alice\n", "al", "a" * 21, "al ice", "ålice", "alice\x00"])
def test_a_name_must_match_the_rule_as_a_whole(name: str) -> None:
    harness = ServiceHarness()
    with pytest.raises(Refused) as refused:
        harness.service.register(name, cheap_hash("x" * 8), None)
    assert refused.value.code == "bad_request"
    assert harness.service.accounts.all_accounts() == []


@pytest.mark.parametrize("name", ["admin", "Admin", "ROOT", "system", "moderator", "eu-1"])
def test_reserved_names_and_node_ids_are_refused(name: str) -> None:
    harness = ServiceHarness(node_id="eu-1")
    with pytest.raises(Refused) as refused:
        harness.service.register(name, cheap_hash("x" * 8), None)
    assert refused.value.code == "name_taken" and "reserved" in refused.value.message


def test_the_ids_of_other_nodes_are_reserved_once_heard_of() -> None:
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    replicate(us, eu)
    with pytest.raises(Refused):
        eu.service.register("us-1", cheap_hash("x" * 8), None)


def test_rename_takes_a_free_name_and_frees_the_old_one() -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    harness.register("bob")
    taken = harness.request(alice, "rename", name="BOB")
    assert taken["error"]["code"] == "name_taken"
    reserved = harness.request(alice, "rename", name="admin")
    assert reserved["error"]["code"] == "name_taken"
    renamed = harness.request(alice, "rename", name="alice2")
    assert renamed["ok"] and renamed["you"]["name"] == "alice2"
    assert harness.service.login_candidates("alice") == []
    harness.register("alice")  # the old name is free again


def test_a_name_registered_in_two_regions_during_a_partition_goes_to_the_earlier() -> None:
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    first = eu.register("dave")
    us.wall_ms += 5  # registered a little later
    us.advance(0.01)
    second = us.register("Dave")
    loser = us.online("Dave", register=False)
    replicate(eu, us)
    replicate(us, eu)
    assert us.service.accounts.name_owner("dave") == first
    assert eu.service.accounts.name_owner("dave") == first
    notice = loser.pushes("notice")
    assert notice and notice[-1]["code"] == "must_rename"
    assert us.service.merges.counts == {"name": 1} == eu.service.merges.counts
    assert second in {a.uid for a in us.service.login_candidates("dave")}


def test_disabling_an_account_closes_its_connections_and_refuses_its_hello() -> None:
    harness = ServiceHarness()
    uid = harness.register("alice")
    token = harness.login("alice")
    alice = harness.open()
    assert harness.request(alice, "hello", token=token)["ok"]
    harness.service.disable_account(uid)
    harness.deliver()
    assert alice.closed is not None and alice.closed[0] == CloseCode.DISABLED
    again = harness.open()
    reply = harness.request(again, "hello", token=token)
    assert reply["ok"] is False and again.closed == (CloseCode.DISABLED, "account disabled")
