"""``meridian sim``: exit codes, the failure report and replay command, byte-identical reports."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meridian.sim.cli import add_sim_parser, main

REPORT_FILES = ("report.json", "history.jsonl", "report.html")
NO_RELAY = """
description = "eu-/-us from the start, no relay, no periodic anti-entropy"
[cluster]
regions = ["eu", "us", "ap"]
[network.latency_ms]
eu.us = 40
eu.ap = 110
us.ap = 80
[sync]
relay = false
anti_entropy_s = 1000000
[phases]
faulty_s = 8
quiet_s = 4
[workload]
kind = "kv-writers"
[[faults]]
kind = "partial-partition"
at_s = 0
permanent = true
pairs = [["eu", "us"]]
[checkers.converged]
"""


def sim(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "meridian.sim.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.mark.integration
def test_the_same_seed_gives_byte_identical_reports(tmp_path: Path) -> None:
    # Two processes with different string hashing: no set or dict order may leak into a run.
    first = sim(
        "run", "partition-heal", "--seed", "4", "--report", str(tmp_path / "a"), hash_seed="1"
    )
    second = sim(
        "run", "partition-heal", "--seed", "4", "--report", str(tmp_path / "b"), hash_seed="2"
    )
    assert first.returncode == second.returncode == 0, first.stdout + first.stderr
    for name in REPORT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "1/1 seeds passed" in first.stdout
    for column in ("seed", "virtual s", "events", "converge s", "lag p50", "lag p99", "verdicts"):
        assert column in first.stdout


def test_the_report_has_the_figures_and_a_self_contained_page(tmp_path: Path) -> None:
    assert main(["run", "region-loss-failover", "--seed", "2", "--report", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert {v["checker"] for v in report["verdicts"]} >= {"converged", "acknowledged-writes"}
    assert set(report["lag_s"]["links"]) == {
        "eu->us",
        "eu->ap",
        "us->eu",
        "us->ap",
        "ap->eu",
        "ap->us",
    }
    assert report["writes"]["lost_acknowledged"] == 0
    assert report["convergence"]["seconds_after_heal"] is not None
    assert [e["kind"] for e in report["timeline"]][:2] == ["fault", "crash"]
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 2
    assert "<script" not in page and "src=" not in page and "<link" not in page


def test_a_failure_names_the_seed_the_violation_and_how_to_replay_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "no-relay.toml"
    scenario.write_text(NO_RELAY)
    assert main(["run", str(scenario), "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: converged" in out
    assert "seed 3 FAILED converged: test:" in out and "differs after heal" in out
    replay = f"replay: meridian sim run {scenario} --seed 3 --report sim-report-3"
    assert replay in out
    failure = out[out.index("seed 3 FAILED") :]

    # The printed command replays the same failure.
    assert main(replay.split()[3:-2]) == 1
    again = capsys.readouterr().out
    assert again[again.index("seed 3 FAILED") :] == failure


def test_a_bad_scenario_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(NO_RELAY.replace("at_s = 0", "at_s = 99"))
    assert main(["run", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "faults[0].at_s: must be before the heal" in err


@pytest.mark.integration
def test_a_range_of_seeds_runs_on_worker_processes(tmp_path: Path) -> None:
    completed = sim(
        "run", "rolling-restart", "--seeds", "1..3", "--jobs", "2", "--report", str(tmp_path)
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3/3 seeds passed" in completed.stdout
    for seed in (1, 2, 3):
        assert json.loads((tmp_path / f"seed-{seed}" / "report.json").read_text())["seed"] == seed


def test_the_parser_plugs_into_a_parent_command() -> None:
    parser = argparse.ArgumentParser(prog="meridian")
    add_sim_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sim", "run", "partition-heal", "--seeds", "1..5"])
    assert args.seeds == [1, 2, 3, 4, 5] and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["sim", "run", "partition-heal", "--seeds", "5..1"])
