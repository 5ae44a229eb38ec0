"""What the bots of ``meridian bot`` did: their games, moves and reconnects, and a summary.

`BotLedger` keeps one bot's `BotStats` from what its machine (`node.botbrain.Bot`) notes and
is pushed (across the machines of a standby started again, `BotLedger.rejoin`), logs what it
does, and says when the bot is done (its games played, its partner done, or no server for
`SIGN_IN_S` at the start or `FAILOVER_S` after a drop). `BotSummary` is the report of a run
(`node.bots.run_bots`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from meridian.node.botbrain import FATAL_CLOSES, Bot
from meridian.node.botsocket import WebsocketSide
from meridian.node.botworld import Reply

STALL_S = 300.0
FAILOVER_S = 60.0  # the server keeps a dropped session this long (docs/protocol.md)
SIGN_IN_S = 30.0
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
    # Names the run may start as standbys for people (`node.botpool`; none: no standbys), and
    # how long a surplus standby stays idle before it leaves.
    standby_names: list[str] = field(default_factory=list)
    standby_linger_s: float = 0.0
    done: set[str] = field(default_factory=set)


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

    def rejoin(self, bot: Bot) -> None:
        """Keep the records of a new machine of this account (a standby started again)."""
        self.bot, self.hellos, self.game, self.offline_since = bot, 0, None, None
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
        elif kind == "declined":
            self.log(f"declined an invitation from {fields['sender']} (it waits for people)")
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
        if self.bot.table.game is not None or not self.plan.games:
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
