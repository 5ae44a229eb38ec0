"""Load entries: each node's load figures, replicated in its own presence document.

The load observer (``node.observer``) of every node publishes one entry: how many player
connections it holds, its moves per second, its event-loop lag, its CPU use, its store queue and
its replication backlog, with the wall time it measured them. The entry lives in the ``meta``
root map of the node's own presence document (``presence:<node>``), one number per key under
the ``load.`` prefix, beside the presence ``heartbeat``:

* only that node writes its presence document, so every entry has exactly one writer;
* an entry whose ``load.at`` is older than LOAD_TTL_MS is stale (its node is gone or cut off)
  and is left out, the way a presence document with an old heartbeat is;
* release-0.2 nodes accept any number in presence ``meta``, so a cluster in a rolling upgrade
  replicates these keys without a refusal (a new document kind would be refused by them and
  close their links: docs/architecture.md *Load observer*).

What a peer may write (`check_meta_change`, called from ``crdt_models.kinds``): a ``load.``
key this module names, holding a number from 0 to that key's bound. Deleting one is allowed
(a key can only be stale, never wrong).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from pycrdt import Doc

from meridian.crdt_models.presence import META
from meridian.crdt_models.records import Change, RecordError, map_items, root_map

LOAD_PREFIX = "load."
LOAD_TTL_MS = 15_000  # as presence (PRESENCE_TTL_MS): five missed publications
MAX_SAFE_INT = 2**53 - 1

# key suffix -> the largest value a peer may write (a bound on nonsense, not on real load)
FIELDS: dict[str, float] = {
    "at": MAX_SAFE_INT,  # wall ms of the measurement
    "connections": 10_000_000,
    "moves_per_s": 10_000_000,
    "loop_lag_ms": 3_600_000,
    "cpu_percent": 100 * 4096,  # 100 % per core
    "store_queue": MAX_SAFE_INT,
    "replication_backlog": MAX_SAFE_INT,
}


@dataclass(frozen=True)
class LoadEntry:
    """One node's load, as published (rates are per second over the observer's window)."""

    node: str
    region: str
    at_ms: int
    connections: int
    moves_per_s: float
    loop_lag_ms: float
    cpu_percent: float
    store_queue: int
    replication_backlog: int

    def live(self, now_ms: int) -> bool:
        return now_ms - self.at_ms <= LOAD_TTL_MS

    def values(self) -> dict[str, float]:
        """The figures by key suffix (what `write_entry` stores)."""
        return {
            "at": self.at_ms,
            "connections": self.connections,
            "moves_per_s": self.moves_per_s,
            "loop_lag_ms": self.loop_lag_ms,
            "cpu_percent": self.cpu_percent,
            "store_queue": self.store_queue,
            "replication_backlog": self.replication_backlog,
        }


def write_entry(doc: Doc[Any], entry: LoadEntry) -> None:
    """Store the entry in the presence ``meta`` map; call inside one transaction. Only the keys
    whose value changed are written (``load.at`` always is), so a steady load costs one key."""
    meta = root_map(doc, META)
    for name, value in entry.values().items():
        key = LOAD_PREFIX + name
        if name == "at" or meta.get(key) != value:
            meta[key] = value


def read_entry(node: str, region: str, meta: Mapping[str, Any]) -> LoadEntry | None:
    """The entry in a presence ``meta`` map (None when the node has published none). pycrdt
    gives every number back as a float: counts are turned back into ints here."""
    values: dict[str, float] = {}
    for name in FIELDS:
        value = meta.get(LOAD_PREFIX + name)
        if not _number(value):
            return None
        values[name] = value
    return LoadEntry(
        node=node,
        region=region,
        at_ms=int(values["at"]),
        connections=int(values["connections"]),
        moves_per_s=float(values["moves_per_s"]),
        loop_lag_ms=float(values["loop_lag_ms"]),
        cpu_percent=float(values["cpu_percent"]),
        store_queue=int(values["store_queue"]),
        replication_backlog=int(values["replication_backlog"]),
    )


def read_doc_entry(node: str, region: str, doc: Doc[Any]) -> LoadEntry | None:
    pairs = map_items(doc, META)
    return read_entry(node, region, {k: v for k, v in pairs if k.startswith(LOAD_PREFIX)})


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_meta_change(change: Change) -> None:
    """RecordError unless a peer's change to a ``load.`` key of presence ``meta`` is one this
    module writes (other meta keys are checked by ``crdt_models.kinds`` alone)."""
    if not change.key.startswith(LOAD_PREFIX) or change.deleted:
        return
    bound = FIELDS.get(change.key.removeprefix(LOAD_PREFIX))
    if bound is None:
        raise RecordError(f"{change.key[:60]!r} is not a load figure")
    value = change.new
    if not _number(value) or not 0 <= value <= bound:
        raise RecordError(f"{change.key} must be a number from 0 to {bound:g}")
