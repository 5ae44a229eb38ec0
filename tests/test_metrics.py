"""/metrics text: exact large counters, summaries with _count and _sum, the names dashboards use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from meridian.node.metrics import (
    exposition,
    node_registry,
    peer_families,
    replication_families,
    service_families,
    store_families,
)
from meridian.node.observer import ClusterLoad
from meridian.node.rebalancer import RebalanceCounters, rebalance_families
from meridian.sync.engine import PeerState
from meridian.sync.replicator import ReplicatorCounters
from tests.sync_harness import MemoryCluster


class Families:
    """A collector over fixed families, to render them as a node's registry would."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(families: Iterable[Metric]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))
    return exposition(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text as Prometheus parses it, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_over_ten_million_keep_every_digit() -> None:
    peer = PeerState(node_id="us-1", region="us")
    peer.bytes_sent = 123_456_789
    peer.bytes_received = 2**53 - 1  # the largest integer a float sample holds exactly
    text = render(peer_families([peer], up={"us-1"}))
    labels = frozenset({("peer", "us-1"), ("region", "us")})
    parsed = samples(text)
    assert parsed["meridian_sync_bytes_sent_total", labels] == 123_456_789
    assert parsed["meridian_sync_bytes_received_total", labels] == 2**53 - 1
    assert 'meridian_sync_bytes_sent_total{peer="us-1",region="us"} 1.23456789e+08' in text


def test_replication_lag_summary_has_count_and_sum_over_every_ack() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.full_mesh()
    for n in range(5):
        cluster.put("eu", "test:lag", f"k{n}", n)
        cluster.advance(0.05)
    peer = cluster.engines["eu"].peers["us"]
    assert peer.lag_count >= 5
    text = render(peer_families([peer], up=set(cluster.engines["eu"].up_peers())))
    parsed = samples(text)
    labels = frozenset({("peer", "us"), ("region", "us")})
    assert parsed["meridian_sync_replication_lag_seconds_count", labels] == peer.lag_count
    assert parsed["meridian_sync_replication_lag_seconds_sum", labels] == peer.lag_seconds_total
    assert parsed["meridian_peer_up", labels] == 1
    median = parsed["meridian_sync_replication_lag_seconds", labels | {("quantile", "0.5")}]
    assert 0 <= median <= max(peer.lag_samples)


def test_store_summary_counts_commits_beyond_the_samples_kept() -> None:
    text = render(
        store_families(recent_seconds=[0.002, 0.004], commits=7, seconds_total=0.03, failures=1)
    )
    parsed = samples(text)
    assert parsed["meridian_store_commit_latency_seconds_count", frozenset()] == 7
    assert parsed["meridian_store_commit_latency_seconds_sum", frozenset()] == 0.03
    assert parsed["meridian_store_commits_total", frozenset()] == 7
    assert parsed["meridian_store_failures_total", frozenset()] == 1


def test_every_metric_name_and_label_is_kept() -> None:
    counters = ReplicatorCounters()
    counters.changes_local, counters.changes_remote, counters.links_refused = 3, 4, 2
    text = render(
        [
            *peer_families([PeerState(node_id="ap-1", region="ap")], up=set()),
            *replication_families(counters, documents=9),
            *store_families(recent_seconds=[], commits=0, seconds_total=0.0, failures=0),
            *service_families(
                merges={"double_login": 2},
                connections=5,
                game_statuses=["active", "active", "finished"],
                limited={"login": 3},
                failed_logins=4,
            ),
        ]
    )
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if "# TYPE" in line}
    assert types == {
        "meridian_peer_up": "gauge",
        "meridian_sync_updates_sent_total": "counter",
        "meridian_sync_updates_received_total": "counter",
        "meridian_sync_bytes_sent_total": "counter",
        "meridian_sync_bytes_received_total": "counter",
        "meridian_sync_replication_lag_seconds": "summary",
        "meridian_changes_total": "counter",
        "meridian_documents": "gauge",
        "meridian_links_total": "counter",
        "meridian_store_commit_latency_seconds": "summary",
        "meridian_store_commits_total": "counter",
        "meridian_store_failures_total": "counter",
        "meridian_merges_total": "counter",
        "meridian_player_connections": "gauge",
        "meridian_games": "gauge",
        "meridian_rate_limited_total": "counter",
        "meridian_failed_logins_total": "counter",
    }
    parsed = samples(text)
    assert parsed["meridian_peer_up", frozenset({("peer", "ap-1"), ("region", "ap")})] == 0
    assert parsed["meridian_changes_total", frozenset({("origin", "peer")})] == 4
    assert parsed["meridian_links_total", frozenset({("outcome", "refused")})] == 2
    assert parsed["meridian_documents", frozenset()] == 9
    assert parsed["meridian_merges_total", frozenset({("kind", "double_login")})] == 2
    assert parsed["meridian_merges_total", frozenset({("kind", "two_games")})] == 0
    assert parsed["meridian_games", frozenset({("status", "active")})] == 2
    assert parsed["meridian_player_connections", frozenset()] == 5
    assert parsed["meridian_rate_limited_total", frozenset({("limit", "login")})] == 3
    assert parsed["meridian_failed_logins_total", frozenset()] == 4


@dataclass
class Engine:
    peers: dict[str, PeerState]
    docs: list[str]
    refusals: dict[tuple[str, str], int]

    def up_peers(self) -> list[str]:
        return ["us-1"]


@dataclass
class Replicator:
    counters: ReplicatorCounters
    quarantined: dict[str, str]


@dataclass
class Store:
    commit_latency_seconds: list[float]
    total_commits: int
    total_commit_seconds: float
    durable_wait_seconds: list[float]
    total_durable_waits: int
    total_durable_wait_seconds: float


class Observer:
    def view(self) -> ClusterLoad:
        return ClusterLoad(nodes=[], regions=[])


class Rebalancer:
    def __init__(self) -> None:
        self.counters = RebalanceCounters(rounds=7, taken_back=2)

    def metric_families(self, view: ClusterLoad) -> list[Metric]:
        return rebalance_families(view, self.counters)


@dataclass
class Counts:
    counts: dict[str, int]
    failed_logins: int = 0


@dataclass
class Game:
    status: str


@dataclass
class Service:
    merges: Counts
    limits: Counts
    conns: list[str] = field(default_factory=list)
    games: dict[str, Game] = field(default_factory=dict)


@dataclass
class Sources:
    """Plain objects with only the readings `node.metrics.MetricSources` names."""

    engine: Engine
    replicator: Replicator
    store: Store
    observer: Observer
    service: Service
    rebalancer: Rebalancer


def test_a_node_registry_reads_only_the_parts_it_is_given() -> None:
    peer = PeerState(node_id="us-1", region="us")
    peer.updates_sent = 12_345_678
    counters = ReplicatorCounters()
    counters.quarantines, counters.store_failures = 2, 1
    sources = Sources(
        Engine({"us-1": peer}, docs=["a", "b", "c"], refusals={("us-1", "too_large"): 4}),
        Replicator(counters, quarantined={"a": "checksum"}),
        Store([0.001], 40_000_001, 12.5, [0.002, 0.004, 0.006], 3, 0.012),
        Observer(),
        Service(
            Counts({"name": 1}),
            Counts({"login": 6}, failed_logins=3),
            conns=["c1", "c2"],
            games={"g1": Game("live"), "g2": Game("finished"), "g3": Game("live")},
        ),
        Rebalancer(),
    )
    parsed = samples(exposition(node_registry(sources)).decode())
    peer_labels = frozenset({("peer", "us-1"), ("region", "us")})
    assert parsed["meridian_sync_updates_sent_total", peer_labels] == 12_345_678
    assert parsed["meridian_peer_up", peer_labels] == 1
    assert parsed["meridian_documents", frozenset()] == 3
    rule = frozenset({("peer", "us-1"), ("rule", "too_large")})
    assert parsed["meridian_sync_refused_total", rule] == 4
    assert parsed["meridian_store_commits_total", frozenset()] == 40_000_001
    assert parsed["meridian_store_durable_wait_seconds_count", frozenset()] == 3
    median = frozenset({("quantile", "0.5")})
    assert parsed["meridian_store_durable_wait_seconds", median] == pytest.approx(0.004)
    assert parsed["meridian_store_failures_total", frozenset()] == 1
    assert parsed["meridian_store_quarantined_documents", frozenset()] == 1
    assert parsed["meridian_store_quarantines_total", frozenset()] == 2
    assert parsed["meridian_merges_total", frozenset({("kind", "name")})] == 1
    assert parsed["meridian_player_connections", frozenset()] == 2
    assert parsed["meridian_games", frozenset({("status", "live")})] == 2
    assert parsed["meridian_rate_limited_total", frozenset({("limit", "login")})] == 6
    assert parsed["meridian_failed_logins_total", frozenset()] == 3
    assert parsed["meridian_rebalance_rounds_total", frozenset()] == 7
