"""``meridian demo --processes-per-region N``, run as a user would: a subprocess on free ports."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meridian.node.config import load_config
from meridian.node.localcluster import cluster_env, fetch_health, write_configs
from meridian.node.region_processes import PORT_STEP
from tests.test_demo import _wait_for_line, meridian_demo, running_demo

pytestmark = pytest.mark.integration

REGIONS = ["eu", "us"]


def test_two_processes_per_region_play_bot_games_and_every_log_agrees(tmp_path: Path) -> None:
    write_configs(tmp_path, REGIONS)
    result = meridian_demo(
        *("--processes-per-region", "2", "--bots", "4", "--bots-for-people", "0"),
        *("--games", "1", "--exit-when-done", "--fresh", "--config-dir", str(tmp_path)),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = [line.split() for line in result.stdout.splitlines() if "http://127.0.0.1:" in line]
    nodes = [row[:2] for row in table if len(row) == 4]
    assert nodes == [["eu", "eu-1"], ["eu", "eu-2"], ["us", "us-1"], ["us", "us-2"]], table
    # bot i plays at process i (eu-1, eu-2, us-1, us-2): each pair is split over one region's
    # two processes
    assert result.stdout.count("started game") == 4
    assert "every region's game log holds the same 2 bot games" in result.stdout
    assert (tmp_path / "data" / "eu-2").is_dir() and (tmp_path / "keys" / "us-2.key").exists()


def test_one_process_of_a_region_is_killed_and_started_by_its_node_id(tmp_path: Path) -> None:
    paths = write_configs(tmp_path, REGIONS)
    eu = load_config(paths[0], cluster_env())
    eu_2 = f"http://127.0.0.1:{eu.listen_port + PORT_STEP}"
    folder = ("--config-dir", str(tmp_path))
    quiet = ("--bots", "0", "--bots-for-people", "0", "--restart-after", "0")
    with running_demo("--processes-per-region", "2", *quiet, *folder) as demo:
        _wait_for_line(demo, "Ctrl-C stops the cluster", timeout=60)
        killed = meridian_demo("kill", "eu-2", *folder, timeout=30)
        assert killed.returncode == 0, killed.stderr
        assert "killed eu-2 (region eu)" in killed.stdout
        _wait_for_line(demo, "eu-2 (region eu) is DOWN", timeout=10)
        assert fetch_health(eu_2) is None and fetch_health(eu.public_url) is not None
        status = meridian_demo("status", *folder, timeout=30)
        assert status.stdout.count(" up ") == 3 and " DOWN " in status.stdout, status.stdout
        started = meridian_demo("start", "eu", *folder, timeout=30)  # the region: its down ones
        assert started.returncode == 0, started.stderr
        _wait_for_line(demo, "eu-2 (region eu) restarted (on request)", timeout=10)
        deadline = time.monotonic() + 30
        while (health := fetch_health(eu_2)) is None or len(health["peers"]) < 3:
            assert time.monotonic() < deadline, "eu-2 did not rejoin the mesh"
            time.sleep(0.2)
