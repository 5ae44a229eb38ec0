"""Workloads: what the simulated clients do to the cluster while faults happen.

A workload is any object with ``step(now, nodes, rng) -> next time or None``, ``healed(now)`` and
``finish(now)``. The simulation calls ``step`` at time 0 and then whenever it asked to be called,
to the end of the run; at the heal it calls ``healed``, after which a workload should stop making
changes of its own (the quiet period measures convergence) and only react, as game bots do to a
``must_rename`` or a dropped connection. ``nodes`` are :class:`NodeHandle` objects, one per node,
whose writes are recorded in the history (with their acknowledgement), whose ``note`` adds
free-form records for the workload's own checkers, and whose ``players`` gives game clients
(``node.botworld.Players``). ``finish`` is called once at the end, before the final states are
taken, to note what the workload's clients ended up with. All randomness must come from ``rng``
(seeded by the run, one stream per workload), and nothing may read the real clock.

Workloads: ``kv-writers`` and ``delete-bursts`` (below), ``game-bots`` (``sim.bots``: players of
the real game service), ``clock-bots`` (``sim.clockbots``: the same with time controls) and
``account-editors`` (``sim.editors``: one account edited from two regions at once). A scenario
may run several (``[[workload]]``).

To add one: write the class, a ``build(params)`` function that reads its TOML parameters through a
:class:`sim.params.Table` (so errors name the key), and register both in :data:`WORKLOADS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meridian.node.botworld import Players
from meridian.sim.bots import GAME_BOT_KEYS, build_game_bots
from meridian.sim.clockbots import CLOCK_BOT_KEYS, build_clock_bots
from meridian.sim.editors import EDITOR_KEYS, build_account_editors
from meridian.sim.history import KV_DOC_PREFIX, WriteRecord
from meridian.sim.insider import INSIDER_KEYS, build_insider
from meridian.sim.params import Table
from meridian.sim.twins import TWIN_KEYS, build_twin_bots


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


@dataclass
class DeleteBursts:
    """Runs of deletes that a partition cuts off, in documents nothing else touches afterwards.

    At ``fill_at_s`` each node puts ``keys`` keys into its own document ``test:burst-<node>``;
    at ``burst_at_s`` (meant to fall just after a partition begins, before the links are declared
    dead) it deletes ``deletes`` of them, one after the other. Nothing writes those documents
    again, so replicas that missed the burst differ only in their delete sets: a state vector
    does not show it, anti-entropy must compare delete sets to repair it.
    """

    keys: int
    deletes: int
    fill_at_s: float
    burst_at_s: float
    _filled: bool = False
    _burst: bool = False

    def step(self, now: float, nodes: Sequence[NodeHandle], rng: random.Random) -> float | None:
        if not self._filled and now >= self.fill_at_s:
            self._filled = True
            for node in nodes:
                if node.up:
                    for key in range(self.keys):
                        node.put(self._doc(node), f"k{key}", f"{node.node_id}#fill{key}")
        if self._filled and not self._burst and now >= self.burst_at_s:
            self._burst = True
            for node in nodes:
                if node.up:
                    for key in rng.sample(range(self.keys), self.deletes):
                        node.delete(self._doc(node), f"k{key}")
        if self._burst:
            return None
        return self.fill_at_s if not self._filled else self.burst_at_s

    @staticmethod
    def _doc(node: NodeHandle) -> str:
        return f"{KV_DOC_PREFIX}burst-{node.node_id}"

    def healed(self, now: float) -> None:
        self._burst = self._filled = True

    def finish(self, now: float) -> None:
        return None


def build_delete_bursts(params: Table) -> DeleteBursts:
    keys = params.integer("keys", 30, 1)
    return DeleteBursts(
        keys=keys,
        deletes=min(keys, params.integer("deletes", 10, 1)),
        fill_at_s=params.number("fill_at_s", 1.0, 0, inclusive=True),
        burst_at_s=params.number("burst_at_s", 5.5, 0, inclusive=True),
    )


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
    "delete-bursts": WorkloadSpec(
        build_delete_bursts,
        ("keys", "deletes", "fill_at_s", "burst_at_s"),
        "runs of deletes cut off by a partition, in documents nothing else writes afterwards",
    ),
    "account-editors": WorkloadSpec(
        build_account_editors,
        EDITOR_KEYS,
        "accounts whose home is moved from their home region and from others at once",
    ),
    "insider": WorkloadSpec(
        build_insider,
        INSIDER_KEYS,
        "one node writes forged move records (illegal, wrong player or parent, future-stamped, "
        "earlier duplicates) into the games it holds",
    ),
    "game-twins": WorkloadSpec(
        build_twin_bots,
        TWIN_KEYS,
        "game bots that all log in a second time from another region at twins_at_s",
    ),
    "game-bots": WorkloadSpec(
        build_game_bots,
        GAME_BOT_KEYS,
        "players of the game service: register, log in, invite, play, watch, chat, save, "
        "resume, move between regions, log in twice, race for names",
    ),
    "clock-bots": WorkloadSpec(
        build_clock_bots,
        CLOCK_BOT_KEYS,
        "game bots whose invitations ask for a short time control (clock_s + increment_s)",
    ),
}
