"""200 seeds of every shipped scenario, each timed: issue 9's "within a minute on two cores".

Runs ``meridian sim run NAME --seeds A..B --jobs N`` for each scenario in turn (all of
configs/scenarios by default), prints a line as each ends and then a table: wall time, CPU time
(the run and its workers), CPU per seed, whether every seed passed and whether the wall time is
within the budget.

The machine's speed moves by 10-45 % from one hour to the next, so the same run also times a
bare baseline before and after the sweep: raw pycrdt, one document's map set 20,000 times and
each update applied to a second document (no Meridian code). Two sweeps from different hours
compare through it: a sweep whose baseline took 10 % longer ran on a machine 10 % slower.

    python bench/simsweep.py                       # every scenario, seeds 1..200, 2 workers
    python bench/simsweep.py hot-spot region-join --seeds 1..50

Exit status 0 only if every seed of every scenario passed within the budget.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from meridian.sim.scenario import SCENARIO_DIR

BUDGET_S = 60.0  # issue 9: 200 seeds of each scenario within a minute
BASELINE_SETS = 20_000
PASSED = re.compile(r"(\d+)/(\d+) seeds passed")


@dataclass(frozen=True)
class Sweep:
    scenario: str
    wall_s: float
    cpu_s: float
    seeds: int
    passed: int

    def line(self, budget_s: float) -> str:
        within = "yes" if self.wall_s <= budget_s else "NO"
        ok = "all pass" if self.passed == self.seeds else f"{self.seeds - self.passed} FAILED"
        per_seed = self.cpu_s / max(self.seeds, 1)
        return (
            f"{self.scenario:22} {self.wall_s:7.1f} s {self.cpu_s:7.1f} s "
            f"{per_seed:6.3f} s  {ok:10} {within}"
        )


def baseline_s() -> float:
    """Seconds of CPU for the bare pycrdt workload (see the module docstring), the least of
    five rounds (the first round of a process also pays for warming up, and a neighbour on
    the machine can slow any one round)."""
    return min(_baseline_round() for _ in range(5))


def _baseline_round() -> float:
    source: Doc[Any] = Doc()
    target: Doc[Any] = Doc()
    values: Map[Any] = source.get("values", type=Map)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    start = time.process_time()
    for n in range(BASELINE_SETS):
        values[f"k{n % 64}"] = n
        target.apply_update(updates.pop())
    return time.process_time() - start


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sweep(scenario: str, seeds: str, jobs: int) -> Sweep:
    """One ``meridian sim run``: its wall time, its CPU (workers included) and its result."""
    command = [sys.executable, "-m", "meridian.sim.cli", "run", scenario, "--seeds", seeds]
    command += ["--jobs", str(jobs)]
    cpu_before, start = children_cpu_s(), time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s, cpu_s = time.monotonic() - start, children_cpu_s() - cpu_before
    found = PASSED.search(done.stdout)
    if found is None:
        raise SystemExit(f"{scenario}: no summary (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return Sweep(scenario, wall_s, cpu_s, int(found.group(2)), int(found.group(1)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", help="scenario names (default: all shipped)")
    parser.add_argument("--seeds", default="1..200", help="seed range A..B (default 1..200)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="wall time allowed")
    args = parser.parse_args()
    names = args.scenarios or sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))
    before = baseline_s()
    print(f"baseline (raw pycrdt, {BASELINE_SETS:,} sets applied): {before:.3f} s of CPU")
    results = []
    for index, name in enumerate(names, 1):
        result = sweep(name, args.seeds, args.jobs)
        results.append(result)
        print(f"[{index}/{len(names)}] {result.line(args.budget_s)}", flush=True)
    after = baseline_s()
    print(f"baseline again: {after:.3f} s of CPU ({after / before:.2f}x the first)")
    print(f"\n{'scenario':22} {'wall':>9} {'CPU':>9} {'per seed':>8}  {'seeds':10} within")
    for result in results:
        print(result.line(args.budget_s))
    good = [r for r in results if r.passed == r.seeds and r.wall_s <= args.budget_s]
    print(f"\n{len(good)} of {len(results)} scenarios passed every seed within {args.budget_s:g} s")
    return 0 if len(good) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
