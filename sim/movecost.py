"""What one move costs on the peer network as regions are added (issue 16's cost model).

For each number of regions N it runs two simulations of the same seed, every region 30 ms from
every other, no faults: 12 game bots playing (``with games``), and the same 12 bots idle (no
invitations: ``idle``, what presence heartbeats, load entries and logins cost anyway). A move's
cost is the difference of the bytes and frames every node sent its peers, over the moves the
players were told were done, and likewise the process CPU time of the run (the simulator's own
included: only the growth with N means something). With full replication every node stores
every move and sends or relays it on, so the bytes per move grow with N; with partial
replication (``--backups k``: ``replication.game_backups = k``, a game kept by its players'
home regions and k backups, at least k + 2 regions) they are bounded by its replicas. Each row
measures both, the same seed and workload.

    python -m meridian.sim.movecost --regions 3,5,7,9 --seed 1 --backups 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from meridian.sim.scenario import load_scenario
from meridian.sim.world import RunResult, Simulation

REGION_NAMES = ("eu", "us", "ap", "sa", "af", "me", "oc", "ca", "in")
PLAYERS = 12
LATENCY_MS = 30


def scenario_text(regions: int, *, games: bool, backups: int | None = None) -> str:
    names = REGION_NAMES[:regions]
    latencies = "\n".join(f"{a}.{b} = {LATENCY_MS}" for a, b in combinations(names, 2))
    placed = "" if backups is None else f"[replication]\ngame_backups = {backups}\n"
    return f"""description = "move cost with {regions} regions"
{placed}[cluster]
regions = {list(names)!r}
[network.latency_ms]
{latencies}
[phases]
faulty_s = 60
quiet_s = 5
[workload]
kind = "game-bots"
players = {PLAYERS}
think_s = [0.2, 0.6]
invite_per_s = {1 if games else 0}
give_up = 0
save = 0
chat = 0
watch = 0
travel_per_min = 0
double_login_per_min = 0
[checkers.converged]
""".replace("'", '"')


@dataclass(frozen=True)
class Cost:
    regions: int
    moves: int
    bytes_per_move: float
    frames_per_move: float
    cpu_ms_per_move: float


def run(
    regions: int, seed: int, *, games: bool, folder: Path, backups: int | None = None
) -> tuple[RunResult, float]:
    path = folder / f"cost-{regions}-{'games' if games else 'idle'}-{backups}.toml"
    path.write_text(scenario_text(regions, games=games, backups=backups))
    started = time.process_time()
    result = Simulation(load_scenario(path), seed).run()
    return result, time.process_time() - started


def measure(regions: int, seed: int, backups: int | None = None) -> Cost:
    """The cost of a move with `regions` regions (`backups`: partial replication's k)."""
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        played, played_cpu = run(regions, seed, games=True, folder=where, backups=backups)
        idle, idle_cpu = run(regions, seed, games=False, folder=where, backups=backups)
    moves = len(played.history.notes_of("move"))
    per = max(moves, 1)
    return Cost(
        regions,
        moves,
        (played.wire_bytes - idle.wire_bytes) / per,
        (played.frames - idle.frames) / per,
        (played_cpu - idle_cpu) * 1000 / per,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", default="3,5,7,9", help="numbers of regions, e.g. 3,5,9")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backups", type=int, default=None, help="also measure with game_backups = k"
    )
    args = parser.parse_args(argv)
    print("placement     regions  moves  bytes/move  frames/move  cpu ms/move")
    for regions in (int(n) for n in args.regions.split(",")):
        kinds = [None] if args.backups is None else [None, args.backups]
        for backups in kinds:
            cost = measure(regions, args.seed, backups)
            label = "full" if backups is None else f"k = {backups}"
            print(
                f"{label:12s}  {cost.regions:7d}  {cost.moves:5d}  {cost.bytes_per_move:10.0f}  "
                f"{cost.frames_per_move:11.1f}  {cost.cpu_ms_per_move:11.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
