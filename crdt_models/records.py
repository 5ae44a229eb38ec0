"""How records are stored in the shared documents: JSON text values in flat root-level maps.

Why JSON text rather than nested pycrdt maps: two nodes creating the same nested map
concurrently lose one copy's writes, pycrdt returns every number as float and mangles large
ints and bytes. A record is therefore one JSON string under one key, written whole, and every
key has exactly one writer (the key names it), so Yjs' same-key tie-break (by client id, not by
time) never decides anything: the merge rules in this package do, from HLC stamps in the values.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from pycrdt import Doc, Map, Subscription
from pycrdt._base import process_event

from meridian.crdt_models.hlc import Stamp

MAX_SAFE_INT = 2**53 - 1
SIGNER_FIELD = "signer"
SIGNATURE_FIELD = "sig"
RECORD_SIGNATURE_LABEL = b"meridian-record-v1"


class RecordSigner(Protocol):
    """Signs records on behalf of one node (implemented by ``sync.identity.NodeIdentity``)."""

    @property
    def node_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


# Documents the sync engine created, mapped to the key that signs records written into them.
_signers: weakref.WeakKeyDictionary[Doc[Any], RecordSigner] = weakref.WeakKeyDictionary()


# Records are read on every change a node receives, several times by the peer checks: msgspec
# reads them about four times faster than the standard library, and is stricter where it
# differs (it refuses NaN, Infinity, numbers out of a double's range and lone surrogates, which
# no honest writer produces: records are written by `encode_record` from validated values).
_read_json = msgspec.json.Decoder().decode


class RecordError(ValueError):
    """A stored record that does not parse or lacks a field; such a record is ignored."""


def encode_record(record: dict[str, Any]) -> str:
    """Canonical JSON (sorted keys, compact) so equal records are equal strings on every node."""
    _check_json_safe(record)
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def decode_record(text: Any, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(text, str):
        raise RecordError(f"record is {type(text).__name__}, not JSON text")
    try:
        record = _read_json(text)
    except msgspec.DecodeError as exc:  # also NaN, Infinity, 1e400 and lone surrogates
        raise RecordError(f"record is not JSON: {exc}") from None
    except RecursionError:  # a peer's record nested thousands deep (the caps allow 256 KiB)
        raise RecordError("record is nested too deeply") from None
    if not isinstance(record, dict):
        raise RecordError("record is not a JSON object")
    missing = [name for name in required if name not in record]
    if missing:
        raise RecordError(f"record lacks {', '.join(missing)}")
    return record


_ROOT_MAPS = "_meridian_root_maps"  # the attribute of a Doc that keeps its root maps


def root_map(doc: Doc[Any], name: str) -> Map[Any]:
    """The root map `name` of `doc` (created if the document has none yet).

    The map's Yrs branch is kept on the document after the first call: pycrdt's
    ``doc.get(name, type=Map)`` opens a write transaction every time (about 3 % of a simulator
    run, where the services, checks and readers ask for root maps thousands of times), while
    wrapping a kept branch does not. The branch, not the wrapper: a wrapper refers back to the
    document, and that cycle would keep a dropped document alive until the next full garbage
    collection."""
    kept: dict[str, Any] | None = doc.__dict__.get(_ROOT_MAPS)
    if kept is None:
        kept = doc.__dict__[_ROOT_MAPS] = {}
    branch = kept.get(name)
    if branch is None:
        kv: Map[Any] = doc.get(name, type=Map)
        kept[name] = kv.integrated
        return kv
    return Map(_integrated=branch, _doc=doc)


KeyChanges = dict[str, dict[str, Any]]  # key -> {"action", "oldValue", "newValue"}


def observe_map(kv: Map[Any], callback: Callable[[KeyChanges], None]) -> Subscription:
    """Call ``callback(keys)`` with the changed keys of `kv` (a MapEvent's ``keys``) after
    each transaction that changes it. Undone with ``kv.unobserve``.

    Cheaper than ``kv.observe``: pycrdt builds a whole MapEvent (the target map and the path
    wrapped in Python objects, in a read transaction) and looks at the callback's signature
    each time it subscribes; only the keys are read here. As in pycrdt, an exception of the
    callback is kept and raised when the transaction ends, not inside the commit."""
    doc = kv.doc

    def on_event(event: Any) -> None:
        try:
            callback(process_event(event.keys, doc))
        except Exception as exc:
            doc._exceptions.append(exc)

    subscription: Subscription = kv.integrated.observe(on_event)
    kv._subscriptions.append(subscription)
    return subscription


def map_get(kv: Map[Any], key: str) -> Any:
    """``kv.get(key)``: the value, or None when the key is absent, read in one transaction
    (pycrdt's ``get`` opens three: one around, one to look for the key, one to read it)."""
    with kv.doc.transaction() as txn:
        raw, inner = kv.integrated, txn._txn
        value = raw.get(inner, key) if raw.has(inner, key) else None
    return value if value is None or type(value) is str else kv._maybe_as_type_or_doc(value)


def map_items(doc: Doc[Any], name: str) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a root map, in key order (deterministic on every node).

    Read in one transaction, and returned whole, so that no caller holds that transaction
    across an await. The values are read through the map's integrated Yrs type: pycrdt's
    ``kv[key]`` opens two more transactions per key to check that the key exists, and that
    made this read 2.5 times slower (tests/test_models.py compares both)."""
    return map_pairs(root_map(doc, name))


def map_pairs(kv: Map[Any], skip: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, Any]]:
    """`map_items` of a map at hand: its (key, value) pairs in key order, read in one
    transaction (``kv.items()`` opens two more per key); keys in `skip` left out unread."""
    with kv.doc.transaction() as txn:
        raw, inner = kv.integrated, txn._txn
        keys = sorted(key for key in raw.keys(inner) if key not in skip)
        values = [(key, raw.get(inner, key)) for key in keys]
    # A nested type as its pycrdt class, as kv[key] does; a record's text needs no look (the
    # look tries every shared type in turn: half the cost of reading a map of records).
    wrap = kv._maybe_as_type_or_doc
    return [(key, value if type(value) is str else wrap(value)) for key, value in values]


def _check_json_safe(value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"{value} is not JSON")
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise RecordError(f"integer {value} does not survive replication (>= 2^53)")
        return
    if isinstance(value, list):
        for item in value:
            _check_json_safe(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError("record keys must be strings")
            _check_json_safe(item)
        return
    raise RecordError(f"{type(value).__name__} cannot be stored in a record")


# --- signed records ------------------------------------------------------------------------


def attach_signer(doc: Doc[Any], signer: RecordSigner) -> None:
    """Records written into `doc` from now on are signed with `signer` (see module docstring)."""
    _signers[doc] = signer


def signer_of(doc: Doc[Any]) -> RecordSigner | None:
    return _signers.get(doc)


def signed_message(doc_id: str, root: str, key: str, record: dict[str, Any]) -> bytes:
    """What a record's signature covers: where it lives and everything in it but the signature.

    Binding the document, map and key means a signed record cannot be replayed under another
    key (another account, another region's version).
    """
    body = {name: value for name, value in record.items() if name != SIGNATURE_FIELD}
    parts = [RECORD_SIGNATURE_LABEL, doc_id.encode(), root.encode(), key.encode()]
    return b"\x00".join([*parts, encode_record(body).encode()])


def encode_signed(doc: Doc[Any], doc_id: str, root: str, key: str, record: dict[str, Any]) -> str:
    """The record as text, signed with the document's signer when it has one."""
    signer = signer_of(doc)
    if signer is None:
        return encode_record(record)
    body = {**record, SIGNER_FIELD: signer.node_id}
    signature = signer.sign(signed_message(doc_id, root, key, body))
    return encode_record({**body, SIGNATURE_FIELD: encode_signature(signature)})


def encode_signature(signature: bytes) -> str:
    return base64.urlsafe_b64encode(signature).decode().rstrip("=")


def decode_signature(text: Any) -> bytes:
    if not isinstance(text, str) or len(text) > 200:
        raise RecordError("signature is not text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise RecordError("signature is not base64") from None


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a decoded record, keys included, however deeply nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)


# --- checking a peer's changes -------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One key of a root map that an incoming update adds, replaces or deletes."""

    root: str
    key: str
    old: Any  # the value before the update (None when the key is new)
    new: Any  # the value after it (None when the key is deleted)
    deleted: bool = False

    @property
    def where(self) -> str:
        return f"{self.root}/{self.key[:80]}"


class CheckContext(Protocol):
    """What the record rules need from the receiving node (``sync.checks`` provides it)."""

    @property
    def now_wall_ms(self) -> int: ...

    @property
    def max_ahead_ms(self) -> int: ...

    @property
    def regions(self) -> frozenset[str]:
        """Every region in the cluster keyring (removed nodes' regions included)."""
        ...

    def signer_region(self, signer: str, message: bytes, signature: bytes, wall_ms: int) -> str:
        """The keyring region of `signer` if `signature` over `message` is its, made while
        its key was valid (`wall_ms`); raises RecordRefused otherwise."""
        ...

    def node_region(self, node_id: str) -> str | None:
        """The keyring region of a node (removed ones included), None if it is not listed."""
        ...


class RecordRefused(ValueError):
    """A peer's change breaks the rules for its kind; `rule` names the rule (a metric label)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class MissingReference(RecordRefused):
    """A change refers to records this node does not hold yet, so it may be valid once they
    arrive: the sync engine pulls the document from the sender and checks again, and refuses
    it (as `rule`) only if the sender's whole document does not explain it either."""


def verified_signer(
    doc_id: str, change: Change, record: dict[str, Any], stamp: str, context: CheckContext
) -> tuple[str, str]:
    """(signer node, its region) of a signed record, or RecordRefused."""
    signer = record.get(SIGNER_FIELD)
    if not isinstance(signer, str) or SIGNATURE_FIELD not in record:
        raise RecordRefused("unsigned", f"{change.where} is not signed")
    signature = decode_signature(record[SIGNATURE_FIELD])
    wall_ms = stamp_wall(stamp)
    message = signed_message(doc_id, change.root, change.key, record)
    region = context.signer_region(signer, message, signature, wall_ms)
    stamped_by = stamp_node(stamp)
    if stamped_by != signer:
        raise RecordRefused(
            "wrong_signer", f"{change.where} is stamped by {stamped_by} but signed by {signer}"
        )
    return signer, region


def stamp_wall(stamp: str) -> int:
    try:
        return Stamp.decode(stamp).wall_ms
    except ValueError as exc:
        raise RecordError(str(exc)) from None


def stamp_node(stamp: str) -> str:
    try:
        return Stamp.decode(stamp).node_id
    except ValueError as exc:
        raise RecordError(str(exc)) from None
