"""Several node processes in one region: what a second process buys on this machine.

Prints, in one invocation and with the same load generator as `bench/service.py` (its
`BenchPlayer`s: random legal moves, each player at most 18 moves/s):

1. **latency between two processes of one region**: players paired across the two processes
   (one on each), paced (default 100 moves/s, 20 players): move -> opponent push p50 / p99,
   against the baseline of the same players on one process, in the same run; target p99 <= 5 ms;
2. **moves/s with 1 and 2 processes** of one region at saturation (default 400 players): one
   process (the baseline), then two processes with each pair on one process (players spread
   by pair: the most a second process can give), then two with every pair split across the
   processes (every move crosses the link). Node CPU per move, per process, is printed beside
   each (CPU time is the steadier figure on a shared machine).

Every process is a full member of the mesh (docs/architecture.md *Several processes per
region*), so each applies every move the other makes: a second process adds capacity only
where the moves it serves cost it more than the moves it receives. The load generator runs in
this process on the same two cores; its CPU is printed with every figure. Accounts are seeded
into every store, as in `bench/service.py`. ``--coalesce-region-ms`` and ``--coalesce-ms`` set
the sync windows of the nodes (default: the nodes' defaults). It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench.service as a script

from bench.service import (
    ONE_ADDRESS_FOR_ALL,
    Connect,
    GamesResult,
    Servers,
    connect_player,
    play_games,
    print_games,
    process_usage,
    raise_fd_limit,
    seed_accounts,
    temp_folder,
)
from meridian.node.client import PlayerClient
from meridian.node.config import load_config
from meridian.node.localcluster import (
    LocalNode,
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)

LATENCY_TARGET_MS = 5.0


@dataclass
class Run:
    """One measurement: the players' figures and each process's RSS at its end (MB)."""

    games: GamesResult
    rss_mb: list[float]

    def cpu_per_move_ms(self) -> float:
        """Node CPU per move, all processes together."""
        result = self.games
        return sum(result.node_cpu) / result.moves_per_s * 1000 if result.moves_per_s else 0.0


@dataclass
class Region:
    """One region's node processes, started."""

    nodes: list[LocalNode]

    @property
    def urls(self) -> list[str]:
        return [node.config.public_url for node in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [node.process.pid for node in self.nodes]


def sync_table(args: argparse.Namespace) -> str:
    lines = []
    if args.coalesce_ms is not None:
        lines.append(f"coalesce_ms = {args.coalesce_ms}")
    if args.coalesce_region_ms is not None:
        lines.append(f"coalesce_region_ms = {args.coalesce_region_ms}")
    return "\n[sync]\n" + "\n".join(lines) + "\n" if lines else ""


async def start_region(
    folder: Path, processes: int, names: list[str], args: argparse.Namespace
) -> Region:
    env = cluster_env()
    extra = sync_table(args) + ONE_ADDRESS_FOR_ALL
    paths = write_configs(folder, ["eu"], processes=processes, extra=extra)
    configs = [load_config(path, env) for path in paths]
    seed_accounts(configs, names)
    nodes = [start_node(config, env) for config in configs]
    if not await asyncio.to_thread(wait_for_mesh, nodes):
        stop_nodes(nodes)
        raise SystemExit(f"the nodes did not start; see the logs in {folder / 'data' / 'logs'}")
    return Region(nodes)


async def run_games(
    folder: Path,
    processes: int,
    names: list[str],
    args: argparse.Namespace,
    rate: float | None,
    *,
    split_pairs: bool,
) -> Run:
    """The players on `processes` processes; pairs split across them or each on one."""
    region = await start_region(folder, processes, names, args)
    try:
        servers = Servers(region.urls, region.pids)  # player i at urls[i % len]: pairs split
        if not split_pairs:  # pair k (players 2k, 2k+1) at urls[k % len]
            servers.connect = _pairs_together(region.urls, names)
        games = await play_games(servers, names, args.seconds, rate)
        return Run(games, [process_usage(pid)[0] / 1024 for pid in region.pids])
    finally:
        await asyncio.to_thread(stop_nodes, region.nodes)


def _pairs_together(urls: list[str], names: list[str]) -> Connect:
    """A `Connect` that logs both players of a pair in at the same process."""
    pair_of = {name: index // 2 for index, name in enumerate(names)}

    async def connect(http: aiohttp.ClientSession, _url: str, name: str) -> PlayerClient:
        return await connect_player(http, urls[pair_of[name] % len(urls)], name)

    return connect


def print_run(title: str, run: Run, target: str) -> None:
    print_games(title, run.games, target)
    rss = ", ".join(f"{mb:.0f} MB" for mb in run.rss_mb)
    print(
        f"   node CPU per move, all processes together: {run.cpu_per_move_ms():.3f} ms; "
        f"node RSS at the end: {rss}"
    )


async def phase_latency(args: argparse.Namespace, folder: Path) -> None:
    names = [f"lat{i}" for i in range(args.latency_players)]
    one = await run_games(folder / "lat1", 1, names, args, args.rate, split_pairs=True)
    two = await run_games(folder / "lat2", 2, names, args, args.rate, split_pairs=True)
    print_run(
        f"1a. baseline: one process, {len(names)} players paced at {args.rate:,.0f} moves/s:",
        one,
        "(baseline: both players of a game on one process)",
    )
    verdict = "MET" if two.games.p99_ms <= LATENCY_TARGET_MS else "MISSED"
    print_run(
        "1b. two processes of one region, every pair split across them, same pacing:",
        two,
        f"target p99 <= {LATENCY_TARGET_MS:.0f} ms: {verdict}",
    )
    print(
        f"   the second process adds p50 {two.games.p50_ms - one.games.p50_ms:+.1f} ms, "
        f"p99 {two.games.p99_ms - one.games.p99_ms:+.1f} ms to move -> opponent"
    )


async def phase_throughput(args: argparse.Namespace, folder: Path) -> None:
    names = [f"tp{i}" for i in range(args.players)]
    one = await run_games(folder / "tp1", 1, names, args, None, split_pairs=True)
    together = await run_games(folder / "tp2", 2, names, args, None, split_pairs=False)
    split = await run_games(folder / "tp3", 2, names, args, None, split_pairs=True)
    title = f"{args.players} players, each <= 18 moves/s, as fast as the server lets them"
    print_run(f"2a. baseline: one process, {title}:", one, "(baseline)")
    print_run(f"2b. two processes, each pair on one process, {title}:", together, "")
    print_run(f"2c. two processes, every pair split across them, {title}:", split, "")
    served = one.cpu_per_move_ms()
    for label, run in (("2b", together), ("2c", split)):
        ratio = run.games.moves_per_s / one.games.moves_per_s if one.games.moves_per_s else 0.0
        print(
            f"   {label} / 2a: moves/s {ratio:.2f}x; node CPU per move {run.cpu_per_move_ms():.3f}"
            f" ms against {served:.3f} ms: the other process spends "
            f"{run.cpu_per_move_ms() - served:.3f} ms taking in each move it did not serve"
        )


PHASES = {"latency": phase_latency, "throughput": phase_throughput}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/processes.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--phase", action="append", choices=sorted(PHASES), help="run only these (repeatable)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (8)")
    parser.add_argument("--players", type=int, default=400, help="players in phase 2 (400)")
    parser.add_argument("--rate", type=float, default=100.0, help="moves/s in phase 1 (100)")
    parser.add_argument("--latency-players", type=int, default=20, help="players in phase 1 (20)")
    parser.add_argument("--coalesce-ms", type=float, help="sync.coalesce_ms of the nodes")
    parser.add_argument(
        "--coalesce-region-ms", type=float, help="sync.coalesce_region_ms of the nodes"
    )
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    print(
        f"processes benchmark: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"before the start; sync settings: {sync_table(args).strip() or 'the defaults'}"
    )
    with temp_folder() as folder:
        for name in args.phase or list(PHASES):
            await PHASES[name](args, folder)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
