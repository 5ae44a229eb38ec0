"""``meridian demo`` with bots, run as a user would: a subprocess on free ports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node.localcluster import write_configs
from tests.conftest import REGIONS

pytestmark = pytest.mark.integration


def meridian_demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "node.cli", "demo", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_demo_bots_finish_their_games_and_the_demo_exits_0_when_every_log_agrees(
    tmp_path: Path,
) -> None:
    write_configs(tmp_path, REGIONS)
    result = meridian_demo(
        *("--bots", "4", "--games", "1", "--exit-when-done", "--fresh"),
        *("--config-dir", str(tmp_path)),
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "player client: http://127.0.0.1:" in result.stdout
    assert "/dashboard" in result.stdout
    assert result.stdout.count("started game") == 4  # two games, seen from both seats
    assert "every region's game log holds the same 2 bot games" in result.stdout


def test_demo_refuses_exit_when_done_without_games(tmp_path: Path) -> None:
    write_configs(tmp_path, REGIONS)
    result = meridian_demo("--exit-when-done", "--config-dir", str(tmp_path), timeout=30)
    assert result.returncode == 2
    assert "--exit-when-done needs --bots N and --games G" in result.stderr
