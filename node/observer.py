"""The load observer: a meta-service that measures this node process and shows every node's load.

Every node runs one. It reads counters the node already keeps (player connections of the game
service, the replicator's changes, the store's commit position, the sync engine's unacknowledged
frames, the process CPU clock) and measures its event loop's lag; it publishes the figures as
this node's load entry (``crdt_models.load``: numbers in the ``meta`` map of the node's own
presence document, which replicates them to every region) and reads everyone's entries back
for ``/api/cluster``, ``/metrics`` and the dashboard. The game code does not know it exists:
nothing in the game service calls it or reads what it writes. The entry is written through the
service's one door for meta-services (``node.service_meta``), so that it carries the presence
heartbeat: while the observer publishes every PUBLISH_S, the node writes no heartbeat alone.

* `LoadCore` is the sans-IO core: it takes `Sample`\\s (counters read at one instant, with
  ``now``) and returns the `LoadEntry` to publish when one is due; `cluster_view` turns
  published entries and ``now`` into the cluster's load per process and per region, stale
  entries left out.
* `LoadObserver` is the thin asyncio adapter on the node: a task that wakes every SAMPLE_S,
  reads the counters, feeds the core and writes what it returns. It sees the node only through
  `LoadSources`: the few things it reads of each part (a running ``node.server.Node`` is one),
  so a test can hand it plain objects.

The view also carries the players each node's rebalancer moved (``node.rebalancer``), which
every node publishes beside its load entry (``node.rebalance.read_moved``): per process, moved
out by its rebalancer and moved in by the others'.

Limits (named, documented in docs/architecture.md *Load observer*): SAMPLE_S, PUBLISH_S,
RATE_WINDOW_S, and LOAD_TTL_MS (crdt_models.load).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pycrdt import Doc

from meridian.crdt_models.load import LoadEntry, read_doc_entry, write_entry
from meridian.crdt_models.presence import META, PRESENCE_PREFIX
from meridian.crdt_models.records import root_map
from meridian.node.rebalance import read_moved
from meridian.sync.engine import DocChanged
from meridian.sync.replicator import ChangeListener

log = logging.getLogger("meridian.observer")

SAMPLE_S = 0.5  # how often counters are read and the loop's lag is probed
PUBLISH_S = 3.0  # how often the entry is written
RATE_WINDOW_S = 10.0  # moves/s and CPU are averaged over this much of the recent past
GAME_DOC_PREFIX = "game:"
UNKNOWN_REGION = "?"


@dataclass(frozen=True)
class Sample:
    """The node's counters read at one instant (`now`, monotonic seconds)."""

    now: float
    connections: int
    moves_total: int  # counter: local writes to game documents since start
    cpu_seconds: float  # counter: process CPU time (every thread)
    loop_lag_s: float  # how late the event loop woke the observer for this sample
    store_queue: int  # changes handed to the store, not yet committed
    replication_backlog: int  # frames sent to or queued for up peers, not yet acknowledged


def counter_rate(points: Sequence[tuple[float, float]]) -> float:
    """Increase per second of a counter sampled at (time, value) points, oldest first. A value
    lower than the one before is a restarted counter: it counts as an increase from 0."""
    if len(points) < 2:
        return 0.0
    elapsed = points[-1][0] - points[0][0]
    if elapsed <= 0:
        return 0.0
    increase = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        increase += after - before if after >= before else after
    return increase / elapsed


class LoadCore:
    """The observer without I/O: samples and ``now`` in, the entry to publish out."""

    def __init__(
        self,
        node_id: str,
        region: str,
        *,
        publish_s: float = PUBLISH_S,
        window_s: float = RATE_WINDOW_S,
    ) -> None:
        self.node_id = node_id
        self.region = region
        self.publish_s = publish_s
        self.window_s = window_s
        self.samples: deque[Sample] = deque()
        self.next_publish: float | None = None  # None: publish at the first sample
        self.lag_max_s = 0.0  # the worst lag since the last publication

    def take(self, sample: Sample, wall_ms: int) -> LoadEntry | None:
        """Record a sample; return the entry to publish when one is due."""
        self.samples.append(sample)
        while self.samples and self.samples[0].now < sample.now - self.window_s:
            self.samples.popleft()
        self.lag_max_s = max(self.lag_max_s, sample.loop_lag_s)
        if self.next_publish is not None and sample.now < self.next_publish:
            return None
        self.next_publish = sample.now + self.publish_s
        entry = self.entry(wall_ms)
        self.lag_max_s = 0.0
        return entry

    def entry(self, wall_ms: int) -> LoadEntry:
        """The load as of the latest sample (rates over the window)."""
        last = self.samples[-1]
        moves = counter_rate([(s.now, s.moves_total) for s in self.samples])
        cpu = counter_rate([(s.now, s.cpu_seconds) for s in self.samples])
        return LoadEntry(
            node=self.node_id,
            region=self.region,
            at_ms=wall_ms,
            connections=last.connections,
            moves_per_s=round(moves, 2),
            loop_lag_ms=round(self.lag_max_s * 1000, 1),
            cpu_percent=round(cpu * 100, 1),
            store_queue=last.store_queue,
            replication_backlog=last.replication_backlog,
        )


@dataclass(frozen=True)
class RegionLoad:
    """The live processes of one region, added up (lag: the worst of them)."""

    region: str
    processes: int
    connections: int
    moves_per_s: float
    loop_lag_ms: float
    cpu_percent: float
    store_queue: int
    replication_backlog: int
    moved_out: int = 0  # players its processes' rebalancers moved elsewhere
    moved_in: int = 0  # players other processes' rebalancers moved to its processes


Moved = Mapping[str, Mapping[str, int]]  # source node -> target node -> players moved


@dataclass(frozen=True)
class ClusterLoad:
    """Every live process's load, per region, the nodes whose entries went stale, and the
    players rebalancers moved (source -> target -> count, every node's, stale ones too)."""

    nodes: list[LoadEntry]
    regions: list[RegionLoad]
    stale: list[str] = field(default_factory=list)
    moved: Moved = field(default_factory=dict)

    def moved_out(self, node: str) -> int:
        return sum(self.moved.get(node, {}).values())

    def moved_in(self, node: str) -> int:
        return sum(targets.get(node, 0) for targets in self.moved.values())

    def to_json(self, now_ms: int) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    **asdict(e),
                    "age_ms": max(0, now_ms - e.at_ms),
                    "moved_out": self.moved_out(e.node),
                    "moved_in": self.moved_in(e.node),
                }
                for e in self.nodes
            ],
            "regions": [asdict(r) for r in self.regions],
            "stale": self.stale,
        }


def cluster_view(
    entries: Iterable[LoadEntry], now_ms: int, moved: Moved | None = None
) -> ClusterLoad:
    """The live entries (sorted by region, then node) and their sums per region."""
    live: list[LoadEntry] = []
    stale: list[LoadEntry] = []
    for entry in entries:
        (live if entry.live(now_ms) else stale).append(entry)
    live.sort(key=lambda e: (e.region, e.node))
    by_region: dict[str, list[LoadEntry]] = {}
    for entry in live:
        by_region.setdefault(entry.region, []).append(entry)
    moved = moved or {}
    view = ClusterLoad(live, [], sorted(e.node for e in stale), moved)
    regions = [_region_load(region, members, view) for region, members in by_region.items()]
    return ClusterLoad(live, regions, view.stale, moved)


def _region_load(region: str, members: list[LoadEntry], view: ClusterLoad) -> RegionLoad:
    return RegionLoad(
        region=region,
        processes=len(members),
        connections=sum(e.connections for e in members),
        moves_per_s=round(sum(e.moves_per_s for e in members), 2),
        loop_lag_ms=max(e.loop_lag_ms for e in members),
        cpu_percent=round(sum(e.cpu_percent for e in members), 1),
        store_queue=sum(e.store_queue for e in members),
        replication_backlog=sum(e.replication_backlog for e in members),
        moved_out=sum(view.moved_out(e.node) for e in members),
        moved_in=sum(view.moved_in(e.node) for e in members),
    )


# --- what the adapter reads of the node --------------------------------------------------------


class InRegion(Protocol):
    """A node known to be in a region (a keyring entry, a peer's state, a node's identity)."""

    @property
    def region(self) -> str: ...


class NodeIdentity(InRegion, Protocol):
    """This node's id and region (``node.config.NodeConfig``)."""

    @property
    def node_id(self) -> str: ...


class RegionLookup(Protocol):
    """The cluster keyring (``sync.identity.Keyring``): which region a node id is in."""

    def get(self, node_id: str, /) -> InRegion | None: ...


class EngineReadings(Protocol):
    """What the observer reads of the sync engine (``sync.engine.SyncEngine``): the documents
    (presence ones carry the load entries), the change positions, the unacknowledged frames,
    and where a node id is (keyring, else its peer link's hello)."""

    @property
    def node_id(self) -> str: ...

    @property
    def docs(self) -> Mapping[str, Doc[Any]]: ...

    @property
    def last_event_no(self) -> int: ...

    @property
    def durable_event_no(self) -> int: ...

    @property
    def keyring(self) -> RegionLookup: ...

    @property
    def peers(self) -> Mapping[str, InRegion]: ...

    def replication_backlog(self) -> int: ...


class ReplicatorAccess(Protocol):
    """What the observer does with the replicator (``sync.replicator.Replicator``): listens to
    changes (to count local moves)."""

    @property
    def listeners(self) -> list[ChangeListener]: ...


class ConnectionReadings(Protocol):
    """What the observer reads of the game service, its player connections, and how it writes
    its entry (``node.service_meta.MetaServiceAccess.write_own_presence``)."""

    @property
    def conns(self) -> Sized: ...

    def write_own_presence(self, change: Callable[[Doc[Any]], Any]) -> int: ...


class LoadSources(Protocol):
    """The parts of a node the observer reads and writes (see module docstring)."""

    @property
    def config(self) -> NodeIdentity: ...

    @property
    def engine(self) -> EngineReadings: ...

    @property
    def replicator(self) -> ReplicatorAccess: ...

    @property
    def service(self) -> ConnectionReadings: ...

    @property
    def wall_ms(self) -> Callable[[], int]: ...


# --- the asyncio adapter ---------------------------------------------------------------------


class LoadObserver:
    """Runs `LoadCore` on the node's event loop (see module docstring)."""

    def __init__(
        self,
        node: LoadSources,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_seconds: Callable[[], float] = time.process_time,
        sample_s: float = SAMPLE_S,
    ) -> None:
        self.node = node
        self.clock = clock
        self.cpu_seconds = cpu_seconds
        self.sample_s = sample_s
        self.core = LoadCore(node.config.node_id, node.config.region)
        self.moves_total = 0
        self.published = 0
        self.busy_seconds = 0.0  # time spent sampling and publishing (the observer's own cost)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.attach()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="load-observer")

    def attach(self) -> None:
        """Count the node's moves from now on (`start` does it; the simulator, which calls
        `tick` on its own clock, calls it alone)."""
        self.node.replicator.listeners.append(self._count_move)

    async def stop(self) -> None:
        if self._count_move in self.node.replicator.listeners:
            self.node.replicator.listeners.remove(self._count_move)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _count_move(self, change: DocChanged) -> None:
        # A move is one local write to its game document (creating or ending a game is one too).
        if change.origin is None and change.doc_id.startswith(GAME_DOC_PREFIX):
            self.moves_total += 1

    async def _run(self) -> None:
        lag = 0.0
        while True:
            started = self.clock()
            self._tick(lag)
            self.busy_seconds += self.clock() - started
            woke_for = self.clock() + self.sample_s
            await asyncio.sleep(self.sample_s)
            lag = max(0.0, self.clock() - woke_for)

    def tick(self, lag_s: float) -> None:
        """Take a sample (the loop woke the observer `lag_s` late) and publish when due."""
        self._tick(lag_s)

    def _tick(self, lag_s: float) -> None:
        entry = self.core.take(self.sample(lag_s), self.node.wall_ms())
        if entry is not None:
            self.publish(entry)

    def sample(self, lag_s: float) -> Sample:
        node = self.node
        engine = node.engine
        return Sample(
            now=self.clock(),
            connections=len(node.service.conns),
            moves_total=self.moves_total,
            cpu_seconds=self.cpu_seconds(),
            loop_lag_s=lag_s,
            store_queue=max(0, engine.last_event_no - engine.durable_event_no),
            replication_backlog=engine.replication_backlog(),
        )

    def publish(self, entry: LoadEntry) -> None:
        # Through the game service, so that the entry carries the presence heartbeat too.
        if self.node.service.write_own_presence(lambda doc: write_entry(doc, entry)):
            self.published += 1

    def entries(self) -> list[LoadEntry]:
        """Every node's published entry, stale ones included."""
        engine = self.node.engine
        found = []
        for doc_id, doc in list(engine.docs.items()):
            if not doc_id.startswith(PRESENCE_PREFIX):
                continue
            node_id = doc_id.removeprefix(PRESENCE_PREFIX)
            entry = read_doc_entry(node_id, self._region_of(node_id), doc)
            if entry is not None:
                found.append(entry)
        return found

    def moved(self) -> dict[str, dict[str, int]]:
        """Every node's published count of players its rebalancer moved, by target."""
        found = {}
        for doc_id, doc in list(self.node.engine.docs.items()):
            if doc_id.startswith(PRESENCE_PREFIX):
                counts = read_moved(root_map(doc, META))
                if counts:
                    found[doc_id.removeprefix(PRESENCE_PREFIX)] = counts
        return found

    def _region_of(self, node_id: str) -> str:
        engine = self.node.engine
        if node_id == engine.node_id:
            return self.node.config.region
        known = engine.keyring.get(node_id)
        if known is not None:
            return known.region
        peer = engine.peers.get(node_id)
        return peer.region if peer is not None else UNKNOWN_REGION

    def own_cost(self) -> dict[str, float]:
        """What this observer has cost: entries published, and seconds spent sampling and
        writing them (the store commit and the replication of each entry come on top)."""
        return {"published": self.published, "busy_s": round(self.busy_seconds, 6)}

    def view(self) -> ClusterLoad:
        return cluster_view(self.entries(), self.node.wall_ms(), self.moved())
