"""Real node processes on 127.0.0.1: convergence, SIGKILL and restart, refusals, HTTP surface."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from meridian.node.config import load_config
from meridian.node.localcluster import (
    TOKEN_ENV,
    cluster_env,
    kill_node,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from tests.conftest import REGIONS, Cluster

pytestmark = pytest.mark.integration


def test_writes_on_each_node_are_read_back_on_the_other_two(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    for index, region in enumerate(REGIONS):
        cluster.put(index, f"from-{region}", f"hello from {region}")
    for index in range(3):
        for region in REGIONS:
            assert cluster.eventually_get(index, f"from-{region}") == f"hello from {region}"
    assert cluster.get(0, "never-written").returncode == 1


def test_sigkilled_node_restarts_from_its_store_and_catches_up(cluster: Cluster) -> None:
    cluster.put(1, "before-crash", "1")
    assert cluster.eventually_get(1, "before-crash") == "1"
    kill_node(cluster.nodes[1])
    cluster.put(0, "while-down-eu", "2")
    cluster.put(2, "while-down-ap", "3")
    cluster.nodes[1] = start_node(cluster.configs[1], cluster.env)
    assert wait_for_mesh(cluster.nodes)
    assert cluster.eventually_get(1, "before-crash") == "1"
    assert cluster.eventually_get(1, "while-down-eu") == "2"
    assert cluster.eventually_get(1, "while-down-ap") == "3"


def test_node_with_wrong_secret_is_refused_and_gets_nothing(
    shared_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = shared_cluster
    cluster.put(0, "private", "cluster data")
    intruder_dir = tmp_path / "intruder"
    path = write_configs(intruder_dir, ["xx"])[0]
    text = path.read_text().replace("peers = []", f'peers = ["{cluster.url(0)}"]')
    path.write_text(text)
    env = dict(cluster.env, MERIDIAN_CLUSTER_SECRET="a-completely-different-secret")
    intruder = start_node(load_config(path, env), env)
    try:
        deadline = time.monotonic() + 15  # the intruder's start is slow on a loaded machine
        while "failed authentication" not in cluster.nodes[0].log_path.read_text():
            assert time.monotonic() < deadline, "eu logged no refused authentication"
            time.sleep(0.1)
        intruder_url = load_config(path, env).public_url
        health = json.loads(urllib.request.urlopen(f"{intruder_url}/healthz").read())
        assert health["peers"] == []
        request = urllib.request.Request(f"{intruder_url}/api/cluster")
        request.add_header("Authorization", f"Bearer {env[TOKEN_ENV]}")
        documents = [
            d["id"] for d in json.loads(urllib.request.urlopen(request).read())["documents"]
        ]
        assert documents == ["presence:xx-1"]  # only its own; nothing of the cluster's
    finally:
        stop_nodes([intruder])


def test_http_surface(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    base = cluster.url(0)
    health = json.loads(urllib.request.urlopen(f"{base}/healthz").read())
    assert health["node"] == "eu-1" and sorted(health["peers"]) == ["ap-1", "us-1"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/cluster")
    assert refused.value.code == 401
    refused.value.close()  # the error holds the response and its socket
    cluster.put(0, "k", "v")
    request = urllib.request.Request(f"{base}/api/cluster")
    request.add_header("Authorization", f"Bearer {cluster.env[TOKEN_ENV]}")
    view = json.loads(urllib.request.urlopen(request).read())
    assert {p["node"] for p in view["peers"] if p["link"] == "up"} == {"us-1", "ap-1"}
    shared = [d["id"] for d in view["documents"] if not d["id"].startswith("presence:")]
    assert shared == ["test:it"]
    with urllib.request.urlopen(f"{base}/metrics") as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        metrics = answer.read().decode()
    assert 'meridian_peer_up{peer="us-1",region="us"} 1.0\n' in metrics
    assert "\nmeridian_store_commit_latency_seconds_count " in metrics
    assert "\nmeridian_store_commit_latency_seconds_sum " in metrics
    assert "\nmeridian_store_durable_wait_seconds_count " in metrics


def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    path = write_configs(tmp_path, ["eu"])[0]
    path.write_text(path.read_text() + "\n[sync]\ncoalesce_ms = -3\n")
    result = subprocess.run(
        [sys.executable, "-m", "meridian", "node", "--config", str(path)],
        env=cluster_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sync.coalesce_ms" in lines[0]


def test_two_nodes_without_seeds_link_up_through_zeroconf() -> None:
    from tests.test_discovery import SETUP_LOOPBACK, namespace_unavailable

    reason = namespace_unavailable()
    if reason is not None:
        pytest.skip(reason)
    repo = Path(__file__).resolve().parents[1]
    command = f"{SETUP_LOOPBACK} && exec {sys.executable} -m tests.helpers.zeroconf_cluster"
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    peers = json.loads(result.stdout.strip().splitlines()[-1])["peers"]
    assert peers == {"eu-1": ["us-1"], "us-1": ["eu-1"]}
