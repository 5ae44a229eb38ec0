"""The load observer's core (node.observer): rates from counter samples, publication, expiry,
the cluster view; the load entries in presence ``meta`` and the checks peers apply to them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Map

from meridian.crdt_models.kinds import check_changes
from meridian.crdt_models.load import (
    LOAD_TTL_MS,
    LoadEntry,
    read_doc_entry,
    write_entry,
)
from meridian.crdt_models.records import Change, RecordRefused
from meridian.node.metrics import load_families
from meridian.node.observer import LoadCore, Sample, cluster_view, counter_rate
from tests.test_metrics import render, samples

NOW_MS = 1_767_225_600_000


def sample(now: float, **values: Any) -> Sample:
    base = Sample(
        now=now,
        connections=0,
        moves_total=0,
        cpu_seconds=0.0,
        loop_lag_s=0.0,
        store_queue=0,
        replication_backlog=0,
    )
    return replace(base, **values)


def entry(node: str, region: str, at_ms: int = NOW_MS, **values: Any) -> LoadEntry:
    base = LoadEntry(node, region, at_ms, 0, 0.0, 0.0, 0.0, 0, 0)
    return replace(base, **values)


# --- rates from counter samples -------------------------------------------------------------


@given(
    rate=st.floats(min_value=0, max_value=10_000),
    start=st.integers(min_value=0, max_value=10**9),
    gaps=st.lists(st.floats(min_value=0.01, max_value=5), min_size=1, max_size=30),
)
def test_a_counter_growing_steadily_gives_its_rate(
    rate: float, start: int, gaps: list[float]
) -> None:
    times = [0.0]
    for gap in gaps:
        times.append(times[-1] + gap)
    points = [(t, start + rate * t) for t in times]
    # The samples are floats near `start`: each carries up to half an ulp of it, so the rate
    # over the window can be off by about two ulps divided by the window's length.
    rounding = 2 * math.ulp(start + rate * times[-1]) / times[-1]
    assert counter_rate(points) == pytest.approx(rate, rel=1e-6, abs=1e-6 + rounding)


@given(st.lists(st.tuples(st.floats(0.01, 5), st.integers(0, 10**6)), min_size=0, max_size=30))
def test_a_rate_is_never_negative_even_across_counter_restarts(
    steps: list[tuple[float, int]],
) -> None:
    now, points = 0.0, []
    for gap, value in steps:
        now += gap
        points.append((now, float(value)))
    assert counter_rate(points) >= 0


def test_a_restarted_counter_counts_from_zero() -> None:
    # 100 moves in the first second, a restart, then 5 more: 105 moves in 2 s
    assert counter_rate([(0.0, 1000.0), (1.0, 1100.0), (2.0, 5.0)]) == pytest.approx(52.5)


# --- the core: what it publishes and when ---------------------------------------------------


def test_the_core_publishes_at_once_then_every_period_with_rates_over_its_window() -> None:
    core = LoadCore("eu-1", "eu", publish_s=3.0, window_s=10.0)
    first = core.take(sample(0.0, connections=4), NOW_MS)
    assert first is not None and first.connections == 4 and first.moves_per_s == 0
    published = []
    for tick in range(1, 21):  # 10 s at 2 samples/s: 20 moves/s, half a CPU
        now = tick * 0.5
        got = core.take(sample(now, moves_total=20 * now, cpu_seconds=0.5 * now), NOW_MS)
        if got is not None:
            published.append((now, got))
    assert [now for now, _ in published] == [3.0, 6.0, 9.0]
    last = published[-1][1]
    assert last.moves_per_s == pytest.approx(20) and last.cpu_percent == pytest.approx(50)


def test_the_published_lag_is_the_worst_since_the_last_publication() -> None:
    core = LoadCore("eu-1", "eu", publish_s=3.0)
    core.take(sample(0.0), NOW_MS)
    core.take(sample(1.0, loop_lag_s=0.250), NOW_MS)
    published = core.take(sample(3.0, loop_lag_s=0.010), NOW_MS)
    assert published is not None and published.loop_lag_ms == 250.0
    core.take(sample(4.0, loop_lag_s=0.005), NOW_MS)
    again = core.take(sample(6.0, loop_lag_s=0.002), NOW_MS)
    assert again is not None and again.loop_lag_ms == 5.0


def test_old_samples_leave_the_rate_window() -> None:
    core = LoadCore("eu-1", "eu", publish_s=1.0, window_s=4.0)
    for now in range(0, 5):  # 100 moves/s for 4 s, then none
        core.take(sample(float(now), moves_total=100 * now), NOW_MS)
    for now in range(5, 12):
        published = core.take(sample(float(now), moves_total=400), NOW_MS)
    assert published is not None and published.moves_per_s == 0


# --- expiry and the cluster view ------------------------------------------------------------


@given(age_ms=st.integers(min_value=-5_000, max_value=3 * LOAD_TTL_MS))
def test_an_entry_expires_after_the_ttl_like_presence(age_ms: int) -> None:
    one = entry("us-1", "us", at_ms=NOW_MS - age_ms, connections=3)
    view = cluster_view([one], NOW_MS)
    if age_ms <= LOAD_TTL_MS:
        assert view.nodes == [one] and view.stale == []
    else:
        assert view.nodes == [] and view.regions == [] and view.stale == ["us-1"]


def test_the_view_sums_live_processes_per_region() -> None:
    entries = [
        entry("eu-1", "eu", connections=10, moves_per_s=4.5, loop_lag_ms=3, cpu_percent=20),
        entry("eu-2", "eu", connections=30, moves_per_s=1.5, loop_lag_ms=9, store_queue=2),
        entry("us-1", "us", connections=7, replication_backlog=5),
        entry("ap-1", "ap", at_ms=NOW_MS - LOAD_TTL_MS - 1, connections=99),
    ]
    view = cluster_view(entries, NOW_MS)
    assert [e.node for e in view.nodes] == ["eu-1", "eu-2", "us-1"]
    regions = {r.region: r for r in view.regions}
    assert set(regions) == {"eu", "us"} and view.stale == ["ap-1"]
    eu = regions["eu"]
    assert (eu.processes, eu.connections, eu.moves_per_s) == (2, 40, 6.0)
    assert (eu.loop_lag_ms, eu.cpu_percent, eu.store_queue) == (9, 20, 2)
    assert regions["us"].replication_backlog == 5
    body = view.to_json(NOW_MS + 250)
    assert body["nodes"][0]["age_ms"] == 250 and body["regions"][0]["region"] == "eu"


def test_metrics_show_every_live_process_with_node_and_region() -> None:
    view = cluster_view(
        [entry("eu-1", "eu", connections=12, loop_lag_ms=40, cpu_percent=150)], NOW_MS
    )
    parsed = samples(render(load_families(view)))
    labels = frozenset({("node", "eu-1"), ("region", "eu")})
    assert parsed["meridian_load_connections", labels] == 12
    assert parsed["meridian_load_event_loop_lag_seconds", labels] == pytest.approx(0.04)
    assert parsed["meridian_load_cpu_ratio", labels] == pytest.approx(1.5)


# --- the entry in presence meta, and what peers accept --------------------------------------


@given(
    connections=st.integers(0, 10**6),
    moves=st.floats(0, 10**5, allow_nan=False),
    queue=st.integers(0, 2**53 - 1),
)
def test_an_entry_reads_back_as_written(connections: int, moves: float, queue: int) -> None:
    written = entry("eu-1", "eu", connections=connections, moves_per_s=moves, store_queue=queue)
    doc: Doc[Any] = Doc()
    with doc.transaction():
        write_entry(doc, written)
    assert read_doc_entry("eu-1", "eu", doc) == written


def test_a_presence_document_without_load_has_no_entry() -> None:
    assert read_doc_entry("eu-1", "eu", Doc()) is None


def test_a_steady_load_rewrites_only_its_time() -> None:
    doc: Doc[Any] = Doc()
    with doc.transaction():
        write_entry(doc, entry("eu-1", "eu", connections=3))
    changed: list[str] = []
    meta = doc.get("meta", type=Map)
    subscription = meta.observe(lambda event: changed.extend(event.keys))
    with doc.transaction():
        write_entry(doc, entry("eu-1", "eu", at_ms=NOW_MS + 3000, connections=3))
    meta.unobserve(subscription)
    assert changed == ["load.at"]


@dataclass(frozen=True)
class Context:
    now_wall_ms: int = NOW_MS
    max_ahead_ms: int = 60_000
    regions: frozenset[str] = frozenset({"eu"})

    def signer_region(self, signer: str, message: bytes, signature: bytes, wall_ms: int) -> str:
        return "eu"

    def node_region(self, node_id: str) -> str | None:
        return "eu"


def test_peers_accept_the_entries_a_node_writes() -> None:
    values = entry("eu-1", "eu", connections=3, moves_per_s=2.5, cpu_percent=30).values()
    changes = [Change("meta", f"load.{name}", None, value) for name, value in values.items()]
    changes.append(Change("meta", "load.connections", 3, None, deleted=True))
    check_changes("presence:eu-1", changes, Doc(), Context())


@pytest.mark.parametrize(
    "change",
    [
        Change("meta", "load.bogus", None, 1),  # a figure no observer writes
        Change("meta", "load.cpu_percent", None, 10**9),  # beyond its bound
        Change("meta", "load.connections", None, "many"),  # not a number
        Change("meta", "load.loop_lag_ms", None, -1),
    ],
)
def test_peers_refuse_malformed_load_figures(change: Change) -> None:
    with pytest.raises(RecordRefused) as refused:
        check_changes("presence:eu-1", [change], Doc(), Context())
    assert refused.value.rule == "bad_record"
