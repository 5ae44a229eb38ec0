"""Scenario files: a mistake is reported as one line naming the file and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from meridian.sim.params import ConfigError
from meridian.sim.scenario import SCENARIO_DIR, find_scenario, load_scenario

VALID = """
description = "ok"
[cluster]
regions = ["eu", "us", "ap"]
[network.latency_ms]
eu.us = 40
eu.ap = 110
us.ap = 80
[phases]
faulty_s = 10
quiet_s = 5
[workload]
kind = "kv-writers"
[checkers.converged]
"""


def load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    load_scenario(path)


def test_a_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(VALID)
    scenario = load_scenario(path)
    assert scenario.node_ids == ["eu", "us", "ap"]
    assert scenario.paths["ap", "eu"].latency_s == pytest.approx(0.110)
    assert scenario.end_s == 15


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (('description = "ok"\n', 'partitions = 1\n'), "partitions", "unknown key"),
        (("", "[checkers.convergence-time]\nmax = 3\n"), "checkers.convergence-time.max",
         "expected one of: max_s"),
        (("us.ap = 80\n", ""), "network.latency_ms.us.ap", "missing one-way latency"),
        (("us.ap = 80\n", "us.ap = 80\nap.us = 80\n"), "network.latency_ms.ap.us", "both ways"),
        (("[phases]\n", "[sync]\npeer_timeout_s = 0.5\n[phases]\n"), "sync.peer_timeout_s",
         "greater than sync.heartbeat_s"),
        (('kind = "kv-writers"\n', 'kind = "kv-writers"\ndelete_fraction = 2\n'),
         "workload.delete_fraction", "probability"),
        (('kind = "kv-writers"\n', 'kind = "bots"\n'), "workload.kind", "'kv-writers'"),
        (("[checkers.converged]\n", "[checkers.linearizable]\n"), "checkers.linearizable",
         "unknown key"),
        (("", '[[faults]]\nkind = "crash"\nnode = "mars"\nat_s = 1\n'), "faults[0].node",
         "got 'mars'"),
        (("", '[[faults]]\nkind = "crash"\nnode = "eu"\nat_s = 12\n'), "faults[0].at_s",
         "before the heal"),
        (("", '[[faults]]\nkind = "partition"\nat_s = 1\ngroups = [["eu"], ["us"]]\n'),
         "faults[0].groups", "exactly one group"),
        (("", '[[faults]]\nkind = "clock-jump"\nnode = "eu"\nat_s = 1\nuntil_s = 2\nseconds = 5\n'),
         "faults[0].until_s", "instantaneous"),
        (("", '[[faults]]\nkind = "flap"\nat_s = 1\npairs = [["eu"]]\n'), "faults[0].pairs[0]",
         "pair of node names"),
        (("", '[[faults]]\nkind = "meteor"\nat_s = 1\n'), "faults[0].kind", "expected one of"),
        (("", "[replication]\nack_regions = 3\n"), "replication.ack_regions", "at most 2"),
        (('[workload]\nkind = "kv-writers"\n', '[[workload]]\nkind = "bots"\n'),
         "workload[0].kind", "'game-bots'"),
        (("[workload]\nkind = \"kv-writers\"\n",
          '[[workload]]\nkind = "kv-writers"\n[[workload]]\nkind = "game-bots"\nplyers = 3\n'),
         "workload[1].plyers", "unknown key"),
        (('kind = "kv-writers"\n', 'kind = "game-bots"\nthink_s = [3, 1]\n'),
         "workload.think_s", "min <= max"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key(
    tmp_path: Path, change: tuple[str, str], key: str, words: str
) -> None:
    old, new = change
    text = VALID + new if not old else VALID.replace(old, new, 1)
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'bad.toml'}: {key}: "), message
    assert words in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "nope.toml")


def test_scenarios_are_found_by_name_or_path() -> None:
    assert find_scenario("partition-heal") == SCENARIO_DIR / "partition-heal.toml"
    assert find_scenario("configs/scenarios/x.toml") == Path("configs/scenarios/x.toml")
