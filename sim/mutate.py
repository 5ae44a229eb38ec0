"""``meridian sim mutate``: plant known bugs in production code and see if the simulator finds them.

A mutation (``tests/mutations/*.toml``) is one realistic single-point bug: a production file, a
piece of its text that occurs exactly once, and what to put instead, with a category and a
sentence saying what the bug is. For each mutation the command

1. copies the code (``games``, ``crdt_models``, ``sync``, ``node``, ``sim``, ``meridian``,
   ``configs``) into a throw-away folder and applies the mutation there; the checkout it runs in
   is only ever read;
2. runs the simulator only, from that copy (a subprocess whose ``meridian`` package is the
   copy's), over a fixed set of scenarios (:data:`SCENARIOS`), seed 1 of each, then seed 2 of
   each, ..., up to ``--seeds`` (at most :data:`MAX_SEEDS`), stopping at the first failing run;
3. replays that scenario and seed on an unmutated copy: the mutation is *caught* only if the
   unmutated code passes it (else the result says so).

Mutations run in a pool of ``--jobs`` worker processes (at most 2 by default); a line is printed
as each starts and ends, then a table (caught / survived per mutation, which checker, scenario and
seed, how many runs) and the score: caught / total. Exit status 0 when the score reaches
``--target`` (default 0.9), 1 otherwise, 2 for a bad mutation file or arguments.

``python -m meridian.sim.mutate --worker ...`` is the part that runs inside a copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MUTATION_DIR = ROOT / "tests" / "mutations"
COPIED = ("games", "crdt_models", "sync", "node", "sim", "configs", "meridian")
SCENARIOS = (
    "partition-heal",
    "partial-partition",
    "name-race",
    "region-loss-failover",
    "clock-skew-games",
    "flapping-links",
    "home-authority",
    "slow-disk-acks",
    "game-merges",
    "insider-records",
    "crash-mid-move",
    "clock-games",
    "travel-rollbacks",
    "hot-spot",
    "many-regions-5",
)
MAX_SEEDS = 30
DEFAULT_SEEDS = 30
DEFAULT_JOBS = 2
TARGET = 0.9
WORKER_TIMEOUT_S = 1800
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MUTATION_KEYS = ("category", "description", "file", "old", "new")


class MutationError(Exception):
    """A mutation file that cannot be used (one line naming the file and the problem)."""


@dataclass(frozen=True)
class Mutation:
    name: str
    category: str
    description: str
    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Outcome:
    """What the simulator made of one mutation."""

    mutation: str
    category: str
    caught: bool
    runs: int
    seconds: float
    scenario: str = ""
    seed: int = 0
    checker: str = ""
    message: str = ""
    excerpt: tuple[str, ...] = ()
    note: str = ""  # e.g. "the unmutated code fails this run too"

    @property
    def verdict(self) -> str:
        if self.note:
            return "INVALID"
        return "caught" if self.caught else "SURVIVED"


def load_mutations(folder: Path = MUTATION_DIR, names: Sequence[str] = ()) -> list[Mutation]:
    mutations = []
    for path in sorted(folder.glob("*.toml")):
        if names and path.stem not in names:
            continue
        try:
            fields = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise MutationError(f"{path}: {error}") from None
        unknown = sorted(set(fields) - set(MUTATION_KEYS))
        missing = [key for key in MUTATION_KEYS if not isinstance(fields.get(key), str)]
        if unknown or missing:
            raise MutationError(f"{path}: unknown keys {unknown}, missing {missing}")
        mutations.append(Mutation(path.stem, **{k: fields[k] for k in MUTATION_KEYS}))
    missing_names = sorted(set(names) - {m.name for m in mutations})
    if missing_names:
        raise MutationError(f"no mutation named {', '.join(missing_names)} in {folder}")
    return mutations


def copy_code(source: Path, destination: Path) -> Path:
    """Copy the code the simulator runs (links kept as links) into ``destination``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        shutil.copytree(source / name, destination / name, symlinks=True, ignore=ignore)
    return destination


def apply_mutation(mutation: Mutation, root: Path) -> None:
    path = root / mutation.file
    if not path.is_file():
        raise MutationError(f"{mutation.name}: no file {mutation.file}")
    text = path.read_text()
    found = text.count(mutation.old)
    if found != 1:
        raise MutationError(
            f"{mutation.name}: the text to replace occurs {found} times in {mutation.file} "
            "(it must occur exactly once; the code changed?)"
        )
    path.write_text(text.replace(mutation.old, mutation.new))


# --- running the simulator inside a copy ---------------------------------------------------


def _worker_command(root: Path, scenarios: Sequence[str], seeds: range) -> list[str]:
    return [
        sys.executable,
        "-m",
        "meridian.sim.mutate",
        "--worker",
        "--root",
        str(root),
        "--scenarios",
        ",".join(scenarios),
        "--seeds",
        f"{seeds.start}..{seeds.stop - 1}",
    ]


def run_in_copy(root: Path, scenarios: Sequence[str], seeds: range) -> dict[str, Any]:
    """Run the simulator of the copy at ``root`` (a subprocess importing only the copy)."""
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    completed = subprocess.run(
        _worker_command(root, scenarios, seeds),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"the simulator did not run in {root}: {' | '.join(tail)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def worker(root: Path, scenarios: Sequence[str], seeds: range) -> dict[str, Any]:
    """Inside a copy: seed 1 of every scenario, then seed 2, ...; stop at the first failure."""
    import meridian

    here = Path(meridian.__file__).resolve()
    if root.resolve() not in here.parents:
        raise RuntimeError(f"meridian was imported from {here}, not from the copy {root}")
    import logging

    from meridian.sim.collector import fewer_collections
    from meridian.sim.scenario import find_scenario, load_scenario

    logging.getLogger("meridian.service").setLevel(logging.CRITICAL)
    loaded = {name: load_scenario(find_scenario(name)) for name in scenarios}
    with fewer_collections():
        return _run_until_caught(loaded, seeds)


def _run_until_caught(loaded: dict[str, Any], seeds: range) -> dict[str, Any]:
    """:func:`worker`'s runs (imported there, after the check that this is the copy)."""
    from meridian.sim.world import Simulation

    runs = 0
    for seed in seeds:
        for name, scenario in loaded.items():
            runs += 1
            try:
                result = Simulation(scenario, seed).run()
            except Exception as error:  # a mutation may make production code raise
                last = traceback.format_exception_only(error)[-1].strip()
                found = {"checker": "crash", "message": f"the run raised {last}", "excerpt": []}
                return {"caught": True, "runs": runs, "scenario": name, "seed": seed, **found}
            failure = result.first_failure
            if failure is not None:
                return {
                    "caught": True,
                    "runs": runs,
                    "scenario": name,
                    "seed": seed,
                    "checker": failure.checker,
                    "message": failure.message,
                    "excerpt": list(failure.excerpt),
                }
    return {"caught": False, "runs": runs}


# --- the command ----------------------------------------------------------------------------


def mutate_one(
    mutation: Mutation,
    source: Path,
    pristine: Path,
    scenarios: Sequence[str],
    seeds: int,
    say: Callable[[str], None],
) -> Outcome:
    say(f"    {mutation.name}: planted in a copy, running the simulator")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"meridian-mutant-{mutation.name}-") as folder:
        root = copy_code(source, Path(folder))
        apply_mutation(mutation, root)
        found = run_in_copy(root, scenarios, range(1, seeds + 1))
    note = ""
    if found["caught"]:
        again = run_in_copy(pristine, [found["scenario"]], range(found["seed"], found["seed"] + 1))
        if again["caught"] and again["seed"] == found["seed"]:
            note = "the unmutated code fails this scenario and seed too"
    return Outcome(
        mutation.name,
        mutation.category,
        found["caught"] and not note,
        found["runs"],
        round(time.perf_counter() - started, 1),
        found.get("scenario", ""),
        found.get("seed", 0),
        found.get("checker", ""),
        found.get("message", ""),
        tuple(found.get("excerpt", ())),
        note,
    )


def run_mutations(
    mutations: Sequence[Mutation],
    scenarios: Sequence[str],
    seeds: int,
    jobs: int,
    say: Callable[[str], None],
    source: Path = ROOT,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="meridian-pristine-") as folder:
        pristine = copy_code(source, Path(folder))
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = {}
            for mutation in mutations:
                futures[
                    pool.submit(mutate_one, mutation, source, pristine, scenarios, seeds, say)
                ] = mutation
            for future in as_completed(futures):
                mutation = futures[future]
                try:
                    outcome = future.result()
                except (RuntimeError, MutationError, subprocess.TimeoutExpired) as error:
                    outcome = Outcome(
                        mutation.name, mutation.category, False, 0, 0.0, note=str(error)
                    )
                outcomes.append(outcome)
                say(f"[{len(outcomes)}/{len(mutations)}] {_line(outcome)}")
    return sorted(outcomes, key=lambda o: o.mutation)


def _line(outcome: Outcome) -> str:
    head = f"{outcome.mutation} ({outcome.category}): {outcome.verdict}"
    if outcome.note:
        return f"{head}: {outcome.note}"
    if outcome.caught:
        where = f"{outcome.scenario} seed {outcome.seed}"
        return f"{head} by {outcome.checker} on {where}, run {outcome.runs}, {outcome.seconds} s"
    return f"{head} after {outcome.runs} runs, {outcome.seconds} s"


def score(outcomes: Sequence[Outcome]) -> float:
    return sum(o.caught for o in outcomes) / len(outcomes) if outcomes else 0.0


def print_table(outcomes: Sequence[Outcome], wall_s: float) -> None:
    print(f"{'mutation':34} {'category':14} {'result':9} {'checker':20} {'where':28} runs")
    for o in outcomes:
        where = f"{o.scenario} seed {o.seed}" if o.caught else "-"
        print(
            f"{o.mutation:34} {o.category:14} {o.verdict:9} {o.checker or '-':20} {where:28} "
            f"{o.runs}"
        )
    caught = sum(o.caught for o in outcomes)
    print(
        f"score: {caught}/{len(outcomes)} caught by the simulator alone ({score(outcomes):.0%}) "
        f"in {wall_s:.0f} s"
    )
    for o in outcomes:
        if o.caught:
            print(f"\n{o.mutation}: {o.checker}: {o.message}")
            for line in o.excerpt[:4]:
                print(f"    {line}")
            replay = f"meridian sim run {o.scenario} --seed {o.seed}"
            print(f"replay (in a copy with the mutation planted): {replay}")


def add_mutate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mutate = commands.add_parser(
        "mutate",
        help="plant known bugs (tests/mutations) and report which the simulator catches",
        description="For each mutation in tests/mutations: copy the code to a temporary folder, "
        "plant the bug there, run the simulator only over a fixed set of scenarios and seeds "
        "until a checker fails, and confirm the unmutated code passes that run. Prints caught / "
        "survived per mutation and the score. The checkout is never modified.",
    )
    mutate.add_argument("names", nargs="*", metavar="NAME", help="only these mutations")
    mutate.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        metavar="N",
        help=f"seeds 1..N of each scenario (at most {MAX_SEEDS}; default {DEFAULT_SEEDS})",
    )
    mutate.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        metavar="A,B",
        help="the scenarios to run (default: the fixed set)",
    )
    mutate.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, metavar="N", help="mutations run at once"
    )
    mutate.add_argument("--json", type=Path, metavar="FILE", help="also write the outcomes")
    mutate.add_argument(
        "--target", type=float, default=TARGET, help="score for exit status 0 (default 0.9)"
    )
    mutate.set_defaults(func=mutate_command)


def mutate_command(args: argparse.Namespace) -> int:
    if not 1 <= args.seeds <= MAX_SEEDS:
        print(f"meridian sim mutate: --seeds must be 1..{MAX_SEEDS}", file=sys.stderr)
        return EXIT_USAGE
    try:
        mutations = load_mutations(MUTATION_DIR, args.names)
    except MutationError as error:
        print(f"meridian sim mutate: {error}", file=sys.stderr)
        return EXIT_USAGE
    scenarios = [name for name in args.scenarios.split(",") if name]
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(
        f"{len(mutations)} mutations x {len(scenarios)} scenarios x up to {args.seeds} seeds, "
        f"{args.jobs} at a time"
    )
    started = time.perf_counter()
    outcomes = run_mutations(mutations, scenarios, args.seeds, args.jobs, say)
    print_table(outcomes, time.perf_counter() - started)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return EXIT_OK if score(outcomes) >= args.target else EXIT_FAILED


def _worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m meridian.sim.mutate --worker")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--scenarios", required=True)
    parser.add_argument("--seeds", required=True, help="A..B")
    args = parser.parse_args(argv)
    first, _, last = args.seeds.partition("..")
    result = worker(args.root, args.scenarios.split(","), range(int(first), int(last) + 1))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
