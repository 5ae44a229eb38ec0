"""``meridian demo``: a local 3-region cluster from configs/local/, one node process per region or
``--processes-per-region N`` (each process a full member of the mesh, `node.region_processes`).

A fresh cluster secret and admin token are generated for the run and handed to the nodes through
their environment (never written to disk). The demo waits until every node answers and the mesh
is complete, prints where each node listens, the player client and the dashboard, and stops all
nodes cleanly on Ctrl-C. Each node's log goes to ``data/logs/<region>.log`` (``<node>.log`` for
the second and later processes of a region, e.g. ``data/logs/eu-2.log``).

It also runs bots (``node.bots``) in this process, spread over the regions. ``--bots-for-people``
of them (bot1, bot2, ... ; default 2) wait for people: no bot invites them (they decline a bot's
invitation), and they accept a person's invitation within a second (the person sees it sent,
then accepted, and a hello in the game's chat), so a newcomer can invite one straight away.
While one of them plays a person, another bot (bot7, bot8, ... after the others) logs in to
wait in its place, so that ``--bots-for-people`` are always idle; once the people's games end
the extra ones log out (`node.botpool`). The ``--bots`` others play each other across the
regions (and accept a person's invitation between their games).
By default they play endlessly (a pause between games, a short delay before each move so people
can follow). With ``--games G --exit-when-done`` the demo exits 0 once every bot
finished G games and every region's game log (``GET /api/games``) is the same, 1 otherwise.

A node that dies does not stop the demo: `node.demo_supervisor` marks it down, the players and
bots on it reconnect to another process (the web page prefers one of the same region), and the
node is restarted after ``--restart-after`` seconds. ``meridian demo kill REGION`` / ``start
REGION`` / ``status``, run from a second terminal, kill a region with SIGKILL and bring it back,
to watch failover; with several processes per region ``kill eu-2`` kills one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from pathlib import Path

from meridian.node.botlogs import wait_for_equal_logs
from meridian.node.botrecords import BotSummary
from meridian.node.bots import run_bots
from meridian.node.config import load_config
from meridian.node.demo_supervisor import Supervisor, control_command, state_root
from meridian.node.localcluster import (
    TOKEN_ENV,
    LocalNode,
    cluster_env,
    ensure_keys,
    port_in_use,
    start_node,
    stop_nodes,
    wait_for_mesh,
)
from meridian.node.region_processes import (
    CONFIGS_FOLDER,
    MAX_PROCESSES_PER_REGION,
    PORT_STEP,
    ProcessesError,
    derive_configs,
)
from meridian.node.web import DEMO_CONTROL_ENV
from meridian.resources import demo_configs_dir
from meridian.tomlschema import ConfigError

DEFAULT_BOTS = 4
DEFAULT_BOTS_FOR_PEOPLE = 2
ENDLESS_MOVE_DELAY_S = 0.5  # people watching can follow the bots' games
LOG_AGREEMENT_TIMEOUT_S = 30.0
DEFAULT_RESTART_AFTER_S = 15.0
WATCH_INTERVAL_S = 0.5
CONTROL_ACTIONS = ("kill", "start", "status")
DEFAULT_PROCESSES_PER_REGION = 1


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=CONTROL_ACTIONS,
        help="with a demo already running (from another terminal): kill REGION (SIGKILL its "
        "node), start REGION (bring it back), status (which regions are up)",
    )
    parser.add_argument(
        "region",
        nargs="?",
        help="the region for kill/start, e.g. eu; or one process of it by node id, e.g. eu-2",
    )
    parser.add_argument(
        "--restart-after",
        type=float,
        default=DEFAULT_RESTART_AFTER_S,
        metavar="S",
        help="restart a node that died after S seconds; the other regions keep running "
        f"meanwhile (default {DEFAULT_RESTART_AFTER_S:g}; 0: only `meridian demo start REGION`)",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="folder of node configs, one *.toml per region (default: the shipped configs/local; "
        "from an installed package, a copy in ./meridian-data with the data beside it)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete the nodes' data directories first"
    )
    parser.add_argument(
        "--processes-per-region",
        type=int,
        default=DEFAULT_PROCESSES_PER_REGION,
        metavar="N",
        help="node processes per region, each a full member of the mesh (default 1; process 1 "
        f"is the region's config, process i listens {PORT_STEP} * (i - 1) ports above it; "
        f"at most {MAX_PROCESSES_PER_REGION})",
    )
    parser.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="exit 0 as soon as every node is up and linked to every other (for scripts)",
    )
    parser.add_argument(
        "--bots",
        type=int,
        default=DEFAULT_BOTS,
        metavar="N",
        help=f"bots playing each other across the regions (default {DEFAULT_BOTS}; 0: none); "
        "between games they accept people's invitations too",
    )
    parser.add_argument(
        "--bots-for-people",
        type=int,
        default=DEFAULT_BOTS_FOR_PEOPLE,
        metavar="N",
        help="more bots that only wait for people: idle until a person invites them, they "
        "accept within a second; while some play people, others log in so that N stay idle "
        f"(default {DEFAULT_BOTS_FOR_PEOPLE}; named bot1 ... botN)",
    )
    parser.add_argument(
        "--games",
        type=int,
        default=0,
        metavar="G",
        help="games per bot (default 0: endless, with --bot-pause between games)",
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="with --games: exit 0 once the bots' games are finished and every region holds "
        "the same game log, 1 if not (for scripts)",
    )
    parser.add_argument(
        "--bot-pause",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between a bot's games (default 5)",
    )
    parser.add_argument(
        "--bot-delay",
        type=float,
        default=None,
        metavar="S",
        help=f"seconds a bot waits before each move (default {ENDLESS_MOVE_DELAY_S} when "
        "endless, 0 with --games)",
    )


def run_demo_command(args: argparse.Namespace) -> int:
    if args.action is not None:
        return _control(args)
    if min(args.bots, args.bots_for_people, args.games, args.restart_after) < 0:
        print(
            "meridian demo: --bots, --bots-for-people, --games and --restart-after must be >= 0",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.processes_per_region <= MAX_PROCESSES_PER_REGION:
        print(
            f"meridian demo: --processes-per-region must be 1 to {MAX_PROCESSES_PER_REGION}",
            file=sys.stderr,
        )
        return 2
    if args.exit_when_done and not (args.bots and args.games):
        print("meridian demo: --exit-when-done needs --bots N and --games G", file=sys.stderr)
        return 2
    args.config_dir = args.config_dir or demo_configs_dir(Path.cwd())
    env = cluster_env()
    try:
        configs = [load_config(path, env) for path in sorted(args.config_dir.glob("*.toml"))]
        if configs and args.processes_per_region != 1:
            folder = state_root(configs[0]) / CONFIGS_FOLDER
            paths = derive_configs(configs, args.processes_per_region, folder)
            configs = [load_config(path, env) for path in paths]
    except (ConfigError, ProcessesError) as error:
        print(f"meridian demo: config error: {error}", file=sys.stderr)
        return 2
    if not configs:
        print(f"meridian demo: no *.toml configs in {args.config_dir}", file=sys.stderr)
        return 2
    ensure_keys(configs)  # node keys and the keyring, made once under data/keys/
    busy = [c for c in configs if port_in_use(c.listen_host, c.listen_port)]
    if busy:
        ports = ", ".join(f"{c.listen_host}:{c.listen_port}" for c in busy)
        print(f"meridian demo: port in use: {ports} (is another demo running?)", file=sys.stderr)
        return 2
    if args.fresh:
        for config in configs:
            shutil.rmtree(config.data_dir, ignore_errors=True)
    env[DEMO_CONTROL_ENV] = str(state_root(configs[0]))  # the dashboard's kill/start buttons
    nodes = [start_node(config, env) for config in configs]
    print(f"starting {len(nodes)} nodes ...", flush=True)
    if not wait_for_mesh(nodes):
        stop_nodes(nodes)
        return 1
    supervisor = Supervisor(nodes, env, args.restart_after)
    try:
        return _supervise(supervisor, env, args)
    finally:
        stop_nodes(supervisor.nodes)
        supervisor.close()


def _control(args: argparse.Namespace) -> int:
    if args.action in ("kill", "start") and not args.region:
        print(f"meridian demo {args.action}: name a region, e.g. eu", file=sys.stderr)
        return 2
    args.config_dir = args.config_dir or demo_configs_dir(Path.cwd())
    paths = sorted(args.config_dir.glob("*.toml"))
    if not paths:
        print(f"meridian demo: no *.toml configs in {args.config_dir}", file=sys.stderr)
        return 2
    try:
        config = load_config(paths[0], cluster_env())
    except ConfigError as error:
        print(f"meridian demo: config error: {error}", file=sys.stderr)
        return 2
    return control_command(args.action, args.region, config)


def _supervise(supervisor: Supervisor, env: dict[str, str], args: argparse.Namespace) -> int:
    _print_table(supervisor.nodes, env[TOKEN_ENV])
    if args.exit_when_ready:
        return 0
    if args.bots or args.bots_for_people:
        return asyncio.run(_run_with_bots(supervisor, args))
    print(
        "Ctrl-C stops the cluster. From another terminal, `meridian demo kill eu` kills a "
        "region and `meridian demo start eu` brings it back"
        + (
            "; `meridian demo kill eu-2` kills one process of it."
            if args.processes_per_region > 1
            else "."
        ),
        flush=True,
    )
    return _watch_nodes(supervisor)


def _watch_nodes(supervisor: Supervisor) -> int:
    try:
        while True:
            supervisor.poll(time.monotonic())
            time.sleep(WATCH_INTERVAL_S)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0


async def _run_with_bots(supervisor: Supervisor, args: argparse.Namespace) -> int:
    """Run the bots until they are done (or Ctrl-C), then check the regions' game logs."""
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    servers = [node.config.public_url for node in supervisor.nodes]
    delay = args.bot_delay
    if delay is None:
        delay = 0.0 if args.games else ENDLESS_MOVE_DELAY_S
    line = _bots_line(args.bots_for_people, args.bots, refills=not args.games)
    print(f"{line} Ctrl-C stops the cluster.\n", flush=True)
    bots = asyncio.create_task(
        run_bots(
            servers,
            args.bots_for_people + args.bots,
            args.games,
            seed=time.time_ns() % 2**32,
            pause_s=args.bot_pause,
            move_delay_s=delay,
            for_people=args.bots_for_people,
            log=lambda text: print(f"  {text}", flush=True),
            stop=stop,
        )
    )
    await _until_done(bots, supervisor)
    summary = bots.result()
    print(f"\nbots:\n{summary.report()}\n", flush=True)
    if stop.is_set():
        return 0
    verdict = await _check_logs(servers, summary)
    if args.exit_when_done or verdict:
        return verdict
    print("the cluster stays up for you; Ctrl-C stops it.", flush=True)
    await _until_done(asyncio.create_task(stop.wait()), supervisor)
    return 0


def _bots_line(for_people: int, paired: int, *, refills: bool) -> str:
    """What the demo's bots do, e.g. "bot1 and bot2 wait for people: invite one ..." (with
    `refills`, an endless run: standbys take the place of those playing)."""
    parts = []
    if for_people:
        names = [f"bot{i + 1}" for i in range(for_people)]
        who = names[0] if for_people == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        verb = "waits" if for_people == 1 else "wait"
        standby = " (while one plays, another bot logs in to wait in its place)"
        parts.append(
            f"{who} {verb} for people: invite one from the player client"
            f"{standby if refills else ''}."
        )
    if paired:
        first, last = for_people + 1, for_people + paired
        parts.append(
            f"{paired} bots (bot{first} ... bot{last}) play each other across the regions."
        )
    return " ".join(parts)


async def _until_done(
    task: asyncio.Task[BotSummary] | asyncio.Task[bool], supervisor: Supervisor
) -> None:
    """Wait for the task, keeping dead regions marked and restarting them meanwhile."""
    while not task.done():
        await asyncio.wait({task}, timeout=WATCH_INTERVAL_S)
        supervisor.poll(time.monotonic())


async def _check_logs(servers: list[str], summary: BotSummary) -> int:
    if summary.problems():
        print("meridian demo: the bots did not finish their games cleanly", file=sys.stderr)
        return 1
    gids = summary.gids()
    problem = await wait_for_equal_logs(servers, gids, LOG_AGREEMENT_TIMEOUT_S)
    if problem is not None:
        print(
            f"meridian demo: after {LOG_AGREEMENT_TIMEOUT_S:.0f} s the regions' game logs "
            f"still disagree: {problem}",
            file=sys.stderr,
        )
        return 1
    print(f"every region's game log holds the same {len(gids)} bot games.", flush=True)
    return 0


def _print_table(nodes: list[LocalNode], admin_token: str) -> None:
    print("\nMeridian local cluster is up:\n")
    print(f"  {'region':<8} {'node':<8} {'url':<26} log")
    for node in nodes:
        c = node.config
        print(f"  {c.region:<8} {c.node_id:<8} {c.public_url:<26} {node.log_path}")
    first, second = nodes[0].config.public_url, nodes[-1].config.public_url
    print(f"\n  admin token (this run only): {admin_token}")
    print("  try replication:")
    print(f"    meridian doc put --node {first} --token {admin_token} --doc test:demo hello world")
    print(f"    meridian doc get --node {second} --token {admin_token} --doc test:demo hello")
    print(f"  cluster view: curl -H 'Authorization: Bearer {admin_token}' {first}/api/cluster")
    client = min(node.config.public_url for node in nodes)  # eu (7101) with configs/local
    print(f"\n  player client: {client}/   (every region serves it at its own URL)")
    print(f"  dashboard:     {client}/dashboard\n", flush=True)
