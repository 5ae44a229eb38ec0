"""Whether the nodes agree on the games the bots played: every node's log of finished games.

`game_logs` reads each node's ``GET /api/games``; `wait_for_equal_logs` waits until every node's
log is the same and holds the games a run of bots reported (`node.botrecords.BotSummary.gids`).
The demo, ``meridian sim upgrade`` and the bot tests check a run of `node.bots.run_bots` with
them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp


async def game_logs(http: aiohttp.ClientSession, servers: Sequence[str]) -> list[Any]:
    """Each server's list of finished games (``GET /api/games``), or its error as text."""

    async def one(url: str) -> Any:
        try:
            async with http.get(f"{url.rstrip('/')}/api/games") as response:
                return (await response.json())["games"]
        except (aiohttp.ClientError, OSError, ValueError, KeyError) as error:
            return f"{url}: {error!r}"

    return list(await asyncio.gather(*(one(url) for url in servers)))


# A timeout parameter, not a caller's asyncio.timeout: at the deadline the answer is what still
# differs between the logs, which a cancellation would lose.
async def wait_for_equal_logs(
    servers: Sequence[str],
    gids: set[str],
    timeout: float = 30.0,  # noqa: ASYNC109
) -> str | None:
    """Wait until every server's game log is the same and holds `gids`; None when it is,
    else a message saying what differs."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            logs = await game_logs(http, servers)
            problem = _log_difference(list(servers), logs, gids)
            if problem is None or time.monotonic() > deadline:
                return problem
            await asyncio.sleep(0.2)


def _log_difference(servers: list[str], logs: list[Any], gids: set[str]) -> str | None:
    for url, log in zip(servers, logs, strict=True):
        if isinstance(log, str):
            return f"cannot read the game log of {log}"
        missing = gids - {g["gid"] for g in log}
        if missing:
            return f"{url} lacks {len(missing)} of the {len(gids)} games (e.g. {min(missing)})"
    for url, log in zip(servers[1:], logs[1:], strict=True):
        if log != logs[0]:
            return f"the game logs of {servers[0]} and {url} differ"
    return None
