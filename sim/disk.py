"""A simulated node's disk: the production SQLite store on a file whose unsynced tail a crash
can tear.

The node's store is the real ``sync.store.DocumentStore`` (its schema, checksums, snapshot
folding and load path) on a file in the run's scratch folder (on tmpfs when the machine has
one). What is simulated is only what the store cannot show on a virtual clock: how long an
fsync takes, and what a crash keeps of a write that had not been synced.

Group commit as ``sync.store.GroupCommitStore`` does it (the engine sees no difference): every
change is submitted; a commit takes everything submitted since the last one and is durable
``fsync_s`` later; changes submitted while a commit is under way go into the next one. When a
commit is durable the node calls ``engine.durable_through`` (which releases acks).

Crash model. SQLite appends each transaction to its write-ahead log (WAL); a transaction is
durable once the log is synced. Automatic checkpoints are off, so the store file itself changes
only when this disk checkpoints, right after a commit is durable. The disk therefore keeps the
length of the log that is durable; a crash that keeps the disk cuts the log back to that length
plus none, a random prefix or all of the commit in flight (a torn write: SQLite's frame
checksums drop a torn frame on recovery, and a transaction without its commit frame), restores
the store
file as of the last checkpoint, and the restarted node reloads through ``DocumentStore.load``.
A crash that loses the disk deletes the files; a clean stop commits what is pending first.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from meridian.sim.clock import Scheduler
from meridian.sync.store import DocumentStore, LoadedState

Entry = tuple[int, str, bytes]  # (change number of the current engine, document id, update)
STORE_FILE = "store.sqlite3"
# Small enough that snapshot folding runs (and is crashed into) in every busy run.
SIM_SNAPSHOT_EVERY = 16
# Checkpoint once the durable log is this long, so that a long run's log stays small.
CHECKPOINT_WAL_BYTES = 4 << 20
SCRATCH_ROOTS = (Path("/dev/shm"),)  # tmpfs: SQLite's fsyncs cost nothing there


def scratch_folder(label: str) -> Path:
    """A fresh folder for one run's disks (remove it with :func:`remove_scratch`)."""
    root = next((str(p) for p in SCRATCH_ROOTS if p.is_dir()), None)
    return Path(tempfile.mkdtemp(prefix=f"meridian-sim-{label}-", dir=root))


def remove_scratch(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class VirtualDisk:
    """One node's store file, its group commit on the virtual clock, and what a crash keeps."""

    def __init__(
        self,
        folder: Path,
        scheduler: Scheduler,
        fsync_s: float,
        on_durable: Callable[[int], None],
        rng: random.Random,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / STORE_FILE
        self._wal_file = ""  # the store's write-ahead log, as a string (stat once per commit)
        self.scheduler = scheduler
        self.fsync_s = fsync_s
        self.on_durable = on_durable
        self.rng = rng
        self.torn_commits = 0  # crashes that cut a commit in flight (for the run's report)
        self._store: DocumentStore | None = None
        self._base: bytes = b""  # the store file as of the last checkpoint
        self._durable_wal = 0  # bytes of the log that are synced
        self._pending: list[Entry] = []
        self._committing: list[Entry] = []
        self._meta: dict[str, str] = {}
        self._generation = 0  # a crash orphans the commit under way

    # --- the node's process ------------------------------------------------------------------

    def open(self) -> LoadedState:
        """Open the store (after a start or a crash) and load it as a restarting node does."""
        self._store = store = DocumentStore(
            self.path, snapshot_every=SIM_SNAPSHOT_EVERY, wal_autocheckpoint=0, exclusive=True
        )
        self._wal_file = str(store.wal_path())
        loaded = store.load()  # may write (a quarantine marker): made durable at once
        self._checkpoint()
        return loaded

    def submit(self, event_no: int, doc_id: str, update: bytes) -> None:
        self._pending.append((event_no, doc_id, update))
        if not self._committing:
            self._start_commit()

    def submit_meta(self, key: str, value: str) -> None:
        """A meta value written with the next commit (``GroupCommitStore.submit_meta``)."""
        self._meta[key] = value

    def crash(self, *, keep: bool) -> None:
        """The process dies: the log keeps its synced part and a torn prefix of the rest."""
        self._generation += 1
        self._pending, self._committing, self._meta = [], [], {}
        store, self._store = self._store, None
        if store is None:
            return
        wal = store.wal_path()
        log = wal.read_bytes() if wal.exists() else b""
        kept = self._durable_wal
        if len(log) > kept:
            self.torn_commits += 1
            kept = self._cut(kept, len(log))
        store.close()  # closing checkpoints: the files are put back below
        if not keep:
            self._delete_files()
            return
        self._delete_files()
        self.path.write_bytes(self._base)
        wal.write_bytes(log[:kept])

    def _cut(self, durable: int, written: int) -> int:
        """How much of the log survives: the synced part, then none, some or all of the rest
        (each a third of the time: a uniform cut alone would almost never keep a whole commit)."""
        fate = self.rng.randrange(3)
        if fate == 0:
            return durable
        return written if fate == 2 else self.rng.randint(durable, written)

    def flush(self) -> None:
        """A clean stop: whatever was submitted is committed, then the store is closed."""
        self._generation += 1
        self._write(self._pending)  # the commit under way, if any, is written already
        batch = self._committing + self._pending
        self._committing, self._pending = [], []
        self._durable(batch)
        if self._store is not None:
            self._store.close()
            self._store = None
        self._base = self.path.read_bytes()
        self._durable_wal = 0

    def close(self) -> None:
        """The run is over: release the file (the folder is removed by the run)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # --- group commit --------------------------------------------------------------------------

    def _start_commit(self) -> None:
        self._committing, self._pending = self._pending, []
        self._write(self._committing)
        self.scheduler.after(self.fsync_s, self._finish, self._generation)

    def _finish(self, generation: int) -> None:
        if generation != self._generation:
            return
        batch, self._committing = self._committing, []
        self._durable(batch)
        if self._pending:
            self._start_commit()

    def _write(self, batch: list[Entry]) -> None:
        """The commit's transaction, written to the log now, durable only at ``_durable``."""
        store = self._require_store()
        for _, doc_id, update in batch:
            store.stage(doc_id, update)
        for key, value in self._meta.items():
            store.stage_meta(key, value)
        self._meta = {}
        store.commit()

    def _durable(self, batch: list[Entry]) -> None:
        self._require_store()
        self._durable_wal = _size(self._wal_file)
        if self._durable_wal >= CHECKPOINT_WAL_BYTES:
            self._checkpoint()
        if batch:
            self.on_durable(max(event_no for event_no, _, _ in batch))

    def _checkpoint(self) -> None:
        store = self._require_store()
        store.checkpoint()
        self._base = self.path.read_bytes()
        self._durable_wal = 0

    def _require_store(self) -> DocumentStore:
        if self._store is None:
            raise RuntimeError(f"the store {self.path} is not open")
        return self._store

    def _delete_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)


def _size(file: str) -> int:
    """A file's length, 0 if it does not exist (os.stat: pathlib costs more than the
    commit's bookkeeping it serves, once per simulated commit)."""
    try:
        return os.stat(file).st_size
    except FileNotFoundError:
        return 0
