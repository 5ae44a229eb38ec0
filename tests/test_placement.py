"""Partial replication of games: the placement rule, the game record's ``replicas`` field, the
placement predicate, and the sync engine pushing, relaying, digesting and pulling only what a
peer's region keeps (and a region fetching a document it is no replica of)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from meridian.crdt_models.game import INFO, INFO_KEY, MAX_REPLICAS, GameInfo, GameWriter
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.placement import GamePlacement, place_game
from meridian.crdt_models.records import RecordError
from meridian.sync.checks import KeyringContext, UpdateChecker, UpdateRefused
from meridian.sync.identity import Keyring
from meridian.sync.settings import SyncSettings
from tests.sync_harness import EPOCH_MS, MemoryCluster, identity_for

REGIONS = ["af", "ap", "ca", "eu", "in", "me", "oc", "sa", "us"]


def _info(replicas: list[str] | None = None) -> GameInfo:
    created = Stamp(EPOCH_MS, 0, "eu").encode()
    info = GameInfo("g1", "battleline", ["u0", "u1"], ["a0", "a1"], 7, 0, created, "eu")
    return info if replicas is None else GameInfo(**{**info.__dict__, "replicas": replicas})


# --- the rule -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    required=st.sets(st.sampled_from(REGIONS), min_size=1, max_size=3),
    rtts=st.dictionaries(st.sampled_from(REGIONS), st.floats(0.001, 0.5)),
    k=st.integers(0, 4),
)
def test_a_game_is_placed_on_its_required_regions_and_k_nearest_others(
    required: set[str], rtts: dict[str, float], k: int
) -> None:
    placed = place_game(required, REGIONS, rtts, k)
    assert placed == sorted(set(placed))  # sorted, each region once
    assert required <= set(placed)
    assert len(placed) == min(len(REGIONS), max(len(required) + k, k + 2))
    others = [r for r in placed if r not in required]
    left = [r for r in REGIONS if r not in placed and r not in required]
    key = {r: (rtts.get(r, float("inf")), r) for r in REGIONS}
    # every chosen backup is at least as near (then by name) as every region left out
    assert all(key[o] <= key[rest] for o in others for rest in left)
    assert place_game(sorted(required, reverse=True), reversed(REGIONS), rtts, k) == placed


def test_placement_prefers_measured_regions_then_names() -> None:
    rtts = {"us": 0.020, "sa": 0.010}
    assert place_game({"eu"}, REGIONS, rtts, 1) == ["eu", "sa", "us"]  # k + 2: one more
    assert place_game({"eu", "ap"}, REGIONS, rtts, 1) == ["ap", "eu", "sa"]
    assert place_game({"eu", "ap"}, REGIONS, {}, 2) == ["af", "ap", "ca", "eu"]  # by name


# --- the record ---------------------------------------------------------------------------------


def test_a_record_without_placement_is_written_and_read_as_before() -> None:
    info = _info()
    assert "replicas" not in json.loads(info.to_text())
    assert GameInfo.from_text(info.to_text()) == info
    assert info.kept_in("eu") and info.kept_in("anywhere")


def test_a_placed_record_round_trips_and_names_its_regions() -> None:
    info = _info(["eu", "sa", "us"])
    assert json.loads(info.to_text())["replicas"] == ["eu", "sa", "us"]
    assert GameInfo.from_text(info.to_text()) == info
    assert info.kept_in("sa") and not info.kept_in("ap")


@pytest.mark.parametrize(
    "replicas",
    [
        "eu",
        {"eu": 1},
        [1],
        ["EU"],
        ["eu", "eu"],
        ["x" * 33],
        [""],
        [f"r{i}" for i in range(MAX_REPLICAS + 1)],
    ],
)
def test_a_bad_replicas_field_is_refused(replicas: Any) -> None:
    record = json.loads(_info().to_text())
    record["replicas"] = replicas
    with pytest.raises(RecordError):
        GameInfo.from_text(json.dumps(record))


def test_a_peer_game_record_with_bad_replicas_is_refused_by_the_checks() -> None:
    record = json.loads(_info().to_text())
    record["replicas"] = ["eu", "eu"]
    source: Doc[Any] = Doc(client_id=3)
    source.get(INFO, type=Map)[INFO_KEY] = json.dumps(record)
    checker = UpdateChecker(
        KeyringContext(Keyring([identity_for("eu").entry()]), lambda: EPOCH_MS + 1000, 60_000)
    )
    with pytest.raises(UpdateRefused) as refused:
        checker.check("game:g1", Doc(client_id=2), source.get_update())
    assert refused.value.rule == "bad_record"


# --- the predicate ------------------------------------------------------------------------------


def test_the_predicate_reads_a_games_placement_and_wants_everything_else() -> None:
    docs: dict[str, Doc[Any]] = {}
    placement = GamePlacement(lambda: docs)
    assert placement.wants("accounts", "ap") and placement.wants("presence:eu", "ap")
    assert placement.wants("game:g1", "ap")  # not held here: the sender decided
    doc: Doc[Any] = Doc()
    docs["game:g1"] = doc
    assert placement.wants("game:g1", "ap")  # its info has not arrived: every region
    placement.forget("game:g1")
    with doc.transaction():
        GameWriter(doc, "eu").create(_info(["eu", "us"]))
    assert placement.wants("game:g1", "eu") and not placement.wants("game:g1", "ap")
    old: Doc[Any] = Doc()
    docs["game:g2"] = old
    GameWriter(old, "eu").create(_info())  # a record without placement: everywhere
    assert placement.wants("game:g2", "ap")


# --- the engine ---------------------------------------------------------------------------------

KEPT = {"eu", "us"}  # the regions that keep test:g (a stand-in for a game's placement)


def _wants(doc_id: str, region: str) -> bool:
    return doc_id != "test:g" or region in KEPT


def _cluster(**kwargs: Any) -> MemoryCluster:
    cluster = MemoryCluster(["eu", "us", "ap"], wants=_wants, **kwargs)
    cluster.full_mesh()
    return cluster


def test_a_region_outside_the_placement_receives_none_of_its_changes() -> None:
    cluster = _cluster(settings=SyncSettings(coalesce_ms=5, anti_entropy_s=0.2))
    for i in range(10):
        cluster.put("eu", "test:g", f"move-{i}", i)
        cluster.put("eu", "test:other", f"k{i}", i)
        cluster.advance(0.02)
    cluster.advance(1.0)  # several anti-entropy rounds
    assert len(cluster.values("us", "test:g")) == 10
    assert "test:g" not in cluster.engines["ap"].docs  # not pushed, relayed, digested, pulled
    assert len(cluster.values("ap", "test:other")) == 10  # everything else is everywhere


def test_changes_are_neither_pushed_nor_relayed_to_regions_outside_the_placement() -> None:
    cluster = MemoryCluster(
        ["eu", "us", "ap", "sa"], wants=_wants, settings=SyncSettings(anti_entropy_s=3600)
    )
    for a, b in (("eu", "ap"), ("ap", "us"), ("eu", "sa"), ("sa", "us")):
        cluster.connect(a, b)
    cluster.put("eu", "test:g", "m", 1)  # eu cannot reach us; ap and sa never get it to relay
    cluster.put("eu", "test:other", "m", 1)
    cluster.advance(0.1)
    assert cluster.values("us", "test:other") == {"m": 1}  # relayed
    assert all("test:g" not in cluster.engines[n].docs for n in ("ap", "sa", "us"))


def test_anti_entropy_between_replicas_still_sees_a_pure_delete() -> None:
    cluster = _cluster(settings=SyncSettings(coalesce_ms=5, anti_entropy_s=0.2))
    cluster.put("eu", "test:g", "a", 1)
    cluster.put("eu", "test:g", "b", 2)
    cluster.advance(0.1)
    cluster.cut("eu", "us")
    cluster.delete("eu", "test:g", "a")  # a pure delete: the state vector does not change
    cluster.advance(0.1)
    cluster.connect("eu", "us")
    cluster.advance(1.0)
    assert cluster.values("us", "test:g") == {"b": 2}
    assert "test:g" not in cluster.engines["ap"].docs


def test_a_region_that_follows_a_document_fetches_it_and_gets_later_changes() -> None:
    cluster = _cluster(settings=SyncSettings(coalesce_ms=5, anti_entropy_s=0.2))
    cluster.put("eu", "test:g", "m0", 0)
    cluster.advance(0.1)
    cluster.engines["ap"].follow("test:g", cluster.now)
    cluster.advance(0.1)
    assert cluster.values("ap", "test:g") == {"m0": 0}
    cluster.put("us", "test:g", "m1", 1)  # pushed to ap now: it subscribed on that link
    cluster.advance(0.05)
    assert cluster.values("ap", "test:g") == {"m0": 0, "m1": 1}
    cluster.put("ap", "test:g", "m2", 2)  # and ap's own writes reach the replicas
    cluster.advance(0.05)
    assert cluster.values("eu", "test:g") == {"m0": 0, "m1": 1, "m2": 2}
    cluster.cut("ap", "eu")
    cluster.cut("ap", "us")
    cluster.put("eu", "test:g", "m3", 3)
    cluster.advance(0.1)
    cluster.connect("ap", "eu")  # a new link: ap asks again for what it follows
    cluster.advance(0.1)
    assert "m3" in cluster.values("ap", "test:g")


def test_without_a_predicate_every_region_gets_every_document() -> None:
    cluster = MemoryCluster(["eu", "us", "ap"])
    cluster.full_mesh()
    cluster.put("eu", "test:g", "m", 1)
    cluster.advance(0.05)
    assert cluster.values("ap", "test:g") == {"m": 1}


def test_a_followed_id_outside_the_document_id_rule_is_refused_and_nothing_is_sent() -> None:
    cluster = _cluster()
    engine = cluster.engines["ap"]
    assert not engine.follow("game:no such\nid", cluster.now)
    assert engine.links_with_output() == [] and not engine.followed
    assert engine.follow("game:g9", cluster.now) and engine.followed == {"game:g9"}
    cluster.advance(0.05)
    assert all(not reasons for reasons in map(cluster.closed_reasons, cluster.names))
