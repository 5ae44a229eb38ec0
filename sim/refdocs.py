"""Reading the nodes' documents through their public data formats only, for the reference checkers.

The reference checkers (``sim.reference``) must not share code with what they check: a bug in
``crdt_models`` or ``sync`` would otherwise change what the checker calls correct. So this module
decodes, on its own, the only things the nodes and the checkers have in common:

* a document's full state as Yjs update bytes, rebuilt into a ``pycrdt.Doc``;
* its root maps, whose values are JSON text records (``docs/architecture.md``: one record per
  key, written whole) or, for a heartbeat, a number;
* the Yjs state vector and delete set, decoded from the lib0 varuint encodings that
  ``Doc.get_state`` and ``Snapshot.encode`` return (``{client: clock}``, and per client the
  deleted ``(start, length)`` ranges, sorted and coalesced);
* HLC stamps as text: ``<16-digit wall ms>.<5-digit counter>.<node id>``, compared as the
  tuple ``(wall_ms, counter, node_id)``.

Nothing here imports ``meridian.crdt_models``, ``meridian.sync`` or ``meridian.node``
(``tests/test_sim_reference.py`` checks it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pycrdt import Doc, Map, Snapshot

STAMP_PATTERN = re.compile(r"(\d{16})\.(\d{5})\.([a-z0-9-]{1,32})")
Stamp = tuple[int, int, str]  # (wall_ms, counter, node id)
NO_STAMP: Stamp = (-1, -1, "")  # sorts before every stamp (a version written from nothing)
DeleteSet = dict[int, tuple[tuple[int, int], ...]]


def rebuild(update: bytes) -> Doc[Any]:
    """A fresh document holding exactly the state in ``update``."""
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    return doc


def root_names(doc: Doc[Any]) -> list[str]:
    return sorted(doc.keys())


def read_map(doc: Doc[Any], root: str) -> dict[str, Any]:
    """A root map's raw values by key (JSON text for records). Read as the JSON Yrs writes of
    the whole map: ``Map.to_py`` opens a transaction per key, about 5 times slower at 30 keys."""
    values = json.loads(str(doc.get(root, type=Map)))
    return values if isinstance(values, dict) else {}


@lru_cache(maxsize=4096)
def maps_of(update: bytes) -> dict[str, dict[str, Any]]:
    """Every root map of a document state, raw values by key (cached: nodes often agree)."""
    doc = rebuild(update)
    return {root: read_map(doc, root) for root in root_names(doc)}


def record(text: Any) -> dict[str, Any] | None:
    """A JSON object record, or None when the value is not one (such a record is ignored)."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_stamp(text: Any) -> Stamp | None:
    """``(wall_ms, counter, node_id)`` of an HLC stamp, or None if it is not one."""
    if not isinstance(text, str):
        return None
    match = STAMP_PATTERN.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def format_stamp(stamp: Stamp) -> str:
    return f"{stamp[0]:016d}.{stamp[1]:05d}.{stamp[2]}"


# --- Yjs state vector and delete set (lib0 encoding) ---------------------------------------


class _Bytes:
    """A cursor over lib0-encoded bytes: unsigned LEB128 integers."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def varuint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7


def _varuints(data: bytes) -> list[int]:
    """Every unsigned LEB128 integer in ``data``, in order (a state vector is nothing else)."""
    numbers, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            numbers.append(value)
            value, shift = 0, 0
        else:
            shift += 7
    return numbers


def carries_nothing(update: bytes) -> bool:
    """Whether a Yjs (v1) update holds no item and deletes nothing: no client's structs, then an
    empty delete set."""
    numbers = _varuints(update[:2]) if len(update) >= 2 else [1]
    return numbers[:2] == [0, 0]


def state_vector(doc: Doc[Any]) -> dict[int, int]:
    """``{client id: number of items integrated}``: a count, then (client, clock) pairs."""
    numbers = _varuints(doc.get_state())
    return {numbers[i]: numbers[i + 1] for i in range(1, 2 * numbers[0] + 1, 2) if numbers[i + 1]}


def delete_set(doc: Doc[Any]) -> DeleteSet:
    """Per client, the deleted item ranges ``(start, length)``, sorted and coalesced."""
    cursor = _Bytes(Snapshot.from_doc(doc).encode())  # the delete set, then the state vector
    found: dict[int, list[tuple[int, int]]] = {}
    for _ in range(cursor.varuint()):
        client = cursor.varuint()
        ranges = found.setdefault(client, [])
        for _ in range(cursor.varuint()):
            start = cursor.varuint()
            ranges.append((start, cursor.varuint()))
    return {client: _coalesce(ranges) for client, ranges in sorted(found.items()) if ranges}


def _coalesce(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, length in sorted(r for r in ranges if r[1] > 0):
        if merged and start <= merged[-1][0] + merged[-1][1]:
            first, size = merged[-1]
            merged[-1] = (first, max(size, start + length - first))
        else:
            merged.append((start, length))
    return tuple(merged)


@dataclass(frozen=True)
class Replica:
    """What makes two replicas of a document the same: history and content."""

    state_vector: dict[int, int]
    delete_set: DeleteSet
    maps: dict[str, dict[str, Any]]


@lru_cache(maxsize=4096)
def replica(update: bytes) -> Replica:
    doc = rebuild(update)
    maps = {root: read_map(doc, root) for root in root_names(doc)}
    return Replica(state_vector(doc), delete_set(doc), maps)
