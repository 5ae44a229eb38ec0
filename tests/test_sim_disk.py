"""The simulator's disk: the real SQLite store under a crash model that tears unsynced writes.

What a user of the simulator relies on: a crash keeps every commit the disk called durable,
keeps a commit in flight whole or not at all (never a part of it), loses everything with the
disk, and a restart loads through the production store's load path (snapshots included).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pycrdt import Doc, Map

from meridian.sim import disk as disk_module
from meridian.sim.clock import Scheduler
from meridian.sim.disk import SIM_SNAPSHOT_EVERY, VirtualDisk
from meridian.sync.store import LoadedState

FSYNC_S = 0.01


def one_put(key: str) -> bytes:
    """An update that puts ``key`` in a document's root map (a fresh client each time)."""
    doc: Doc[Map[str]] = Doc()
    entries: Map[str] = Map()
    doc["kv"] = entries
    entries[key] = key
    return doc.get_update()


def keys(loaded: LoadedState, doc_id: str = "kv:one") -> set[str]:
    doc: Doc[Map[str]] = Doc()
    for update in loaded.updates.get(doc_id, []):
        doc.apply_update(update)
    return set(doc.get("kv", type=Map).keys())


class Rig:
    """A disk on a scheduler, and what it reported durable."""

    def __init__(self, folder: Path, seed: int = 1) -> None:
        self.scheduler = Scheduler()
        self.durable_through = 0
        self.disk = VirtualDisk(
            folder, self.scheduler, FSYNC_S, self._on_durable, random.Random(seed)
        )
        self.disk.open()
        self.event_no = 0

    def _on_durable(self, event_no: int) -> None:
        self.durable_through = event_no

    def put(self, key: str) -> None:
        self.event_no += 1
        self.disk.submit(self.event_no, "kv:one", one_put(key))

    def run_for(self, seconds: float) -> None:
        self.scheduler.run_until(self.scheduler.now + seconds)


def test_a_commit_is_durable_after_the_fsync_time_and_later_submits_wait_for_the_next(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.put("a")
    rig.put("b")  # joins nothing: "a" is already being committed
    rig.run_for(FSYNC_S * 0.9)
    assert rig.durable_through == 0
    rig.run_for(FSYNC_S * 0.2)
    assert rig.durable_through == 1
    rig.run_for(FSYNC_S)
    assert rig.durable_through == 2


@pytest.mark.parametrize("seed", range(12))
def test_a_crash_keeps_every_durable_commit_and_the_one_in_flight_whole_or_not_at_all(
    tmp_path: Path, seed: int
) -> None:
    rig = Rig(tmp_path, seed)
    for index in range(5):
        rig.put(f"durable{index}")
        rig.run_for(FSYNC_S * 1.5)
    rig.put("durable5")  # its commit starts at once; the next three wait for the next commit
    for index in range(3):
        rig.put(f"flight{index}")
    rig.run_for(FSYNC_S * 1.5)  # "durable5" is durable, the commit of three is in flight
    assert rig.durable_through == 6
    rig.disk.crash(keep=True)
    found = keys(rig.disk.open())
    durable = {f"durable{index}" for index in range(6)}
    assert durable <= found
    assert found - durable in (set(), {f"flight{index}" for index in range(3)})


def test_torn_tails_sometimes_keep_and_sometimes_lose_the_commit_in_flight(tmp_path: Path) -> None:
    outcomes = set()
    for seed in range(20):
        rig = Rig(tmp_path / str(seed), seed)
        rig.put("flight")
        rig.run_for(FSYNC_S * 0.5)
        rig.disk.crash(keep=True)
        outcomes.add("flight" in keys(rig.disk.open()))
        rig.disk.close()
    assert outcomes == {True, False}


def test_a_crash_that_loses_the_disk_loses_everything(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.put("a")
    rig.run_for(FSYNC_S * 2)
    rig.disk.crash(keep=False)
    assert rig.disk.open().updates == {}


def test_a_clean_stop_commits_what_is_pending_with_its_meta(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.put("a")
    rig.put("b")
    rig.disk.submit_meta("hlc_last", "stamp")
    rig.disk.flush()
    assert rig.durable_through == 2
    loaded = rig.disk.open()
    assert keys(loaded) == {"a", "b"}
    assert loaded.meta["hlc_last"] == "stamp"


def test_restarts_reload_folded_snapshots_and_survive_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_module, "CHECKPOINT_WAL_BYTES", 16 << 10)
    rig = Rig(tmp_path)
    written = [f"k{index}" for index in range(SIM_SNAPSHOT_EVERY * 4)]
    for key in written:
        rig.put(key)
        rig.run_for(FSYNC_S * 1.5)
    rig.put("in flight")
    rig.disk.crash(keep=True)
    loaded = rig.disk.open()
    assert set(written) <= keys(loaded)
    assert len(loaded.updates["kv:one"]) < len(written)  # folded into a snapshot
