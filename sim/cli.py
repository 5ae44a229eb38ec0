"""``meridian sim``: run simulator scenarios over one seed or a range of seeds.

``meridian sim run SCENARIO [--seed N | --seeds A..B] [--report DIR] [--jobs N]`` prints a
progress bar on stderr and a summary table on stdout, and exits 0 only if every checker passed on
every seed (1 if one failed, 2 for a bad scenario or usage). A failure prints the seed, the first
violated invariant with its history excerpt, and the command that replays it. ``meridian sim
cluster SCENARIO [--seed N] [--report DIR] [--dir DIR]`` runs the same scenario against real node
processes on 127.0.0.1 (``sim.cluster``), in real time, with the same checkers and exit status.
``meridian sim list`` shows the scenarios in configs/scenarios. ``meridian sim mutate`` plants the
bugs of tests/mutations one at a time in a throw-away copy and reports which the simulator catches
(``sim.mutate``). ``meridian sim upgrade`` runs a rolling upgrade of three local regions from the
previous release to this code under bots (``sim.upgrade``). ``python -m sim.cli run ...`` works
the same.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from meridian.sim.checkers import overall_lag
from meridian.sim.cluster import run_cluster
from meridian.sim.collector import fewer_collections
from meridian.sim.mutate import add_mutate_parser
from meridian.sim.params import ConfigError
from meridian.sim.report import replay_command, write_report
from meridian.sim.scenario import SCENARIO_DIR, Scenario, find_scenario, load_scenario
from meridian.sim.upgrade import add_upgrade_parser
from meridian.sim.world import RunResult, Simulation

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
BAR_WIDTH = 30


@dataclass(frozen=True)
class SeedSummary:
    """What the table shows of one run (picklable, so worker processes can return it)."""

    seed: int
    ok: bool
    virtual_s: float
    events: int
    wall_s: float
    converge_s: float | None
    lag_p50: float | None
    lag_p99: float | None
    verdicts: tuple[tuple[str, bool, str, tuple[str, ...]], ...]


def add_sim_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim run`` and ``sim list`` to a command's subparsers."""
    sim = subparsers.add_parser(
        "sim",
        help="run the deterministic network-partition simulator",
        description="Run scenarios (configs/scenarios/*.toml) on simulated nodes: the real sync "
        "engine on a virtual clock and network, reproducible from one integer seed.",
    )
    commands = sim.add_subparsers(dest="sim_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a scenario",
        description="Run a scenario over one seed or a range of seeds and check its invariants. "
        "Exit status 0 only if every checker passed on every seed.",
    )
    run.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="scenario file, or a name from configs/scenarios such as partition-heal",
    )
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="the seed to run (default 1)")
    seeds.add_argument("--seeds", type=seed_range, metavar="A..B", help="every seed from A to B")
    run.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write report.json, history.jsonl and report.html there (a folder per seed for a "
        "range)",
    )
    run.add_argument(
        "--jobs", type=int, default=0, metavar="N", help="worker processes (default: CPUs)"
    )
    run.set_defaults(func=run_command)
    _add_cluster_parser(commands)
    add_mutate_parser(commands)
    add_upgrade_parser(commands)
    listing = commands.add_parser("list", help="list the scenarios in configs/scenarios")
    listing.set_defaults(func=list_command)


def _add_cluster_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="run a scenario against real node processes on 127.0.0.1",
        description="Run a scenario on one real node process per region, every peer link "
        "through a fault-injecting proxy, the workloads over real HTTP and websockets, in real "
        "time; then check the same invariants on what the nodes hold. Faults a proxy cannot "
        "make (clock skew and jumps, slow nodes, broken links) are skipped with a note. Exit "
        "status 0 only if every checker passed.",
    )
    cluster.add_argument("scenario", metavar="SCENARIO", help="scenario file or name")
    cluster.add_argument("--seed", type=int, default=1, help="seed of the workloads (default 1)")
    cluster.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.json, history.jsonl, report.html"
    )
    cluster.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="where node configs, data and logs go (default: a temporary folder, removed "
        "after a passing run)",
    )
    cluster.set_defaults(func=cluster_command)


def seed_range(text: str) -> list[int]:
    first, dots, last = text.partition("..")
    if not dots or not first.isdigit() or not last.isdigit() or int(first) > int(last):
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B, e.g. 1..200, got {text!r}")
    return list(range(int(first), int(last) + 1))


def list_command(args: argparse.Namespace) -> int:
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        try:
            description = load_scenario(path).description
        except ConfigError as error:
            description = f"(invalid: {error})"
        print(f"{path.stem:24} {description}")
    return EXIT_OK


def _load(scenario_arg: str) -> tuple[Path, Scenario | None]:
    path = find_scenario(scenario_arg)
    try:
        return path, load_scenario(path)
    except ConfigError as error:
        print(f"meridian sim: {error}", file=sys.stderr)
        return path, None


def run_command(args: argparse.Namespace) -> int:
    # Merges and refusals are in the history and the report; a log line per merge (what a
    # production node writes) would only interleave with the progress bar.
    logging.getLogger("meridian.service").setLevel(logging.ERROR)
    path, scenario = _load(args.scenario)  # a bad file is reported once, before any worker
    if scenario is None:
        return EXIT_USAGE
    seeds: list[int] = args.seeds or [args.seed if args.seed is not None else 1]
    started = time.perf_counter()
    summaries = _run_seeds(args.scenario, path, seeds, args.report, args.jobs)
    _print_table(summaries, time.perf_counter() - started)
    failures = [summary for summary in summaries if not summary.ok]
    for summary in failures[:3]:
        _print_failure(summary, replay_command(args.scenario, summary.seed))
    return EXIT_FAILED if failures else EXIT_OK


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cluster_command(args: argparse.Namespace) -> int:
    _path, scenario = _load(args.scenario)
    if scenario is None:
        return EXIT_USAGE
    folder = args.dir or Path(tempfile.mkdtemp(prefix="meridian-sim-cluster-"))
    _say(f"{scenario.name}: {len(scenario.node_ids)} node processes, {scenario.end_s:g} s")
    started = time.perf_counter()
    try:
        result = asyncio.run(run_cluster(scenario, args.seed, folder, _say))
    except RuntimeError as error:  # the cluster did not form
        print(f"meridian sim cluster: {error}; logs in {folder / 'logs'}", file=sys.stderr)
        return EXIT_FAILED
    wall_s = time.perf_counter() - started
    if args.report is not None:
        write_report(result, args.scenario, args.report)
    summary = summarize(result, wall_s)
    _print_table([summary], wall_s)
    if not summary.ok:
        replay = f"meridian sim cluster {args.scenario} --seed {args.seed}"
        _print_failure(summary, replay)
        print(f"node logs: {folder / 'logs'}")
        return EXIT_FAILED
    if args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    return EXIT_OK


def run_seed(
    scenario_arg: str,
    path: Path,
    seed: int,
    report: Path | None,
    progress: Callable[[float], None] | None = None,
) -> SeedSummary:
    """One run, its report written if asked; runs in a worker process for a range of seeds."""
    scenario = load_scenario(path)
    started = time.perf_counter()
    result = Simulation(scenario, seed).run(progress)
    wall_s = time.perf_counter() - started
    if report is not None:
        write_report(result, scenario_arg, report)
    return summarize(result, wall_s)


def summarize(result: RunResult, wall_s: float) -> SeedSummary:
    """The table row of a run."""
    history = result.history
    overall = overall_lag(history)
    converged = history.converged_at
    return SeedSummary(
        seed=result.seed,
        ok=result.ok,
        virtual_s=history.end_at,
        events=result.events,
        wall_s=wall_s,
        converge_s=None if converged is None else converged - history.heal_at,
        lag_p50=overall["p50"] if history.lag else None,
        lag_p99=overall["p99"] if history.lag else None,
        verdicts=tuple((v.checker, v.ok, v.message, v.excerpt) for v in result.verdicts),
    )


def _run_seeds(
    scenario_arg: str, path: Path, seeds: list[int], report: Path | None, jobs: int
) -> list[SeedSummary]:
    with fewer_collections():
        return _run_seeds_now(scenario_arg, path, seeds, report, jobs)


def _run_seeds_now(
    scenario_arg: str, path: Path, seeds: list[int], report: Path | None, jobs: int
) -> list[SeedSummary]:
    bar = ProgressBar(sys.stderr)
    if len(seeds) == 1:
        end = load_scenario(path).end_s
        summary = run_seed(
            scenario_arg, path, seeds[0], report, lambda t: bar.show(t / end, f"{t:.1f}/{end:g} s")
        )
        bar.done(f"seed {seeds[0]}: {'pass' if summary.ok else 'FAIL'}")
        return [summary]
    workers = jobs or os.cpu_count() or 1
    summaries: list[SeedSummary] = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [
            pool.submit(run_seed, scenario_arg, path, seed, _seed_folder(report, seed))
            for seed in seeds
        ]
        for future in as_completed(futures):
            summaries.append(future.result())
            failed = sum(1 for s in summaries if not s.ok)
            bar.show(
                len(summaries) / len(seeds), f"{len(summaries)}/{len(seeds)} seeds, {failed} failed"
            )
    bar.done(f"{len(seeds)} seeds, {sum(1 for s in summaries if not s.ok)} failed")
    return sorted(summaries, key=lambda summary: summary.seed)


def _seed_folder(report: Path | None, seed: int) -> Path | None:
    return None if report is None else report / f"seed-{seed}"


class ProgressBar:
    """A one-line bar redrawn in place on a terminal; on a pipe, only the final line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def show(self, fraction: float, text: str) -> None:
        if self.live:
            filled = round(max(0.0, min(fraction, 1.0)) * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
            self.stream.flush()

    def done(self, text: str) -> None:
        self.show(1.0, text)
        self.stream.write("\n" if self.live else f"[{'#' * BAR_WIDTH}] {text}\n")
        self.stream.flush()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_table(summaries: Sequence[SeedSummary], wall_s: float) -> None:
    header = (
        "seed",
        "virtual s",
        "events",
        "x real",
        "converge s",
        "lag p50",
        "lag p99",
        "verdicts",
    )
    print("  ".join(f"{h:>10}" if i < 7 else h for i, h in enumerate(header)))
    for s in summaries:
        failed = [name for name, ok, _, _ in s.verdicts if not ok]
        verdict = "all pass" if not failed else "FAIL: " + ", ".join(failed)
        cells = (
            str(s.seed),
            f"{s.virtual_s:g}",
            str(s.events),
            f"{s.virtual_s / s.wall_s:.0f}" if s.wall_s else "-",
            _seconds(s.converge_s),
            _seconds(s.lag_p50),
            _seconds(s.lag_p99),
        )
        print("  ".join(f"{cell:>10}" for cell in cells) + "  " + verdict)
    passed = sum(1 for s in summaries if s.ok)
    print(f"{passed}/{len(summaries)} seeds passed in {wall_s:.1f} s wall time")


def _print_failure(summary: SeedSummary, replay: str) -> None:
    name, _, message, excerpt = next(v for v in summary.verdicts if not v[1])
    print(f"\nseed {summary.seed} FAILED {name}: {message}")
    for line in excerpt:
        print(f"    {line}")
    print(f"replay: {replay}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meridian")
    add_sim_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
