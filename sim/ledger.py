"""The simulator's own books on durability and clocks, kept for the reference checkers.

Production decides when a write or a move may be acknowledged from its own bookkeeping (the
engine's change numbers and peer acks). The ack-rule checker must not trust that bookkeeping, so
the simulation keeps an independent record of what each node *durably held* and when:

* a put (``write:<id>``) or a move record (``move:<gid>|<key>``) enters a node's replica with a
  change number (the node's ``DocChanged``), and becomes durable there when the simulated disk
  (``sim.disk``, not production code) commits that change; :class:`Ledger` notes that time in
  ``History.held``. A crash loses what was not committed; a crash that loses the disk loses
  everything the node held (the timeline's ``crash ... disk lost`` events; the checker reads them);
* every name claim and every account version that ever appeared in a node's accounts document
  (``History.claims``, ``History.account_versions``): a rename deletes the old claim and a
  region's next version replaces its last, so the final documents no longer show what a merge
  judged or what a write started from;
* every HLC stamp a node's game service draws (``now()``), with the node's physical wall clock at
  that instant, goes to ``History.stamps`` through :class:`RecordingClock`, so the HLC can be
  checked against the rule it implements.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from pycrdt import Doc, Map

from meridian.crdt_models.hlc import HybridLogicalClock, Stamp
from meridian.sim.history import History, StampRecord, move_thing, state_vector
from meridian.sim.refdocs import carries_nothing, read_map

MOVES_ROOT = "moves"  # the root map of move records in a game document (docs/architecture.md)
NAMES_ROOT = "names"  # the root map of name claims in the accounts document
USERS_ROOT = "users"  # ... and of account versions
GAME_PREFIX = "game:"
ACCOUNTS_DOC = "accounts"
MISSING_SHOWN = 10  # things named in a ``reloaded`` note (the count is always whole)


class Ledger:
    """What each node durably holds, and since when (see module docstring)."""

    def __init__(self, history: History, now: Callable[[], float]) -> None:
        self.history = history
        self.now = now
        self._waiting: dict[str, deque[tuple[int, str]]] = {}
        self._moves_seen: dict[tuple[str, str], set[str]] = {}
        self._versions_seen: set[str] = set()
        # Per node, every thing its current disk durably holds (cleared when the disk is lost).
        self._on_disk: dict[str, dict[str, None]] = {}

    def integrated(self, node: str, thing: str, event_no: int) -> None:
        """``thing`` entered the node's replica with its change ``event_no``."""
        self._waiting.setdefault(node, deque()).append((event_no, thing))

    def game_changed(self, node: str, doc_id: str, doc: Doc[Any], event_no: int) -> None:
        """A game document changed on the node: its new move records wait for durability."""
        seen = self._moves_seen.setdefault((node, doc_id), set())
        keys = set(doc.get(MOVES_ROOT, type=Map).keys())
        gid = doc_id[len(GAME_PREFIX) :]
        for key in sorted(keys - seen):
            self.integrated(node, move_thing(gid, key), event_no)
        seen |= keys

    def changed(self, node: str, doc_id: str, update: bytes, origin: str | None) -> None:
        """Every change a node's engine reports; one that carries nothing is noted
        (``empty-change``): it would be persisted and sent for content already held."""
        if carries_nothing(update):
            self.history.notes.append(
                {
                    "t": round(self.now(), 6),
                    "node": node,
                    "kind": "empty-change",
                    "doc": doc_id,
                    "origin": origin,
                }
            )

    def accounts_changed(self, doc: Doc[Any]) -> None:
        """Note the name claims and account versions the accounts document holds that were not
        seen before (a version is replaced by its region's next one)."""
        # Each map read whole (reading key by key opened two transactions per key).
        for key, claim in read_map(doc, NAMES_ROOT).items():
            if key not in self.history.claims:
                self.history.claims[key] = claim
        for text in read_map(doc, USERS_ROOT).values():
            if text not in self._versions_seen:
                self._versions_seen.add(text)
                self.history.account_versions.append(text)

    def durable(self, node: str, event_no: int) -> None:
        """The node's disk committed every change up to ``event_no``."""
        waiting = self._waiting.get(node)
        now = self.now()
        on_disk = self._on_disk.setdefault(node, {})
        while waiting and waiting[0][0] <= event_no:
            _, thing = waiting.popleft()
            self.history.held.setdefault(thing, {}).setdefault(node, []).append(now)
            on_disk[thing] = None

    def disk_lost(self, node: str) -> None:
        """The node's disk is gone: nothing it held durably is expected back."""
        self._on_disk.pop(node, None)

    def reloaded(self, node: str, docs: Mapping[str, Doc[Any]]) -> None:
        """The node's new process loaded its disk: note each durably held thing it lacks.

        A put is held when the loaded document's state vector covers its Yjs item; a move
        record when the game document's move map has its key. The note (``reloaded``) is what
        the ``restart-durability`` checker reads.
        """
        expected = list(self._on_disk.get(node, {}))
        missing = [thing for thing in expected if not self._holds(docs, thing)]
        note = {"t": round(self.now(), 6), "node": node, "kind": "reloaded"}
        note |= {"expected": len(expected), "missing": missing[:MISSING_SHOWN]}
        note["missing_count"] = len(missing)
        self.history.notes.append(note)

    def _holds(self, docs: Mapping[str, Doc[Any]], thing: str) -> bool:
        kind, _, name = thing.partition(":")
        if kind == "move":
            gid, _, key = name.partition("|")
            doc = docs.get(GAME_PREFIX + gid)
            return doc is not None and key in doc.get(MOVES_ROOT, type=Map)
        record = self.history.writes[int(name)]
        doc = docs.get(record.doc)
        if doc is None or record.item is None:
            return False
        client, clock = record.item
        return state_vector(doc).get(client, 0) > clock

    def process_gone(self, node: str) -> None:
        """The process ended (crash or stop): what it had not committed is not durable; its next
        process counts changes from 1 again and reloads its documents."""
        self._waiting.pop(node, None)
        for key in [k for k in self._moves_seen if k[0] == node]:
            del self._moves_seen[key]


class RecordingClock(HybridLogicalClock):
    """A node's HLC that notes every stamp it gives out, with the physical clock's reading."""

    def __init__(
        self,
        node_id: str,
        physical_ms: Callable[[], int],
        *,
        last: Stamp | None,
        history: History,
        now: Callable[[], float],
        incarnation: int,
    ) -> None:
        super().__init__(node_id, physical_ms, last=last)
        self._wall = physical_ms
        self._history = history
        self._true_now = now
        self._incarnation = incarnation
        self._note("start", last.encode() if last else "")

    def now(self) -> Stamp:
        stamp = super().now()
        self._note("now", stamp.encode())
        return stamp

    def observe(self, remote: Stamp) -> Stamp:
        stamp = super().observe(remote)
        self._note("observe", stamp.encode())
        return stamp

    def _note(self, kind: str, stamp: str) -> None:
        self._history.stamps.append(
            StampRecord(
                round(self._true_now(), 6),
                self.node_id,
                self._incarnation,
                kind,
                self._wall(),
                stamp,
            )
        )
