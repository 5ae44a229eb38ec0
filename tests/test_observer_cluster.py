"""Real node processes: every region's load observer publishes, and every node shows every
region's load in /api/cluster and /metrics within a few seconds (node.observer)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meridian.node.localcluster import TOKEN_ENV
from tests.conftest import REGIONS, Cluster

pytestmark = pytest.mark.integration
SHOWN_WITHIN_S = 8.0  # first publication after 0.5 s, then replication (milliseconds here)


def cluster_view(cluster: Cluster, index: int) -> dict[str, Any]:
    request = urllib.request.Request(f"{cluster.url(index)}/api/cluster")
    request.add_header("Authorization", f"Bearer {cluster.env[TOKEN_ENV]}")
    with urllib.request.urlopen(request) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def load_regions_in_metrics(cluster: Cluster, index: int) -> set[str]:
    with urllib.request.urlopen(f"{cluster.url(index)}/metrics") as answer:
        text = answer.read().decode()
    return {
        sample.labels["region"]
        for family in text_string_to_metric_families(text)
        if family.name == "meridian_load_connections"
        for sample in family.samples
    }


def test_every_node_shows_every_regions_load(cluster: Cluster) -> None:
    started = time.monotonic()
    missing: dict[int, set[str]] = {index: set(REGIONS) for index in range(len(REGIONS))}
    while any(missing.values()) and time.monotonic() - started < SHOWN_WITHIN_S:
        for index in range(len(REGIONS)):
            load = cluster_view(cluster, index)["load"]
            in_view = {region["region"] for region in load["regions"]}
            missing[index] = set(REGIONS) - (in_view & load_regions_in_metrics(cluster, index))
        time.sleep(0.2)
    assert not any(missing.values()), f"regions not shown after {SHOWN_WITHIN_S} s: {missing}"
    load = cluster_view(cluster, 0)["load"]
    nodes = {entry["node"]: entry for entry in load["nodes"]}
    assert set(nodes) == {f"{region}-1" for region in REGIONS}
    for entry in nodes.values():
        assert entry["age_ms"] < 15_000 and entry["cpu_percent"] >= 0
    assert load["stale"] == []
