"""The asyncio group-commit adapter: many submits share one commit, a future resolves only once
its update is durable, a failed commit fails its futures and nothing else."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from meridian.sync.store import DocumentStore, GroupCommitStore, LoadedState


def reload(path: Path) -> LoadedState:
    store = DocumentStore(path)
    try:
        return store.load()
    finally:
        store.close()


async def started(path: Path, **options: Any) -> GroupCommitStore:
    group = GroupCommitStore(DocumentStore(path, **options))
    await group.start()
    return group


def payload(number: int) -> bytes:
    """Distinct opaque bytes; the store does not decode updates unless it snapshots them."""
    return b"\x00\x00" + number.to_bytes(4, "big")


async def test_2000_submits_resolve_in_far_fewer_commits(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    group = await started(path)
    futures = [group.submit(f"game:{number % 10}", payload(number)) for number in range(2000)]

    await asyncio.gather(*futures)

    assert group.total_updates == 2000
    assert 1 <= group.total_commits <= 100
    assert group.last_commit is not None
    assert len(group.commit_latency_seconds) == group.total_commits
    # every commit's first update waited at least as long as the commit itself took
    assert len(group.durable_wait_seconds) == group.total_durable_waits == group.total_commits
    assert min(group.durable_wait_seconds) >= min(group.commit_latency_seconds)
    await group.close()
    loaded = reload(path)
    stored = sorted(update for updates in loaded.updates.values() for update in updates)
    assert stored == sorted(payload(number) for number in range(2000))


async def test_flush_makes_meta_durable_with_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    group = await started(path)
    group.submit_meta("hlc", "1:0:n1")
    group.submit("game:1", payload(1))
    group.submit_meta("hlc", "2:0:n1")

    await group.flush()

    assert reload(path).meta == {"hlc": "2:0:n1"}
    await group.close()


async def test_close_commits_what_was_submitted(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    group = await started(path)
    future = group.submit("game:1", payload(1))

    await group.close()

    assert future.done() and future.exception() is None
    assert reload(path).updates == {"game:1": [payload(1)]}
    with pytest.raises(RuntimeError, match="closed"):
        group.submit("game:1", payload(2))


async def test_failed_commit_fails_its_futures_and_later_batches_succeed(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    group = await started(path)
    await group.submit("game:1", payload(1))
    with sqlite3.connect(path) as raw:  # a real SQLite error for one batch, no mock
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON doc_log WHEN NEW.doc_id = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END"
        )
    doomed = [group.submit("game:2", payload(2)), group.submit("poison", payload(3))]

    results = await asyncio.gather(*doomed, return_exceptions=True)
    await group.submit("game:3", payload(4))

    assert all(isinstance(result, sqlite3.DatabaseError) for result in results)
    assert "simulated I/O error" in str(results[0])
    assert group.failed_commits == 1
    await group.close()
    assert sorted(reload(path).updates) == ["game:1", "game:3"]


def kv_update(client_id: int, key: str, value: str) -> bytes:
    """A real Yjs update setting one key (replace_document merges what it stores)."""
    doc: Doc[Any] = Doc(client_id=client_id)
    doc.get("kv", type=Map)[key] = value
    return bytes(doc.get_update())


async def test_replace_document_runs_after_earlier_submits(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    group = await started(path)
    group.submit("game:1", kv_update(1, "a", "submitted first"))
    group.submit("game:2", payload(2))

    await group.replace_document("game:1", kv_update(2, "b", "refilled"))

    await group.close()
    loaded = reload(path)
    # One row left: the submit was committed before the rewrite, which merged it in.
    assert len(loaded.updates["game:1"]) == 1
    assert loaded.updates["game:2"] == [payload(2)]
    doc: Doc[Any] = Doc()
    doc.apply_update(loaded.updates["game:1"][0])
    assert doc.get("kv", type=Map).to_py() == {"a": "submitted first", "b": "refilled"}


async def test_latency_ring_is_bounded(tmp_path: Path) -> None:
    group = GroupCommitStore(DocumentStore(tmp_path / "node.sqlite3"), latency_samples=3)
    await group.start()
    for number in range(6):
        await group.submit("game:1", payload(number))

    assert group.total_commits == 6
    assert len(group.commit_latency_seconds) == 3
    await group.close()


async def test_misuse_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    group = GroupCommitStore(DocumentStore(tmp_path / "node.sqlite3"))
    with pytest.raises(RuntimeError, match=r"start\(\) has not been awaited"):
        group.submit("game:1", payload(1))
    await group.start()
    with pytest.raises(RuntimeError, match="already started"):
        await group.start()
    with pytest.raises(ValueError, match="'game:1' is empty"):
        group.submit("game:1", b"")
    with pytest.raises(ValueError, match="document id must not be empty"):
        group.submit("", payload(1))
    await group.close()


async def test_numbered_submits_report_each_commit_once_with_its_highest_number(
    tmp_path: Path,
) -> None:
    """The replicator's hot path: no future per update; the listener hears, once per commit and
    in rising order, the highest number that commit made durable, and everything is stored."""
    path = tmp_path / "node.sqlite3"
    group = GroupCommitStore(DocumentStore(path))
    heard: list[tuple[int, BaseException | None]] = []
    group.listen_for_durability(lambda number, error: heard.append((number, error)))
    await group.start()
    for number in range(1, 501):
        group.submit_numbered(f"game:{number % 7}", payload(number), number)
        if number % 100 == 0:
            await asyncio.sleep(0)  # let some commits start while others queue

    await group.flush()

    numbers = [number for number, _ in heard]
    assert numbers[-1] == 500 and numbers == sorted(set(numbers))
    assert all(error is None for _, error in heard)
    assert len(heard) == group.total_commits  # one report per commit that held them
    await group.close()
    stored = sorted(update for updates in reload(path).updates.values() for update in updates)
    assert stored == sorted(payload(number) for number in range(1, 501))


async def test_a_failed_numbered_commit_reports_the_error_and_its_number(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    group = GroupCommitStore(DocumentStore(path))
    heard: list[tuple[int, BaseException | None]] = []
    group.listen_for_durability(lambda number, error: heard.append((number, error)))
    await group.start()
    with sqlite3.connect(path) as raw:  # a real SQLite error for one batch, no mock
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON doc_log WHEN NEW.doc_id = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END"
        )
    group.submit_numbered("game:1", payload(1), 7)
    group.submit_numbered("poison", payload(2), 8)

    # The flush shares the failing commit or follows it (then it succeeds): either way, after
    # it the listener has heard.
    await asyncio.gather(group.flush(), return_exceptions=True)

    assert (8, "simulated I/O error") in [(n, str(e)) for n, e in heard if e is not None]
    await group.close()


async def test_numbered_submits_need_a_listener(tmp_path: Path) -> None:
    group = await started(tmp_path / "node.sqlite3")
    with pytest.raises(RuntimeError, match="listen_for_durability"):
        group.submit_numbered("game:1", payload(1), 1)
    await group.close()
