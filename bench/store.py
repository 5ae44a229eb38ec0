"""Benchmark of the durable document store: how many small CRDT updates per second one producer
can push through GroupCommitStore with fsync on (SQLite WAL, synchronous=FULL), the commit
latency, and how many updates share a commit.

Three phases, each on a fresh SQLite file:
  1. one update per commit (what throughput would be without group commit),
  2. saturation: one asyncio producer submits as fast as it can (bounded in-flight window),
  3. paced: the producer offers a fixed rate, to show the latency a player's command sees.
The saturated store is then reopened and every document checked against its source Doc.
Beside phases 1 and 2, in the same run, the bare baseline: the same updates into one plain
SQLite table (WAL, synchronous=FULL) with the same rows per commit, and the store's ratio to it.

Run: .venv/bin/python bench/store.py            (defaults finish in well under a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map

from meridian.sync.store import DocumentStore, GroupCommitStore

Updates = list[tuple[str, bytes]]
LATENCY_SAMPLE = 20  # time one submit in this many to the moment it is durable


@dataclass
class PhaseResult:
    """What one phase measured."""

    name: str
    updates: int
    seconds: float
    commits: int
    snapshots: int
    commit_latencies: list[float]
    durable_latencies: list[float]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--updates", type=int, default=200_000, help="saturation phase size")
    parser.add_argument("--docs", type=int, default=32, help="documents the updates spread over")
    parser.add_argument("--window", type=int, default=10_000, help="max in-flight submits")
    parser.add_argument("--rate", type=int, default=20_000, help="paced phase: updates/s offered")
    parser.add_argument("--paced-seconds", type=float, default=3.0, help="paced phase length")
    parser.add_argument("--single-commits", type=int, default=100, help="phase 1 commit count")
    parser.add_argument("--snapshot-every", type=int, default=1000, help="store snapshot policy")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the SQLite files")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated edits")
    return parser.parse_args(argv)


def make_updates(count: int, docs: dict[str, Doc[Any]], rng: random.Random) -> Updates:
    """Real pycrdt updates of ~30 bytes: one small map set per transaction."""
    made: Updates = []
    doc_ids = list(docs)
    observed: list[bytes] = []
    for doc in docs.values():
        doc.observe(lambda event: observed.append(bytes(event.update)))
    for number in range(count):
        doc_id = rng.choice(doc_ids)
        board = docs[doc_id].get("m", type=Map)
        # Mostly new keys (a move appended to a game), sometimes an overwrite (a status
        # change, which also carries a deletion).
        key = "status" if number % 8 == 0 else f"{number:x}"
        board[key] = number % 100
        made.append((doc_id, observed.pop()))
    return made


def new_docs(count: int) -> dict[str, Doc[Any]]:
    return {f"game:{number}": Doc() for number in range(count)}


def single_commits(path: Path, updates: Updates, snapshot_every: int) -> PhaseResult:
    store = DocumentStore(path, snapshot_every=snapshot_every)
    latencies = []
    started = time.perf_counter()
    for doc_id, update in updates:
        store.stage(doc_id, update)
        latencies.append(store.commit().seconds)
    seconds = time.perf_counter() - started
    store.close()
    return PhaseResult(
        "one update per commit", len(updates), seconds, len(updates), 0, latencies, latencies
    )


def raw_sqlite(path: Path, updates: Updates, batch: int) -> float:
    """The bare baseline: the same updates into one plain SQLite table (WAL, synchronous=FULL,
    no checksums, no snapshots), `batch` rows per transaction; returns updates/s."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE log (row_id INTEGER PRIMARY KEY, doc_id TEXT, payload BLOB)")
    started = time.perf_counter()
    for first in range(0, len(updates), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO log (doc_id, payload) VALUES (?, ?)", updates[first : first + batch]
        )
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return len(updates) / seconds


def show_ratio(name: str, ours: PhaseResult, baseline_per_s: float) -> None:
    per_s = ours.updates / ours.seconds
    print(
        f"  raw SQLite, {name:<27}{baseline_per_s:10,.0f} updates/s   "
        f"the store: {per_s / baseline_per_s:.2f}x of it"
    )


async def saturate(group: GroupCommitStore, updates: Updates, window: int) -> list[float]:
    """Submit everything as fast as the window allows; return sampled submit-to-durable times."""
    latencies: list[float] = []
    in_flight: deque[asyncio.Future[None]] = deque()
    for number, (doc_id, update) in enumerate(updates):
        future = group.submit(doc_id, update)
        in_flight.append(track(future, latencies) if number % LATENCY_SAMPLE == 0 else future)
        if len(in_flight) > window:
            await in_flight.popleft()
    await group.flush()
    return latencies


async def paced(group: GroupCommitStore, updates: Updates, rate: int) -> list[float]:
    """Offer ``rate`` updates/s, submitting each millisecond what is due."""
    latencies: list[float] = []
    started, submitted = time.perf_counter(), 0
    while submitted < len(updates):
        due = min(len(updates), int((time.perf_counter() - started) * rate) + 1)
        for number in range(submitted, due):
            future = group.submit(*updates[number])
            if number % LATENCY_SAMPLE == 0:
                track(future, latencies)
        submitted = max(submitted, due)
        await asyncio.sleep(0.001)
    await group.flush()
    return latencies


def track(future: asyncio.Future[None], latencies: list[float]) -> asyncio.Future[None]:
    """Record when ``future`` resolves (a callback on every future would slow the producer)."""
    submitted_at = time.perf_counter()
    future.add_done_callback(lambda _: latencies.append(time.perf_counter() - submitted_at))
    return future


async def grouped(
    name: str, path: Path, updates: Updates, args: argparse.Namespace, *, rate: int = 0
) -> PhaseResult:
    group = GroupCommitStore(
        DocumentStore(path, snapshot_every=args.snapshot_every), latency_samples=1_000_000
    )
    await group.start()
    started = time.perf_counter()
    if rate:
        durable = await paced(group, updates, rate)
    else:
        durable = await saturate(group, updates, args.window)
    seconds = time.perf_counter() - started
    result = PhaseResult(
        name,
        len(updates),
        seconds,
        group.total_commits,
        group.total_snapshots,
        list(group.commit_latency_seconds),
        durable,
    )
    await group.close()
    return result


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def show(result: PhaseResult) -> None:
    def ms(values: Sequence[float], fraction: float) -> str:
        return f"{percentile(values, fraction) * 1000:7.2f} ms"

    print(f"\n{result.name}")
    print(
        f"  updates/s sustained    {result.updates / result.seconds:12,.0f}"
        f"   ({result.updates:,} updates in {result.seconds:.2f} s)"
    )
    print(
        f"  commits                {result.commits:12,}   "
        f"updates per commit {result.updates / max(1, result.commits):,.1f}"
        f"   snapshots written {result.snapshots}"
    )
    print(
        f"  commit latency         p50 {ms(result.commit_latencies, 0.5)}"
        f"   p99 {ms(result.commit_latencies, 0.99)}"
    )
    print(
        f"  submit->durable        p50 {ms(result.durable_latencies, 0.5)}"
        f"   p99 {ms(result.durable_latencies, 0.99)}"
    )


def verify(path: Path, docs: dict[str, Doc[Any]]) -> int:
    """Reopen the store and check every document equals its source; return how many did."""
    store = DocumentStore(path)
    loaded = store.load()
    store.close()
    assert not loaded.corrupt, loaded.corrupt
    for doc_id, source in docs.items():
        reloaded: Doc[Any] = Doc()
        reloaded.apply_update(loaded.merged_update(doc_id))
        if reloaded.get("m", type=Map).to_py() != source.get("m", type=Map).to_py():
            raise SystemExit(f"document {doc_id} differs after reload")
    return len(docs)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    paced_count = int(args.rate * args.paced_seconds)
    print(f"generating {args.single_commits + args.updates + paced_count:,} pycrdt updates ...")
    single_docs, saturated_docs, paced_docs = (new_docs(args.docs) for _ in range(3))
    single_updates = make_updates(args.single_commits, single_docs, rng)
    saturated_updates = make_updates(args.updates, saturated_docs, rng)
    paced_updates = make_updates(paced_count, paced_docs, rng)
    mean_size = statistics.mean(len(update) for _, update in saturated_updates)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        folder = Path(directory)
        probe = DocumentStore(folder / "probe.sqlite3")
        print(
            f"store settings {probe.durability_settings()}, {args.docs} documents, "
            f"mean update {mean_size:.1f} bytes, snapshot_every {args.snapshot_every}"
        )
        probe.close()
        print(f"(the group phases time submit->durable for 1 submit in {LATENCY_SAMPLE})")
        single = single_commits(folder / "single.sqlite3", single_updates, args.snapshot_every)
        show(single)
        show_ratio("one row per commit", single, raw_sqlite(folder / "raw1.db", single_updates, 1))
        saturated_path = folder / "saturated.sqlite3"
        saturated = await grouped(
            "group commit, saturated (one producer)", saturated_path, saturated_updates, args
        )
        show(saturated)
        batch = max(1, round(saturated.updates / max(1, saturated.commits)))
        raw = raw_sqlite(folder / "raw.db", saturated_updates, batch)
        show_ratio(f"{batch} rows per commit", saturated, raw)
        show(
            await grouped(
                f"group commit, paced at {args.rate:,}/s offered",
                folder / "paced.sqlite3",
                paced_updates,
                args,
                rate=args.rate,
            )
        )
        print(f"\nreload check: {verify(saturated_path, saturated_docs)} documents identical")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
