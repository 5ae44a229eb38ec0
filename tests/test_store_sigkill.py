"""SIGKILL at any moment loses no update the store reported committed.

A writer subprocess (tests/helpers/store_writer.py) commits batches and prints one line per
durable batch; the test kills it at a seeded random moment, reopens the file and checks every
reported update is there. Seeds are fixed so a failure can be replayed; each is printed.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from meridian.sync.store import DocumentStore

pytestmark = pytest.mark.integration  # a writer subprocess, killed
WRITER = Path(__file__).parent / "helpers" / "store_writer.py"
RUNS = [(seed, "sync") for seed in (11, 29, 5, 13)] + [(seed, "group") for seed in (47, 83, 6, 71)]


def run_and_kill(path: Path, seed: int, mode: str) -> list[dict[str, Any]]:
    """Start the writer, SIGKILL it after a random number of batches plus a random delay;
    return the batches it reported durable."""
    rng = random.Random(seed)
    wait_for_batches, extra_delay = rng.randint(1, 60), rng.uniform(0.0, 0.03)
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < wait_for_batches:
            line = writer.stdout.readline()
            assert line, f"writer exited early with {writer.wait()}"
            lines.append(line)
        time.sleep(extra_delay)  # let it get into the middle of the next commit
    finally:
        writer.send_signal(signal.SIGKILL)
        # Read the rest through the same buffered pipe object: communicate(timeout=...) reads
        # the file descriptor directly and would skip what readline() already buffered (the
        # rest would then start mid-line). The killed writer closes the pipe, so this ends.
        rest = writer.stdout.read()
        writer.stdout.close()
        writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    # Lines printed before the kill were committed too; a torn last line (no newline) was not
    # reported complete, so it does not count.
    lines += [line + "\n" for line in rest.split("\n")[:-1]]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(("seed", "mode"), RUNS)
def test_sigkill_loses_no_committed_update(tmp_path: Path, seed: int, mode: str) -> None:
    print(f"seed={seed} mode={mode}")
    path = tmp_path / "node.sqlite3"
    reported = run_and_kill(path, seed, mode)

    store = DocumentStore(path)
    loaded = store.load()
    store.close()

    assert loaded.corrupt == []
    assert int(loaded.meta["last_batch"]) >= reported[-1]["batch"]
    maps: dict[str, dict[str, Any]] = {}
    for doc_id in loaded.updates:
        doc: Doc[Any] = Doc()
        doc.apply_update(loaded.merged_update(doc_id))
        maps[doc_id] = doc.get("m", type=Map).to_py()
    lost = [
        (doc_id, key)
        for batch in reported
        for doc_id, key in batch["keys"]
        if maps.get(doc_id, {}).get(key) != batch["batch"]
    ]
    assert lost == [], f"seed {seed}: {len(lost)} reported-committed updates missing"
