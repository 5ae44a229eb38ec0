"""Canonical digest of a document's replicated state, compared by anti-entropy.

Two replicas hold the same document state exactly when their state vectors *and* their delete
sets are equal. A state vector alone is not enough: a pure delete does not change it. The digest
therefore hashes both, decoded from pycrdt's snapshot encoding (delete set, then state vector)
and put into a canonical form (clients sorted, delete ranges sorted and coalesced), so that two
replicas with the same state get the same digest whatever order Yrs happens to encode them in.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pycrdt import Doc, Snapshot, get_update

from meridian.sync.codec import DIGEST_BYTES, Reader

DeleteSet = dict[int, list[tuple[int, int]]]


def state_digest(doc: Doc[Any]) -> bytes:
    """A 16-byte digest of the document's state vector and delete set."""
    reader = Reader(Snapshot.from_doc(doc).encode())
    delete_set = read_delete_set(reader)
    state_vector = read_state_vector(reader)
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for client in sorted(state_vector):
        hasher.update(f"s{client}:{state_vector[client]};".encode())
    for client in sorted(delete_set):
        for start, length in _coalesce(delete_set[client]):
            hasher.update(f"d{client}:{start}+{length};".encode())
    return hasher.digest()


def is_decode_failure(exc: BaseException) -> bool:
    """pycrdt reports bad input as ValueError, or as a Rust panic that is not an Exception."""
    return isinstance(exc, ValueError) or type(exc).__name__ == "PanicException"


def lacking(state: bytes, update: bytes) -> str | None:
    """What of `update` a document with state vector `state` could not integrate: "items" (it
    builds on items the document lacks), "deletions" (it deletes items the document lacks), or
    None when all of it would land. Raises FrameError if the update does not parse."""
    rest = Reader(get_update(update, state))
    if rest.varuint() != 0:
        return "items"
    deletes = read_delete_set(rest)
    if not deletes:
        return None  # most updates delete nothing: no state vector to read
    have = read_state_vector(Reader(state))
    for client, ranges in deletes.items():
        if any(have.get(client, 0) < start + length for start, length in ranges):
            return "deletions"
    return None


def read_delete_set(reader: Reader) -> DeleteSet:
    delete_set: DeleteSet = {}
    for _ in range(reader.varuint()):
        client = reader.varuint()
        ranges = delete_set.setdefault(client, [])
        for _ in range(reader.varuint()):
            start = reader.varuint()
            ranges.append((start, reader.varuint()))
    return delete_set


def read_state_vector(reader: Reader) -> dict[int, int]:
    state_vector: dict[int, int] = {}
    for _ in range(reader.varuint()):
        client = reader.varuint()
        clock = reader.varuint()
        if clock:
            state_vector[client] = clock
    return state_vector


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort delete ranges and merge the ones that touch or overlap."""
    merged: list[tuple[int, int]] = []
    for start, length in sorted(ranges):
        if length == 0:
            continue
        if merged and start <= merged[-1][0] + merged[-1][1]:
            last_start, last_length = merged[-1]
            merged[-1] = (last_start, max(last_length, start + length - last_start))
        else:
            merged.append((start, length))
    return merged


EMPTY_DIGEST = state_digest(Doc())
