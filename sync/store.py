"""Durable store of every shared pycrdt document a node holds, in one SQLite file.

Every update a node applies (made locally or received from a peer) is appended to a per-document
log; when a document's log grows past ``snapshot_every`` rows it is folded into one snapshot row
in the same transaction. A restarted node calls :meth:`DocumentStore.load` and gets back, per
document, the snapshot and the log rows to apply to a fresh ``pycrdt.Doc`` (best merged into
one update first: :meth:`LoadedState.merged_update`).

Durability: SQLite in WAL mode with ``synchronous=FULL``, so a transaction that returned from
COMMIT survives SIGKILL and power loss. Throughput comes from group commit: many updates share
one transaction and one fsync. :class:`DocumentStore` is the synchronous core;
:class:`GroupCommitStore` runs it on a writer thread for asyncio code and resolves each
submitted update's future once the transaction holding it is durable.

Integrity: each row carries a checksum over (document id, kind, payload). A row whose checksum
does not match is reported as a :class:`CorruptRow` and its document is quarantined instead of
being applied silently: a copy of the corrupt row goes to the ``doc_quarantine`` table (kept for
an operator to inspect, and the marker that the document awaits a refill, so the quarantine
survives restarts), the document's intact rows are handed back apart (``LoadedState.salvaged``),
and no row of it is deleted until :meth:`DocumentStore.replace_document` stores the refilled
document. A file SQLite cannot read raises :class:`StoreError` naming the file.

Snapshots are built with ``pycrdt.merge_updates`` over the raw update bytes, then compacted
through a ``Doc`` only when the Doc integrates all of them (`compact`): pycrdt 0.14.13's
``Doc.get_update()`` leaves out updates whose dependencies have not arrived yet ("pending"
structs), and a ``Doc`` fed several such updates out of order can drop one of them;
``merge_updates`` keeps every struct (tests/test_store_pending.py shows both), but also the
content of every deleted item, which a Doc drops: without the compaction a document whose keys
are rewritten (presence) grows its snapshot by every value it ever held.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycrdt

from meridian.crdt_models.kinds import check_doc_id_syntax
from meridian.sync.codec import FrameError
from meridian.sync.digest import is_decode_failure, lacking

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: doc_quarantine; version-1 code would not honour its markers
UPDATE = "update"
SNAPSHOT = "snapshot"
MERGE_FAN_IN = 16
# SQLite's own default. 0 turns automatic checkpoints off: the simulator's disk does (it
# checkpoints at moments it chooses, see sim.disk), production keeps the default.
WAL_AUTOCHECKPOINT_PAGES = 1000
# A log longer than snapshot_every rows folds only once its bytes reach this fraction of its
# snapshot's: folding rewrites the whole snapshot, so a large document (the sessions of 10,000
# players) folded every snapshot_every rows would cost O(size) per snapshot_every writes; this
# way each fold rewrites at most 1/FOLD_AT_LOG_FRACTION bytes per byte of log it removes.
FOLD_AT_LOG_FRACTION = 0.5
# ... but never lets a log grow past this many times snapshot_every rows (restart time: a load
# merges every log row).
MAX_LOG_ROWS_FACTOR = 64
EMPTY_UPDATE = b"\x00\x00"  # a Yjs v1 update with no structs and an empty delete set

# The log is clustered by document (WITHOUT ROWID, primary key (doc_id, row_id)): a document's
# rows sit on a few adjacent pages, so a fold reads and deletes those pages only, instead of
# every page its rows would be scattered over in insertion order (measured: deletes 5x cheaper),
# and there is no secondary index to update on each insert. row_id comes from one counter
# shared by both tables, so it names a row uniquely and orders a document's log.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS doc_log (
    doc_id TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    payload BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    PRIMARY KEY (doc_id, row_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doc_snapshot (
    doc_id TEXT PRIMARY KEY,
    row_id INTEGER NOT NULL,
    payload BLOB NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS doc_quarantine (
    doc_id TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB,
    checksum INTEGER,
    detail TEXT NOT NULL,
    found_at REAL NOT NULL,
    refilled_at REAL,
    PRIMARY KEY (doc_id, row_id)
);
"""
# A corrupt row is copied here as it was read (payload and checksum untouched, whatever their
# type); refilled_at stays NULL until the document has been refilled and rewritten.
_KEEP_ASIDE = (
    "INSERT OR IGNORE INTO doc_quarantine "
    "(doc_id, row_id, kind, payload, checksum, detail, found_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_AWAITING_REFILL = (
    "SELECT doc_id, row_id, kind, detail FROM doc_quarantine "
    "WHERE refilled_at IS NULL ORDER BY doc_id, row_id"
)
# Row ids kept aside count too: a new row must never take the id of a quarantined one.
_LAST_ROW_ID = (
    "SELECT MAX(row_id) FROM "
    "(SELECT row_id FROM doc_snapshot UNION ALL SELECT row_id FROM doc_quarantine)"
)
_REFILLED = "UPDATE doc_quarantine SET refilled_at = ? WHERE doc_id = ? AND refilled_at IS NULL"
_INSERT_LOG = "INSERT INTO doc_log (doc_id, row_id, payload, checksum) VALUES (?, ?, ?, ?)"
_UPSERT_SNAPSHOT = (
    "INSERT INTO doc_snapshot (doc_id, row_id, payload, checksum) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (doc_id) DO UPDATE SET "
    "row_id = excluded.row_id, payload = excluded.payload, checksum = excluded.checksum"
)
_UPSERT_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_Row = tuple[int, bytes, int]  # row_id, payload, checksum, as read back


class StoreError(Exception):
    """The store file cannot be opened or read, or has a layout this code does not understand."""


@dataclass(frozen=True)
class CorruptRow:
    """A stored row whose checksum (or shape) shows it is not what was written."""

    doc_id: str
    row_id: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"document {self.doc_id!r} row {self.row_id} ({self.kind}): {self.detail}"


@dataclass
class LoadedState:
    """Everything a store held at load time.

    ``updates[doc_id]`` is the document's snapshot (if any) followed by its log rows in commit
    order. A quarantined document (a corrupt row found now or at an earlier load, and not
    refilled since) is absent from ``updates``: its corrupt rows are listed in ``corrupt`` and
    its intact rows, in the same order, are in ``salvaged`` (an empty list if none is left).
    """

    updates: dict[str, list[bytes]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    corrupt: list[CorruptRow] = field(default_factory=list)
    salvaged: dict[str, list[bytes]] = field(default_factory=dict)

    def merged_update(self, doc_id: str) -> bytes:
        """All of a document's rows merged into one update, to apply once to a fresh Doc.

        Prefer this to applying the rows one by one: a pycrdt Doc that receives several
        updates with missing dependencies in turn can drop one of them, a single merged
        update cannot trip over that.
        """
        return merge_all(self.updates[doc_id])


@dataclass(frozen=True)
class CommitStats:
    """What one commit wrote and how long its transaction (including fsync) took."""

    updates: int
    bytes: int
    seconds: float
    snapshots: int
    meta: int = 0  # meta keys written


def validate_doc_id(doc_id: object) -> str:
    """Return ``doc_id`` if it is a usable document id, else raise naming what is wrong.

    The characters and length are the code base's one document-id rule
    (``crdt_models.kinds``; DocIdError is a ValueError); which namespaces exist is the
    replication's business, not the store's."""
    if not isinstance(doc_id, str):
        raise TypeError(f"document id must be a str, got {type(doc_id).__name__}")
    check_doc_id_syntax(doc_id)
    return doc_id


def validate_update(update: object, doc_id: str = "?") -> bytes:
    """Return ``update`` as ``bytes`` (pycrdt may hand out bytearray), else raise."""
    if not isinstance(update, bytes | bytearray | memoryview):
        raise TypeError(
            f"update for document {doc_id!r} must be bytes, got {type(update).__name__}"
        )
    payload = bytes(update)
    if not payload:
        raise ValueError(f"update for document {doc_id!r} is empty")
    return payload


def _validate_meta(key: object, value: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"meta key must be a non-empty str, got {key!r}")
    if not isinstance(value, str):
        raise TypeError(f"meta value for {key!r} must be a str, got {type(value).__name__}")


def _checksum_seed(doc_id: str, kind: str) -> int:
    doc_bytes = doc_id.encode("utf-8")
    # The length prefix keeps ("ab", "c...") and ("a", "bc...") from checksumming alike.
    head = zlib.crc32(len(doc_bytes).to_bytes(4, "big") + doc_bytes)
    return zlib.crc32(kind.encode("ascii"), head)


def row_checksum(doc_id: str, kind: str, payload: bytes) -> int:
    """Checksum stored with every row: CRC-32 over the length-prefixed id, kind and payload.

    CRC-32 catches every burst of up to 32 flipped bits and all but 1 in 4e9 random damage,
    which is what a bad sector or a stray write does; it costs well under a microsecond per
    row where BLAKE2b cost 2.5 us, half as much again as the insert it protects.
    """
    return zlib.crc32(payload, _checksum_seed(doc_id, kind))


def merge_all(updates: Sequence[bytes]) -> bytes:
    """``pycrdt.merge_updates`` over any number of updates, as a tree of small merges.

    One merge_updates call costs more per update the more updates it gets (about 35 us per
    update at 5,000 inputs against 2 us at 16), so merging 16 at a time keeps a fold linear.
    Merging is associative, so the result holds the same structs and deletions.
    """
    level = [bytes(update) for update in updates]
    if not level:
        return EMPTY_UPDATE
    while len(level) > 1:
        level = [
            bytes(pycrdt.merge_updates(*level[start : start + MERGE_FAN_IN]))
            for start in range(0, len(level), MERGE_FAN_IN)
        ]
    return level[0]


def compact(update: bytes) -> bytes:
    """`update` as a garbage-collected Doc encodes it, when that loses nothing; else `update`.

    ``merge_updates`` keeps the content of every deleted item, so a document whose keys are
    overwritten (a presence document's heartbeat and sessions) would grow its snapshot by every
    value it ever held: 318 KB for ten keys written 1,000 times, against 15 KB in a Doc, which
    drops deleted content as the live replica does. A Doc leaves out what it cannot integrate
    (items or deletions building on content not in the update), so the Doc's encoding is used
    only when `lacking` finds nothing of the kind; otherwise the merged bytes are kept whole.
    """
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    try:
        doc.apply_update(update)
        if lacking(doc.get_state(), update) is not None:
            return update
    except BaseException as error:  # pycrdt's decode failures include a Rust panic
        if not (isinstance(error, FrameError) or is_decode_failure(error)):
            raise
        return update
    compacted = bytes(doc.get_update())
    return compacted if len(compacted) < len(update) else update


def _row_problem(doc_id: object, kind: str, payload: object, checksum: object) -> str | None:
    """Why a stored row cannot be trusted, or None when it is intact."""
    if not isinstance(doc_id, str):
        return f"document id is not text ({type(doc_id).__name__})"
    if not isinstance(payload, bytes) or not payload:
        return f"payload is not a non-empty blob ({type(payload).__name__})"
    if checksum != row_checksum(doc_id, kind, payload):
        return "checksum mismatch"
    return None


class DocumentStore:
    """Synchronous core: one SQLite connection, used from one thread at a time.

    The connection is opened with ``check_same_thread=False`` so that a node may call
    :meth:`load` on the main thread and then hand the store to :class:`GroupCommitStore`,
    whose writer thread is its only user from then on.

    When to fold: a document's log once it has more than ``snapshot_every`` rows and its bytes
    reach FOLD_AT_LOG_FRACTION of its snapshot's (or it has MAX_LOG_ROWS_FACTOR times
    ``snapshot_every`` rows), so the cost of folding per logged byte stays constant however
    large the document grows.

    Snapshot budget: a commit folds the documents with the longest logs first, at most
    ``snapshots_per_commit`` of them plus two per ``snapshot_every`` rows the commit writes.
    The others wait for the next commits. So a small commit stays quick when many documents
    pass ``snapshot_every`` together, and folding still keeps pace with any write rate (each
    fold removes more than ``snapshot_every`` rows).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        snapshot_every: int = 1000,
        snapshots_per_commit: int = 4,
        wal_autocheckpoint: int = WAL_AUTOCHECKPOINT_PAGES,
        exclusive: bool = False,
    ) -> None:
        _require_positive("snapshot_every", snapshot_every)
        _require_positive("snapshots_per_commit", snapshots_per_commit)
        self.path = Path(path)
        self.snapshot_every = snapshot_every
        self.snapshots_per_commit = snapshots_per_commit
        self._conn = _open(self.path, wal_autocheckpoint, exclusive)
        self._staged: list[tuple[str, bytes]] = []
        self._staged_meta: dict[str, str] = {}
        self._log_rows: dict[str, int] = {}
        self._log_bytes: dict[str, int] = {}
        self._snapshot_bytes: dict[str, int] = {}
        # Documents whose log is longer than snapshot_every rows: the only ones a commit looks
        # at for folding (scanning every document's count made a commit O(documents)).
        self._long_logs: set[str] = set()
        self._next_row_id = 1
        try:
            self._scan_counters()
        except sqlite3.DatabaseError as error:
            self._conn.close()
            raise StoreError(f"cannot read document store {str(self.path)!r}: {error}") from error

    def _scan_counters(self) -> None:
        """Log length per document and the next free row id, from what is on disk."""
        query = (
            "SELECT doc_id, COUNT(*), MAX(row_id), SUM(LENGTH(payload)) FROM doc_log "
            "GROUP BY doc_id"
        )
        last_row_id = self._conn.execute(_LAST_ROW_ID).fetchone()[0] or 0
        for doc_id, count, doc_last_row_id, size in self._conn.execute(query):
            self._log_rows[doc_id] = count
            self._log_bytes[doc_id] = size or 0
            if count > self.snapshot_every:
                self._long_logs.add(doc_id)
            last_row_id = max(last_row_id, doc_last_row_id)
        snapshots = "SELECT doc_id, LENGTH(payload) FROM doc_snapshot"
        self._snapshot_bytes = {doc_id: size or 0 for doc_id, size in self._conn.execute(snapshots)}
        self._next_row_id = last_row_id + 1

    def load(self) -> LoadedState:
        """Read every document, checking each row; corrupt documents are quarantined.

        The only write: each corrupt row found is copied to ``doc_quarantine`` (durably, before
        this returns), so the quarantine is remembered even if the row itself is lost later.
        """
        try:
            return self._load()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot read document store {str(self.path)!r}: {error}") from error

    def _load(self) -> LoadedState:
        state = LoadedState()
        state.meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        snapshots = "SELECT doc_id, row_id, payload, checksum FROM doc_snapshot ORDER BY doc_id"
        log = "SELECT doc_id, row_id, payload, checksum FROM doc_log ORDER BY doc_id, row_id"
        rows: dict[str, list[bytes]] = {}
        found: list[tuple[CorruptRow, object, object]] = []  # (row, payload, checksum) as read
        for kind, query in ((SNAPSHOT, snapshots), (UPDATE, log)):
            for doc_id, row_id, payload, checksum in self._conn.execute(query):
                problem = _row_problem(doc_id, kind, payload, checksum)
                if problem is None:
                    rows.setdefault(doc_id, []).append(payload)
                else:
                    row = CorruptRow(str(doc_id), row_id, kind, problem)
                    found.append((row, payload, checksum))
        if found:
            with self._transaction():
                self._keep_aside(found)
        state.corrupt = self.awaiting_refill()
        for row in state.corrupt:
            logger.error("quarantined %s", row)
        for doc_id in {row.doc_id for row in state.corrupt}:
            state.salvaged[doc_id] = rows.pop(doc_id, [])
        state.updates = rows
        return state

    def _keep_aside(self, found: list[tuple[CorruptRow, object, object]]) -> None:
        """Copy corrupt rows to doc_quarantine (inside a transaction); one copy per row."""
        now = time.time()
        self._conn.executemany(
            _KEEP_ASIDE,
            [
                (row.doc_id, row.row_id, row.kind, payload, checksum, row.detail, now)
                for row, payload, checksum in found
            ],
        )

    def awaiting_refill(self) -> list[CorruptRow]:
        """Every corrupt row kept aside whose document has not been refilled since."""
        return [CorruptRow(*row) for row in self._conn.execute(_AWAITING_REFILL)]

    def stage(self, doc_id: str, update: bytes | bytearray) -> None:
        """Buffer one update for the next :meth:`commit`; it is not durable before that."""
        validate_doc_id(doc_id)
        self._staged.append((doc_id, validate_update(update, doc_id)))

    def _stage_validated(self, doc_id: str, update: bytes) -> None:
        """:meth:`stage` for callers in this module that validated the arguments already."""
        self._staged.append((doc_id, update))

    def stage_meta(self, key: str, value: str) -> None:
        """Buffer a meta value; the next commit writes it with its batch (last value wins)."""
        _validate_meta(key, value)
        self._staged_meta[key] = value

    def commit(self) -> CommitStats:
        """Write everything staged, plus the snapshots now due, in one durable transaction.

        On failure nothing of the batch is written, the staged buffer is cleared (stage again
        to retry) and the error is raised.
        """
        staged, self._staged = self._staged, []
        meta, self._staged_meta = self._staged_meta, {}
        if not staged and not meta:
            return CommitStats(updates=0, bytes=0, seconds=0.0, snapshots=0, meta=0)
        started = time.perf_counter()
        log_rows, log_bytes = self._counts_after(staged)
        due = self._due_for_snapshot(log_rows, log_bytes, len(staged))
        with self._transaction():
            self._conn.executemany(_INSERT_LOG, self._log_rows_of(staged))
            if meta:  # most commits carry none: skip the statement
                self._conn.executemany(_UPSERT_META, meta.items())
            snapshots = sum(self._fold(doc_id) for doc_id in due)
        for doc_id in due:
            # Folded, or skipped with an error logged: either way wait another
            # snapshot_every rows before trying again rather than retrying every commit.
            log_rows[doc_id] = log_bytes[doc_id] = 0
        self._count(log_rows, log_bytes)
        seconds = time.perf_counter() - started
        size = sum(len(update) for _, update in staged)
        return CommitStats(len(staged), size, seconds, snapshots, meta=len(meta))

    def _counts_after(
        self, staged: list[tuple[str, bytes]]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """The log rows and bytes of the staged documents once the batch is written (kept
        apart until the transaction commits: a failed commit leaves the counts as they were)."""
        log_rows: dict[str, int] = {}
        log_bytes: dict[str, int] = {}
        for doc_id, update in staged:
            log_rows[doc_id] = log_rows.get(doc_id, self._log_rows.get(doc_id, 0)) + 1
            log_bytes[doc_id] = log_bytes.get(doc_id, self._log_bytes.get(doc_id, 0)) + len(update)
        return log_rows, log_bytes

    def _count(self, log_rows: dict[str, int], log_bytes: dict[str, int]) -> None:
        """Take the counts of a committed batch (`_counts_after`, folds reset to 0)."""
        self._log_rows.update(log_rows)
        self._log_bytes.update(log_bytes)
        for doc_id, count in log_rows.items():
            if count > self.snapshot_every:
                self._long_logs.add(doc_id)
            else:
                self._long_logs.discard(doc_id)

    def _due_for_snapshot(
        self, log_rows: dict[str, int], log_bytes: dict[str, int], writing: int
    ) -> list[str]:
        """The documents to fold in this commit, longest log first: those over snapshot_every
        rows whose log is large beside their snapshot, or over MAX_LOG_ROWS_FACTOR times it.
        `log_rows` and `log_bytes` hold the counts of the documents being written."""

        def rows(doc_id: str) -> int:
            return log_rows.get(doc_id, self._log_rows.get(doc_id, 0))

        def due(doc_id: str) -> bool:
            count = rows(doc_id)
            if count <= self.snapshot_every:
                return False
            size = log_bytes.get(doc_id, self._log_bytes.get(doc_id, 0))
            big_enough = size >= FOLD_AT_LOG_FRACTION * self._snapshot_bytes.get(doc_id, 0)
            return big_enough or count > MAX_LOG_ROWS_FACTOR * self.snapshot_every

        over = [doc_id for doc_id in self._long_logs | log_rows.keys() if due(doc_id)]
        over.sort(key=lambda doc_id: (-rows(doc_id), doc_id))
        return over[: self.snapshots_per_commit + 2 * writing // self.snapshot_every]

    def _log_rows_of(self, staged: list[tuple[str, bytes]]) -> list[tuple[str, int, bytes, int]]:
        """Rows to insert, numbered in staging order, with their checksums."""
        seeds = {doc_id: _checksum_seed(doc_id, UPDATE) for doc_id in {doc for doc, _ in staged}}
        first = self._next_row_id
        self._next_row_id += len(staged)  # a failed commit's ids are skipped, not handed out again
        return [
            (doc_id, row_id, update, zlib.crc32(update, seeds[doc_id]))
            for row_id, (doc_id, update) in enumerate(staged, start=first)
        ]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def _fold(self, doc_id: str) -> int:
        """Replace a document's snapshot and log with one new snapshot; 1 if done, else 0.

        Runs inside the commit's transaction. A document with a corrupt or unmergeable row is
        left alone (and logged): folding would hide the damage inside a fresh checksum.
        """
        (_, snapshot), (_, log) = self._rows_of(doc_id)
        intact = self._rows_intact(doc_id, SNAPSHOT, snapshot)
        if not intact or not self._rows_intact(doc_id, UPDATE, log):
            return 0
        try:
            # The log is merged on its own first: the (large) snapshot then takes part in one
            # merge only, not one per level of the merge tree.
            folded = merge_all([*(row[1] for row in snapshot), merge_all([row[1] for row in log])])
        except ValueError as error:
            logger.error("not snapshotting document %r: rows do not merge: %s", doc_id, error)
            return 0
        folded = compact(folded)
        self._conn.execute("DELETE FROM doc_log WHERE doc_id = ?", (doc_id,))
        self._write_snapshot(doc_id, folded)
        return 1

    @staticmethod
    def _rows_intact(doc_id: str, kind: str, rows: list[_Row]) -> bool:
        # Every row of a fold is checked, so the checksum seed is computed once per document
        # (row_checksum would redo it per row: a third of a fold's time at 1,000-row folds).
        seed = _checksum_seed(doc_id, kind)
        for row_id, payload, checksum in rows:
            if type(payload) is bytes and payload and checksum == zlib.crc32(payload, seed):
                continue
            problem = _row_problem(doc_id, kind, payload, checksum) or "checksum mismatch"
            logger.error("not snapshotting: %s", CorruptRow(doc_id, row_id, kind, problem))
            return False
        return True

    def _write_snapshot(self, doc_id: str, snapshot: bytes) -> None:
        row_id, self._next_row_id = self._next_row_id, self._next_row_id + 1
        checksum = row_checksum(doc_id, SNAPSHOT, snapshot)
        self._conn.execute(_UPSERT_SNAPSHOT, (doc_id, row_id, snapshot, checksum))
        # Counted before the transaction commits: a failed commit leaves the document's log in
        # place and its next fold only later (harmless), never an earlier one.
        self._snapshot_bytes[doc_id] = len(snapshot)

    def replace_document(self, doc_id: str, full_state: bytes | bytearray) -> None:
        """Store ``full_state`` merged with every intact row of a document as its one snapshot.

        For a quarantined document once a peer has refilled it. The intact rows are merged in
        from disk, so nothing they hold is lost even if ``full_state`` lacks part of it (a Doc
        leaves out updates still waiting for a dependency); corrupt rows are kept aside in
        ``doc_quarantine``, where the document's entries are marked refilled. Only then, in
        the same transaction, are the document's log rows deleted. Updates staged but not
        committed yet stay staged and are written after the snapshot. Raises ``ValueError``
        (and changes nothing) if the rows do not merge.
        """
        validate_doc_id(doc_id)
        snapshot = validate_update(full_state, doc_id)
        with self._transaction():
            intact = [snapshot]
            found: list[tuple[CorruptRow, object, object]] = []
            for kind, rows in self._rows_of(doc_id):
                for row_id, payload, checksum in rows:
                    problem = _row_problem(doc_id, kind, payload, checksum)
                    if problem is None:
                        intact.append(payload)
                    else:
                        found.append((CorruptRow(doc_id, row_id, kind, problem), payload, checksum))
            self._keep_aside(found)
            merged = merge_all(intact) if len(intact) > 1 else snapshot
            self._conn.execute("DELETE FROM doc_log WHERE doc_id = ?", (doc_id,))
            self._write_snapshot(doc_id, merged)
            self._conn.execute(_REFILLED, (time.time(), doc_id))
        self._log_rows[doc_id] = self._log_bytes[doc_id] = 0
        self._long_logs.discard(doc_id)

    def _rows_of(self, doc_id: str) -> list[tuple[str, list[_Row]]]:
        """A document's snapshot rows and log rows (in order), unchecked."""
        snapshot = self._conn.execute(
            "SELECT row_id, payload, checksum FROM doc_snapshot WHERE doc_id = ?", (doc_id,)
        ).fetchall()
        log = self._conn.execute(
            "SELECT row_id, payload, checksum FROM doc_log WHERE doc_id = ? ORDER BY row_id",
            (doc_id,),
        ).fetchall()
        return [(SNAPSHOT, snapshot), (UPDATE, log)]

    def durability_settings(self) -> dict[str, str]:
        """The SQLite settings durability rests on, as SQLite reports them (for logs, bench)."""
        journal_mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": journal_mode, "synchronous": names.get(synchronous, "?")}

    def wal_path(self) -> Path:
        """The write-ahead log file beside the store file (SQLite names it ``<file>-wal``)."""
        return self.path.with_name(self.path.name + "-wal")

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the store file and empty the log (durably)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def documents(self) -> list[str]:
        """Ids of every document with at least one stored row, sorted."""
        query = "SELECT doc_id FROM doc_snapshot UNION SELECT doc_id FROM doc_log ORDER BY 1"
        return [doc_id for (doc_id,) in self._conn.execute(query)]

    def close(self) -> None:
        """Close the connection; anything staged and not committed is discarded."""
        if self._staged or self._staged_meta:
            logger.warning(
                "closing document store %s with %d staged updates not committed",
                self.path,
                len(self._staged),
            )
        self._conn.close()


class _Transaction:
    """``with``: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error (a class rather than a
    generator-based context manager: it runs once per commit)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._conn.in_transaction:  # a failed COMMIT may already have rolled back
            self._conn.execute("ROLLBACK")


def _require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _open(path: Path, wal_autocheckpoint: int, exclusive: bool) -> sqlite3.Connection:
    """Open (creating if needed) a store file in WAL mode with synchronous=FULL.

    `exclusive`: this connection is the only one that will ever open the file while it is open
    (the simulator's disks), so SQLite may hold its lock throughout and keep the WAL index in
    its own memory rather than take shared-memory locks around every transaction. What is
    written to the log and when it is synced are the same either way."""
    try:
        # isolation_level=None: no implicit transactions; commit() issues BEGIN/COMMIT.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open document store {str(path)!r}: {error}") from error
    try:
        if exclusive:  # before the first access, so that no shared-memory index is made
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        _prepare(conn, path)
        conn.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
    except sqlite3.Error as error:
        conn.close()
        raise StoreError(f"cannot open document store {str(path)!r}: {error}") from error
    except StoreError:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode, full sync, a schema version this code reads, and the tables."""
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    conn.execute("PRAGMA synchronous=FULL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"document store {str(path)!r} refused WAL mode (got {mode!r})")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"document store {str(path)!r} has schema version {version}; "
            f"this code reads up to {SCHEMA_VERSION}"
        )
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


# What the writer thread is asked to do, in submission order. Plain tuples: submit() is the hot
# path and builds one per update. (future, doc_id, payload, job, number): an update submitted
# with `submit_numbered` has no future (None) and its number is reported to the durability
# listener; every other job has a future and number NO_NUMBER.
_UPDATE, _FLUSH, _REPLACE = 0, 1, 2
NO_NUMBER = -1
_Job = tuple["asyncio.Future[None] | None", str, bytes, int, int]
# Told on the event loop, once per commit, the highest number that commit made durable (and
# None), or the error that failed it: one loop turn from the writer thread to the waiters.
DurabilityListener = Callable[[int, BaseException | None], None]


class GroupCommitStore:
    """asyncio adapter: a writer thread that commits whatever was submitted since its last commit.

    The writer thread owns the :class:`DocumentStore` from :meth:`start` until :meth:`close`
    (which also closes the store). Futures are resolved on the event loop that called
    :meth:`start`; all public methods must be called from that loop. A meta value submitted
    before an update is durable no later than that update.
    """

    def __init__(self, store: DocumentStore, *, latency_samples: int = 1024) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._writer_waiting = False  # notify only then: Condition.notify costs a microsecond
        self._queue: list[_Job] = []
        self._queued_meta: dict[str, str] = {}
        self._known_doc_ids: set[str] = set()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._durability_listener: DurabilityListener | None = None
        self.last_commit: CommitStats | None = None
        # Durations of the most recent commit transactions (fsync included), for metrics.
        self.commit_latency_seconds: deque[float] = deque(maxlen=latency_samples)
        # From the first update of a batch queued to the loop learning it is durable: the
        # commit plus the writer's wake-up and the hand-back, what a gated push waits at most.
        self.durable_wait_seconds: deque[float] = deque(maxlen=latency_samples)
        self.total_durable_waits = 0
        self.total_durable_wait_seconds = 0.0
        self._queue_opened_at = 0.0  # perf_counter() when the queue last went from empty
        self.total_commits = 0
        self.total_commit_seconds = 0.0  # every commit's duration added up (a summary's _sum)
        self.total_updates = 0
        self.total_snapshots = 0
        self.failed_commits = 0

    async def start(self) -> None:
        """Start the writer thread; call once, from the loop that will submit."""
        if self._thread is not None:
            raise RuntimeError("GroupCommitStore already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, doc_id: str, update: bytes | bytearray) -> asyncio.Future[None]:
        """Queue one update; the returned future resolves once it is durable."""
        if type(doc_id) is not str or doc_id not in self._known_doc_ids:
            # Checked once per document id: this is the hot path of every write.
            self._known_doc_ids.add(validate_doc_id(doc_id))
        if type(update) is not bytes or not update:
            update = validate_update(update, doc_id)
        return self._enqueue(doc_id, update, _UPDATE)

    def listen_for_durability(self, listener: DurabilityListener) -> None:
        """Call `listener(number, None)` on the loop after each commit holding updates given
        to `submit_numbered` (number: the highest among them), `listener(number, error)` if it
        failed. One call per commit, in the same loop turn as the futures it resolves."""
        self._durability_listener = listener

    def submit_numbered(self, doc_id: str, update: bytes | bytearray, number: int) -> None:
        """Queue one update whose durability reaches the durability listener as `number`
        (numbers must rise with each call). No future: the hot path of every change, and the
        waiter learns of the commit one loop turn after the writer thread finished it."""
        if self._durability_listener is None:
            raise RuntimeError("submit_numbered needs listen_for_durability first")
        if type(doc_id) is not str or doc_id not in self._known_doc_ids:
            self._known_doc_ids.add(validate_doc_id(doc_id))
        if type(update) is not bytes or not update:
            update = validate_update(update, doc_id)
        self._running_loop()
        with self._lock:
            if not self._queue:
                self._queue_opened_at = time.perf_counter()
            self._queue.append((None, doc_id, update, _UPDATE, number))
            if self._writer_waiting:
                self._wakeup.notify()

    def submit_meta(self, key: str, value: str) -> None:
        """Queue a meta value, written in the same transaction as the next batch."""
        _validate_meta(key, value)
        self._running_loop()
        with self._wakeup:
            self._queued_meta[key] = value
            self._wakeup.notify()

    async def replace_document(self, doc_id: str, full_state: bytes | bytearray) -> None:
        """:meth:`DocumentStore.replace_document` on the writer thread, after earlier submits."""
        validate_doc_id(doc_id)
        await self._enqueue(doc_id, validate_update(full_state, doc_id), _REPLACE)

    async def flush(self) -> None:
        """Wait until everything submitted so far is durable (raises if its commit failed)."""
        await self._enqueue("", b"", _FLUSH)

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the store."""
        if self._closing:
            return
        if self._thread is None:  # never started: nothing queued, the store is still ours
            self._closing = True
            self._store.close()
            return
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        await asyncio.to_thread(self._thread.join)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("GroupCommitStore.start() has not been awaited")
        if self._closing:
            raise RuntimeError("GroupCommitStore is closed")
        return self._loop

    def _enqueue(self, doc_id: str, payload: bytes, job: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._running_loop().create_future()
        with self._lock:
            if not self._queue:
                self._queue_opened_at = time.perf_counter()
            self._queue.append((future, doc_id, payload, job, NO_NUMBER))
            if self._writer_waiting:
                self._wakeup.notify()
        return future

    def _run(self) -> None:
        """Writer thread: take everything queued, commit it, repeat until closed."""
        try:
            while True:
                with self._lock:
                    while not (self._queue or self._queued_meta or self._closing):
                        self._writer_waiting = True
                        self._wakeup.wait()
                        self._writer_waiting = False
                    batch, self._queue = self._queue, []
                    meta, self._queued_meta = self._queued_meta, {}
                    opened_at = self._queue_opened_at
                    if not batch and not meta:
                        return  # closing and drained
                try:
                    self._write(batch, meta, opened_at)
                except Exception as error:  # a bug, not a failed commit: keep the writer alive
                    logger.exception("document store writer failed on a batch")
                    futures = [job[0] for job in batch if job[0] is not None]
                    self._settle(futures, error, max((job[4] for job in batch), default=NO_NUMBER))
        finally:
            self._store.close()

    def _write(self, batch: list[_Job], meta: dict[str, str], opened_at: float) -> None:
        for key, value in meta.items():
            self._store.stage_meta(key, value)
        waiting: list[asyncio.Future[None]] = []
        number = NO_NUMBER  # the highest numbered update staged since the last commit
        for future, doc_id, payload, job, job_number in batch:
            if job == _UPDATE:
                self._store._stage_validated(doc_id, payload)
                number = max(number, job_number)
            elif job == _REPLACE and future is not None:
                self._commit(waiting, number, opened_at)  # earlier submits first, as queued
                waiting, number = [], NO_NUMBER
                self._replace(future, doc_id, payload)
                continue
            if future is not None:
                waiting.append(future)
        self._commit(waiting, number, opened_at)

    def _commit(
        self, futures: list[asyncio.Future[None]], number: int, opened_at: float = 0.0
    ) -> None:
        try:
            stats = self._store.commit()
        except Exception as error:
            self.failed_commits += 1
            logger.exception("document store commit failed; %d futures get the error", len(futures))
            self._settle(futures, error, number)
            return
        if stats.updates or stats.meta:  # a bare flush marker commits nothing
            self.last_commit = stats
            self.commit_latency_seconds.append(stats.seconds)
            self.total_commits += 1
            self.total_commit_seconds += stats.seconds
            self.total_updates += stats.updates
            self.total_snapshots += stats.snapshots
        self._settle(futures, None, number, opened_at if stats.updates else 0.0)

    def _note_durable_wait(self, opened_at: float) -> None:
        """On the loop, as a commit's waiters are released: how long its first update waited."""
        seconds = time.perf_counter() - opened_at
        self.durable_wait_seconds.append(seconds)
        self.total_durable_waits += 1
        self.total_durable_wait_seconds += seconds

    def _replace(self, future: asyncio.Future[None], doc_id: str, full_state: bytes) -> None:
        try:
            self._store.replace_document(doc_id, full_state)
        except Exception as error:
            logger.exception("replacing document %r failed", doc_id)
            self._settle([future], error, NO_NUMBER)
            return
        self._settle([future], None, NO_NUMBER)

    def _settle(
        self,
        futures: list[asyncio.Future[None]],
        error: Exception | None,
        number: int,
        opened_at: float = 0.0,  # set for a commit of updates: its durable wait is measured
    ) -> None:
        listener = self._durability_listener if number != NO_NUMBER else None
        if (not futures and listener is None) or self._loop is None:
            return
        note_wait = self._note_durable_wait if opened_at else None
        try:
            self._loop.call_soon_threadsafe(
                _resolve, futures, error, listener, number, note_wait, opened_at
            )
        except RuntimeError:  # the loop is closed: nobody is left to wait on these futures
            logger.warning("event loop closed; %d store futures left unresolved", len(futures))


def _resolve(
    futures: list[asyncio.Future[None]],
    error: Exception | None,
    listener: DurabilityListener | None,
    number: int,
    note_wait: Callable[[float], None] | None,
    opened_at: float,
) -> None:
    if note_wait is not None:  # on the loop: the wait as the waiters see it
        note_wait(opened_at)
    if listener is not None:  # first: a waiter resolved below may then see the new durability
        listener(number, error)
    for future in futures:
        if future.done():  # cancelled by its waiter
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
