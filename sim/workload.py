"""Workloads: what the simulated clients do to the cluster while faults happen.

A workload is any object with ``step(now, nodes, rng) -> next time or None``, ``healed(now)`` and
``finish(now)``. The simulation calls ``step`` at time 0 and then whenever it asked to be called,
to the end of the run; at the heal it calls ``healed``, after which a workload should stop making
changes of its own (the quiet period measures convergence) and only react, as game bots do to a
``must_rename`` or a dropped connection. ``nodes`` are :class:`NodeHandle` objects, one per node,
whose writes are recorded in the history (with their acknowledgement), whose ``note`` adds
free-form records for the workload's own checkers, and whose ``players`` gives game clients
(``sim.bots.Players``). ``finish`` is called once at the end, before the final states are taken, to
note what the workload's clients ended up with. All randomness must come from ``rng`` (seeded by
the run, one stream per workload), and nothing may read the real clock.

Workloads: ``kv-writers`` (below) and ``game-bots`` (``sim.bots``: players of the real game
service). A scenario may run several (``[[workload]]``).

To add one: write the class, a ``build(params)`` function that reads its TOML parameters through a
:class:`sim.params.Table` (so errors name the key), and register both in :data:`WORKLOADS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meridian.sim.bots import GAME_BOT_KEYS, Players, build_game_bots
from meridian.sim.history import KV_DOC_PREFIX, WriteRecord
from meridian.sim.params import Table


class NodeHandle(Protocol):
    """One node as a workload sees it (a client connected to that region)."""

    node_id: str
    region: str

    @property
    def players(self) -> Players: ...

    @property
    def up(self) -> bool: ...

    def put(self, doc_id: str, key: str, value: str) -> WriteRecord: ...

    def delete(self, doc_id: str, key: str) -> WriteRecord | None: ...

    def get(self, doc_id: str, key: str) -> Any: ...

    def wall_time(self) -> float: ...

    def note(self, kind: str, **fields: Any) -> None: ...


class Workload(Protocol):
    def step(self, now: float, nodes: Sequence[NodeHandle], rng: random.Random) -> float | None:
        """Issue the operations due at ``now``; return when to be called next (None: done)."""
        ...

    def healed(self, now: float) -> None:
        """The faults are over: stop writing (and only react) from now on."""
        ...

    def finish(self, now: float) -> None:
        """The run is over: note what the checkers need to know about the clients."""
        ...


@dataclass
class KvWriters:
    """On every node, writers that put and delete keys of a few test documents.

    Writes arrive at ``rate_per_node`` per second per node (Poisson), each on a random document
    ``test:0..docs-1`` and key ``k0..k{keys-1}``; a ``delete_fraction`` of them delete the key
    when the node sees it, the others put a value unique to the run (``node#n``), so a final
    value names the write it came from. Nodes that are down write nothing.
    """

    rate_per_node: float
    docs: int
    keys: int
    delete_fraction: float
    _due: dict[str, float] = field(default_factory=dict)
    _count: int = 0
    _healed: bool = False

    def step(self, now: float, nodes: Sequence[NodeHandle], rng: random.Random) -> float | None:
        if self._healed:
            return None
        for node in nodes:
            due = self._due.get(node.node_id)
            if due is None:
                due = now + rng.expovariate(self.rate_per_node)
            while due <= now:
                if node.up:
                    self._write(node, rng)
                due += rng.expovariate(self.rate_per_node)
            self._due[node.node_id] = due
        return min(self._due.values())

    def _write(self, node: NodeHandle, rng: random.Random) -> None:
        doc_id = f"{KV_DOC_PREFIX}{rng.randrange(self.docs)}"
        key = f"k{rng.randrange(self.keys)}"
        if rng.random() < self.delete_fraction and node.get(doc_id, key) is not None:
            node.delete(doc_id, key)
            return
        self._count += 1
        node.put(doc_id, key, f"{node.node_id}#{self._count}")

    def healed(self, now: float) -> None:
        self._healed = True

    def finish(self, now: float) -> None:
        return None  # every write is in the history already


def build_kv_writers(params: Table) -> KvWriters:
    return KvWriters(
        rate_per_node=params.number("rate_per_node", 10.0, 0, inclusive=False),
        docs=params.integer("docs", 4, 1),
        keys=params.integer("keys", 24, 1),
        delete_fraction=params.fraction("delete_fraction", 0.15),
    )


@dataclass(frozen=True)
class WorkloadSpec:
    build: Callable[[Table], Workload]
    keys: tuple[str, ...]  # the TOML keys it reads (others are errors)
    summary: str


WORKLOADS: dict[str, WorkloadSpec] = {
    "kv-writers": WorkloadSpec(
        build_kv_writers,
        ("rate_per_node", "docs", "keys", "delete_fraction"),
        "puts and deletes on a few test documents from every node",
    ),
    "game-bots": WorkloadSpec(
        build_game_bots,
        GAME_BOT_KEYS,
        "players of the game service: register, log in, invite, play, watch, chat, save, "
        "resume, move between regions, log in twice, race for names",
    ),
}
