"""The web client's choice among a region's node processes (node/static/js/net.js): which
process a person logs in at, and where a dropped connection resumes. The module's pure functions
run in Node.js (the JS type check needs it too); skipped, saying so, without it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

NET_JS = Path(__file__).resolve().parent.parent / "node" / "static" / "js" / "net.js"
NODE = shutil.which("node")

PROCESSES = [
    {"region": "eu", "node": "eu-1", "url": "http://e1", "rtt": 1.0, "players": 40},
    {"region": "eu", "node": "eu-2", "url": "http://e2", "rtt": 1.2, "players": 10},
    {"region": "eu", "node": "eu-3", "url": "http://e3", "rtt": None, "players": 0},
    {"region": "us", "node": "us-1", "url": "http://u1", "rtt": 80.0, "players": 0},
    {"region": "ap", "node": "ap-1", "url": "http://a1", "rtt": 150.0, "players": None},
]


def run(expression: str) -> Any:
    """The JSON value of `expression`, evaluated with net.js's exports and PROCESSES in scope."""
    if NODE is None:
        pytest.skip("Node.js is not installed (it runs the client's functions)")
    script = (
        f"const net = await import({json.dumps(NET_JS.as_uri())});\n"
        f"const processes = {json.dumps(PROCESSES)};\n"
        f"console.log(JSON.stringify({expression}));\n"
    )
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_region_has_the_round_trip_of_its_fastest_process_that_answers() -> None:
    regions = run("net.regionsOf(processes).map((r) => [r.region, r.rtt, r.processes.length])")
    assert regions == [["eu", 1.0, 3], ["us", 80.0, 1], ["ap", 150.0, 1]]


def test_a_person_logs_in_at_the_least_loaded_process_of_the_region_that_answers() -> None:
    picks = run(
        "[0, 0.5, 0.99].map((x) => net.pickProcess(processes, 'eu', { random: () => x }).node)"
    )
    assert picks == ["eu-2", "eu-2", "eu-2"]  # eu-3 has fewer players but does not answer
    assert run("net.pickProcess(processes, 'ap').node") == "ap-1"  # unknown load counts as none
    assert run("net.pickProcess(processes, 'mars')") is None


def test_processes_within_the_slack_of_the_least_loaded_share_the_newcomers() -> None:
    even = (  # every eu process answers; eu-2 has 3 more players than the others
        "processes.map((p) => p.region !== 'eu' ? p"
        " : { ...p, rtt: 1, players: 100 + (p.node === 'eu-2' ? 3 : 0) })"
    )
    picks = run(
        f"[0, 0.4, 0.7, 0.99].map((x) => net.pickProcess({even}, 'eu', {{ random: () => x }}).node)"
    )
    assert set(picks) == {"eu-1", "eu-2", "eu-3"}


def test_a_dropped_connection_resumes_on_another_process_of_its_region_first() -> None:
    order = run("net.failoverOrder(processes, processes[1]).map((p) => p.node)")
    assert order == ["eu-1", "us-1", "ap-1", "eu-2"]  # eu-3 does not answer; the lost one last
    later = run(
        "net.failoverOrder(processes, processes[1], { lostLast: false }).map((p) => p.node)"
    )
    assert later == ["eu-1", "eu-2", "us-1", "ap-1"]
    alone = run("net.failoverOrder(processes, processes[3]).map((p) => p.node)")
    assert alone == ["eu-1", "eu-2", "ap-1", "us-1"]  # no other process of us: nearest first
