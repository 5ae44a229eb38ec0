"""The simulator end to end: shipped scenarios pass, runs replay exactly, checkers catch bugs.

Each run takes a fraction of a second (tens of virtual seconds on three nodes). The checkers are
shown to fail on purpose: a relay that is switched off, a network that silently loses frames on
an open connection, and a disk lost before its acknowledged writes were replicated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meridian.sim.history import TimelineEvent
from meridian.sim.scenario import SCENARIO_DIR, load_scenario
from meridian.sim.world import RunResult, Simulation
from tests.conftest import SIM_RANDOM_SEED

SCENARIOS = sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))
# One fixed seed per scenario beside the run's random seed: CI keeps a known-good run of each
# scenario, and the random seed explores a new one every run. (Seeds 1 and 2 both ran until
# 2026-12-05: the second cost 17 s of the suite's CPU and found nothing the soak's 200 seeds
# and the mutation suite's 30 do not cover; docs/performance.md.)
FIXED_SEEDS = (1,)
SLOW_SOAK = pytest.mark.skipif(
    os.environ.get("MERIDIAN_SLOW") != "1",
    reason="200-seed soak takes about a minute on 2 cores; set MERIDIAN_SLOW=1 to run it",
)

BASE = """
description = "three regions writing"
[cluster]
regions = ["eu", "us", "ap"]
[network.latency_ms]
eu.us = 40
eu.ap = 110
us.ap = 80
[phases]
faulty_s = 12
quiet_s = 8
[workload]
kind = "kv-writers"
rate_per_node = 10
[checkers.converged]
[checkers.acknowledged-writes]
[checkers.convergence-time]
"""


def run(text: str, tmp_path: Path, seed: int = 1) -> RunResult:
    path = tmp_path / "scenario.toml"
    path.write_text(BASE + text)
    return Simulation(load_scenario(path), seed).run()


def explain(result: RunResult) -> str:
    return "\n".join(
        f"{v.checker}: {v.message}\n  " + "\n  ".join(v.excerpt) for v in result.verdicts
    )


def closed_since(result: RunResult, t: float) -> list[TimelineEvent]:
    """Links that were up and closed from ``t`` on (at start-up, duplicate links are closed)."""
    return [e for e in result.history.timeline if e.kind == "link-closed" and e.t >= t]


def verdict(result: RunResult, checker: str) -> tuple[bool, str, tuple[str, ...]]:
    found = next(v for v in result.verdicts if v.checker == checker)
    return found.ok, found.message, found.excerpt


def test_the_required_scenarios_are_shipped() -> None:
    required = {
        "partition-heal",
        "partial-partition",
        "region-loss-failover",
        "flapping-links",
        "clock-skew",
        "rolling-restart",
        "name-race",
    }
    assert required <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes_on_fixed_seeds(name: str) -> None:
    scenario = load_scenario(SCENARIO_DIR / f"{name}.toml")
    for seed in FIXED_SEEDS:
        result = Simulation(scenario, seed).run()
        assert result.ok, f"{name} seed {seed}:\n{explain(result)}"
        writes = sum(w.acknowledged for w in result.history.writes)
        moves, hellos = (len(result.history.notes_of(k)) for k in ("move", "hello"))
        assert writes > 200 or (moves > 0 and hellos >= 8), "the workloads did next to nothing"
        started = [e for e in result.history.timeline if e.kind == "fault"]
        assert len(started) == len(scenario.faults)


def test_a_push_sent_while_the_run_settles_reaches_its_player_before_the_end() -> None:
    """clock-games seed 346: a clock runs out during the settling (the service's deadline still
    fires), us writes the time-out, and eu pushes it to a watcher in a far region 110 ms away.
    The documents agree again before the settling's last wait for pushes ends; the run must
    still wait for that push, or the watcher's end note shows the ply before (legal-chains)."""
    result = Simulation(load_scenario(SCENARIO_DIR / "clock-games.toml"), 346).run()
    assert result.ok, explain(result)
    late = [e for e in result.history.timeline if e.kind == "diverged" and e.t > 63.0]
    assert late, "no change during the settling: the case this seed was chosen for is gone"
    shown = [n for n in result.history.notes_of("shown") if n["t"] > 63.0]
    assert shown and max(n["t"] for n in shown) < result.history.final_at


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes_on_this_runs_random_seed(name: str) -> None:
    seed = SIM_RANDOM_SEED
    result = Simulation(load_scenario(SCENARIO_DIR / f"{name}.toml"), seed).run()
    assert result.ok, (
        f"{name} seed {seed} (MERIDIAN_SIM_SEED={seed} replays it):\n{explain(result)}"
    )


def test_same_seed_gives_the_same_history_and_different_seeds_do_not() -> None:
    scenario = load_scenario(SCENARIO_DIR / "flapping-links.toml")
    first = Simulation(scenario, 7).run().history.to_jsonl()
    again = Simulation(scenario, 7).run().history.to_jsonl()
    other = Simulation(scenario, 8).run().history.to_jsonl()
    assert first == again
    assert first != other


def test_a_dropped_relay_is_caught_by_the_convergence_checker(tmp_path: Path) -> None:
    # eu and us never reach each other; with anti-entropy pushed out of the run only the relay
    # through ap can carry their changes across.
    partial = """
[sync]
relay = %s
anti_entropy_s = 1000000
[[faults]]
kind = "partial-partition"
at_s = 0
permanent = true
pairs = [["eu", "us"]]
"""
    with_relay = run(partial % "true", tmp_path)
    assert with_relay.ok, explain(with_relay)

    without_relay = run(partial % "false", tmp_path)
    ok, message, excerpt = verdict(without_relay, "converged")
    assert not ok
    assert "differs after heal" in message and "eu " in message and "us " in message
    assert any("MISSING" in line for line in excerpt)
    assert not verdict(without_relay, "convergence-time")[0]


def test_frames_lost_on_an_open_connection_are_caught(tmp_path: Path) -> None:
    # TCP never loses bytes on a connection that stays up; a "broken" network does, and with
    # anti-entropy pushed out of the run nothing repairs the gap.
    broken = """
[sync]
anti_entropy_s = 1000000
[[faults]]
kind = "broken"
at_s = 2
pairs = [["eu", "us"]]
drop = 0.2
"""
    result = run(broken, tmp_path)
    ok, message, excerpt = verdict(result, "converged")
    assert not ok
    assert "differs after heal" in message
    assert any("broken network" in line for line in excerpt)
    # The peer acknowledged frames after the lost one (acks are cumulative), so the writer was
    # told its writes were replicated: the acknowledged-writes checker names one that is not.
    ok, message, _ = verdict(result, "acknowledged-writes")
    assert not ok and "acknowledged writes lost" in message


LOSE_A_DISK = """
[sync]
coalesce_ms = 500
[replication]
ack_regions = %d
[[faults]]
kind = "crash"
node = "eu"
at_s = 5
keep_disk = false
silent = true
"""


def test_acknowledged_writes_die_with_a_lost_disk_unless_another_region_held_them(
    tmp_path: Path,
) -> None:
    # A 500 ms coalescing window leaves writes acknowledged (durable on eu) but not yet sent:
    # with ack_regions = 0 that is the documented window, measured and reported, not a failure.
    local_only = run(LOSE_A_DISK % 0 + "\n", tmp_path)
    ok, message, _ = verdict(local_only, "acknowledged-writes")
    figures = next(v.figures for v in local_only.verdicts if v.checker == "acknowledged-writes")
    assert ok and "the ack_regions = 0 window" in message
    assert figures["lost_in_window"] > 0 and 0 < figures["window_s"] < 0.6
    assert figures["lost"] == 0

    replicated = run(LOSE_A_DISK % 1, tmp_path)
    assert replicated.ok, explain(replicated)
    figures = next(v.figures for v in replicated.verdicts if v.checker == "acknowledged-writes")
    assert figures["lost_in_window"] == 0 and figures["lost"] == 0


def test_a_restarted_process_writes_under_fresh_client_ids(tmp_path: Path) -> None:
    result = run(
        '[[faults]]\nkind = "crash"\nnode = "us"\nat_s = 3\nuntil_s = 5\nkeep_disk = true\n',
        tmp_path,
    )
    assert result.ok, explain(result)
    before = {
        w.item[0] for w in result.history.writes if w.node == "us" and w.incarnation == 1 and w.item
    }
    after = {
        w.item[0] for w in result.history.writes if w.node == "us" and w.incarnation == 2 and w.item
    }
    assert before and after and not before & after


def test_a_blip_shorter_than_the_idle_timeout_keeps_links_up(tmp_path: Path) -> None:
    # TCP holds the bytes during the blip and delivers them afterwards, in order.
    result = run(
        '[[faults]]\nkind = "partition"\nat_s = 3\nuntil_s = 5\ngroups = [["eu"], ["us", "ap"]]\n',
        tmp_path,
    )
    assert result.ok, explain(result)
    assert not closed_since(result, 3.0)


def test_a_one_way_partition_is_noticed_by_the_receivers_idle_timeout(tmp_path: Path) -> None:
    result = run(
        '[[faults]]\nkind = "one-way"\nat_s = 3\nuntil_s = 10\nfrom = "ap"\nto = "eu"\n', tmp_path
    )
    assert result.ok, explain(result)
    first = closed_since(result, 3.0)[0]
    assert (first.node, first.peer) == ("eu", "ap") and "no frame from peer" in first.detail
    assert 8.0 <= first.t <= 9.5  # peer_timeout_s (5 s) after the last frame got through


def test_peers_of_a_vanished_machine_time_out_but_a_killed_process_is_reset(
    tmp_path: Path,
) -> None:
    crash = '[[faults]]\nkind = "crash"\nnode = "ap"\nat_s = 3\nuntil_s = 9\nsilent = %s\n'
    machine_gone = run(crash % "true", tmp_path)
    reasons = {e.detail for e in closed_since(machine_gone, 3.0) if e.node != "ap"}
    assert reasons and all("no frame from peer" in reason for reason in reasons), reasons

    process_killed = run(crash % "false", tmp_path)
    closed = [e for e in closed_since(process_killed, 3.0) if e.t < 9.0 and e.node != "ap"]
    assert closed and all(e.detail == "connection reset by peer" and e.t < 3.2 for e in closed), (
        closed
    )


@pytest.mark.slow
@pytest.mark.integration
@SLOW_SOAK
def test_two_hundred_seeds_of_partition_heal_pass_within_five_minutes() -> None:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "meridian.sim.cli", "run", "partition-heal", "--seeds", "1..200"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert "200/200 seeds passed" in completed.stdout
    assert time.perf_counter() - started < 300


def test_an_update_held_pending_is_not_acknowledged() -> None:
    """With ack_regions = 1 no write is acknowledged while the other region holds it only as a
    pending update (once a finding on seed 99: missing content is now pulled, not applied)."""
    path = SCENARIO_DIR / "rolling-restart.toml"
    assert "pending_fails" not in path.read_text()
    ok, message, _ = verdict(Simulation(load_scenario(path), 99).run(), "ack-rule")
    assert ok, message
