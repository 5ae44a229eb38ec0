"""Scenario files (``configs/scenarios/*.toml``): load, check, and hold one as plain data.

A scenario names the regions (one node each), the network between them, sync settings, the
workload, a faulty phase with timed faults, the quiet period after the heal, and the checkers.
Every problem is reported as one line naming the file and the dotted key, like node configs.
The format is described with an example in docs/simulator.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from meridian.node.config import (
    NAME_PATTERN,
    TABLE_KEYS,
    rebalance_settings_from,
    sync_settings_from,
)
from meridian.node.rebalance import RebalanceSettings
from meridian.resources import SCENARIOS_DIR
from meridian.sim.checkers import CHECKERS, CheckContext, Checker
from meridian.sim.faults import ClockSkew, Fault, parse_fault
from meridian.sim.network import PathProfile
from meridian.sim.node import NodeSpec
from meridian.sim.params import ConfigError, Table
from meridian.sim.workload import WORKLOADS, Workload
from meridian.sync.settings import SyncSettings
from meridian.tomlschema import read_toml

SCENARIO_DIR = SCENARIOS_DIR  # the shipped scenarios, from a checkout or an installed wheel
TOP_KEYS = (
    "description",
    "cluster",
    "network",
    "nodes",
    "sync",
    "replication",
    "phases",
    "workload",
    "faults",
    "checkers",
    "rebalance",
)
NETWORK_KEYS = (
    "latency_ms",
    "jitter_ms",
    "bandwidth_mbps",
    "loss",
    "resets_per_hour",
    "connect_timeout_s",
)
NODE_KEYS = ("fsync_ms", "frame_ms", "clock_offset_s", "clock_rate")
DEFAULT_CONNECT_TIMEOUT_S = SyncSettings().connect_timeout_s  # what sync.transport uses


@dataclass(frozen=True)
class Scenario:
    """A loaded, checked scenario (see module docstring)."""

    name: str
    path: Path
    description: str
    nodes: tuple[NodeSpec, ...]
    paths: dict[tuple[str, str], PathProfile]
    connect_timeout_s: float
    sync: SyncSettings
    ack_regions: int
    ack_timeout_s: float
    faulty_s: float
    quiet_s: float
    new_workloads: Callable[[], list[Workload]]
    faults: tuple[Fault, ...]
    checkers: tuple[tuple[str, Checker], ...]
    game_backups: int | None = None  # replication.game_backups (None: full replication)

    @property
    def node_ids(self) -> list[str]:
        return [node.node_id for node in self.nodes]

    @property
    def end_s(self) -> float:
        return self.faulty_s + self.quiet_s


def find_scenario(name_or_path: str) -> Path:
    """A path as given, or the name of a file in configs/scenarios (with or without .toml)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".toml" or "/" in name_or_path:
        return path
    return SCENARIO_DIR / f"{name_or_path}.toml"


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raises ConfigError (one line naming the key)."""
    path = Path(path)
    root = Table.root(path, read_toml(path))
    root.only(TOP_KEYS)
    regions = _regions(root.table("cluster", required=True))
    phases = root.table("phases", required=True)
    phases.only(("faulty_s", "quiet_s"))
    faulty_s = phases.number("faulty_s", 0.0, 0, inclusive=False)
    sync_table = root.table("sync", required=False)
    sync_table.only(TABLE_KEYS["sync"])
    ack_regions, ack_timeout_s = _replication(root.table("replication", required=False), regions)
    nodes = _nodes(root.table("nodes", required=False), regions, _rebalance(root))
    paths = _paths(root.table("network", required=True), regions)
    connect_timeout_s = root.table("network", required=True).number(
        "connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S, 0, inclusive=False
    )
    sync = sync_settings_from(sync_table)
    faults = tuple(parse_fault(t, regions, faulty_s) for t in root.tables("faults"))
    context = CheckContext(
        nodes=tuple(regions),
        paths=paths,
        sync=sync,
        connect_timeout_s=connect_timeout_s,
        frame_s=max(spec.frame_s for spec in nodes),
        faults=faults,
        heal_s=faulty_s,
        slowest_clock_rate=min(
            [spec.clock_rate for spec in nodes]
            + [f.rate for f in faults if isinstance(f, ClockSkew)]
        ),
    )
    return Scenario(
        name=path.stem,
        path=path,
        description=root.string("description", "", "a sentence saying what the scenario shows"),
        nodes=nodes,
        paths=paths,
        connect_timeout_s=connect_timeout_s,
        sync=sync,
        ack_regions=ack_regions,
        ack_timeout_s=ack_timeout_s,
        faulty_s=faulty_s,
        quiet_s=phases.number("quiet_s", 0.0, 0, inclusive=False),
        new_workloads=_workloads(root),
        faults=faults,
        game_backups=_game_backups(root.table("replication", required=False)),
        checkers=_checkers(root.table("checkers", required=True), context),
    )


def _regions(cluster: Table) -> list[str]:
    cluster.only(("regions",))
    regions = cluster.string_list("regions", "region names")
    for index, region in enumerate(regions):
        if not NAME_PATTERN.fullmatch(region):
            expected = "1 to 32 characters from a-z, 0-9 and '-'"
            raise cluster.error(f"regions[{index}]", f"expected {expected}, got {region!r}")
    if len(regions) < 2 or len(set(regions)) != len(regions):
        raise cluster.error("regions", "expected at least two distinct region names")
    return regions


def _paths(network: Table, regions: list[str]) -> dict[tuple[str, str], PathProfile]:
    network.only(NETWORK_KEYS)
    latency_ms = _latencies(network.table("latency_ms", required=True), regions)
    jitter_s = network.number("jitter_ms", 0.0, 0, inclusive=True) / 1000
    bandwidth_mbps = network.number("bandwidth_mbps", 0.0, 0, inclusive=True)
    loss = network.fraction("loss", 0.0)
    resets = network.number("resets_per_hour", 0.0, 0, inclusive=True)
    profiles: dict[tuple[str, str], PathProfile] = {}
    for (a, b), one_way_ms in latency_ms.items():
        profile = PathProfile(one_way_ms / 1000, jitter_s, bandwidth_mbps * 125_000, loss, resets)
        profiles[a, b] = profiles[b, a] = profile
    return profiles


def _latencies(table: Table, regions: list[str]) -> dict[tuple[str, str], float]:
    """``latency_ms.eu.us = 40``: one-way milliseconds, each pair of regions given once."""
    table.only(regions)
    found: dict[tuple[str, str], float] = {}
    for first in table.values:
        inner = table.table(first, required=True)
        inner.only([region for region in regions if region != first])
        for second in inner.values:
            pair = (
                (first, second) if regions.index(first) < regions.index(second) else (second, first)
            )
            if pair in found:
                raise inner.error(second, "latency given both ways; set it once")
            found[pair] = inner.number(second, 0.0, 0, inclusive=True)
    for a, b in combinations(regions, 2):
        if (a, b) not in found:
            raise table.error(f"{a}.{b}", f"missing one-way latency, e.g. {a}.{b} = 40")
    return {pair: found[pair] for pair in combinations(regions, 2)}


def _rebalance(root: Table) -> RebalanceSettings | None:
    """``[rebalance]``, the node config's section: with ``enabled = true`` every node runs the
    load observer and the rebalancer (``sim.meta``)."""
    table = root.table("rebalance", required=False)
    table.only(TABLE_KEYS["rebalance"])
    settings = rebalance_settings_from(table)
    return settings if settings.enabled else None


def _nodes(
    table: Table, regions: list[str], rebalance: RebalanceSettings | None
) -> tuple[NodeSpec, ...]:
    table.only(NODE_KEYS + tuple(regions))
    specs = []
    for region in regions:
        own = table.table(region, required=False)
        own.only(NODE_KEYS)
        specs.append(
            NodeSpec(
                node_id=region,
                region=region,
                fsync_s=_inherited(own, table, "fsync_ms", 3.0, 0) / 1000,
                frame_s=_inherited(own, table, "frame_ms", 0.02, 0) / 1000,
                clock_offset_s=own.number("clock_offset_s", 0.0, -1e12, inclusive=True),
                clock_rate=_positive(own, "clock_rate"),
                rebalance=rebalance,
            )
        )
    return tuple(specs)


def _inherited(own: Table, shared: Table, key: str, default: float, minimum: float) -> float:
    base = shared.number(key, default, minimum, inclusive=True)
    return own.number(key, base, minimum, inclusive=True)


def _positive(table: Table, key: str) -> float:
    return table.number(key, 1.0, 0, inclusive=False)


def _replication(table: Table, regions: list[str]) -> tuple[int, float]:
    table.only(("ack_regions", "ack_timeout_s", "game_backups"))
    ack_regions = table.integer("ack_regions", 0, 0)
    if ack_regions >= len(regions):
        raise table.error("ack_regions", f"expected at most {len(regions) - 1} (other regions)")
    return ack_regions, table.number("ack_timeout_s", 10.0, 0, inclusive=False)


def _game_backups(table: Table) -> int | None:
    """replication.game_backups: partial replication of games (node.game_placement)."""
    return table.integer("game_backups", 0, 0) if "game_backups" in table.values else None


def _workloads(root: Table) -> Callable[[], list[Workload]]:
    """``[workload]`` (one) or ``[[workload]]`` (several, each acting on its own)."""
    if isinstance(root.values.get("workload"), list):
        tables = root.tables("workload")
        if not tables:
            raise root.error("workload", "expected at least one [[workload]] table")
    else:
        tables = [root.table("workload", required=True)]
    builders = [_workload(table) for table in tables]
    return lambda: [build() for build in builders]


def _workload(table: Table) -> Callable[[], Workload]:
    kind = table.choice("kind", list(WORKLOADS))
    spec = WORKLOADS[kind]
    table.only(("kind", *spec.keys))
    spec.build(table)  # check the parameters now, not in the middle of a run
    return lambda: spec.build(table)


def _checkers(table: Table, context: CheckContext) -> tuple[tuple[str, Checker], ...]:
    table.only(CHECKERS)
    if not table.values:
        raise table.reader.error(table.prefix, f"name at least one: {', '.join(CHECKERS)}")
    checkers = []
    for name in table.values:
        params = table.table(name, required=True)
        params.only(CHECKERS[name].keys)
        checkers.append((name, CHECKERS[name].build(params, context)))
    return tuple(checkers)


__all__ = ["ConfigError", "Scenario", "find_scenario", "load_scenario"]
