"""``meridian bot``: Battleline bots that are real players: websocket clients of the nodes.

Each bot is the one bot state machine, `node.botbrain.Bot`; this module is its asyncio adapter.
Its transport is a `WebsocketSide` (a `node.client.PlayerClient` per connection, also what
``meridian sim cluster`` gives the simulator's bots), its clock the event loop's, its moves
`games.battleline.viewbot.ViewBot` (the engine's heuristic run on a state consistent with the
``view`` of its ``game`` pushes), and its settings `bot_settings`: no random faults, invitations
only to its partner, a person's invitation accepted after `ACCEPT_PAUSE_S` with `GREETING` in
the game's chat.

Bot ``i`` registers at ``servers[i % len(servers)]`` (or at the next server that answers; it
logs in if its name exists). The first `for_people` bots are reserved for people: they never
invite anyone and no bot invites them, so they sit idle until a person invites them. The other
bots are paired (the 1st with the 2nd of them, the 3rd with the 4th, ...; partners sit in
different regions whenever there are two servers or more); the first of a pair invites, the
second accepts. An idle bot also accepts any invitation, a person's first.

On a connection failure a bot resumes its session with its resume token at another server of
the list (failover), logging in again if the session is gone, and plays on in the same game. A
node that drains tells its players where to go; the bot's client follows that notice by itself.
A stalled game (no progress for `BotPlan.stall_s`) is saved and counted as an error when the
opponent is a bot. A bot that finds no server for `SIGN_IN_S` (at the start) or `FAILOVER_S`
(after a drop) stops.

`run_bots` runs a set of bots to completion and returns a `BotSummary` (each bot's games, from
its notes and pushes: `BotLedger`); the demo and the tests use it. `add_bot_parser` adds the
``meridian bot`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from meridian.crdt_models.accounts import check_name
from meridian.games.battleline.viewbot import ViewBot
from meridian.node.botbrain import (
    FATAL_CLOSES,
    TICK_S,
    Bot,
    BotSettings,
    Done,
    MovePolicy,
    Reply,
    Shared,
)
from meridian.node.client import PlayerClient, RequestError

DEFAULT_PASSWORD = "meridian-bot-password"
DEFAULT_PREFIX = "bot"
# A person's invitation is accepted this long after the bot saw it, so that the person sees it
# sent ("waiting for bot1 to accept") before the game begins.
ACCEPT_PAUSE_S = 0.8
GREETING = "Hello! I accepted your invitation. I am a bot: take your time, and good game!"
# After an invitation, none for this long: an acknowledged invitation that does not show in our
# outgoing list by then was dropped (a node that did not yet count the inviter online deletes it).
INVITE_SHOWN_S = 1.0
STALL_S = 300.0
FAILOVER_S = 60.0  # the server keeps a dropped session this long (docs/protocol.md)
SIGN_IN_S = 30.0
SHUTDOWN_S = 5.0  # closing the websockets at the end
OUTCOMES = ("won", "lost", "draw", "saved")


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
    seed: int = 0
    done: set[str] = field(default_factory=set)


def bot_settings(plan: BotPlan) -> BotSettings:
    """The one bot's settings for real players (see module docstring)."""
    delay = (plan.move_delay_s, plan.move_delay_s)
    return BotSettings(
        players=len(plan.names),
        think_s=delay,
        give_up=0.0,
        save=0.0,
        chat=0.0,
        watch=0.0,
        invite_per_s=1 / TICK_S,  # whenever the partner is idle and nothing is pending
        random_region=0.0,
        travel_per_min=0.0,
        double_login_per_min=0.0,
        regions=tuple(plan.servers),
        register_home=False,
        invite_anyone=False,
        people_first=True,
        accept_pause_s=ACCEPT_PAUSE_S,
        greeting=GREETING,
        pause_s=plan.pause_s,
        reinvite_s=INVITE_SHOWN_S,
        stall_s=plan.stall_s,
    )


# --- the transport: one player's websocket ------------------------------------------------


class Loop(Protocol):
    """What a `WebsocketSide` needs from whoever runs the bots."""

    http: aiohttp.ClientSession

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None: ...

    def url(self, node: str) -> str: ...


def _failure(code: str, message: str) -> Reply:
    return {"ok": False, "error": {"code": code, "message": message}}


class WebsocketSide:
    """A bot's client on a real websocket (`node.botbrain.PlayerSide` over a `PlayerClient`;
    a refusal or a failure is a reply with ``ok`` false, ``unreachable`` for no answer)."""

    def __init__(self, loop: Loop, region: str, nodes: Sequence[str]) -> None:
        self.loop = loop
        self.region = region
        self.nodes = list(nodes)
        self.node: str | None = None
        self.on_push: Callable[[Reply], None] = lambda push: None
        self.on_closed: Callable[[int, str], None] = lambda code, reason: None
        self.on_news: Callable[[], None] = lambda: None  # after each reply and push
        self._client: PlayerClient | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        ws = self._client.ws if self._client is not None else None
        return ws is not None and not ws.closed

    @property
    def region_name(self) -> str:
        """The region the node of the connection says it is."""
        return str(self._client.you.get("region", "?")) if self._client is not None else "?"

    def http(self, node: str, path: str, body: Reply, done: Done) -> None:
        client = PlayerClient(self.loop.url(node), self.loop.http)
        self.loop.spawn(self._call(client.post(path, body), done))

    def connect(self, node: str, hello: Reply, done: Done) -> None:
        self.close()
        client = PlayerClient(self.loop.url(node), self.loop.http)
        client.token, client.resume = str(hello.get("token", "")), str(hello.get("resume", ""))
        # The client's hello says what it was shown (``seen``) from the games it knows.
        client.games = {
            gid: {"status": "live", **seen} for gid, seen in hello.get("seen", {}).items()
        }

        async def opened() -> Reply:
            reply = await client.connect(resume="resume" in hello)
            self._client, self.node = client, node
            self._reader = asyncio.create_task(self._read(client))
            return reply

        self.loop.spawn(self._call(opened(), done))

    def request(self, kind: str, fields: Reply, done: Done) -> None:
        if self._client is None or not self.connected:
            done(_failure("disconnected", "the websocket is closed"))
            return
        self.loop.spawn(self._call(self._client.request(kind, **fields), done))

    def close(self) -> None:
        client, self._client, self.node = self._client, None, None
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if client is not None:
            self.loop.spawn(client.close())

    async def _call(self, call: Coroutine[Any, Any, Reply], done: Done) -> None:
        try:
            reply = await call
        except RequestError as error:
            reply = _failure(error.code, error.message)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            reply = _failure("unreachable", str(error) or type(error).__name__)
        done({"ok": True, **reply} if "ok" not in reply else reply)
        self.on_news()

    async def _read(self, client: PlayerClient) -> None:
        while True:
            push = await client.pushes.get()
            if push["type"] == "_moved":  # the client followed a drain notice
                self.node = next((n for n in self.nodes if self.loop.url(n) == push["url"]), None)
            if push["type"] != "_closed":
                self.on_push(push)
                self.on_news()
                continue
            if client is self._client:
                self._client, self.node = None, None
                self.on_closed(int(push.get("code") or 1006), str(push.get("reason", "")))
                self.on_news()
            return


class WebsocketPlayers:
    """`node.botbrain.Players` whose clients are `WebsocketSide`s."""

    def __init__(self, loop: Loop, regions: Sequence[str], now: Callable[[], float]) -> None:
        self.loop = loop
        self.regions = list(regions)
        self.clients: list[WebsocketSide] = []
        self.on_news: Callable[[], None] = lambda: None
        self._now = now

    def new_client(self, region: str) -> WebsocketSide:
        client = WebsocketSide(self.loop, region, self.regions)
        client.on_news = self.on_news
        self.clients.append(client)
        return client

    def now(self) -> float:
        return self._now()

    def close(self) -> None:
        for client in self.clients:
            client.close()


# --- what a bot did: its records, from its notes and pushes -------------------------------


class BotLedger:
    """One bot's `BotStats` and log lines, kept from what its machine notes and is pushed."""

    def __init__(self, bot: Bot, stats: BotStats, plan: BotPlan) -> None:
        self.bot = bot
        self.stats = stats
        self.plan = plan
        self.region = "?"
        self.hellos = 0
        self.game: Reply | None = None  # the newest push of the game being played
        self.game_moves = 0
        self.over: set[str] = set()  # games already recorded
        self.offline_since: float | None = None
        bot.observer = self.push

    def log(self, text: str) -> None:
        self.plan.log(f"{self.stats.name} ({self.region}): {text}")

    def error(self, text: str) -> None:
        self.stats.errors.append(text)
        self.log(f"error: {text}")

    # --- pushes ---------------------------------------------------------------------------

    def push(self, push: Reply) -> None:
        kind = push["type"]
        if kind == "game" and push.get("you") is not None:
            self._game(push)
        elif kind == "notice":
            self.log(f"notice {push.get('code')}: {push.get('message')}")
        elif kind == "drain":  # the client follows it (node.client)
            self.log(f"drain notice: {push.get('message')}")
        elif kind == "_moved":
            self.stats.server = str(push["url"])
            self.stats.reconnects += 1
            self.region = str(push.get("region") or self.region)
            self.log(f"moved to {push['url']}")

    def _game(self, push: Reply) -> None:
        gid = push["game"]
        if gid in self.over:
            return
        if push["status"] != "live":
            self._game_over(push)
        elif self.game is None or self.game["game"] == gid:
            if self.game is None:
                self.log(f"started game {gid} against {_opponent(push)}")
                self.game_moves = 0
            self.game = push
        # else: a second live game can only come from a merge; the server parks one

    def _game_over(self, push: Reply) -> None:
        gid = push["game"]
        self.over.add(gid)
        result = push.get("result") or {}
        if push["status"] != "finished":
            outcome, reason = "saved", str(push["status"])
        else:
            winner = result.get("winner")
            outcome = "draw" if winner is None else ("won" if winner == push["you"] else "lost")
            reason = str(result.get("reason", ""))
        ours = self.game is not None and self.game["game"] == gid
        record = GameRecord(
            gid, _opponent(push), outcome, reason, self.game_moves if ours else 0, push["ply"]
        )
        self.stats.games.append(record)
        if push["you"] == 0 or record.opponent not in self.plan.names:
            self.log(
                f"game {gid} against {record.opponent}: {outcome} ({reason}, {record.plies} "
                f"plies); {self.stats.finished} finished"
            )
        if ours:
            self.game = None

    # --- notes ----------------------------------------------------------------------------

    def note(self, node: str, kind: str, fields: Reply) -> None:
        if kind == "hello":
            self._hello(node, fields)
        elif kind in ("move", "move-unreplicated"):  # unreplicated: durable, replicates later
            self.stats.moves += 1
            self.game_moves += 1
        elif kind == "closed":
            if fields["code"] not in FATAL_CLOSES:
                self.log(f"connection to {node} lost (code {fields['code']}); failing over")
        elif kind == "stalled":
            self._stalled(fields)
        elif kind == "error":
            self.error(f"request refused: internal: {fields['message']}")

    def _hello(self, node: str, fields: Reply) -> None:
        self.hellos += 1
        self.stats.server = node
        side = self.bot.client
        if isinstance(side, WebsocketSide):
            self.region = side.region_name
        if self.hellos == 1:
            return
        self.stats.reconnects += 1
        self.log(f"resumed on {node}; live games {fields['games']}")
        if self.game is not None and self.game["game"] not in fields["games"]:
            self.error(f"game {self.game['game']} is not live on {node} after the failover")
            self.game = None

    def _stalled(self, fields: Reply) -> None:
        gid, push = fields["game"], self.game
        if push is None or push["game"] != gid:
            return
        text = f"game {gid} made no progress for {self.plan.stall_s:.0f} s; saving it"
        if _opponent(push) in self.plan.names:
            self.error(text)
        else:  # a person may simply have walked away: free the bot for the next one
            self.log(text)
        self.over.add(gid)
        self.stats.games.append(
            GameRecord(gid, _opponent(push), "saved", "stalled", self.game_moves, push["ply"])
        )
        self.game = None

    # --- whether the bot is done ------------------------------------------------------------

    def done(self, now: float) -> bool:
        """Whether this bot has nothing left to do (see module docstring)."""
        if self.plan.stop.is_set():
            return True
        if self.bot.phase == "done" or self._offline_too_long(now):
            self.stats.stopped = self.stats.stopped or self.bot.stopped
            return True
        if self.bot.game is not None or not self.plan.games:
            return False
        if self.stats.finished >= self.plan.games:
            return True
        # Nobody left to play: the partner is done (or there is none and all the others are).
        partner = self.stats.partner
        if partner is None:  # plays only people: done with the paired bots, if any
            paired = self.plan.names[self.plan.for_people :]
            others = [n for n in paired if n != self.stats.name]
            return bool(others) and all(n in self.plan.done for n in others)
        if partner in self.plan.done:
            self.stats.stopped = f"{partner} is done (it played people too)"
            return True
        return False

    def _offline_too_long(self, now: float) -> bool:
        if self.bot.phase == "online":
            self.offline_since = None
            return False
        if self.offline_since is None:
            self.offline_since = now
        limit = SIGN_IN_S if self.hellos == 0 else FAILOVER_S
        if now - self.offline_since <= limit:
            return False
        if self.hellos == 0:
            self.bot.stop(f"no server reachable within {SIGN_IN_S:.0f} s")
        else:
            self.bot.stop(f"no server took the session back within {FAILOVER_S:.0f} s")
        return True


def _opponent(push: Reply) -> str:
    return str(push["players"][1 - push["you"]])


# --- running a crew of bots -------------------------------------------------------------------


class BotRun:
    """One run of `run_bots`: the bots' machines driven by the event loop (also their `Loop`)."""

    def __init__(self, plan: BotPlan, http: aiohttp.ClientSession) -> None:
        self.plan = plan
        self.http = http
        self._t0 = asyncio.get_running_loop().time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._news = asyncio.Event()
        self.players = WebsocketPlayers(self, plan.servers, lambda: self.now)
        self.players.on_news = self._news.set
        rng = random.Random(f"meridian-bots:{plan.seed}")
        self.shared = Shared(bot_settings(plan), self.players, rng, self)
        self.ledgers: dict[str, BotLedger] = {}
        for index, name in enumerate(plan.names):
            self._add_bot(index, name)

    def _add_bot(self, index: int, name: str) -> None:
        plan = self.plan
        home = plan.servers[index % len(plan.servers)]
        partner, inviter = _partner(index, plan)
        policy = _view_policy(ViewBot(plan.seed * 1_000_003 + index))
        bot = Bot(
            self.shared,
            name,
            name,
            home,
            "new",
            partner if inviter and partner else "",
            password=plan.password,
            policy=policy,
        )
        self.shared.bots.append(bot)
        stats = BotStats(name, home, partner, for_people=index < plan.for_people)
        self.ledgers[name] = BotLedger(bot, stats, plan)

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def url(self, node: str) -> str:
        return node  # the nodes are named by their base URLs

    def note(self, node: str, kind: str, **fields: Any) -> None:
        self.ledgers[fields["client"]].note(node, kind, fields)

    async def run(self) -> list[BotStats]:
        try:
            await self._drive()
        finally:
            await self._shut_down()
        return [ledger.stats for ledger in self.ledgers.values()]

    async def _drive(self) -> None:
        """Act on every tick, and at once on news (a reply or a push)."""
        active = dict(zip(self.plan.names, self.shared.bots, strict=True))
        while active:
            self._news.clear()
            now = self.now
            for name, bot in list(active.items()):
                ledger = self.ledgers[name]
                if ledger.done(now):
                    self._finish(name, bot)
                    del active[name]
                else:
                    bot.act(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), TICK_S)

    def _finish(self, name: str, bot: Bot) -> None:
        ledger = self.ledgers[name]
        if ledger.stats.stopped:
            ledger.log(f"stopped: {ledger.stats.stopped}")
        bot.stop("done")
        bot.client.close()
        self.plan.done.add(name)

    async def _shut_down(self) -> None:
        self.players.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_S)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _view_policy(brain: ViewBot) -> MovePolicy:
    """The engine's heuristic on the bot's view (the machine's rng is not used)."""

    def choose(push: Reply, rng: random.Random) -> Reply:
        move: Reply = brain.choose(push["view"], push["legal"])
        return move

    return choose


def _partner(index: int, plan: BotPlan) -> tuple[str | None, bool]:
    """The bot's partner (None for a bot reserved for people) and whether it invites."""
    if index < plan.for_people:
        return None, False
    paired = index - plan.for_people
    partner = plan.for_people + paired - paired % 2 + 1 - paired % 2
    return (plan.names[partner] if partner < len(plan.names) else None), paired % 2 == 0


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
        seed=seed,
    )
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)  # every bot holds a websocket open
    async with aiohttp.ClientSession(connector=connector) as http:
        stats = await BotRun(plan, http).run()
    return BotSummary(stats, time.monotonic() - started, games)


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
