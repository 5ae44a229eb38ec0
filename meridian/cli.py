"""The ``meridian`` command: run a node, the local demo cluster, admin document access, games.

Each subcommand has its own ``--help``. Exit codes: 0 success, 1 a negative answer (e.g. a key
that is absent), 2 a usage or configuration error, or a node's store file that SQLite cannot
read (one line on stderr saying what is wrong and what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

EXIT_OK = 0
EXIT_ABSENT = 1
EXIT_USAGE = 2
STORE_ADVICE = (
    "move the file aside (keep it to inspect) and start the node again to refill its "
    "documents from its peers, or restore the file from a backup"
)

DESCRIPTION = """\
Meridian: a multi-region game server. Every region runs one node; shared state lives in CRDT
documents that the nodes gossip to each other.

  meridian demo                      local 3-region cluster from configs/local/ (Ctrl-C stops it)
  meridian node --config FILE        run one node (one per region)
  meridian doc put|get ...           write or read a key of a document through a node's admin API
  meridian admin ...                 accounts, sessions, backup export/import
  meridian bot --server URL ...      bots that play Battleline over websockets (and fail over)
  meridian sim run SCENARIO ...      the network-partition simulator (deterministic, from a seed)
  meridian battleline ...            the Battleline rules engine: play, self-play, conformance tools
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``meridian`` parser. Given the `command` about to run (a name of COMMANDS), only that
    command's parser is built: each imports its own modules, and ``meridian node`` (started for
    every node of a cluster) then imports neither the simulator nor the bots nor the demo,
    a third of its start-up. Any other `command` (none, ``--help``, a typo) gets them all."""
    parser = argparse.ArgumentParser(
        prog="meridian",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in COMMANDS.items():
        if command not in COMMANDS or name == command:
            add(commands)
    return parser


def _add_node(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser(
        "node",
        help="run one node",
        description="Run one Meridian node from a TOML config (see docs/configuration.md). "
        "It reloads its documents from its data directory, listens for players and peers, and "
        "dials the peers named in the config. SIGTERM drains it (its players are moved to "
        "other regions, node.drain_deadline_s at most) and stops it; SIGINT stops it at once.",
    )
    node.add_argument("--config", required=True, metavar="FILE", help="the node's TOML config")
    node.set_defaults(func=run_node_command)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meridian.node.demo import add_demo_arguments, run_demo_command

    demo = commands.add_parser(
        "demo",
        help="run a local 3-region cluster",
        description="Start the three nodes of configs/local/ (eu, us, ap on 127.0.0.1:7101-7103) "
        "as separate processes with a fresh cluster secret and admin token, print where each "
        "listens, and stop them all on Ctrl-C.",
    )
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo_command)


def _add_doc(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meridian.node.admin_client import add_doc_arguments

    doc = commands.add_parser(
        "doc",
        help="write or read a document key through a node",
        description="Write or read one key of a document's 'kv' map through a node's admin HTTP "
        "API. Handy to check that a cluster replicates: put on one node, get on another.",
    )
    add_doc_arguments(doc)


def _add_admin(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meridian.node.admin_client import add_admin_arguments

    admin = commands.add_parser(
        "admin",
        help="accounts, sessions, backups (admin token)",
        description="Administer a cluster through one node's admin API: create or disable "
        "accounts, list who is online, export all documents to a backup and import one.",
    )
    add_admin_arguments(admin)


def _add_bot(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meridian.node.botcommand import add_bot_parser

    add_bot_parser(commands)


def _add_sim(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meridian.sim.cli import (
        add_sim_parser,  # imported here: node must not depend on sim at load
    )

    add_sim_parser(commands)


def _add_games(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meridian.games.battleline.cli import add_battleline_parser

    add_battleline_parser(commands)


# Each command's parser by the name it has on the command line, in the order --help lists them.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = {
    "node": _add_node,
    "demo": _add_demo,
    "doc": _add_doc,
    "admin": _add_admin,
    "bot": _add_bot,
    "sim": _add_sim,
    "battleline": _add_games,
}


def run_node_command(args: argparse.Namespace) -> int:
    # No cyclic collection while the node imports and loads: the objects made then live for the
    # life of the process, and each collection walked all of them again (about 30 ms of the
    # 0.4 s of CPU a start takes). tune_gc() switches the collector back on once started.
    gc.disable()
    from meridian.node.config import load_config
    from meridian.tomlschema import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"meridian node: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.log_level, config.node_id, config.log_format)
    return asyncio.run(_serve(config))


async def _serve(config: object) -> int:
    from meridian.node.config import NodeConfig
    from meridian.node.gc_tuning import HeapTrimmer, tune_gc
    from meridian.node.server import Node
    from meridian.sync.store import StoreError
    from meridian.tomlschema import ConfigError

    assert isinstance(config, NodeConfig)
    node = Node(config)
    # SIGTERM (Kubernetes, systemd, `docker stop`) drains first; SIGINT stops at once.
    stop, terminate = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, terminate.set)
    try:
        await node.start()
    except OSError as error:
        logging.getLogger("meridian.node").error("cannot start: %s", error)
        return EXIT_USAGE
    except StoreError as error:
        print(f"meridian node: {error}; {STORE_ADVICE}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:  # the key files, read at start (see load_identity)
        print(f"meridian node: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    tune_gc()
    trimming = asyncio.create_task(HeapTrimmer().run())
    if await _first(stop, terminate, node.drain.finished) is terminate:
        node.drain.start()
        await _first(stop, node.drain.finished)
    trimming.cancel()
    why = "drained" if node.drain.finished.is_set() else "SIGINT"
    logging.getLogger("meridian.node").info("stopping (%s)", why)
    await node.stop()
    return EXIT_OK


async def _first(*events: asyncio.Event) -> asyncio.Event:
    """Wait until one of the events is set; return it."""
    waiters = {asyncio.create_task(event.wait()): event for event in events}
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
    return waiters[next(iter(done))]


class JsonLogFormatter(logging.Formatter):
    """``node.log_format = "json"``: one JSON object per line, for log collectors.

    Fields: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``node``, ``logger``,
    ``message``, and ``exception`` (the traceback) when there is one.
    """

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "node": self.node_id,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, node_id: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter(node_id))
    else:
        text = f"%(asctime)s %(levelname)-7s {node_id} %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(text))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
