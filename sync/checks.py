"""Checking a peer's update on a scratch copy of its document before it is applied.

A Yjs update is opaque until applied, and once applied it cannot be taken back; so every update
a peer sends is first applied to a **scratch copy** of the document. The copy's map events list
exactly which keys the update adds, replaces or deletes, with the old and new values; the rules
of the document's kind (``crdt_models.kinds``: layout, record shapes, stamps not from the future,
accounts written only by their home region, signatures) run on those changes with the copy as
the document-after-the-update. Only an update that passes is applied to the real document, so a
refused update leaves nothing behind, not even an empty document.

The copy is kept between checks (one per document, the most recently used `SCRATCH_COPIES_KEPT`)
and kept current by applying this node's own changes to it too, so a check normally costs one
extra Yjs apply plus the rules on the changed keys; a document whose copy was evicted (or spoilt
by a refused update) is copied again, which costs time in proportion to its size
(docs/performance.md has the figures).

Two outcomes besides "passes":

* `UpdateRefused`: the update breaks a rule; the engine refuses it with a protocol error.
* `NeedsPull`: the update depends on content this node does not hold (Yjs items it builds on,
  deletions of items not seen yet, or records the rules need, such as the account record that
  makes a region the home). Applying it would leave parts pending inside Yrs, where a later,
  valid update would bring them in unchecked; so it is not applied, and the engine pulls the
  document from the sender instead (whose answer holds everything the update builds on).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, Subscription

from meridian.crdt_models.kinds import DocIdError, check_changes, check_doc_id
from meridian.crdt_models.records import (
    Change,
    KeyChanges,
    MissingReference,
    RecordRefused,
    observe_map,
)
from meridian.sync.codec import FrameError
from meridian.sync.digest import is_decode_failure, lacking
from meridian.sync.identity import Keyring, KeyringEntry

SCRATCH_COPIES_KEPT = 256
SCRATCH_CLIENT_ID = 1  # a scratch copy never writes, so its own client id never appears
# Signatures that verified, remembered per process (most recently used first out): a record is
# checked again whenever a document holding it is checked anew or relayed, and several simulated
# nodes share one process. Only successes are kept, so a forger cannot fill it.
VERIFIED_SIGNATURES_KEPT = 4096


class UpdateRefused(Exception):
    """The update breaks a rule; `rule` names it (a metric label), the message says how."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class NeedsPull(UpdateRefused):
    """The update builds on content this node lacks: pull the document, then it may pass."""


class KeyringContext:
    """The receiving node's side of the record rules: its clock and the cluster keyring."""

    def __init__(self, keyring: Keyring, wall_ms: Callable[[], int], max_ahead_ms: int) -> None:
        self.keyring = keyring
        self._wall_ms = wall_ms
        self.max_ahead_ms = max_ahead_ms
        self.now_wall_ms = 0
        self.regions = keyring.regions

    def read_clock(self) -> None:
        self.now_wall_ms = self._wall_ms()

    def signer_region(self, signer: str, message: bytes, signature: bytes, wall_ms: int) -> str:
        entry = self.keyring.get(signer)
        if entry is None:
            raise RecordRefused("unknown_signer", f"signed by {signer}, not in the keyring")
        if entry.removed_at_ms is not None and wall_ms >= entry.removed_at_ms:
            raise RecordRefused(
                "removed_signer", f"signed by {signer} after it was removed from the keyring"
            )
        if not _verified(entry, message, signature):
            raise RecordRefused("bad_signature", f"signature of {signer} does not verify")
        return entry.region

    def node_region(self, node_id: str) -> str | None:
        entry = self.keyring.get(node_id)
        return entry.region if entry is not None else None


_verified_signatures: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()


def _verified(entry: KeyringEntry, message: bytes, signature: bytes) -> bool:
    """`entry.verify`, remembered: Ed25519 verification is a pure function of the public key,
    the message and the signature, so a triple that verified once verifies again."""
    key = (entry.public_key.public_bytes_raw(), message, signature)
    if key in _verified_signatures:
        _verified_signatures.move_to_end(key)
        return True
    if not entry.verify(message, signature):
        return False
    _verified_signatures[key] = None
    if len(_verified_signatures) > VERIFIED_SIGNATURES_KEPT:
        _verified_signatures.popitem(last=False)
    return True


def forget_verified_signatures() -> None:
    """Verify every signature again from now on (benchmarks timing the verification)."""
    _verified_signatures.clear()


@dataclass
class ScratchCopy:
    """A document's copy for checks, with the map events of the last apply collected."""

    doc: Doc[Any]
    roots: frozenset[str]
    events: list[tuple[str, KeyChanges]] = field(default_factory=list)
    # The copy's state vector as the last check left it (None: unknown), so that `applied`
    # need not read it again; any other change to the copy clears it.
    state: bytes | None = None
    subscriptions: list[tuple[Map[Any], Subscription]] = field(default_factory=list)

    def watch(self) -> None:
        for root in sorted(self.roots):
            shared = self.doc.get(root, type=Map)
            self.subscriptions.append((shared, observe_map(shared, self._collector(root))))

    def _collector(self, root: str) -> Callable[[KeyChanges], None]:
        def collect(keys: KeyChanges) -> None:
            # Runs inside the commit: keep the changes, read them after the apply returns.
            self.events.append((root, keys))

        return collect

    def close(self) -> None:
        for shared, subscription in self.subscriptions:
            shared.unobserve(subscription)
        self.subscriptions = []


class UpdateChecker:
    """Checks peers' updates (see module docstring). No I/O: the wall clock is injected."""

    def __init__(self, context: KeyringContext) -> None:
        self.context = context
        self._copies: OrderedDict[str, ScratchCopy] = OrderedDict()

    def check(self, doc_id: str, doc: Doc[Any] | None, update: bytes) -> None:
        """Raise UpdateRefused or NeedsPull unless `update` may be applied to `doc` (None: the
        node lacks the document). On success the scratch copy holds the document with it."""
        try:
            kind = check_doc_id(doc_id)
        except DocIdError as exc:
            raise UpdateRefused("doc_id", str(exc)) from None
        copy = self._copy(doc_id, doc, kind.roots)
        copy.events.clear()
        copy.state = None
        try:
            self._apply(copy, update)
            self._check_layout(doc_id, copy)
            self._check_complete(doc_id, copy, update)
            self.context.read_clock()
            check_changes(doc_id, _changes(copy), copy.doc, self.context)
        except MissingReference as exc:
            self.forget(doc_id)
            raise NeedsPull(exc.rule, exc.message) from None
        except RecordRefused as exc:
            self.forget(doc_id)
            raise UpdateRefused(exc.rule, exc.message) from None
        except UpdateRefused:
            self.forget(doc_id)
            raise
        finally:
            copy.events.clear()

    def applied(self, doc_id: str, doc: Doc[Any]) -> None:
        """The checked update went into the real document: the copy must match it."""
        copy = self._copies.get(doc_id)
        if copy is None:
            return
        state = copy.doc.get_state() if copy.state is None else copy.state
        if state != doc.get_state():
            self.forget(doc_id)  # never check against a copy that drifted from the document

    def local_change(self, doc_id: str, update: bytes) -> None:
        """This node changed the document: keep its copy current (cheaper than copying anew)."""
        copy = self._copies.get(doc_id)
        if copy is None:
            return
        copy.state = None
        try:
            copy.doc.apply_update(update)
        except BaseException as exc:  # pycrdt raises PanicException, not an Exception
            if not is_decode_failure(exc):
                raise
            self.forget(doc_id)
        copy.events.clear()

    def forget(self, doc_id: str) -> None:
        copy = self._copies.pop(doc_id, None)
        if copy is not None:
            copy.close()

    def _copy(self, doc_id: str, doc: Doc[Any] | None, roots: frozenset[str]) -> ScratchCopy:
        copy = self._copies.get(doc_id)
        if copy is not None:
            self._copies.move_to_end(doc_id)
            return copy
        scratch: Doc[Any] = Doc(client_id=SCRATCH_CLIENT_ID)
        if doc is not None:
            scratch.apply_update(doc.get_update())
        copy = ScratchCopy(scratch, roots)
        copy.watch()
        self._copies[doc_id] = copy
        while len(self._copies) > SCRATCH_COPIES_KEPT:
            _, evicted = self._copies.popitem(last=False)
            evicted.close()
        return copy

    @staticmethod
    def _apply(copy: ScratchCopy, update: bytes) -> None:
        try:
            # Yrs decodes the whole update before integrating any of it.
            copy.doc.apply_update(update)
        except BaseException as exc:
            if not is_decode_failure(exc):
                raise
            message = f"the Yjs decoder refused the update: {exc}"
            raise UpdateRefused("bad_update", message) from None

    @staticmethod
    def _check_layout(doc_id: str, copy: ScratchCopy) -> None:
        # The root names straight from Yrs: pycrdt's `Doc.keys()` first wraps every root in a
        # Python type object (4 % of a 9-region simulation went there).
        with copy.doc.transaction() as txn:
            assert txn._txn is not None  # (an open transaction has its Yrs handle)
            names = set(copy.doc._doc.roots(txn._txn))
        extra = sorted(names - copy.roots)
        if extra:
            raise UpdateRefused("bad_layout", f"{doc_id} has no map {extra[0][:60]!r}")

    @staticmethod
    def _check_complete(doc_id: str, copy: ScratchCopy, update: bytes) -> None:
        """Refuse to integrate an update partly: all its items and deletions must land now."""
        copy.state = copy.doc.get_state()
        try:
            missing = lacking(copy.state, update)
        except FrameError as exc:
            raise UpdateRefused("bad_update", f"{doc_id}: {exc.reason}") from None
        if missing == "items":
            raise NeedsPull(
                "missing_dependencies", f"{doc_id}: the update builds on items this node lacks"
            )
        if missing == "deletions":
            raise NeedsPull(
                "missing_dependencies", f"{doc_id}: the update deletes items this node lacks"
            )


def _changes(copy: ScratchCopy) -> list[Change]:
    changes = []
    for root, keys in copy.events:
        for key, change in keys.items():
            deleted = change["action"] == "delete"
            new = None if deleted else change.get("newValue")
            changes.append(Change(root, key, change.get("oldValue"), new, deleted))
    # In key order: game moves are keyed by ply, so a parent is checked before its children.
    return sorted(changes, key=lambda c: (c.root, c.key))
