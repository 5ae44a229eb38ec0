"""Shared fixtures: a real 3-region cluster of node processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from meridian.node import localcluster
from meridian.node.client import RequestError
from meridian.node.config import load_config
from meridian.node.launcher import FORK_ENV
from meridian.node.localcluster import (
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from meridian.node.password_pool import PASSWORD_COST_ENV
from meridian.sim.collector import fewer_collections

REGIONS = ["eu", "us", "ap"]
T = TypeVar("T")
SIM_SEED_ENV = "MERIDIAN_SIM_SEED"

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def _session_seed() -> int:
    """One random simulator seed per test run (CI prints it; MERIDIAN_SIM_SEED=N replays it).

    The seed chosen is put in the environment: pytest-xdist starts its workers after the main
    process has imported this file, so every worker inherits the same seed (test ids hold it,
    and workers that collected different ids would refuse to run)."""
    chosen = os.environ.get(SIM_SEED_ENV) or str(random.SystemRandom().randrange(1, 2**31))
    os.environ[SIM_SEED_ENV] = chosen
    return int(chosen)


SIM_RANDOM_SEED = _session_seed()


def _ports_of_this_worker() -> None:
    """Each pytest-xdist worker draws its clusters' ports from a slice of its own, and so do
    the commands it starts (MERIDIAN_LOCAL_PORTS): a port another worker's node had before a
    restart looks free, and whichever node binds it second fails to start."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return
    size = len(localcluster.LOCAL_PORTS) // count
    first = localcluster.LOCAL_PORTS.start + int(worker[2:]) * size
    os.environ[localcluster.PORTS_ENV] = f"{first}-{first + size - 1}"
    localcluster.LOCAL_PORTS = range(first, first + size)


_ports_of_this_worker()


def _stoppable_children() -> None:
    """Let the processes the tests start be stopped with SIGINT, as the tests stop them.

    A shell without job control starts background commands (`make test &` in a script, nohup)
    with SIGINT ignored; a child inherits that disposition, and Python then never raises
    KeyboardInterrupt: `meridian demo` sent SIGINT by tests/test_demo.py ran on until the
    300 s test timeout. The default handler here is what a child then inherits instead."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_stoppable_children()

# Nodes are forked from a launcher that has imported them once (node/launcher.py): the imports
# were a quarter of the suite's CPU. Nodes from an older release's tree, and the nodes that
# tests start with Popen themselves, are still exec'd.
os.environ.setdefault(FORK_ENV, "1")
# Every node the tests start hashes new passwords at argon2id's smallest cost: at the OWASP cost
# their signups and logins took about 30 s of the suite's CPU (docs/performance.md). The tests of
# the real cost set it back (tests/test_password_pool.py); nodes of an older release ignore it.
os.environ.setdefault(PASSWORD_COST_ENV, "test")


@pytest.fixture(scope="session", autouse=True)
def fewer_collections_all_run() -> Iterator[None]:
    """The simulator's collector settings (sim.collector) for the whole run: a worker's heap is
    mostly loaded code, walked by every full collection, and the tests allocate mostly
    short-lived objects that reference counting frees. About 10 % less CPU for the in-memory
    tests (docs/performance.md)."""
    with fewer_collections():
        yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(
        f"simulator random seed: {SIM_RANDOM_SEED} "
        f"(replay with MERIDIAN_SIM_SEED={SIM_RANDOM_SEED})"
    )


# The files that take longest (seconds of CPU, all processes, measured serially on 2026-12-05;
# docs/performance.md): started first, so that no worker is left running one of them alone at
# the end (longest first is the classic rule for spreading jobs over workers).
LONGEST_FILES = (
    "test_sim_scenarios.py",  # 50 s
    "test_web.py",  # 40 s
    "test_bots.py",  # 26 s of wall for 10 s of CPU: it waits on bots
    "test_web_newcomer.py",  # 20 s
    "test_mixed_versions.py",  # 19 s of wall
    "test_shown_plies.py",  # 18 s
    "test_wheel.py",  # 16 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist workers (`make test`), the longest files go first, then the other files
    that start processes or a browser: started last, they would leave one worker busy alone at
    the end while the others have run out of quick in-memory files. Every worker sorts alike (a
    stable sort), so their collections stay equal; a serial run keeps the file order.
    pytest-xdist hands out the files in this order only with --no-loadscope-reorder (in
    pyproject.toml's addopts): by default it reorders them by their number of tests, which put
    files of one long test (tests/test_sim_cluster.py) last."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    slow_files = {item.path for item in items if item.get_closest_marker("integration")}
    rank = {name: place for place, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), item.path not in slow_files))


class Cluster:
    def __init__(self, folder: Path, extra: str = "") -> None:
        self.env = cluster_env()
        self.paths = write_configs(folder, REGIONS, extra=extra)
        self.configs = [load_config(path, self.env) for path in self.paths]
        self.nodes = [start_node(config, self.env) for config in self.configs]

    def url(self, index: int) -> str:
        return self.configs[index].public_url

    def meridian(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meridian", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def put(self, index: int, key: str, value: str) -> None:
        result = self.meridian(
            "doc", "put", "--node", self.url(index), "--doc", "test:it", key, value
        )
        assert result.returncode == 0, result.stderr

    def get(self, index: int, key: str) -> subprocess.CompletedProcess[str]:
        return self.meridian("doc", "get", "--node", self.url(index), "--doc", "test:it", key)

    def eventually_get(self, index: int, key: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        for pause in poll_steps():
            result = self.get(index, key)
            if result.returncode == 0 or time.monotonic() > deadline:
                assert result.returncode == 0, f"{key} absent on node {index}: {result.stderr}"
                return result.stdout.strip()
            time.sleep(pause)
        raise AssertionError("unreachable: poll_steps never ends")


@contextlib.contextmanager
def running_cluster(folder: Path) -> Iterator[Cluster]:
    running = Cluster(folder)
    try:
        assert wait_for_mesh(running.nodes), "cluster did not form"
        yield running
    finally:
        stop_nodes(running.nodes)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh cluster per test: for tests that kill, restart or corrupt a node, or count."""
    with running_cluster(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests of a module that only add keys of their own and leave every
    node running (a cluster start costs three node processes, seconds on a busy machine)."""
    with running_cluster(tmp_path_factory.mktemp("shared-cluster")) as running:
        yield running


# Polling starts fast and slows down to a cap: most conditions hold within milliseconds (a push
# after a move; a game of 100 plies waits once per ply), and a fixed 0.1 s step cost every
# one of those waits its full step. The cap keeps a long wait from hammering a node.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1


def poll_steps() -> Iterator[float]:
    """The pauses between checks of a condition: doubling from POLL_FIRST_S up to POLL_MAX_S."""
    step = POLL_FIRST_S
    while True:
        yield step
        step = min(step * 2, POLL_MAX_S)


# A timeout parameter with a default, not a caller's asyncio.timeout: a condition never met fails
# as an assertion of the test, and the 31 callers need no timeout block of their own.
async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:  # noqa: ASYNC109
    """Await `check()` until it returns something true (refusals count as not yet), pausing
    `poll_steps()` between checks. On a timeout the error names the last refusal."""
    deadline = asyncio.get_running_loop().time() + timeout
    refused: RequestError | None = None
    for pause in poll_steps():
        try:
            result = await check()
            if result:
                return result
        except RequestError as error:
            refused = error
        if asyncio.get_running_loop().time() > deadline:
            last = f"; last refused: {refused}" if refused is not None else ""
            raise AssertionError(f"condition not met in {timeout:g} s{last}")
        await asyncio.sleep(pause)
    raise AssertionError("unreachable: poll_steps never ends")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium for a browser test module (tests/web_browser.py; the module has called
    `tests.browser_check.require_browser` first)."""
    from tests.web_browser import chromium  # imports Playwright, which a test run may lack

    with chromium() as launched:
        yield launched
