"""Store corruption never turns into loss: real SQLite files, real node processes.

One flipped bit in one stored row quarantines its document: the node reports itself degraded,
refuses local writes to that document ("unavailable", never "internal" or a 500), keeps every
row on disk and the corrupt one aside, remembers the quarantine across restarts, and rewrites
the document only once a peer has refilled it. A store file SQLite cannot read stops the node
with one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from meridian.crdt_models.accounts import ACCOUNTS_DOC
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.presence import presence_doc_id
from meridian.games.battleline import rules_module
from meridian.node.config import load_config
from meridian.node.delivery import EngineProgress, Send
from meridian.node.localcluster import TOKEN_ENV, fetch_health, start_node, stop_nodes
from meridian.node.server import STORE_FILE, ReplicatorDocuments
from meridian.node.service import GameService
from meridian.sync.codec import FrameType
from meridian.sync.engine import SyncEngine
from meridian.sync.identity import Keyring
from meridian.sync.replicator import Replicator
from meridian.sync.settings import SyncSettings
from meridian.sync.store import DocumentStore, GroupCommitStore
from tests.conftest import Cluster
from tests.sync_harness import identity_for

DOC = "test:it"
EU, US, AP = 0, 1, 2
REPLICATED_KEYS = [f"k{n}" for n in range(20)]
LOCAL_KEYS = [f"local{n}" for n in range(5)]  # written while eu's peers are down
BAD_INDEX = 5  # the row of REPLICATED_KEYS[5] gets the flipped bit


# --- helpers: the admin API and the store file ---------------------------------------------


def call(cluster: Cluster, index: int, method: str, path: str, body: Any = None) -> Any:
    """(HTTP status, JSON body) of an admin API call to node `index`."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{cluster.url(index)}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {cluster.env[TOKEN_ENV]}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:  # the error holds the response and its socket
            return error.code, json.loads(error.read())


def put(cluster: Cluster, index: int, doc: str, key: str, value: Any) -> int:
    status, _ = call(cluster, index, "PUT", f"/api/admin/docs/{doc}/{key}", {"value": value})
    return int(status)


def read(cluster: Cluster, index: int, doc: str, key: str) -> Any:
    status, body = call(cluster, index, "GET", f"/api/admin/docs/{doc}/{key}")
    return body["value"] if status == 200 else None


def health(cluster: Cluster, index: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{cluster.url(index)}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:  # the error holds the response and its socket
            return error.code, json.loads(error.read())


def metric(cluster: Cluster, index: int, name: str) -> float:
    with urllib.request.urlopen(f"{cluster.url(index)}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def store_path(cluster: Cluster, index: int) -> Path:
    return cluster.configs[index].data_dir / STORE_FILE


def log_rows(path: Path, doc_id: str) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as raw:
        query = "SELECT row_id, payload FROM doc_log WHERE doc_id = ? ORDER BY row_id"
        return list(raw.execute(query, (doc_id,)))


def kept_aside(path: Path) -> list[tuple[str, int, bytes, float | None]]:
    with sqlite3.connect(path) as raw:
        query = "SELECT doc_id, row_id, payload, refilled_at FROM doc_quarantine"
        return list(raw.execute(query))


def flip_one_bit(path: Path, row_id: int) -> bytes:
    """One flipped bit in one stored row, as a bad sector leaves it (node stopped)."""
    with sqlite3.connect(path) as raw:
        (payload,) = raw.execute(
            "SELECT payload FROM doc_log WHERE row_id = ?", (row_id,)
        ).fetchone()
        damaged = bytearray(payload)
        damaged[len(damaged) // 2] ^= 0x04
        raw.execute("UPDATE doc_log SET payload = ? WHERE row_id = ?", (bytes(damaged), row_id))
    return bytes(damaged)


def restart(cluster: Cluster, *indexes: int) -> None:
    """Stop the nodes if running, start them again and wait until each answers /healthz."""
    stop_nodes([cluster.nodes[index] for index in indexes])
    for index in indexes:
        cluster.nodes[index] = start_node(cluster.configs[index], cluster.env)
    for index in indexes:

        def answers(url: str = cluster.url(index)) -> bool:
            return fetch_health(url) is not None

        wait_until(answers, "the node to answer")


def write_replicated_keys(cluster: Cluster) -> None:
    for number, key in enumerate(REPLICATED_KEYS):
        assert put(cluster, EU, DOC, key, number) == 200
    for index in (US, AP):

        def holds_every_key(index: int = index) -> bool:
            return all(read(cluster, index, DOC, key) is not None for key in REPLICATED_KEYS)

        wait_until(holds_every_key, "the peers to hold every key")


def corrupt_one_row(cluster: Cluster, writes: int) -> tuple[int, bytes, list[tuple[int, bytes]]]:
    """With eu stopped: flip a bit in the row of REPLICATED_KEYS[BAD_INDEX].

    Returns its row id, the damaged payload and every row of the document as it was before."""
    rows = log_rows(store_path(cluster, EU), DOC)
    assert len(rows) == writes  # one row per acknowledged write, in write order
    bad_row = rows[BAD_INDEX][0]
    return bad_row, flip_one_bit(store_path(cluster, EU), bad_row), rows


# --- (a) no peer reachable ------------------------------------------------------------------


@pytest.mark.integration
def test_corrupt_row_with_no_peer_reachable_loses_no_acknowledged_write(cluster: Cluster) -> None:
    write_replicated_keys(cluster)
    stop_nodes([cluster.nodes[US], cluster.nodes[AP]])
    for number, key in enumerate(LOCAL_KEYS):  # acknowledged, held by eu alone
        assert put(cluster, EU, DOC, key, 100 + number) == 200
    stop_nodes([cluster.nodes[EU]])
    bad_row, damaged, rows_before = corrupt_one_row(cluster, len(REPLICATED_KEYS) + len(LOCAL_KEYS))

    restart(cluster, EU)

    status, body = health(cluster, EU)
    assert (status, body["status"]) == (503, "degraded")
    [entry] = body["quarantined"]
    assert entry["doc"] == DOC and f"row {bad_row}" in entry["reason"]
    assert "checksum mismatch" in entry["reason"]
    # Served read-only from the intact rows: what precedes the damaged row is readable.
    assert [read(cluster, EU, DOC, key) for key in REPLICATED_KEYS[:BAD_INDEX]] == list(
        range(BAD_INDEX)
    )
    refused = cluster.meridian("doc", "put", "--node", cluster.url(EU), "--doc", DOC, "new", "1")
    assert refused.returncode == 2
    assert "unavailable" in refused.stderr and "quarantined" in refused.stderr
    assert put(cluster, EU, "test:other", "while-degraded", 7) == 200  # other documents: fine
    assert metric(cluster, EU, "meridian_store_quarantines_total") == 1
    assert metric(cluster, EU, "meridian_store_writes_refused_total") == 1
    assert metric(cluster, EU, "meridian_store_quarantined_documents") == 1

    restart(cluster, EU)

    status, body = health(cluster, EU)
    assert (status, [q["doc"] for q in body["quarantined"]]) == (503, [DOC])
    log_text = cluster.nodes[EU].log_path.read_text()
    assert log_text.count(f"document '{DOC}' row {bad_row} (update): checksum mismatch") >= 2
    # Every row is still on disk, untouched; the damaged one is also kept aside.
    assert log_rows(store_path(cluster, EU), DOC) == [
        (row_id, damaged if row_id == bad_row else payload) for row_id, payload in rows_before
    ]
    assert kept_aside(store_path(cluster, EU)) == [(DOC, bad_row, damaged, None)]

    restart(cluster, US, AP)

    wait_until(lambda: health(cluster, EU)[0] == 200, "eu to be refilled")
    assert health(cluster, EU)[1]["status"] == "ok"
    assert [read(cluster, EU, DOC, key) for key in REPLICATED_KEYS] == list(range(20))
    assert [read(cluster, EU, DOC, key) for key in LOCAL_KEYS] == list(range(100, 105))
    assert read(cluster, EU, "test:other", "while-degraded") == 7
    assert metric(cluster, EU, "meridian_store_refills_total") == 1
    assert put(cluster, EU, DOC, "after-refill", 1) == 200


# --- (b) peers up -------------------------------------------------------------------------------


@pytest.mark.integration
def test_corrupt_row_with_peers_up_is_refilled_and_rewritten(cluster: Cluster) -> None:
    write_replicated_keys(cluster)
    stop_nodes([cluster.nodes[EU]])
    bad_row, damaged, _ = corrupt_one_row(cluster, len(REPLICATED_KEYS))

    restart(cluster, EU)

    wait_until(lambda: health(cluster, EU)[0] == 200, "eu to be refilled", timeout=15)
    assert health(cluster, EU)[1]["quarantined"] == []
    assert [read(cluster, EU, DOC, key) for key in REPLICATED_KEYS] == list(range(20))
    # Rewritten whole: the log folded into one snapshot, the damaged row kept aside, refilled.
    assert log_rows(store_path(cluster, EU), DOC) == []
    [(doc_id, row_id, payload, refilled_at)] = kept_aside(store_path(cluster, EU))
    assert (doc_id, row_id, payload) == (DOC, bad_row, damaged) and refilled_at is not None
    assert metric(cluster, EU, "meridian_store_refills_total") == 1
    assert put(cluster, EU, DOC, "after-refill", 1) == 200
    restart(cluster, EU)
    assert health(cluster, EU)[0] == 200  # no quarantine comes back after a refill


# --- (c) a store file SQLite cannot read --------------------------------------------------------


def _valid_store_bytes(folder: Path) -> bytes:
    folder.mkdir(parents=True)
    store = DocumentStore(folder / STORE_FILE)
    for number in range(1500):
        store.stage(f"test:{number % 30}", number.to_bytes(4, "big") * 40)
    store.commit()
    store.close()
    return (folder / STORE_FILE).read_bytes()


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["not_sqlite", "truncated_header", "zeroed_page"])
def test_unreadable_store_file_stops_the_node_with_one_line(tmp_path: Path, damage: str) -> None:
    from meridian.node.localcluster import cluster_env, write_configs

    env = cluster_env()
    config = load_config(write_configs(tmp_path, ["eu"])[0], env)
    valid = _valid_store_bytes(tmp_path / "source")
    damaged = {
        "not_sqlite": b"these are not the bytes of a database\n" * 200,
        "truncated_header": valid[:60],
        "zeroed_page": valid[: 2 * 4096] + bytes(4096) + valid[3 * 4096 :],
    }[damage]
    config.data_dir.mkdir(parents=True)
    (config.data_dir / STORE_FILE).write_bytes(damaged)

    result = subprocess.run(
        [sys.executable, "-m", "meridian", "node", "--config", str(config.config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config.data_dir / STORE_FILE) in lines[0]
    assert lines[0].startswith("meridian node: cannot ")
    assert "move the file aside" in lines[0] and "Traceback" not in result.stderr


# --- the game service: a refusal is "unavailable", background work carries on ----------------


async def test_game_service_refuses_writes_to_quarantined_documents_by_name(
    tmp_path: Path,
) -> None:
    store = GroupCommitStore(DocumentStore(tmp_path / STORE_FILE))
    await store.start()
    identity = identity_for("eu-1", 1, "eu")
    engine = SyncEngine(
        identity=identity,
        keyring=Keyring([identity.entry()]),
        settings=SyncSettings(),
        rng=random.Random(1),
        wall_ms=lambda: 1_732_000_000_000,
    )
    replicator = Replicator(engine, store)
    presence = presence_doc_id("eu-1")
    replicator.quarantine(presence, "row 3 (update): checksum mismatch")
    wall_ms = lambda: 1_732_000_000_000  # noqa: E731
    tokens = iter(f"token-{n}" for n in range(1000))
    service = GameService(  # its first heartbeat goes to the quarantined presence document
        node_id="eu-1",
        region="eu",
        documents=ReplicatorDocuments(replicator),
        rules=rules_module(),
        hlc=HybridLogicalClock("eu-1", wall_ms),
        wall_ms=wall_ms,
        new_token=lambda: next(tokens),
        rng=random.Random(2),
        progress=EngineProgress(replicator.engine),
    )
    service.tick(5.0)
    account = service.register("alice", "hash", None)

    token = service.start_session(account, 6.0)  # a login writes nothing before its hello
    service.connect("c0", 6.0)
    service.receive("c0", json.dumps({"type": "hello", "id": "h0", "token": token}), 6.0)
    refused = [i.message for i in service.take_outgoing(6.0) if isinstance(i, Send)]
    assert refused[-1]["error"]["code"] == "unavailable", refused
    assert presence in refused[-1]["error"]["message"]

    replicator.quarantined.pop(presence)  # as a refill would
    token = service.start_session(account, 7.0)
    service.connect("c1", 7.0)
    service.receive("c1", json.dumps({"type": "hello", "id": "h", "token": token}), 7.0)
    replicator.quarantine(ACCOUNTS_DOC, "row 9 (snapshot): checksum mismatch")
    service.receive("c1", json.dumps({"type": "rename", "id": "r", "name": "alicia"}), 8.0)
    replies: dict[Any, Any] = {}
    for _ in range(500):  # the hello reply waits until its session write is durable
        sent = service.take_outgoing(8.0)
        replies |= {i.message.get("re"): i.message for i in sent if isinstance(i, Send)}
        if "h" in replies and "r" in replies:
            break
        await asyncio.sleep(0.01)
    assert replies["h"]["ok"] is True
    assert replies["r"]["error"]["code"] == "unavailable"
    assert "accounts" in replies["r"]["error"]["message"]
    replicator.quarantine(presence, "row 3 (update): checksum mismatch")
    service.disconnect("c1", 9.0)  # its presence write is skipped, not raised
    service.tick(60.0)
    assert replicator.counters.writes_refused >= 4
    await store.close()


# --- refill over an in-memory protocol 3 link (compressed frames) ------------------------------


class _Pipe:
    """One direction of an in-memory link: frames queue until `deliver` hands them over."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send_frames(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)

    def close_soon(self, reason: str) -> None:
        raise AssertionError(f"the link was closed: {reason}")

    async def finish(self) -> None:
        return None


async def _replicator(tmp_path: Path, name: str, keyring: Keyring) -> Replicator:
    store = GroupCommitStore(DocumentStore(tmp_path / f"{name}.sqlite3"))
    await store.start()
    engine = SyncEngine(
        identity=identity_for(name, 1),
        keyring=keyring,
        settings=SyncSettings(),
        rng=random.Random(name),
        wall_ms=lambda: 1_732_000_000_000,
    )
    return Replicator(engine, store, clock=lambda: 1.0)


def _separate_updates(count: int) -> list[bytes]:
    """`count` updates of one document, each setting one key (each depends on the last)."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(bytes(event.update)))
    for number in range(count):
        doc.get("kv", type=Map)[f"k{number}"] = "x" * 40
    doc.unobserve(subscription)
    return updates


async def test_a_quarantined_document_is_refilled_by_a_compressed_step2(tmp_path: Path) -> None:
    """On a protocol 3 link the holder's STEP2 arrives deflated (it is over 128 bytes): the
    refill must see it, not wait for a later round of digests that happen to be equal."""
    keyring = Keyring([identity_for(name, 1).entry() for name in ("eu", "us")])
    eu, us = await _replicator(tmp_path, "eu", keyring), await _replicator(tmp_path, "us", keyring)
    updates = _separate_updates(6)
    us.engine.load(DOC, updates)
    eu.engine.load(DOC, updates[:2] + updates[3:])  # row 2 corrupt: rows 3.. wait on it
    eu.quarantine(DOC, "row 3 (update): checksum mismatch")
    to_us, to_eu = _Pipe(), _Pipe()
    link_eu, link_us = eu.open_link(to_us, initiator=True), us.open_link(to_eu, initiator=False)
    compressed_seen = 0
    while to_us.frames or to_eu.frames:
        for frame in to_eu.frames:
            compressed_seen += frame[0] == FrameType.COMPRESSED
        frames_eu, frames_us = to_eu.frames, to_us.frames
        to_eu.frames, to_us.frames = [], []
        for frame in frames_us:
            us.receive(link_us, frame)
        for frame in frames_eu:
            eu.receive(link_eu, frame)
    for _ in range(200):  # the rewrite is queued, then committed (a few ms)
        if not eu.quarantined:
            break
        await asyncio.sleep(0.01)

    assert compressed_seen > 0  # the case this test is about
    assert eu.quarantined == {} and eu.counters.refills == 1
    assert eu.engine.digest(DOC) == us.engine.digest(DOC)
    for replicator in (eu, us):
        await replicator.store.close()
