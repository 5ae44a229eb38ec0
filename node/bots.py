"""Battleline bots that are real players (``meridian bot``, the demo): websocket clients of nodes.

Each bot is the one bot state machine, `node.botbrain.Bot`; this module is its asyncio adapter.
Its transport is a `node.botsocket.WebsocketSide` (a `node.client.PlayerClient` per connection,
also what ``meridian sim cluster`` gives the simulator's bots), its clock the event loop's (it
acts every ``TICK_S`` and at once after each reply or push), its moves
`games.battleline.viewbot.ViewBot` (the engine's heuristic run on a state consistent with the
``view`` of its ``game`` pushes), and its settings `bot_settings`: no random faults, invitations
only to its partner, a person's invitation accepted after `ACCEPT_PAUSE_S` with `GREETING` in
the game's chat.

Bot ``i`` registers at ``servers[i % len(servers)]`` (or at the next server that answers; it
logs in if its name exists). The first `for_people` bots are reserved for people: they never
invite anyone, no bot invites them, and they decline a bot's invitation (``people_only``), so
they sit idle until a person invites them. In an endless run (``games`` 0) they are a pool that
refills (`node.botpool`): while one of them plays a person (or accepts a person's invitation),
the run starts a standby bot (named after the others: ``bot7``, ``bot8``, ... in the demo; at
most `MAX_STANDBY` at once) so that `for_people` bots stay idle, and a surplus standby idle for
`STANDBY_LINGER_S` logs out once people's games end. The other bots are paired (the 1st with
the 2nd of them, the 3rd with the 4th, ...; partners sit in different regions whenever there
are two servers or more); the first of a pair invites, the second accepts. An idle paired bot
also accepts any invitation, a person's first.

On a connection failure a bot resumes its session with its resume token at another server of
the list (failover), logging in again if the session is gone, and plays on in the same game. A
node that drains tells its players where to go; the bot's client follows that notice by itself.
A stalled game (no progress for `BotPlan.stall_s`) is saved and counted as an error when the
opponent is a bot. A bot that finds no server for `SIGN_IN_S` (at the start) or `FAILOVER_S`
(after a drop) stops.

`run_bots` runs a set of bots to completion and returns a `node.botrecords.BotSummary` (each
bot's games, from its notes and pushes: `node.botrecords.BotLedger`); the demo and the tests use
it, and ``meridian bot`` (`node.botcommand`) runs it from a shell. `node.botlogs` checks that
the nodes agree on the games played.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp

from meridian.crdt_models.accounts import check_name
from meridian.games.battleline.viewbot import ViewBot
from meridian.node.botbrain import Bot, Shared
from meridian.node.botpool import BUSY, COMING, IDLE, Seat, plan_pool
from meridian.node.botrecords import STALL_S, BotLedger, BotPlan, BotStats, BotSummary
from meridian.node.botsocket import WebsocketPlayers
from meridian.node.botworld import STEADY, TICK_S, BotSettings, MovePolicy, Reply
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
# A standby bot for people stays this long idle when it is not needed before it logs out: time
# for the person it just played to ask for a rematch.
STANDBY_LINGER_S = 30.0
MAX_STANDBY = 8  # standby bots for people running at once (a crowd cannot start more)
SHUTDOWN_S = 5.0  # closing the websockets at the end


def bot_settings(plan: BotPlan) -> BotSettings:
    """The one bot's settings for real players (see module docstring)."""
    delay = (plan.move_delay_s, plan.move_delay_s)
    return dataclasses.replace(
        STEADY,
        players=len(plan.names),
        think_s=delay,
        invite_per_s=1 / TICK_S,  # whenever the partner is idle and nothing is pending
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
        self.shared.names = {name.lower() for name in plan.standby_names}
        self.unusable: set[str] = set()  # standby names whose bot stopped (a name taken, ...)
        self.ledgers: dict[str, BotLedger] = {}
        self.active: dict[str, Bot] = {}  # the bots still running, by name
        self.pool: dict[str, str] = {}  # the bots for people running -> their `Seat` state
        self.idle_since: dict[str, float] = {}
        for index, name in enumerate(plan.names):
            self._add_bot(index, name)

    def _add_bot(self, index: int, name: str) -> None:
        """Start bot `index` (a standby beyond ``plan.names``) under `name`."""
        plan = self.plan
        home = plan.servers[index % len(plan.servers)]
        partner, inviter = _partner(index, plan)
        policy = _view_policy(ViewBot(plan.seed * 1_000_003 + index))
        for_people = partner is None and (index < plan.for_people or index >= len(plan.names))
        bot = Bot(
            self.shared,
            name,
            name,
            home,
            "new",
            partner if inviter and partner else "",
            password=plan.password,
            policy=policy,
            people_only=for_people,
        )
        self.shared.bots.append(bot)
        self.active[name] = bot
        if for_people:
            self.pool[name] = COMING
        if name in self.ledgers:  # a standby started again: one record per name
            self.ledgers[name].rejoin(bot)
        else:
            stats = BotStats(name, home, partner, for_people=for_people)
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
        """Act on every tick, at once on news (a reply or a push), and when a bot is due."""
        while self.active:
            self._news.clear()
            now = self.now
            for name, bot in list(self.active.items()):
                ledger = self.ledgers[name]
                if ledger.done(now):
                    self._finish(name, bot)
                else:
                    bot.act(now)
            self._tend_pool(now)
            due = min((bot.due(now) for bot in self.active.values()), default=now + TICK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), max(0.0, due - self.now))

    # --- the pool of bots for people (node.botpool) ----------------------------------------

    def _tend_pool(self, now: float) -> None:
        """Start standbys while fewer than ``for_people`` bots are idle; let surplus ones go."""
        plan = self.plan
        if not plan.standby_names or plan.stop.is_set():
            return
        seats = [self._seat(name, now) for name in self.pool]
        moves = plan_pool(
            seats, plan.for_people, now, plan.standby_linger_s, len(plan.standby_names)
        )
        for name in moves.leave:
            self._let_go(name)
        for _ in range(moves.start):
            self._start_standby()

    def _seat(self, name: str, now: float) -> Seat:
        bot = self.active[name]
        if bot.phase != "online" or not bot.client.connected:
            state = COMING
        elif bot.table.game is not None or bot.lobby.person_waiting():
            state = BUSY
        else:
            state = IDLE
        if state == IDLE and self.pool[name] != IDLE:
            self.idle_since[name] = now
        self.pool[name] = state
        standby = name in self.plan.standby_names
        return Seat(name, standby, state, self.idle_since.get(name, now))

    def _start_standby(self) -> None:
        plan = self.plan
        free = [n for n in plan.standby_names if n not in self.pool and n not in self.unusable]
        if not free:
            return
        name = free[0]
        busy = sorted(n for n, state in self.pool.items() if state == BUSY)
        self._add_bot(len(plan.names) + plan.standby_names.index(name), name)
        plan.log(f"{name} logs in to wait for people in place of {', '.join(busy) or 'none'}")

    def _let_go(self, name: str) -> None:
        """Log a surplus standby out: its websocket closes first, so it does not fail over."""
        bot = self.active.pop(name)
        del self.pool[name]
        self.ledgers[name].log(f"logs out: {self.plan.for_people} others wait for people")
        node = bot.client.node or bot.node
        bot.stop("no longer needed")
        bot.client.close()
        self.shared.bots.remove(bot)
        self.players.clients = [c for c in self.players.clients if c is not bot.client]
        self.spawn(self._log_out(node, bot.token))

    async def _log_out(self, node: str, token: str) -> None:
        with contextlib.suppress(RequestError, aiohttp.ClientError, OSError, TimeoutError):
            await PlayerClient(node, self.http).post("/api/logout", {}, token=token)

    # --- the end ----------------------------------------------------------------------------

    def _finish(self, name: str, bot: Bot) -> None:
        del self.active[name]
        self.pool.pop(name, None)
        ledger = self.ledgers[name]
        if ledger.stats.stopped:
            self.unusable.add(name)  # a standby is not started again under that name
        if ledger.stats.stopped:
            ledger.log(f"stopped: {ledger.stats.stopped}")
        if self.plan.stop.is_set() and self.plan.games:  # cut short: say where it stood
            ledger.log(f"stopped while {_where_it_stood(bot)}")
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


def _where_it_stood(bot: Bot) -> str:
    """A bot's state when its run was cut short, for the log (what it waited for)."""
    text = f"{bot.phase}{' (busy)' if bot.busy else ''} on {bot.client.node}"
    if (game := bot.table.game) is not None:
        return (
            f"{text}, in game {game['game']} at ply {game['ply']}, seat {game['you']}, to move "
            f"{game['to_move']}, {len(game['legal'])} legal moves, move for {bot.table.move_for}"
        )
    lobby = bot.lobby
    partner = lobby.players.get(bot.partner, {}).get("status", "absent") if bot.partner else "-"
    invites = {k: [i["iid"] for i in v] for k, v in lobby.invites.items() if k != "type"}
    return f"{text}, no game; partner in the lobby: {partner}; invitations {invites}"


def _view_policy(brain: ViewBot) -> MovePolicy:
    """The engine's heuristic on the bot's view (the machine's rng is not used)."""

    def choose(push: Reply, rng: random.Random) -> Reply:
        move: Reply = brain.choose(push["view"], push["legal"])
        return move

    return choose


def _partner(index: int, plan: BotPlan) -> tuple[str | None, bool]:
    """The bot's partner (None for a bot reserved for people) and whether it invites."""
    if index < plan.for_people or index >= len(plan.names):  # for people, or a standby
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


def _standby_names(prefix: str, count: int, for_people: int, games: int) -> list[str]:
    """The names standbys for people may take: none in a run of fixed length (see module
    docstring), else the `MAX_STANDBY` names after the crew's."""
    if not for_people or games:
        return []
    return bot_names(prefix, count + MAX_STANDBY)[count:]


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
    standby_linger_s: float = STANDBY_LINGER_S,
    log: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> BotSummary:
    """Run `count` bots against `servers` until each has finished `games` games (0: until
    `stop` is set); the first `for_people` of them wait for people (with standbys when
    endless). See the module docstring for the pool, pairing, invitations and failover."""
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
        standby_names=_standby_names(prefix, count, for_people, games),
        standby_linger_s=standby_linger_s,
    )
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)  # every bot holds a websocket open
    async with aiohttp.ClientSession(connector=connector) as http:
        stats = await BotRun(plan, http).run()
    return BotSummary(stats, time.monotonic() - started, games)
