"""``meridian bot``: Battleline bots that are real players: websocket clients of the nodes.

Each bot is a `node.client.PlayerClient`. It registers at its home server (bot ``i`` at
``servers[i % len(servers)]``) or logs in if its name exists, and plays from what a player sees:
the ``view`` and the ``legal`` list of its ``game`` pushes, with
`games.battleline.viewbot.ViewBot` (the engine's heuristic run on a state consistent with the
view). The first `for_people` bots are reserved for people: they never invite anyone and no
bot invites them, so they sit idle until a person invites them and accept at once. The other
bots are paired (the 1st with the 2nd of them, the 3rd with the 4th, ...; partners sit in
different regions whenever there are two servers or more); the first of a pair invites, the
second accepts. An idle paired bot also accepts any invitation, a person's first.

On a connection failure a bot reconnects with its resume token to the next server of the list
(failover), logging in again if the session is gone, and plays on in the same game. A node that
drains tells its players where to go; the bot's client follows that notice by itself. A stalled
game (no progress for `BotPlan.stall_s`) is saved and counted as an error.

`run_bots` runs a set of bots to completion and returns a `BotSummary`; the demo and the tests
use it. `add_bot_parser` adds the ``meridian bot`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from meridian.crdt_models.accounts import check_name
from meridian.games.battleline.viewbot import ViewBot
from meridian.node.client import PlayerClient, RequestError

DEFAULT_PASSWORD = "meridian-bot-password"
DEFAULT_PREFIX = "bot"
TICK_S = 0.25  # how often an idle bot looks at its invitations
INVITE_RETRY_S = 0.5  # after "offline"/"busy": the partner is not ready yet
INVITE_PATIENCE_S = 10.0  # an invitation unanswered this long is withdrawn and sent again
# An acknowledged invitation that does not show in our outgoing list this soon was dropped
# (a node that did not yet count the inviter online deletes it: seen right after start-up).
INVITE_SHOWN_S = 1.0
TURN_RETRY_S = 5.0  # a move with no news for this long is sent again
STALL_S = 300.0
FAILOVER_S = 60.0  # the server keeps a dropped session this long (docs/protocol.md)
SIGN_IN_S = 30.0
STALE_MOVE_CODES = {"not_your_turn", "illegal_move", "game_over", "not_found", "rate_limited"}
FATAL_CLOSES = {
    4100: "logged in elsewhere (another program uses this bot's name)",
    4102: "account disabled",
    4103: "protocol violation",
}
OUTCOMES = ("won", "lost", "draw", "saved")


class BotStopped(Exception):
    """A bot cannot go on (its reason is reported in the summary)."""


@dataclass(frozen=True)
class GameRecord:
    """One game a bot took part in, from its seat."""

    gid: str
    opponent: str
    outcome: str  # one of OUTCOMES
    reason: str
    moves: int  # the bot's own moves
    plies: int  # moves of both players


@dataclass
class BotStats:
    name: str
    home: str
    partner: str | None
    for_people: bool = False
    server: str = ""
    games: list[GameRecord] = field(default_factory=list)
    moves: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str = ""  # why the bot ended before playing all its games ("" if it did not)

    @property
    def finished(self) -> int:
        return sum(1 for g in self.games if g.outcome != "saved")

    def count(self, outcome: str) -> int:
        return sum(1 for g in self.games if g.outcome == outcome)


@dataclass
class BotSummary:
    bots: list[BotStats]
    elapsed_s: float
    games_wanted: int

    def gids(self) -> set[str]:
        """Every finished game any bot played."""
        return {g.gid for b in self.bots for g in b.games if g.outcome != "saved"}

    def problems(self) -> list[str]:
        """Errors, early stops, and bots short of their games (empty: all went well)."""
        found = [f"{b.name}: {e}" for b in self.bots for e in b.errors]
        found += [f"{b.name} stopped: {b.stopped}" for b in self.bots if b.stopped]
        if self.games_wanted:
            found += [
                f"{b.name} finished {b.finished} of {self.games_wanted} games"
                for b in self.bots
                if b.finished < self.games_wanted and b.partner and not b.stopped
            ]
        return found

    def report(self) -> str:
        head = f"  {'bot':<20} {'server':<24} games  won lost draw saved  moves  reconn errors"
        lines = [head]
        for b in self.bots:
            name = f"{b.name} (people)" if b.for_people else b.name
            lines.append(
                f"  {name:<20} {b.server:<24} {b.finished:>5} {b.count('won'):>4} "
                f"{b.count('lost'):>4} {b.count('draw'):>4} {b.count('saved'):>5} "
                f"{b.moves:>6} {b.reconnects:>7} {len(b.errors):>6}"
            )
        lines.append(
            f"  {len(self.gids())} games finished, {sum(b.moves for b in self.bots)} moves, "
            f"{sum(b.reconnects for b in self.bots)} reconnects in {self.elapsed_s:.1f} s"
        )
        lines += [f"  problem: {p}" for p in self.problems()]
        return "\n".join(lines)


@dataclass
class BotPlan:
    """What every bot of a run shares: its settings and who is done."""

    servers: list[str]
    games: int  # per bot; 0: play until `stop` is set
    password: str
    pause_s: float  # between two games (the inviter waits this long before inviting again)
    move_delay_s: float  # before each move, so that people can follow
    stall_s: float
    log: Callable[[str], None]
    stop: asyncio.Event
    names: list[str]
    for_people: int = 0  # the first this many bots wait for people (see module docstring)
    done: set[str] = field(default_factory=set)


class Bot:
    """One bot player (see module docstring)."""

    def __init__(self, index: int, plan: BotPlan, http: aiohttp.ClientSession, seed: int) -> None:
        self.plan = plan
        self.name = plan.names[index]
        self.server_index = index % len(plan.servers)
        self.partner, self.inviter = _partner(index, plan)
        self.client = PlayerClient(plan.servers[self.server_index], http)
        self.brain = ViewBot(seed)
        self.stats = BotStats(
            self.name,
            plan.servers[self.server_index],
            self.partner,
            for_people=index < plan.for_people,
        )
        self.game: dict[str, Any] | None = None  # the newest push of the game being played
        self.game_moves = 0
        self.sent_at_ply = -1  # the ply this bot last sent a move for (no repeat until news)
        self.progress_at = 0.0
        self.pause_until = 0.0
        self.invited_at = -INVITE_PATIENCE_S
        self.next_invite_at = 0.0
        self.over: set[str] = set()  # games already recorded
        self.refused_invites: set[str] = set()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _log(self, text: str) -> None:
        region = self.client.you.get("region", "?")
        self.plan.log(f"{self.name} ({region}): {text}")

    def _error(self, text: str) -> None:
        self.stats.errors.append(text)
        self._log(f"error: {text}")

    async def run(self) -> BotStats:
        try:
            await self._sign_in()
            await self._play_until_done()
        except BotStopped as stop:
            self.stats.stopped = str(stop)
            self._log(f"stopped: {stop}")
        finally:
            self.plan.done.add(self.name)
            with contextlib.suppress(Exception):
                await self.client.close()
        return self.stats

    # --- signing in and failover ------------------------------------------------------------

    async def _sign_in(self) -> None:
        """Register (or log in) and connect, trying each server from the bot's own on."""
        deadline = self._now() + SIGN_IN_S
        for attempt in _attempts():
            url = self.plan.servers[(self.server_index + attempt) % len(self.plan.servers)]
            try:
                await self._log_in(url, register=True)
                await self.client.connect(base_url=url)
                self.server_index = self.plan.servers.index(url)
                self.stats.server = url
                return
            except (aiohttp.ClientError, OSError) as error:
                if self._now() > deadline:
                    raise BotStopped(f"no server reachable ({url}: {error})") from None
            await asyncio.sleep(_backoff(attempt))

    async def _log_in(self, url: str, *, register: bool = False) -> None:
        self.client.base_url = url
        if register:
            try:
                await self.client.register(self.name, self.plan.password)
            except RequestError as error:
                if error.code != "name_taken":
                    raise BotStopped(f"cannot register: {error}") from None
        try:
            await self.client.login(self.name, self.plan.password)
        except RequestError as error:
            if error.code == "bad_credentials":
                raise BotStopped(
                    "the name is registered with another password (choose --prefix or --password)"
                ) from None
            raise BotStopped(f"cannot log in: {error}") from None

    async def _failover(self, code: int | None, reason: str) -> None:
        """Continue the session on the next server of the list (see module docstring)."""
        if code in FATAL_CLOSES:
            raise BotStopped(f"closed by the server: {FATAL_CLOSES[code]}")
        lost = self.client.base_url
        self._log(f"connection to {lost} lost (code {code} {reason}); failing over")
        need_login = code == 4101  # the token is no good: the session is over
        deadline = self._now() + FAILOVER_S
        for attempt in _attempts():
            if self.plan.stop.is_set():
                return
            url = self.plan.servers[(self.server_index + 1 + attempt) % len(self.plan.servers)]
            try:
                if need_login:
                    await self._log_in(url)
                    reply = await self.client.connect(base_url=url)
                else:
                    reply = await self.client.connect(resume=True, base_url=url)
            except RequestError as error:
                need_login = need_login or error.code == "unauthenticated"
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            else:
                self._resumed(url, reply)
                return
            if self._now() > deadline:
                raise BotStopped(f"no server took the session back within {FAILOVER_S:.0f} s")
            await asyncio.sleep(_backoff(attempt))

    def _resumed(self, url: str, reply: dict[str, Any]) -> None:
        self.server_index = self.plan.servers.index(url)
        self.stats.server = url
        self.stats.reconnects += 1
        self.sent_at_ply = -1  # a move sent just before the drop may be lost: send it again
        self._log(f"resumed on {url}; live games {reply['games']}")
        if self.game is not None and self.game["game"] not in reply["games"]:
            self._error(f"game {self.game['game']} is not live on {url} after the failover")
            self.game = None

    # --- the main loop -------------------------------------------------------------------

    async def _play_until_done(self) -> None:
        while not self._done():
            closed = await self._take_pushes()
            if closed is not None:
                await self._failover(closed.get("code"), closed.get("reason", ""))
                continue
            try:
                await self._act()
            except RequestError as error:
                if error.code != "disconnected":  # else the _closed push is on its way
                    self._error(f"request refused: {error}")

    def _done(self) -> bool:
        if self.plan.stop.is_set():
            return True
        if self.game is not None or not self.plan.games:
            return False
        if self.stats.finished >= self.plan.games:
            return True
        # Nobody left to play: the partner is done (or there is none and all the others are).
        if self.partner is None:  # plays only people: done with the paired bots, if any
            paired = self.plan.names[self.plan.for_people :]
            others = [n for n in paired if n != self.name]
            return bool(others) and all(n in self.plan.done for n in others)
        if self.partner in self.plan.done:
            self.stats.stopped = f"{self.partner} is done (it played people too)"
            return True
        return False

    async def _take_pushes(self) -> dict[str, Any] | None:
        """Wait a little for pushes and note all that came; return a close if one came."""
        pushes = []
        with contextlib.suppress(TimeoutError):
            pushes.append(await asyncio.wait_for(self.client.pushes.get(), TICK_S))
        while not self.client.pushes.empty():
            pushes.append(self.client.pushes.get_nowait())
        for push in pushes:
            if push["type"] == "_closed":
                return push  # what came after it belongs to no connection
            self._note(push)
        return None

    def _note(self, push: dict[str, Any]) -> None:
        if push["type"] == "game" and push.get("you") is not None:
            self._note_game(push)
        elif push["type"] == "rollback" and self.game and push["game"] == self.game["game"]:
            self._log(f"game {push['game']} went back to ply {push['ply']}: {push['reason']}")
            self.sent_at_ply = -1
        elif push["type"] == "notice":
            self._log(f"notice {push.get('code')}: {push.get('message')}")
        elif push["type"] == "drain":  # the client follows it (node.client)
            self._log(f"drain notice: {push.get('message')}")
        elif push["type"] == "_moved":
            self._moved(push["url"])

    def _moved(self, url: str) -> None:
        """The client followed a drain notice to `url`: fail over from there from now on."""
        if url in self.plan.servers:
            self.server_index = self.plan.servers.index(url)
        self.stats.server = url
        self.stats.reconnects += 1
        self._log(f"moved to {url}")

    def _note_game(self, push: dict[str, Any]) -> None:
        gid = push["game"]
        if gid in self.over:
            return
        if push["status"] != "live":
            self._game_over(push)
            return
        if self.game is None:
            self._log(f"started game {gid} against {_opponent(push)}")
            self.game_moves, self.sent_at_ply = 0, -1
        elif self.game["game"] != gid:
            return  # a second live game can only come from a merge; the server parks one
        if self.game is None or push["ply"] != self.game["ply"]:
            self.progress_at = self._now()
        self.game = push

    def _game_over(self, push: dict[str, Any]) -> None:
        gid = push["game"]
        self.over.add(gid)
        result = push.get("result") or {}
        if push["status"] != "finished":
            outcome, reason = "saved", push["status"]
        else:
            winner = result.get("winner")
            outcome = "draw" if winner is None else ("won" if winner == push["you"] else "lost")
            reason = str(result.get("reason", ""))
        moves = self.game_moves if self.game and self.game["game"] == gid else 0
        record = GameRecord(gid, _opponent(push), outcome, reason, moves, push["ply"])
        self.stats.games.append(record)
        if push["you"] == 0 or record.opponent not in self.plan.names:
            self._log(
                f"game {gid} against {record.opponent}: {outcome} ({reason}, {record.plies} "
                f"plies); {self.stats.finished} finished"
            )
        if self.game is not None and self.game["game"] == gid:
            self.game = None
            self.pause_until = self._now() + self.plan.pause_s

    # --- acting --------------------------------------------------------------------------

    async def _act(self) -> None:
        if self.game is not None:
            await self._play_turn(self.game)
            return
        if await self._accept_invitation() or not (self.inviter and self.partner):
            return
        if self._now() >= self.pause_until:
            await self._invite_partner(self.partner)

    async def _play_turn(self, push: dict[str, Any]) -> None:
        now = self._now()
        if now - self.progress_at > self.plan.stall_s:
            await self._give_up_stalled(push)
            return
        if push["to_move"] != push["you"] or not push["legal"]:
            return
        if push["ply"] == self.sent_at_ply and now - self.progress_at < TURN_RETRY_S:
            return  # waiting for the push that shows the move
        if self.plan.move_delay_s:
            await asyncio.sleep(self.plan.move_delay_s)
        move = self.brain.choose(push["view"], push["legal"])
        self.sent_at_ply = push["ply"]
        self.progress_at = now
        try:
            await self.client.request("move", game=push["game"], move=move)
        except RequestError as error:
            if error.code == "not_replicated":  # durable here; it replicates later
                self.stats.moves += 1
                self.game_moves += 1
            elif error.code not in STALE_MOVE_CODES:
                raise
            return
        self.stats.moves += 1
        self.game_moves += 1

    async def _give_up_stalled(self, push: dict[str, Any]) -> None:
        gid = push["game"]
        text = f"game {gid} made no progress for {self.plan.stall_s:.0f} s; saving it"
        if _opponent(push) in self.plan.names:
            self._error(text)
        else:  # a person may simply have walked away: free the bot for the next one
            self._log(text)
        with contextlib.suppress(RequestError):
            await self.client.request("save", game=gid)
        self.over.add(gid)
        self.stats.games.append(
            GameRecord(gid, _opponent(push), "saved", "stalled", self.game_moves, push["ply"])
        )
        self.game = None

    async def _accept_invitation(self) -> bool:
        """Accept an incoming invitation, people's first; True if one was accepted."""
        incoming = [
            i
            for i in self.client.latest.get("invites", {}).get("incoming", [])
            if i["iid"] not in self.refused_invites
        ]
        incoming.sort(key=lambda i: i["from"] == self.partner)
        for invitation in incoming:
            try:
                await self.client.request("accept", invite=invitation["iid"])
            except RequestError as error:
                if error.code not in ("not_found", "busy"):
                    raise
                self.refused_invites.add(invitation["iid"])  # gone or taken: try no more
                continue
            return True
        return False

    async def _invite_partner(self, partner: str) -> None:
        now = self._now()
        outgoing = self.client.latest.get("invites", {}).get("outgoing", [])
        pending = [i for i in outgoing if i["to"].lower() == partner.lower()]
        # A node may drop an invitation it acknowledged (see INVITE_SHOWN_S): ask again soon.
        patience = INVITE_PATIENCE_S if pending else INVITE_SHOWN_S
        if now - self.invited_at < patience or now < self.next_invite_at:
            return
        for stale in pending:
            with contextlib.suppress(RequestError):
                await self.client.request("retract", invite=stale["iid"])
        try:
            await self.client.request("invite", to=partner)
        except RequestError as error:
            if error.code not in ("offline", "busy", "unknown_user", "unavailable"):
                raise
            self.next_invite_at = now + INVITE_RETRY_S
            return
        self.invited_at = now


def _partner(index: int, plan: BotPlan) -> tuple[str | None, bool]:
    """The bot's partner (None for a bot reserved for people) and whether it invites."""
    if index < plan.for_people:
        return None, False
    paired = index - plan.for_people
    partner = plan.for_people + paired - paired % 2 + 1 - paired % 2
    return (plan.names[partner] if partner < len(plan.names) else None), paired % 2 == 0


def _opponent(push: dict[str, Any]) -> str:
    return str(push["players"][1 - push["you"]])


def _attempts() -> itertools.count[int]:
    return itertools.count()


def _backoff(attempt: int) -> float:
    return float(min(2.0, 0.1 * 2 ** min(attempt, 5)))


def bot_names(prefix: str, count: int) -> list[str]:
    names = [f"{prefix}{i + 1}" for i in range(count)]
    for name in names:
        try:
            check_name(name)
        except ValueError as error:
            raise ValueError(f"bot name {name!r}: {error} (change --prefix)") from None
    return names


async def run_bots(
    servers: Sequence[str],
    count: int,
    games: int,
    seed: int = 0,
    *,
    password: str = DEFAULT_PASSWORD,
    prefix: str = DEFAULT_PREFIX,
    pause_s: float = 0.0,
    move_delay_s: float = 0.0,
    stall_s: float = STALL_S,
    for_people: int = 0,
    log: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> BotSummary:
    """Run `count` bots against `servers` until each has finished `games` games (0: until
    `stop` is set); the first `for_people` of them wait for people. See the module docstring
    for pairing, invitations and failover."""
    if not servers or count < 1 or games < 0 or not 0 <= for_people <= count:
        raise ValueError(
            "run_bots needs at least one server, one bot, games >= 0 and 0 <= for_people <= count"
        )
    plan = BotPlan(
        servers=[s.rstrip("/") for s in servers],
        games=games,
        password=password,
        pause_s=pause_s,
        move_delay_s=move_delay_s,
        stall_s=stall_s,
        log=log or (lambda _text: None),
        stop=stop or asyncio.Event(),
        names=bot_names(prefix, count),
        for_people=for_people,
    )
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)  # every bot holds a websocket open
    async with aiohttp.ClientSession(connector=connector) as http:
        bots = [Bot(i, plan, http, seed * 1_000_003 + i) for i in range(count)]
        stats = await asyncio.gather(*(bot.run() for bot in bots))
    return BotSummary(list(stats), time.monotonic() - started, games)


# --- checking the game logs ---------------------------------------------------------------


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


# --- the command -------------------------------------------------------------------------

BOT_DESCRIPTION = """\
Run N Battleline bots as real players over websockets. Bot i registers at the i-th --server
(round robin; it logs in if its name exists already). The first M bots (--for-people M) wait
for people: nobody else invites them and they accept a person's invitation at once. The others
are paired (1-2, 3-4, ... of them) so that partners sit in different regions, and each pair
plays G games; an idle paired bot also accepts a person's invitation. Moves come from the
engine's heuristic run on the bot's own view.

If a bot's connection fails it resumes its session on the next --server (with its resume
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
