"""``meridian bot``: the command that runs a crew of bots (`node.bots.run_bots`) from a shell.

`add_bot_parser` adds the subcommand to the root CLI (``meridian.cli``); `run_bot_command`
checks the arguments, runs the bots until they are done or Ctrl-C (SIGINT or SIGTERM) stops
them, prints the summary and exits 0 when every bot finished its games without errors.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from meridian.node.botrecords import BotSummary
from meridian.node.bots import (
    DEFAULT_PASSWORD,
    DEFAULT_PREFIX,
    MAX_STANDBY,
    STANDBY_LINGER_S,
    bot_names,
    run_bots,
)

BOT_DESCRIPTION = f"""\
Run N Battleline bots as real players over websockets. Bot i registers at the i-th --server
(round robin; it logs in if its name exists already). The first M bots (--for-people M) wait
for people: nobody else invites them (they decline a bot's invitation) and they accept a
person's invitation about a second later (so the person sees it sent), with a hello in the
game's chat. With --games 0, while some of them play people, standby bots (PREFIX<N+1>, ...;
at most {MAX_STANDBY}) log in so that M stay idle, and log out {STANDBY_LINGER_S:g} s after they
are no longer needed. The others are paired (1-2, 3-4, ... of them) so that partners sit in
different regions, and each pair plays G games; an idle paired bot also accepts a person's
invitation. Moves come from the engine's heuristic run on the bot's own view.

If a bot's connection fails it resumes its session on another --server (with its resume
token) and continues its game. Progress goes to stdout, a summary at the end; exit code 0 when
every bot finished its games without errors, 1 otherwise. Ctrl-C stops early (with --games 0,
the bots play until then)."""


def add_bot_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bot",
        help="run Battleline bots against one or more nodes",
        description=BOT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        action="append",
        required=True,
        metavar="URL",
        help="a node's base URL, e.g. http://127.0.0.1:7101; repeat for each region (the "
        "bots spread over them and fail over between them)",
    )
    parser.add_argument("--count", type=int, default=2, metavar="N", help="bots (default 2)")
    parser.add_argument(
        "--for-people",
        type=int,
        default=0,
        metavar="M",
        help="the first M of the N bots only wait for people's invitations (default 0)",
    )
    parser.add_argument(
        "--games", type=int, default=1, metavar="G", help="games per bot; 0: until Ctrl-C"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bots' choices")
    parser.add_argument(
        "--password",
        default=DEFAULT_PASSWORD,
        help="the bots' password (at least 8 characters; default: a fixed demo password)",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="bot names are PREFIX1, PREFIX2, ... (default bot)"
    )
    parser.add_argument(
        "--pause", type=float, default=0.0, metavar="S", help="seconds between two games"
    )
    parser.add_argument(
        "--delay", type=float, default=0.0, metavar="S", help="seconds before each move"
    )
    parser.set_defaults(func=run_bot_command)


def run_bot_command(args: argparse.Namespace) -> int:
    if (
        args.count < 1
        or args.games < 0
        or len(args.password) < 8
        or not 0 <= args.for_people <= args.count
    ):
        print(
            "meridian bot: --count must be >= 1, --games >= 0, --for-people from 0 to --count, "
            "--password 8+ characters",
            file=sys.stderr,
        )
        return 2
    try:
        bot_names(args.prefix, args.count)
    except ValueError as error:
        print(f"meridian bot: {error}", file=sys.stderr)
        return 2
    summary = asyncio.run(_run_until_interrupted(args))
    print(summary.report(), flush=True)
    return 0 if not summary.problems() else 1


async def _run_until_interrupted(args: argparse.Namespace) -> BotSummary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await run_bots(
        args.server,
        args.count,
        args.games,
        args.seed,
        password=args.password,
        prefix=args.prefix,
        pause_s=args.pause,
        move_delay_s=args.delay,
        for_people=args.for_people,
        log=lambda text: print(text, flush=True),
        stop=stop,
    )
