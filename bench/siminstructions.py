"""Instructions a simulator seed executes, counted by valgrind: a speed figure that does not move
with the machine's load.

CPU seconds on this 2-core VM vary by 10-45 % from one hour to the next for the same code, so a
change of a few per cent cannot be seen in them (docs/simulator.md). Valgrind's callgrind counts
the instructions a process executes; two counts of one seed differ by about 0.02 %. This script
runs the scenario's seeds under callgrind, and beside them the same process that loads the
scenario and runs no seed (the interpreter's start and the imports), and prints the difference
per seed. Both run at once, one per core; a 3-region seed takes about a minute under valgrind.

    python bench/siminstructions.py partial-partition --seeds 3,4
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
MILLION = 1_000_000


def run_seeds(scenario: str, seeds: list[int]) -> None:
    """The process valgrind counts: load the scenario, run each seed, fail on a failed seed."""
    from meridian.sim.scenario import find_scenario, load_scenario
    from meridian.sim.world import Simulation

    loaded = load_scenario(find_scenario(scenario))
    for seed in seeds:
        if not Simulation(loaded, seed).run(None).ok:
            raise SystemExit(f"{scenario} seed {seed} failed")


def count_instructions(scenario: str, seeds: list[int]) -> int:
    """Instructions of one process running `seeds` (none: the start and imports only)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        scenario,
        "--seeds",
        ",".join(map(str, seeds)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="a scenario name (meridian sim list) or file")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    if args.worker:
        run_seeds(args.scenario, seeds)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"{args.scenario}, seeds {args.seeds}: counting under valgrind (about a minute a seed)")
    with ThreadPoolExecutor(2) as pool:
        baseline = pool.submit(count_instructions, args.scenario, [])
        measured = pool.submit(count_instructions, args.scenario, seeds)
        start, total = baseline.result(), measured.result()
    per_seed = (total - start) / len(seeds)
    print(f"start and imports:  {start / MILLION:9.1f} M instructions")
    print(f"per seed:           {per_seed / MILLION:9.1f} M instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
