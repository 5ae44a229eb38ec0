"""The node launcher (node/launcher.py): forked nodes behave as exec'd ones to their owner."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from meridian.node.config import load_config
from meridian.node.launcher import FORK_ENV, LaunchedProcess, Launcher
from meridian.node.localcluster import (
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)

pytestmark = pytest.mark.integration


def _forking_env() -> dict[str, str]:
    return {**cluster_env(), FORK_ENV: "1"}


def test_forked_nodes_form_a_mesh_in_sessions_of_their_own_and_report_each_exit(
    tmp_path: Path,
) -> None:
    env = _forking_env()
    configs = [load_config(path, env) for path in write_configs(tmp_path, ["eu", "us"])]
    nodes = [start_node(config, env) for config in configs]
    try:
        assert all(isinstance(node.process, LaunchedProcess) for node in nodes)
        assert wait_for_mesh(nodes), "the forked nodes did not form a mesh"
        for node in nodes:
            assert os.getsid(node.process.pid) == node.process.pid  # as start_new_session
        nodes[0].process.kill()
        assert nodes[0].process.wait(timeout=10) == -signal.SIGKILL
        assert nodes[1].process.poll() is None
        nodes[1].process.send_signal(signal.SIGINT)  # stops at once, exit 0
        assert nodes[1].process.wait(timeout=20) == 0
        assert "listening" in nodes[1].log_path.read_text()
    finally:
        stop_nodes(nodes)


def test_a_forked_node_with_a_bad_config_exits_2_with_the_reason_in_its_log(
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "bad.toml"
    config_path.write_text('node_id = "eu"\n')
    log = tmp_path / "bad.log"
    process = Launcher().start(["node", "--config", str(config_path)], _forking_env(), log)
    assert process.wait(timeout=20) == 2
    assert "config error" in log.read_text()


def test_wait_times_out_as_popen_does(tmp_path: Path) -> None:
    env = _forking_env()
    config = load_config(write_configs(tmp_path, ["eu"])[0], env)
    node = start_node(config, env)
    try:
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            node.process.wait(timeout=0.2)
        assert time.monotonic() - started < 5
    finally:
        stop_nodes([node])
    assert node.process.returncode == 0  # SIGTERM with no players drains at once
