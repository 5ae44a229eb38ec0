"""How records are stored in the shared documents: JSON text values in flat root-level maps.

Why JSON text rather than nested pycrdt maps: two nodes creating the same nested map
concurrently lose one copy's writes, pycrdt returns every number as float and mangles large
ints and bytes. A record is therefore one JSON string under one key, written whole, and every
key has exactly one writer (the key names it), so Yjs' same-key tie-break (by client id, not by
time) never decides anything: the merge rules in this package do, from HLC stamps in the values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pycrdt import Doc, Map

MAX_SAFE_INT = 2**53 - 1


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
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"record is not JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise RecordError("record is not a JSON object")
    missing = [name for name in required if name not in record]
    if missing:
        raise RecordError(f"record lacks {', '.join(missing)}")
    return record


def root_map(doc: Doc[Any], name: str) -> Map[Any]:
    kv: Map[Any] = doc.get(name, type=Map)
    return kv


def map_items(doc: Doc[Any], name: str) -> Iterator[tuple[str, Any]]:
    """The (key, value) pairs of a root map, in key order (deterministic on every node)."""
    kv = root_map(doc, name)
    for key in sorted(kv.keys()):
        yield key, kv[key]


def _check_json_safe(value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
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
