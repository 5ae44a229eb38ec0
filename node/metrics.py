"""A node's ``GET /metrics``: its live counters as Prometheus text, through prometheus_client.

`NodeCollector` reads the counters the node already keeps (sync engine peers, replicator, group
commit store, load observer, game service) at each scrape and yields metric families; nothing is
counted twice. It sees the node only through `MetricSources`: the few readings it takes of each
part (a running ``node.server.Node`` is one), so a test can hand it plain objects.
Each node gets its own `CollectorRegistry` (`node_registry`), never the library's process-global
one: tests and tools run several nodes in one process.

Summaries (``meridian_sync_replication_lag_seconds``, ``meridian_store_commit_latency_seconds``)
carry quantiles over the recent samples kept plus ``_count`` and ``_sum`` over every observation
since start, so ``rate(_sum) / rate(_count)`` is the mean. Values are written the way
prometheus_client writes them: exact for integers up to 2^53 (123456789 is ``1.23456789e+08``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from meridian.node.observer import ClusterLoad
from meridian.sync.engine import PeerState
from meridian.sync.replicator import ReplicatorCounters
from meridian.sync.stats import percentile

QUANTILES = (0.5, 0.9, 0.99)
# The classic text format: every Prometheus version reads it, and so do the dashboard and the
# simulator, which read meridian_merges_total lines from it.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MERGE_KINDS = ("name", "double_login", "same_ply", "two_games")
PEER_LABELS = ("peer", "region")
LOAD_LABELS = ("node", "region")


class SyncReadings(Protocol):
    """What the collector reads of the sync engine (``sync.engine.SyncEngine``)."""

    @property
    def peers(self) -> Mapping[str, PeerState]: ...

    @property
    def docs(self) -> Sized: ...

    @property
    def refusals(self) -> Mapping[tuple[str, str], int]: ...

    def up_peers(self) -> Iterable[str]: ...


class ReplicatorReadings(Protocol):
    """What the collector reads of the replicator (``sync.replicator.Replicator``)."""

    @property
    def counters(self) -> ReplicatorCounters: ...

    @property
    def quarantined(self) -> Sized: ...


class StoreReadings(Protocol):
    """What the collector reads of the group commit store (``sync.store.GroupCommitStore``)."""

    @property
    def commit_latency_seconds(self) -> Iterable[float]: ...

    @property
    def total_commits(self) -> int: ...

    @property
    def total_commit_seconds(self) -> float: ...

    @property
    def durable_wait_seconds(self) -> Iterable[float]: ...

    @property
    def total_durable_waits(self) -> int: ...

    @property
    def total_durable_wait_seconds(self) -> float: ...


class LoadReadings(Protocol):
    """The load observer (``node.observer.LoadObserver``): every live process's load."""

    def view(self) -> ClusterLoad: ...


class RebalanceReadings(Protocol):
    """The rebalancer (``node.rebalancer.Rebalancer``): its own families, from the load view."""

    def metric_families(self, view: ClusterLoad) -> list[Metric]: ...


class Counts(Protocol):
    """Counters by kind (the service's merges and rate limits)."""

    @property
    def counts(self) -> Mapping[str, int]: ...


class LimitReadings(Counts, Protocol):
    @property
    def failed_logins(self) -> int: ...


class GameReadings(Protocol):
    @property
    def status(self) -> str: ...


class ServiceReadings(Protocol):
    """What the collector reads of the game service (``node.service.GameService``)."""

    @property
    def merges(self) -> Counts: ...

    @property
    def conns(self) -> Sized: ...

    @property
    def games(self) -> Mapping[str, GameReadings]: ...

    @property
    def limits(self) -> LimitReadings: ...


class MetricSources(Protocol):
    """The parts of a node the collector reads (see module docstring)."""

    @property
    def engine(self) -> SyncReadings: ...

    @property
    def replicator(self) -> ReplicatorReadings: ...

    @property
    def store(self) -> StoreReadings: ...

    @property
    def observer(self) -> LoadReadings: ...

    @property
    def service(self) -> ServiceReadings: ...

    @property
    def rebalancer(self) -> RebalanceReadings: ...


class NodeCollector:
    """The node's metric families, read from its live counters at each scrape."""

    def __init__(self, sources: MetricSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        engine, replicator, store, service = (
            self.sources.engine,
            self.sources.replicator,
            self.sources.store,
            self.sources.service,
        )
        counters = replicator.counters
        yield from peer_families(engine.peers.values(), set(engine.up_peers()))
        yield from replication_families(counters, documents=len(engine.docs))
        yield refusal_family(engine.refusals)
        yield from store_families(
            recent_seconds=store.commit_latency_seconds,
            commits=store.total_commits,
            seconds_total=store.total_commit_seconds,
            failures=counters.store_failures,
        )
        yield durable_wait_family(
            store.durable_wait_seconds,
            count=store.total_durable_waits,
            total=store.total_durable_wait_seconds,
        )
        yield from quarantine_families(counters, quarantined=len(replicator.quarantined))
        view = self.sources.observer.view()
        yield from load_families(view)
        yield from self.sources.rebalancer.metric_families(view)
        yield from service_families(
            merges=service.merges.counts,
            connections=len(service.conns),
            game_statuses=(tracker.status for tracker in service.games.values()),
            limited=service.limits.counts,
            failed_logins=service.limits.failed_logins,
        )


def node_registry(sources: MetricSources) -> CollectorRegistry:
    """A registry of this node's metrics alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(sources))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format (`CONTENT_TYPE`)."""
    return generate_latest(registry)


def peer_families(peers: Iterable[PeerState], up: set[str]) -> list[Metric]:
    """Per-peer link state, traffic and replication lag."""
    peer_up = GaugeMetricFamily(
        "meridian_peer_up", "1 while the link to the peer is up", labels=PEER_LABELS
    )
    sent = _peer_counter("meridian_sync_updates_sent_total", "update frames sent")
    received = _peer_counter("meridian_sync_updates_received_total", "update frames received")
    bytes_sent = _peer_counter("meridian_sync_bytes_sent_total", "frame bytes sent")
    bytes_received = _peer_counter("meridian_sync_bytes_received_total", "frame bytes received")
    lag = SummaryMetricFamily(
        "meridian_sync_replication_lag_seconds",
        "update sent to peer's durable ack",
        labels=PEER_LABELS,
    )
    for peer in peers:
        values = [peer.node_id, peer.region]
        peer_up.add_metric(values, 1.0 if peer.node_id in up else 0.0)
        sent.add_metric(values, peer.updates_sent)
        received.add_metric(values, peer.updates_received)
        bytes_sent.add_metric(values, peer.bytes_sent)
        bytes_received.add_metric(values, peer.bytes_received)
        add_summary(
            lag,
            dict(zip(PEER_LABELS, values, strict=True)),
            peer.lag_samples,
            count=peer.lag_count,
            total=peer.lag_seconds_total,
        )
    return [peer_up, sent, received, bytes_sent, bytes_received, lag]


def _peer_counter(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=PEER_LABELS)


def replication_families(counters: ReplicatorCounters, *, documents: int) -> list[Metric]:
    """Document changes, documents held and peer link outcomes."""
    changes = CounterMetricFamily(
        "meridian_changes_total", "document changes applied", labels=["origin"]
    )
    changes.add_metric(["local"], counters.changes_local)
    changes.add_metric(["peer"], counters.changes_remote)
    held = GaugeMetricFamily("meridian_documents", "documents held by this node", value=documents)
    links = CounterMetricFamily("meridian_links_total", "peer link outcomes", labels=["outcome"])
    links.add_metric(["up"], counters.links_up)
    links.add_metric(["closed"], counters.links_closed)
    links.add_metric(["refused"], counters.links_refused)
    return [changes, held, links]


def durable_wait_family(recent: Iterable[float], *, count: int, total: float) -> Metric:
    """How long a change waits to be known durable on the loop (what a gated push waits)."""
    family = SummaryMetricFamily(
        "meridian_store_durable_wait_seconds",
        "first change of a group commit queued -> known durable on the event loop",
    )
    add_summary(family, {}, recent, count=count, total=total)
    return family


def store_families(
    *, recent_seconds: Iterable[float], commits: int, seconds_total: float, failures: int
) -> list[Metric]:
    """Group commits: their latency, their number and the changes not committed."""
    latency = SummaryMetricFamily(
        "meridian_store_commit_latency_seconds", "group commit duration (fsync included)"
    )
    add_summary(latency, {}, recent_seconds, count=commits, total=seconds_total)
    return [
        latency,
        CounterMetricFamily("meridian_store_commits_total", "group commits", value=commits),
        CounterMetricFamily(
            "meridian_store_failures_total", "changes not committed", value=failures
        ),
    ]


def load_families(view: ClusterLoad) -> list[Metric]:
    """Every live process's load as its observer published it (node.observer), this node's own
    included: the same figures on every node of the cluster, a few seconds old at most."""
    families = {
        "connections": GaugeMetricFamily(
            "meridian_load_connections", "player websockets open on the node", labels=LOAD_LABELS
        ),
        "moves": GaugeMetricFamily(
            "meridian_load_moves_per_second",
            "local game-document writes per second (one per move)",
            labels=LOAD_LABELS,
        ),
        "lag": GaugeMetricFamily(
            "meridian_load_event_loop_lag_seconds",
            "worst event-loop lag over the last publication period",
            labels=LOAD_LABELS,
        ),
        "cpu": GaugeMetricFamily(
            "meridian_load_cpu_ratio", "process CPU seconds per second", labels=LOAD_LABELS
        ),
        "queue": GaugeMetricFamily(
            "meridian_load_store_queue", "changes waiting for a store commit", labels=LOAD_LABELS
        ),
        "backlog": GaugeMetricFamily(
            "meridian_load_replication_backlog",
            "frames to up peers not yet acknowledged",
            labels=LOAD_LABELS,
        ),
    }
    for entry in view.nodes:
        labels = [entry.node, entry.region]
        families["connections"].add_metric(labels, entry.connections)
        families["moves"].add_metric(labels, entry.moves_per_s)
        families["lag"].add_metric(labels, entry.loop_lag_ms / 1000)
        families["cpu"].add_metric(labels, entry.cpu_percent / 100)
        families["queue"].add_metric(labels, entry.store_queue)
        families["backlog"].add_metric(labels, entry.replication_backlog)
    return list(families.values())


def refusal_family(refusals: Mapping[tuple[str, str], int]) -> Metric:
    """Peer frames refused after link-up, by peer and by the rule they broke (docs/security.md)."""
    refused = CounterMetricFamily(
        "meridian_sync_refused_total",
        "peer frames refused after link-up, by rule",
        labels=["peer", "rule"],
    )
    for (peer, rule), count in sorted(refusals.items()):
        refused.add_metric([peer, rule], count)
    return refused


def quarantine_families(counters: ReplicatorCounters, *, quarantined: int) -> list[Metric]:
    """Documents held read-only for a corrupt row until a peer refills them (docs/operations.md)."""
    return [
        GaugeMetricFamily(
            "meridian_store_quarantined_documents",
            "documents waiting for a peer to refill",
            value=quarantined,
        ),
        CounterMetricFamily(
            "meridian_store_quarantines_total",
            "documents quarantined for a corrupt row",
            value=counters.quarantines,
        ),
        CounterMetricFamily(
            "meridian_store_refills_total",
            "quarantined documents refilled from a peer",
            value=counters.refills,
        ),
        CounterMetricFamily(
            "meridian_store_writes_refused_total",
            "local writes to quarantined documents",
            value=counters.writes_refused,
        ),
    ]


def service_families(
    *,
    merges: Mapping[str, int],
    connections: int,
    game_statuses: Iterable[str],
    limited: Mapping[str, int] | None = None,
    failed_logins: int = 0,
) -> list[Metric]:
    """Automatic merges by kind, open player websockets, games by status, requests refused or
    slowed by a rate limit (node.topics.limits) and failed logins."""
    merged = CounterMetricFamily(
        "meridian_merges_total", "automatic merges, by kind", labels=["kind"]
    )
    for kind in MERGE_KINDS:
        merged.add_metric([kind], merges.get(kind, 0))
    sockets = GaugeMetricFamily(
        "meridian_player_connections", "player websockets open", value=connections
    )
    games = GaugeMetricFamily(
        "meridian_games", "games known to this node, by status", labels=["status"]
    )
    statuses: dict[str, int] = {}
    for status in game_statuses:
        statuses[status] = statuses.get(status, 0) + 1
    for status, count in sorted(statuses.items()):
        games.add_metric([status], count)
    refused = CounterMetricFamily(
        "meridian_rate_limited_total",
        "player requests refused or slowed, by limit",
        labels=["limit"],
    )
    for limit, count in sorted((limited or {}).items()):
        refused.add_metric([limit], count)
    failed = CounterMetricFamily(
        "meridian_failed_logins_total",
        "logins refused: wrong name or password",
        value=failed_logins,
    )
    return [merged, sockets, games, refused, failed]


def add_summary(
    family: SummaryMetricFamily,
    labels: dict[str, str],
    recent: Iterable[float],
    *,
    count: int,
    total: float,
) -> None:
    """Quantiles over the recent samples, then ``_count`` and ``_sum`` over all of them."""
    kept = list(recent)
    for fraction in QUANTILES:
        value = percentile(kept, fraction)
        if value is not None:
            family.add_sample(family.name, {**labels, "quantile": str(fraction)}, value)
    family.add_sample(family.name + "_count", labels, count)
    family.add_sample(family.name + "_sum", labels, total)
