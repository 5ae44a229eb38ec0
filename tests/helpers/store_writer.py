"""Writer process for tests/test_store_sigkill.py: commits batches until it is SIGKILLed.

Usage: store_writer.py PATH SEED MODE, MODE being "sync" (DocumentStore.commit) or "group"
(GroupCommitStore futures). After each batch is durable it prints one JSON line (flushed):
{"batch": n, "keys": [[doc_id, key], ...]}; every key was set to n in the map "m" of doc_id.
The batch number is also written to meta "last_batch" no later than the batch itself.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map

from meridian.sync.store import DocumentStore, GroupCommitStore

DOC_IDS = ("game:1", "game:2", "accounts", "presence:eu")
SNAPSHOT_EVERY = 25  # small, so that kills also land inside snapshot folds
GIVE_UP_SECONDS = 30.0  # never outlive a test that forgot to kill us

Batch = list[tuple[str, str, bytes]]  # (doc_id, key, update)


def make_batch(docs: dict[str, Doc[Any]], rng: random.Random, batch: int) -> Batch:
    """Between 1 and 40 map sets, each its own update."""
    made: Batch = []
    for index in range(rng.randint(1, 40)):
        doc_id = rng.choice(DOC_IDS)
        doc = docs[doc_id]
        before = doc.get_state()
        key = f"b{batch}.{index}"
        doc.get("m", type=Map)[key] = batch
        made.append((doc_id, key, bytes(doc.get_update(before))))
    return made


def report(batch: int, made: Batch) -> None:
    keys = [[doc_id, key] for doc_id, key, _ in made]
    print(json.dumps({"batch": batch, "keys": keys}), flush=True)


def run_sync(store: DocumentStore, docs: dict[str, Doc[Any]], rng: random.Random) -> None:
    started, batch = time.monotonic(), 0
    while time.monotonic() - started < GIVE_UP_SECONDS:
        made = make_batch(docs, rng, batch)
        for doc_id, _, update in made:
            store.stage(doc_id, update)
        store.stage_meta("last_batch", str(batch))
        store.commit()
        report(batch, made)
        batch += 1


async def run_group(store: DocumentStore, docs: dict[str, Doc[Any]], rng: random.Random) -> None:
    group = GroupCommitStore(store)
    await group.start()
    started, batch = time.monotonic(), 0
    while time.monotonic() - started < GIVE_UP_SECONDS:
        made = make_batch(docs, rng, batch)
        # Meta queued before the batch's updates is committed with them or earlier.
        group.submit_meta("last_batch", str(batch))
        await asyncio.gather(*(group.submit(doc_id, update) for doc_id, _, update in made))
        report(batch, made)
        batch += 1
    await group.close()


def main() -> None:
    path, seed, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    docs: dict[str, Doc[Any]] = {doc_id: Doc() for doc_id in DOC_IDS}
    store = DocumentStore(path, snapshot_every=SNAPSHOT_EVERY)
    if mode == "sync":
        run_sync(store, docs, rng)
    else:
        asyncio.run(run_group(store, docs, rng))


if __name__ == "__main__":
    main()
