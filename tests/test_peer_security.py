"""Hostile peers: what a node refuses from a peer, in-memory engines on a virtual clock.

The attacker here is an *insider*: a node of the cluster with valid key material (it passes the
handshake) that sends what an honest node never would. Each test shows the refusal is named,
counted, answered with an ERROR frame, never acknowledged, and that nothing of it is stored or
relayed. The last test replays the measured account takeover against real node processes.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import re
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Map

import meridian.games.battleline as battleline
from meridian.crdt_models.accounts import (
    ACCOUNTS_DOC,
    AUTH,
    USERS,
    AccountsIndex,
    AccountsWriter,
    AccountVersion,
)
from meridian.crdt_models.game import GameInfo, GameWriter, MoveRecord
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.records import encode_signed
from meridian.node.client import PlayerClient, RequestError
from meridian.node.config import NodeConfig, load_config, load_identity
from meridian.node.localcluster import (
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from meridian.node.password_pool import PASSWORD_COSTS
from meridian.sync import codec
from meridian.sync.engine import LinkClosed, LinkState, SyncEngine
from meridian.sync.identity import Keyring, KeyringEntry, NodeIdentity
from meridian.sync.settings import SyncSettings
from meridian.sync.transport import peer_ws_url
from meridian.tomlschema import ConfigError
from tests.conftest import eventually
from tests.sync_harness import EPOCH_MS, MemoryCluster, identity_for

YEAR_2286_MS = 9_999_999_999_000
VICTIM = "victim-uid-0000000000"


def _mesh(names: tuple[str, ...] = ("eu", "us", "ap"), **options: Any) -> MemoryCluster:
    cluster = MemoryCluster(list(names), **options)
    cluster.full_mesh()
    cluster.advance(0.05)
    return cluster


def _stamp(cluster: MemoryCluster, node: str, ahead_ms: int = 0) -> str:
    return Stamp(cluster.wall_ms(node) + ahead_ms, 0, node).encode()


def _register_victim(cluster: MemoryCluster, home: str = "eu") -> AccountVersion:
    with cluster.engines[home].writing(ACCOUNTS_DOC, cluster.now) as doc:
        AccountsWriter(doc, home).register(
            VICTIM, "victim", "real-hash", home, _stamp(cluster, home)
        )
    cluster.advance(0.05)
    version = AccountsIndex(cluster.engines[home].docs[ACCOUNTS_DOC]).version(VICTIM)
    assert version is not None
    return version


def _password_on(cluster: MemoryCluster, node: str) -> str:
    account = AccountsIndex(cluster.engines[node].docs[ACCOUNTS_DOC]).account(VICTIM)
    assert account is not None
    return account.password_hash


def _write_record(
    cluster: MemoryCluster, node: str, root: str, key: str, record: dict[str, Any]
) -> None:
    """What a modified node does: put a record, signed with its own key, straight in the map."""
    with cluster.engines[node].writing(ACCOUNTS_DOC, cluster.now) as doc:
        doc.get(root, type=Map)[key] = encode_signed(doc, ACCOUNTS_DOC, root, key, record)


class FrameLog:
    """Records every frame one node sends another (to show no ACK answers a refused update)."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.frames: list[tuple[str, str, codec.Frame]] = []
        cluster.tamper = self.tap

    def tap(self, src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        self.frames += [(src, dst, codec.decode(f, 1 << 30, compressed=True)) for f in frames]
        return frames

    def sent(self, src: str, dst: str, kind: type[Any]) -> list[Any]:
        return [f for s, d, f in self.frames if (s, d) == (src, dst) and isinstance(f, kind)]


def _assert_refused(cluster: MemoryCluster, node: str, peer: str, rule: str) -> None:
    refused = [e for e in cluster.refused(node) if e.node_id == peer]
    assert refused and refused[-1].rule == rule, [(e.rule, e.reason) for e in refused]
    assert cluster.engines[node].refusals[(peer, rule)] >= 1
    assert peer not in cluster.engines[node].up_peers()


# --- the account takeover -------------------------------------------------------------------


def _home_claim(cluster: MemoryCluster, base: AccountVersion) -> None:
    """ap claims to be the home (its own key, its own region's keys) and sets a password."""
    record = asdict(base) | {
        "password_hash": "attacker-hash",
        "home": "ap",
        "stamp": _stamp(cluster, "ap"),
        "base": base.stamp,
        "base_home": "ap",
        "writer": "ap",
    }
    _write_record(cluster, "ap", AUTH, f"{VICTIM}|ap", record)
    _write_record(cluster, "ap", USERS, f"{VICTIM}|ap", record)


def _forged_home_key(cluster: MemoryCluster, base: AccountVersion) -> None:
    """ap writes under the home region's own key (what would win Yjs' same-key tie-break)."""
    record = asdict(base) | {"password_hash": "attacker-hash", "stamp": _stamp(cluster, "ap")}
    _write_record(cluster, "ap", AUTH, f"{VICTIM}|eu", record)


def _non_home_version_with_password(cluster: MemoryCluster, base: AccountVersion) -> None:
    """ap writes an honest-looking non-home version that carries a new password."""
    record = asdict(base) | {
        "password_hash": "attacker-hash",
        "stamp": _stamp(cluster, "ap"),
        "base": base.stamp,
        "writer": "ap",
    }
    _write_record(cluster, "ap", USERS, f"{VICTIM}|ap", record)


def _year_2286(cluster: MemoryCluster, base: AccountVersion) -> None:
    """The measured attack: a home claim stamped in the year ~2286."""
    record = asdict(base) | {
        "password_hash": "attacker-hash",
        "stamp": Stamp(YEAR_2286_MS, 0, "ap").encode(),
        "base": base.stamp,
        "base_home": "ap",
        "writer": "ap",
    }
    _write_record(cluster, "ap", AUTH, f"{VICTIM}|ap", record)


ATTACKS = {
    "home-claim": (_home_claim, "not_home"),
    "forged-home-key": (_forged_home_key, "not_home"),
    "non-home-password": (_non_home_version_with_password, "not_home"),
    "year-2286-stamp": (_year_2286, "future_stamp"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_insider_cannot_change_the_password_of_an_account_homed_elsewhere(attack: str) -> None:
    cluster = _mesh()
    base = _register_victim(cluster, home="eu")
    assert {_password_on(cluster, n) for n in cluster.names} == {"real-hash"}
    log = FrameLog(cluster)
    write, rule = ATTACKS[attack]
    write(cluster, base)
    cluster.advance(0.1)
    for node in ("eu", "us"):
        _assert_refused(cluster, node, "ap", rule)
        assert _password_on(cluster, node) == "real-hash"
        errors = log.sent(node, "ap", codec.Error)
        assert errors and errors[-1].code == codec.ErrorCode.REFUSED_UPDATE
        assert log.sent(node, "ap", codec.Ack) == []  # never acknowledged
    assert cluster.values("eu", "test:x") == {}  # and the honest pair keeps working:
    cluster.put("eu", "test:x", "after", "attack")
    cluster.advance(0.05)
    assert cluster.values("us", "test:x") == {"after": "attack"}


def test_an_old_home_record_replayed_by_an_insider_is_refused() -> None:
    """Rolling a password back to a value the attacker knows, with the home's own signature."""
    cluster = _mesh()
    _register_victim(cluster, home="eu")
    old_text = cluster.engines["eu"].docs[ACCOUNTS_DOC].get(AUTH, type=Map)[f"{VICTIM}|eu"]
    with cluster.engines["eu"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        current = AccountsIndex(doc).version(VICTIM)
        assert current is not None
        AccountsWriter(doc, "eu").update(current, _stamp(cluster, "eu", 1), password_hash="new")
    cluster.advance(0.05)
    with cluster.engines["ap"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        doc.get(AUTH, type=Map)[f"{VICTIM}|eu"] = old_text
    cluster.advance(0.1)
    for node in ("eu", "us"):
        _assert_refused(cluster, node, "ap", "stale_record")
        assert _password_on(cluster, node) == "new"


def test_the_home_region_changes_the_password_and_every_region_takes_it() -> None:
    cluster = _mesh()
    _register_victim(cluster, home="us")
    with cluster.engines["us"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        current = AccountsIndex(doc).version(VICTIM)
        assert current is not None
        AccountsWriter(doc, "us").update(current, _stamp(cluster, "us", 1), password_hash="new")
    cluster.advance(0.05)
    assert {_password_on(cluster, n) for n in cluster.names} == {"new"}
    assert all(not e.refusals for e in cluster.engines.values())


def test_a_region_cut_off_at_registration_takes_the_homes_later_version() -> None:
    """The home's new version replaces its first one under the same key, so a region that was
    cut off when the account was made never gets the first: it takes the later one (once the
    nodes refused it as `unknown_account` for good, and never converged: name-race seed 70)."""
    cluster = _mesh()
    for node in ("eu", "us"):
        cluster.cut(node, "ap")
    _register_victim(cluster, home="eu")
    with cluster.engines["eu"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        current = AccountsIndex(doc).version(VICTIM)
        assert current is not None
        AccountsWriter(doc, "eu").update(current, _stamp(cluster, "eu", 1), password_hash="new")
    cluster.advance(0.05)
    for node in ("eu", "us"):
        cluster.connect(node, "ap")
    cluster.advance(0.5)
    assert {_password_on(cluster, n) for n in cluster.names} == {"new"}
    assert all(not e.refusals for e in cluster.engines.values())


def test_an_insider_cannot_pass_off_an_account_to_a_node_that_never_saw_it() -> None:
    """The later-version path above is for the creating node's own records: ap copying eu's
    account as a home record of its own is still refused by us, which never saw the account."""
    cluster = _mesh(settings=SyncSettings(relay=False, anti_entropy_s=3600))
    cluster.cut("eu", "us")
    base = _register_victim(cluster, home="eu")
    assert ACCOUNTS_DOC not in cluster.engines["us"].docs  # us never saw the account
    _home_claim(cluster, base)  # sent to us as an update holding only ap's record
    cluster.advance(0.2)
    refused = [e.rule for e in cluster.refused("us") if e.node_id == "ap"]
    assert refused and refused[-1] in ("unknown_account", "not_home"), refused
    held = cluster.engines["us"].docs.get(ACCOUNTS_DOC)
    account = AccountsIndex(held).account(VICTIM) if held is not None else None
    assert account is None or account.password_hash == "real-hash"


def test_a_region_moves_the_home_and_the_new_home_changes_the_password() -> None:
    """Even when the new home's write reaches a node before the move: it is pulled, not refused."""
    cluster = _mesh()
    _register_victim(cluster, home="eu")
    cluster.cut("eu", "ap")  # ap hears of the move only through us (and us relays late)
    with cluster.engines["eu"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        current = AccountsIndex(doc).version(VICTIM)
        assert current is not None
        AccountsWriter(doc, "eu").update(current, _stamp(cluster, "eu", 1), home="us")
    cluster.advance(0.05)
    with cluster.engines["us"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        current = AccountsIndex(doc).version(VICTIM)
        assert current is not None and current.home == "us"
        AccountsWriter(doc, "us").update(current, _stamp(cluster, "us", 2), password_hash="new")
    cluster.connect("eu", "ap")
    cluster.advance(0.2)
    assert {_password_on(cluster, n) for n in cluster.names} == {"new"}
    assert all(not e.refusals for e in cluster.engines.values())


# --- stamps, sizes, quotas, namespaces, malformed updates -------------------------------------


@pytest.mark.parametrize(("ahead_ms", "refused"), [(30_000, False), (120_000, True)])
def test_a_stamp_beyond_max_ahead_is_refused_in_any_document(ahead_ms: int, refused: bool) -> None:
    cluster = _mesh(("eu", "us"))
    value = f"chat at {_stamp(cluster, 'us', ahead_ms)}"
    cluster.put("us", "test:stamps", "k", value)
    cluster.advance(0.05)
    if refused:
        _assert_refused(cluster, "eu", "us", "future_stamp")
        assert "test:stamps" not in cluster.engines["eu"].docs
    else:
        assert cluster.values("eu", "test:stamps") == {"k": value}


def _raw_update(key: str, value: Any) -> bytes:
    doc: Doc[Any] = Doc(client_id=77)
    doc.get("kv", type=Map)[key] = value
    return doc.get_update()


def _inject(cluster: MemoryCluster, node: str, peer: str, frame: codec.Frame) -> None:
    """A frame the peer's (modified) node sends on its authenticated link to `node`."""
    wire = next(w for w in cluster.wires if {w.a, w.b} == {node, peer})
    link = wire.link_a if wire.a == node else wire.link_b
    cluster.engines[node].receive(link, codec.encode(frame), cluster.now)
    cluster.pump()


def test_an_update_over_the_size_cap_is_refused_and_never_relayed() -> None:
    cluster = _mesh(settings=SyncSettings(max_update_bytes=64 * 1024))
    big = _raw_update("blob", "x" * 200_000)
    _inject(cluster, "eu", "ap", codec.Update(99, "test:big", big))
    cluster.advance(0.05)
    _assert_refused(cluster, "eu", "ap", "too_large")
    assert all("test:big" not in e.docs for e in cluster.engines.values())


def test_an_honest_change_over_the_size_cap_reaches_peers_by_pull() -> None:
    cluster = _mesh(("eu", "us"), settings=SyncSettings(max_update_bytes=64 * 1024))
    with cluster.engines["eu"].writing("test:big", cluster.now) as doc:
        for index in range(4):
            doc.get("kv", type=Map)[f"blob{index}"] = "x" * 50_000
    cluster.advance(0.05)
    assert cluster.values("us", "test:big") == cluster.values("eu", "test:big")
    assert len(cluster.values("us", "test:big")) == 4
    assert not cluster.engines["us"].refusals


def test_more_new_documents_than_the_quota_are_refused() -> None:
    cluster = _mesh(("eu", "us"), settings=SyncSettings(new_docs_burst=3, new_docs_per_s=0.01))
    for index in range(6):
        cluster.put("us", f"test:junk-{index}", "k", "v")
    cluster.advance(0.05)
    _assert_refused(cluster, "eu", "us", "doc_quota")
    assert len([d for d in cluster.engines["eu"].docs if d.startswith("test:junk")]) == 3


def test_a_new_document_that_must_be_pulled_counts_against_the_quota_too() -> None:
    cluster = _mesh(("eu", "us"), settings=SyncSettings(new_docs_burst=1, new_docs_per_s=0.01))
    _inject(cluster, "eu", "us", codec.Update(1, "test:first", _raw_update("k", "v")))
    source: Doc[Any] = Doc(client_id=78)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(bytes(event.update)))
    source.get("kv", type=Map)["k"] = "v1"
    source.get("kv", type=Map)["k"] = "v2"  # builds on the first write, never sent
    _inject(cluster, "eu", "us", codec.Update(2, "test:second", updates[1]))
    _assert_refused(cluster, "eu", "us", "doc_quota")
    assert "test:second" not in cluster.engines["eu"].docs


def test_a_peer_joining_with_many_documents_is_paced_by_the_quota_not_refused() -> None:
    settings = SyncSettings(new_docs_burst=2, new_docs_per_s=4, anti_entropy_s=0.5)
    cluster = MemoryCluster(["eu", "us"], settings=settings)
    for index in range(6):
        cluster.put("us", f"test:old-{index}", "k", index)
    cluster.advance(0.05)  # written while alone: nothing is pushed at link-up
    cluster.connect("eu", "us")
    cluster.advance(0.1)
    pulled = [d for d in cluster.engines["eu"].docs if d.startswith("test:old")]
    assert len(pulled) == 2  # the burst; the rest come as the bucket refills
    cluster.advance(2.0)
    assert sorted(d for d in cluster.engines["eu"].docs if d.startswith("test:old")) == [
        f"test:old-{i}" for i in range(6)
    ]
    assert not cluster.engines["eu"].refusals


@pytest.mark.parametrize("doc_id", ["junk:1", "presence:Not A Node", "log:2025-13", "users"])
def test_a_document_outside_the_known_namespaces_is_refused(doc_id: str) -> None:
    cluster = _mesh(("eu", "us"))
    _inject(cluster, "eu", "us", codec.Update(5, doc_id, _raw_update("k", "v")))
    _assert_refused(cluster, "eu", "us", "doc_id")
    assert doc_id not in cluster.engines["eu"].docs


def test_a_malformed_update_leaves_no_document_and_the_digests_still_agree() -> None:
    cluster = _mesh(("eu", "us"), settings=SyncSettings(anti_entropy_s=0.5))
    _inject(cluster, "eu", "us", codec.Update(7, "test:new", b"\x07garbage-update"))
    _assert_refused(cluster, "eu", "us", "bad_update")
    assert "test:new" not in cluster.engines["eu"].docs
    cluster.connect("eu", "us")
    cluster.put("us", "test:new", "k", "v")
    cluster.advance(1.5)
    for doc_id in ("test:new", "presence:eu"):
        assert len(cluster.digests(doc_id)) <= 1
    assert set(cluster.engines["eu"].docs) == set(cluster.engines["us"].docs)


def _move(stamp: str) -> str:
    record = {"ply": 0, "parent": "", "player": 0, "move": {}, "stamp": stamp, "node": "x"}
    return json.dumps(record)


SESSION = {
    "sid": "s1", "uid": "u1", "name": "n", "node": "us", "region": "us", "status": "idle",
    "game": "", "opponent": "", "token_hash": "", "resume_hash": "", "connected": True,
}  # fmt: skip
BAD_RECORDS = {
    "not-json": ("game:g1", "moves", "00000|x", "{not json", "bad_record"),
    "empty-move-stamp": ("game:g1", "moves", "00000|x", _move(""), "bad_record"),
    "session-started-zzz": (
        "presence:us", "sessions", "s1", json.dumps(SESSION | {"started": "zzz"}), "bad_record",
    ),
    "17-digit-wall-in-key": (
        "game:g1", "moves", "00000|99999999999999999.00000.x", _move("x"), "future_stamp",
    ),
    "unknown-map": ("game:g1", "junk", "k", "v", "bad_layout"),
    "number-in-record-map": ("saved", "games", "g", 5, "bad_record"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_record_that_breaks_its_kinds_layout_is_refused(case: str) -> None:
    """Including fields the merge rules compare as stamps: "" or "zzz" would win every merge."""
    doc_id, root, key, value, rule = BAD_RECORDS[case]
    cluster = _mesh(("eu", "us"))
    with cluster.engines["us"].writing(doc_id, cluster.now) as doc:
        doc.get(root, type=Map)[key] = value
    cluster.advance(0.05)
    _assert_refused(cluster, "eu", "us", rule)
    assert doc_id not in cluster.engines["eu"].docs


# --- game move records ----------------------------------------------------------------------

GAME_DOC = "game:g1"
GAME_SEED = 11


def _game(cluster: MemoryCluster, plies: int, node: str = "eu") -> list[MoveRecord]:
    """A game created on `node`, with `plies` legal moves written there, replicated."""
    info = GameInfo(
        "g1", "battleline", ["u0", "u1"], ["a0", "a1"], GAME_SEED, 0, _stamp(cluster, node), node
    )
    with cluster.engines[node].writing(GAME_DOC, cluster.now) as doc:
        GameWriter(doc, node).create(info)
    records: list[MoveRecord] = []
    for _ in range(plies):
        records.append(_legal_move(cluster, node, records))
    cluster.advance(0.05)
    return records


def _next_move(chain: list[MoveRecord]) -> tuple[int, dict[str, Any]]:
    """The player to move after `chain` and a legal move of theirs."""
    state = battleline.replay(GAME_SEED, [r.move for r in chain], 0)
    player = battleline.to_move(state)
    assert player is not None
    return player, battleline.legal_moves(state)[0]


def _legal_move(cluster: MemoryCluster, node: str, chain: list[MoveRecord]) -> MoveRecord:
    player, move = _next_move(chain)
    parent = chain[-1].key if chain else ""
    return _write_move(cluster, node, len(chain), parent, player, move)


def _write_move(
    cluster: MemoryCluster, node: str, ply: int, parent: str, player: int, move: dict[str, Any]
) -> MoveRecord:
    """A move record written straight into the document, as a modified node would."""
    cluster.advance(0.01)
    stamp = _stamp(cluster, node)
    with cluster.engines[node].writing(GAME_DOC, cluster.now) as doc:
        return GameWriter(doc, node).add_move(ply, parent, player, move, stamp)


def _bad_card(cluster: MemoryCluster, chain: list[MoveRecord]) -> str:
    player, _ = _next_move(chain)
    bad = {"type": "play", "card": 9999, "flag": 0}
    return _write_move(cluster, "ap", len(chain), chain[-1].key, player, bad).key


def _wrong_player(cluster: MemoryCluster, chain: list[MoveRecord]) -> str:
    player, move = _next_move(chain)
    return _write_move(cluster, "ap", len(chain), chain[-1].key, 1 - player, move).key


def _wrong_ply(cluster: MemoryCluster, chain: list[MoveRecord]) -> str:
    last = chain[-1]
    record = _write_move(cluster, "ap", last.ply + 2, last.key, last.player, last.move)
    return record.key


def _dangling_parent(cluster: MemoryCluster, chain: list[MoveRecord]) -> str:
    last = chain[-1]
    record = _write_move(cluster, "ap", last.ply + 1, "00003|nowhere", last.player, last.move)
    return record.key


def _rewrite(cluster: MemoryCluster, chain: list[MoveRecord]) -> str:
    last = chain[-1]
    forged = MoveRecord(**(asdict(last) | {"move": {"type": "give_up"}}))
    with cluster.engines["ap"].writing(GAME_DOC, cluster.now) as doc:
        doc.get("moves", type=Map)[last.key] = forged.to_text()
    return last.key


MOVE_FORGERIES: dict[str, tuple[Callable[[MemoryCluster, list[MoveRecord]], str], str]] = {
    "illegal-move": (_bad_card, "illegal_move"),
    "wrong-player": (_wrong_player, "illegal_move"),
    "wrong-ply": (_wrong_ply, "illegal_move"),
    "dangling-parent": (_dangling_parent, "missing_parent"),
    "rewritten-move": (_rewrite, "duplicate_move"),
}


@pytest.mark.parametrize("forgery", sorted(MOVE_FORGERIES))
def test_a_move_record_that_breaks_the_game_rules_is_refused_at_entry(forgery: str) -> None:
    """Refused by every honest node (a dangling parent after pulling ap's whole document),
    answered with an error, never acknowledged nor relayed; the honest game goes on."""
    cluster = _mesh()
    chain = _game(cluster, 3)
    before = {n: cluster.engines[n].docs[GAME_DOC].get_state() for n in ("eu", "us")}
    log = FrameLog(cluster)
    forge, rule = MOVE_FORGERIES[forgery]
    key = forge(cluster, chain)
    cluster.advance(0.1)
    for node in ("eu", "us"):
        _assert_refused(cluster, node, "ap", rule)
        assert cluster.engines[node].docs[GAME_DOC].get_state() == before[node]
        errors = log.sent(node, "ap", codec.Error)
        assert errors and errors[-1].code == codec.ErrorCode.REFUSED_UPDATE
        assert log.sent(node, "ap", codec.Ack) == []
        moves = cluster.engines[node].docs[GAME_DOC].get("moves", type=Map)
        assert moves.get(key) == (chain[-1].to_text() if forgery == "rewritten-move" else None)
    chain.append(_legal_move(cluster, "eu", chain))
    cluster.advance(0.05)
    assert chain[-1].key in cluster.engines["us"].docs[GAME_DOC].get("moves", type=Map)


def _is_update(frame: bytes) -> bool:
    """An UPDATE frame, sent as it is or inside a protocol-3 COMPRESSED frame."""
    return isinstance(codec.decode(frame, 1 << 24, compressed=True), codec.Update)


def test_a_move_whose_parent_is_late_in_transit_is_pulled_not_lost() -> None:
    """Reordering is not a forgery: us gets eu's move before the ap move it follows (that
    update was lost on the way), pulls eu's document, and keeps both, refusing nothing."""
    cluster = _mesh(settings=SyncSettings(anti_entropy_s=3600, relay=False))
    chain = _game(cluster, 2)
    dropped: list[bytes] = []

    def drop_ap_to_us(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        kept = []
        for frame in frames:
            if (src, dst) == ("ap", "us") and _is_update(frame):
                dropped.append(frame)
                continue
            kept.append(frame)
        return kept

    cluster.tamper = drop_ap_to_us
    chain.append(_legal_move(cluster, "ap", chain))  # the ap player's move
    cluster.advance(0.05)
    cluster.tamper = None
    chain.append(_legal_move(cluster, "eu", chain))
    cluster.advance(0.05)
    assert dropped
    moves = cluster.engines["us"].docs[GAME_DOC].get("moves", type=Map)
    assert {r.key for r in chain} <= set(moves.keys())
    assert not any(e.refusals for e in cluster.engines.values())
    assert len(cluster.digests(GAME_DOC)) == 1


def _move_update(record: MoveRecord) -> bytes:
    """A move record as a sender's update that its own document does not hold."""
    doc: Doc[Any] = Doc(client_id=4242)
    doc.get("moves", type=Map)[record.key] = record.to_text()
    return doc.get_update()


def test_a_move_whose_parent_its_sender_lacks_too_is_refused_never_acknowledged() -> None:
    """An insider pushes a move after a parent no one holds, and answers the pull with its real
    document, which holds neither: the held-back move is checked again against the answer and
    refused (`missing_parent`), not acknowledged as if the answer had brought it."""
    cluster = _mesh()
    chain = _game(cluster, 3)
    log = FrameLog(cluster)
    player, move = _next_move(chain)
    dangling = MoveRecord(3, "00002|nowhere", player, move, _stamp(cluster, "ap"), "ap")
    before = cluster.engines["eu"].docs[GAME_DOC].get_state()
    _inject(cluster, "eu", "ap", codec.Update(999, GAME_DOC, _move_update(dangling)))
    cluster.advance(0.05)
    _assert_refused(cluster, "eu", "ap", "missing_parent")
    assert [a for a in log.sent("eu", "ap", codec.Ack) if a.seq >= 999] == []
    assert cluster.engines["eu"].docs[GAME_DOC].get_state() == before


def test_a_held_back_move_is_applied_once_the_answer_brings_its_parent() -> None:
    """A move pushed before its parent reached us, by a sender whose answer to the pull holds
    the parent but not the move itself: the move is checked again with the parent and kept."""
    cluster = _mesh(("eu", "ap"), settings=SyncSettings(anti_entropy_s=3600))
    chain = _game(cluster, 2)

    def drop_ap_to_eu(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        return [f for f in frames if (src, dst) != ("ap", "eu") or not _is_update(f)]

    cluster.tamper = drop_ap_to_eu
    chain.append(_legal_move(cluster, "ap", chain))  # held by ap, lost on the way to eu
    cluster.advance(0.05)
    cluster.tamper = None
    player, move = _next_move(chain)
    child = MoveRecord(3, chain[-1].key, player, move, _stamp(cluster, "ap"), "ap")
    _inject(cluster, "eu", "ap", codec.Update(999, GAME_DOC, _move_update(child)))
    cluster.advance(0.05)
    moves = cluster.engines["eu"].docs[GAME_DOC].get("moves", type=Map)
    assert {chain[-1].key, child.key} <= set(moves.keys())
    assert not cluster.engines["eu"].refusals


def test_a_fork_made_during_a_partition_is_kept_everywhere() -> None:
    """Two regions each take a move for the same ply while apart: both records are legal and
    both are kept; the canonical chain picks the earlier, on every node alike."""
    cluster = _mesh(("eu", "us"))
    chain = _game(cluster, 2)
    cluster.cut("eu", "us")
    ours = _legal_move(cluster, "eu", chain)
    theirs = _legal_move(cluster, "us", chain)
    cluster.connect("eu", "us")
    cluster.advance(0.1)
    for node in ("eu", "us"):
        keys = set(cluster.engines[node].docs[GAME_DOC].get("moves", type=Map).keys())
        assert {ours.key, theirs.key} <= keys
    assert not any(e.refusals for e in cluster.engines.values())
    assert len(cluster.digests(GAME_DOC)) == 1


# --- keys -------------------------------------------------------------------------------------


def _removed(cluster: MemoryCluster, node: str, at_ms: int) -> Keyring:
    entries = dict(cluster.keyring.entries)
    entries[node] = replace(entries[node], removed_at_ms=at_ms)
    return Keyring(list(entries.values()))


def test_a_removed_node_is_refused_and_what_it_signs_afterwards_too() -> None:
    """eu's keyring has ap removed; us's not yet: ap's key can no longer reach eu, directly or
    through us, while what ap signed before its removal still verifies."""
    names = ["eu", "us", "ap"]
    plain = MemoryCluster(names)
    removed_at = EPOCH_MS + 1_000
    cluster = MemoryCluster(names, keyrings={"eu": _removed(plain, "ap", removed_at)})
    cluster.connect("us", "ap")
    with cluster.engines["ap"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        AccountsWriter(doc, "ap").register("before-uid", "before", "h", "ap", _stamp(cluster, "ap"))
    cluster.advance(2.0)  # past the removal
    cluster.connect("eu", "ap")
    assert any("removed from the cluster keyring" in r for r in cluster.closed_reasons("eu"))
    cluster.connect("eu", "us")
    cluster.advance(0.1)
    assert AccountsIndex(cluster.engines["eu"].docs[ACCOUNTS_DOC]).account("before-uid")
    with cluster.engines["ap"].writing(ACCOUNTS_DOC, cluster.now) as doc:
        AccountsWriter(doc, "ap").register("after-uid", "after", "h", "ap", _stamp(cluster, "ap"))
    cluster.advance(0.1)
    _assert_refused(cluster, "eu", "us", "removed_signer")
    assert AccountsIndex(cluster.engines["eu"].docs[ACCOUNTS_DOC]).account("after-uid") is None


def test_a_keyring_entry_for_the_wrong_region_is_refused() -> None:
    plain = MemoryCluster(["eu", "us"])
    entries = dict(plain.keyring.entries)
    us = entries["us"]
    entries["us"] = KeyringEntry(us.node_id, "ap", us.public_key)
    cluster = MemoryCluster(["eu", "us"], keyrings={"eu": Keyring(list(entries.values()))})
    cluster.connect("eu", "us")
    assert any("the keyring 'ap'" in r for r in cluster.closed_reasons("eu"))
    assert cluster.engines["eu"].up_peers() == []


# --- acknowledgements ---------------------------------------------------------------------------


def test_an_update_that_builds_on_missing_content_is_pulled_then_acknowledged() -> None:
    cluster = _mesh(("eu", "us"), settings=SyncSettings(anti_entropy_s=3600))
    dropped: list[bytes] = []

    def drop_first_update(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        kept = []
        for frame in frames:
            if src == "eu" and _is_update(frame) and not dropped:
                dropped.append(frame)
                continue
            kept.append(frame)
        return kept

    cluster.tamper = drop_first_update
    cluster.put("eu", "test:dep", "k", "v1")
    cluster.advance(0.02)
    event_no = cluster.put("eu", "test:dep", "k", "v2")  # replaces an item us never got
    cluster.advance(0.05)
    assert dropped and cluster.values("us", "test:dep") == {"k": "v2"}
    assert cluster.engines["eu"].peer_holds("us", "test:dep", event_no)
    assert not cluster.engines["us"].refusals


def test_an_update_already_held_is_acknowledged_at_once() -> None:
    """No heartbeat tick in between: the duplicate's ACK leaves with the receive call."""
    cluster = _mesh(("eu", "us"), auto_durable=False)
    us = cluster.engines["us"]
    log = FrameLog(cluster)
    cluster.put("eu", "test:ack", "k", "v")
    cluster.advance(0.01)
    us.durable_through(us.last_event_no, cluster.now)
    cluster.tamper = None
    wire = cluster.wires[0]
    link = wire.link_a if wire.a == "us" else wire.link_b
    us.take_outgoing(link)
    duplicate = log.sent("eu", "us", codec.Update)[0]
    us.receive(link, codec.encode(replace(duplicate, seq=duplicate.seq + 1)), cluster.now)
    acks = [codec.decode(f, 1 << 20, compressed=True) for f in us.take_outgoing(link)]
    assert codec.Ack(duplicate.seq + 1) in acks
    assert us.link_state(link) is LinkState.UP


def test_the_lag_reported_for_a_no_op_answer_is_its_round_trip_not_a_tick() -> None:
    """us pulls a document it already holds (what a login for an unknown name does): eu's
    answer brings nothing new, and us acknowledges it in the same step, so the replication lag
    eu reports for us is the time the answer took to be held (0 on this instant link), not the
    wait for us's next tick; a real write's lag is likewise its time to be visible on us."""
    cluster = _mesh(("eu", "us"))
    cluster.put("eu", "test:lag", "k", "v")
    cluster.advance(0.05)
    us, peer = cluster.engines["us"], cluster.engines["eu"].peers["us"]
    for _ in range(5):
        before = peer.lag_count
        us.request_sync("test:lag", cluster.now)
        cluster.pump()  # frames only: no engine ticks
        assert peer.lag_count == before + 1 and peer.lag_samples[-1] == 0.0
        cluster.advance(0.3)
    cluster.put("eu", "test:lag", "k", "w")
    cluster.advance(0.005)  # the coalescing window (5 ms), then the push
    assert cluster.values("us", "test:lag") == {"k": "w"}
    assert peer.doc_lag["test:lag"] <= 0.005


def test_a_refusal_is_reported_with_the_peer_and_the_rule() -> None:
    cluster = _mesh(("eu", "us"))
    _inject(cluster, "eu", "us", codec.Update(3, "test:x", b"\x07junk"))
    refused = cluster.refused("eu")
    assert refused and refused[0].node_id == "us" and refused[0].rule == "bad_update"
    assert "rejected" in refused[0].reason
    assert cluster.engines["eu"].refusals == {("us", "bad_update"): 1}


def test_now_is_the_receivers_clock() -> None:
    """The stamp rule reads the receiving engine's injected wall clock, not the sender's."""
    cluster = _mesh(("eu", "us"), clock_offsets_ms={"us": 300_000})
    cluster.put("us", "test:skew", "k", f"at {_stamp(cluster, 'us')}")
    cluster.advance(0.05)
    _assert_refused(cluster, "eu", "us", "future_stamp")


# --- the takeover replayed against real node processes ------------------------------------------


class FakePeer:
    """A hostile node on real websockets: the production engine, holding ap-1's real key."""

    def __init__(self, identity: NodeIdentity, keyring: Keyring) -> None:
        self.engine = SyncEngine(
            identity=identity,
            keyring=keyring,
            settings=SyncSettings(),
            rng=random.Random(13),
            wall_ms=lambda: int(time.time() * 1000),
            auto_durable=True,
        )
        self.sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
        self.closed: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, http: aiohttp.ClientSession, base_url: str) -> None:
        ws = await http.ws_connect(peer_ws_url(base_url))
        link = self.engine.open_link(time.monotonic(), initiator=True)
        self.sockets[link] = ws
        self.tasks.append(asyncio.create_task(self._read(link, ws)))
        await self.flush()

    async def _read(self, link: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.engine.receive(link, message.data, time.monotonic())
                self.engine.tick(time.monotonic())
                await self.flush()
        self.engine.close_link(link, time.monotonic(), "closed by the node")
        await self.flush()

    async def flush(self) -> None:
        for link in self.engine.links_with_output():
            ws = self.sockets.get(link)
            for frame in self.engine.take_outgoing(link):
                if ws is not None and not ws.closed:
                    try:
                        await ws.send_bytes(frame)
                    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                        break  # the node closed this link meanwhile: its reader sees the end
        for event in self.engine.take_events():
            if isinstance(event, LinkClosed):
                self.closed.append(event.reason)

    def write(self, change: Callable[[Doc[Any]], None]) -> None:
        self.engine.write(ACCOUNTS_DOC, change, time.monotonic())
        # Past the coalescing window: the UPDATE is queued on every link now, not at the next
        # frame a node happens to send.
        self.engine.tick(time.monotonic() + 1.0)

    async def close(self) -> None:
        for ws in self.sockets.values():
            await ws.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _home_claim_record(base: AccountVersion, password_hash: str, stamp: str) -> dict[str, Any]:
    return asdict(base) | {
        "password_hash": password_hash,
        "home": "ap",
        "stamp": stamp,
        "base": base.stamp,
        "base_home": "ap",
        "writer": "ap",
    }


async def _attack(
    cluster: Any, http: aiohttp.ClientSession, uid: str, password_hash: str, stamp_ms: int
) -> FakePeer:
    """Connect as ap-1 to eu and us, pull the accounts, push a home claim for the victim."""
    keys = cluster.paths[0].parent / "keys"
    identity = NodeIdentity.from_pem("ap-1", "ap", (keys / "ap-1.key").read_bytes())
    keyring = Keyring.parse(tomllib.loads((keys / "keyring.toml").read_text()))
    fake = FakePeer(identity, keyring)
    for index in (0, 1):
        await fake.connect(http, cluster.url(index))

    async def both_linked() -> bool:  # the attack must reach both nodes, not only the first up
        return fake.engine.up_peers() == ["eu-1", "us-1"]

    await eventually(both_linked)

    async def victim_pulled() -> AccountVersion | None:
        doc = fake.engine.docs.get(ACCOUNTS_DOC)
        return AccountsIndex(doc).version(uid) if doc is not None else None

    base = await eventually(victim_pulled)
    assert base.password_hash.startswith("$argon2")  # a node holds every hash: it is one
    record = _home_claim_record(base, password_hash, Stamp(stamp_ms, 0, "ap-1").encode())

    def claim_home(doc: Doc[Any]) -> None:
        for root in (AUTH, USERS):
            key = f"{uid}|ap"
            doc.get(root, type=Map)[key] = encode_signed(doc, ACCOUNTS_DOC, root, key, record)

    fake.write(claim_home)
    await fake.flush()
    return fake


def _metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics") as response:
        text: str = response.read().decode()
        return text


@pytest.mark.integration
async def test_the_insider_takeover_fails_against_real_nodes(cluster: Any) -> None:
    """The measured attack: a fake ap-1 with ap-1's real key pushes a new password hash for an
    account homed in eu, stamped in the year ~2286, then again stamped now. Every region keeps
    the real password, and the attacker's does not log in anywhere."""
    real, stolen = "the-real-password-1", "the-attackers-password"
    async with aiohttp.ClientSession() as http:
        uid = (await PlayerClient(cluster.url(0), http).register("victim", real))["uid"]
        for index in (1, 2):
            client = PlayerClient(cluster.url(index), http)
            await eventually(partial(client.login, "victim", real))
        stop_nodes([cluster.nodes[2]])  # ap is down; the attacker speaks as ap-1
        attacker_hash = PASSWORD_COSTS["owasp"].hash(stolen)
        now_ms = int(time.time() * 1000)
        for stamp_ms, rule in ((YEAR_2286_MS, "future_stamp"), (now_ms, "not_home")):
            fake = await _attack(cluster, http, uid, attacker_hash, stamp_ms)

            async def both_refused(fake: FakePeer = fake) -> bool:
                return len(fake.closed) >= 2

            try:
                try:
                    await eventually(both_refused)
                except AssertionError:
                    raise AssertionError(f"{rule}: the links closed {fake.closed}") from None
                # Each node refused by name (its counter, below). The ERROR frame naming it can
                # be lost on the attacker's side: when one node's refusal makes the attacker's
                # engine write to the other link (LINKS, digests) just as that node closes it,
                # the attacker's client may close that socket before reading the ERROR.
                refusals = [r for r in fake.closed if "refused update for accounts" in r]
                assert refusals and set(fake.closed) - set(refusals) <= {"closed by the node"}
                for index in (0, 1):
                    counter = f'meridian_sync_refused_total{{peer="ap-1",rule="{rule}"}}'
                    assert counter in _metrics(cluster.url(index))
            finally:
                await fake.close()
        cluster.nodes[2] = start_node(cluster.configs[2], cluster.env)
        assert await asyncio.to_thread(wait_for_mesh, cluster.nodes)
        for index in range(3):
            client = PlayerClient(cluster.url(index), http)
            assert (await client.login("victim", real))["uid"] == uid
            with pytest.raises(RequestError) as refused:
                await client.login("victim", stolen)
            assert refused.value.code == "bad_credentials"
    log = cluster.nodes[0].log_path.read_text()
    assert "refused from ap-1 [future_stamp]" in log and "refused from ap-1 [not_home]" in log


# --- keys on disk -------------------------------------------------------------------------------


def _local_config(tmp_path: Path) -> NodeConfig:
    path = write_configs(tmp_path, ["eu", "us"])[0]
    return load_config(path, cluster_env())


def test_local_clusters_get_private_keys_readable_by_their_owner_only(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    assert stat.S_IMODE(config.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.key_file.parent.stat().st_mode) == 0o700
    identity, keyring = load_identity(config)
    assert sorted(keyring.entries) == ["eu-1", "us-1"]
    pem = config.key_file.read_text()
    assert "PRIVATE KEY" in pem and pem.splitlines()[1] not in repr(identity)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda c: c.key_file.chmod(0o644), "accessible to other users (mode 0644)"),
        (lambda c: c.key_file.unlink(), "cannot read"),
        (lambda c: c.key_file.write_text("not a key"), "not an unencrypted PEM private key"),
        (lambda c: c.keyring_file.write_text("[nodes]\n"), "missing or empty"),
        (lambda c: _rewrite_keyring(c, drop="eu-1"), "does not list this node (eu-1)"),
        (lambda c: _rewrite_keyring(c, region="ap"), "in region 'ap', the config says 'eu'"),
        (lambda c: _rewrite_keyring(c, removed=True), "marks eu-1 as removed"),
        (lambda c: _rewrite_keyring(c, other_key=True), "lists another public key for eu-1"),
    ],
    ids=["world-readable", "missing", "not-pem", "empty-keyring", "absent", "region", "removed",
         "other-key"],
)  # fmt: skip
def test_bad_key_material_is_a_config_error_naming_the_file(
    tmp_path: Path, spoil: Callable[[NodeConfig], None], message: str
) -> None:
    config = _local_config(tmp_path)
    spoil(config)
    with pytest.raises(ConfigError) as caught:
        load_identity(config)
    assert message in str(caught.value) and "cluster.key" in caught.value.key
    assert "\n" not in str(caught.value)


def _rewrite_keyring(
    config: NodeConfig,
    *,
    drop: str = "",
    region: str = "",
    removed: bool = False,
    other_key: bool = False,
) -> None:
    keyring = Keyring.parse(tomllib.loads(config.keyring_file.read_text()))
    entries = [e for e in keyring.entries.values() if e.node_id != drop]
    own = next((e for e in entries if e.node_id == config.node_id), None)
    if own is not None:
        changed = replace(own, region=region or own.region)
        if removed:
            changed = replace(changed, removed_at_ms=EPOCH_MS)
        if other_key:
            changed = replace(changed, public_key=identity_for("x").public_key)
        entries = [changed if e is own else e for e in entries]
    config.keyring_file.write_text(Keyring(entries).to_toml())


def test_a_node_with_a_world_readable_key_exits_2_with_one_line(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    config.key_file.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "meridian", "node", "--config", str(config.config_path)],
        env=cluster_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cluster.key_file" in lines[0] and "chmod 600" in lines[0]


# --- docs/security.md names what the code has ---------------------------------------------------

_MODULE_NAME = re.compile(r"`((?:node|sync|crdt_models|games)(?:\.[a-z_]+)+)\.([A-Z][A-Z0-9_]+)`")
_BARE_NAME = re.compile(r"`([A-Z][A-Z0-9_]{2,})`")


def test_every_constant_docs_security_names_exists() -> None:
    """A limit named `module.NAME` in docs/security.md, and each bare `NAME` after it on the
    same line (`node.protocol.MAX_ID_CHARS`, `MAX_TOKEN_CHARS`), is a constant of that module."""
    text = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    checked = 0
    for line in text.splitlines():
        named = _MODULE_NAME.findall(line)
        if not named:
            continue
        for module_name, name in named:
            module = importlib.import_module(f"meridian.{module_name}")
            assert hasattr(module, name), f"{module_name}.{name} (docs/security.md)"
            checked += 1
        for name in _BARE_NAME.findall(line):  # (module: the line's last one named)
            assert hasattr(module, name), f"{name} after {module.__name__} (docs/security.md)"
            checked += 1
    assert checked > 30
