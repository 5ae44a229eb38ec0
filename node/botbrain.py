"""The one bot: a Battleline player as a state machine, without I/O.

Every Meridian bot runs this machine: ``meridian bot`` and ``meridian demo`` (through the asyncio
adapter `node.bots`, each client a websocket of a real node) and the simulator's ``game-bots``
workload (`sim.bots`, each client a simulated connection, or a real websocket under ``meridian
sim cluster``). What differs between them is injected (`node.botworld`: the transport, the
clock, the move policy, the notes, the settings); the randomness is one `random.Random` shared
by a crew of bots (`Shared.rng`), so a seed replays a run.

`Bot` is the client program: its account, its connection and what it does next. Its two parts
hold the rest and never call each other (the bot passes what one needs of the other):
`node.botplay.Table`, the games it plays and watches, and `node.botlobby.Lobby`, the lobby and
the invitations.

A bot lives in a region (``home``), registers there (with that region as its home when
``register_home``; else at whichever node answers), logs in at its home node or, with chance
``random_region``, at a random one, opens the websocket and then, on each `Bot.act` (every
``TICK_S``):

* renames itself when told ``must_rename``;
* moves to another region (``travel_per_min``: closes the websocket, sends its resume token to
  another node) and logs in a second time from another region (``double_login_per_min``: a
  second bot with the same account, which the older session loses to with
  `CloseCode.LOGGED_IN_ELSEWHERE`);
* plays its turn in its game (`node.botplay`), or stops watching one when the time is up;
* otherwise, idle, it answers or withdraws invitations (`node.botlobby`; a ``people_only``
  bot declines the crew's bots' invitations), else with chance ``watch`` per second watches a
  game, else (a bot with a ``partner``) invites.

When its connection drops it fails over to another node with its resume token (or logs in
again if the session is gone, `CloseCode.BAD_TOKEN`); the other final close codes end that
client for good (`Bot.stopped` says why).

After `Shared.calm` is set (the simulator's heal) bots only react: they rename when told,
reconnect when dropped, and start nothing. Notes: ``registered``, ``hello``, ``closed``,
``notice``, ``renamed``, ``travel``, ``gave-up``, ``declined``, ``error`` (a reply with code
``internal``), ``end`` (`Bot.end_note`) and the table's (`node.botplay`); the simulator's
checkers read them from the history, `node.bots` keeps its game records from them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meridian.node.botlobby import LOBBY_PUSHES, Lobby
from meridian.node.botplay import Table
from meridian.node.botworld import (
    TICK_S,
    BotSettings,
    Done,
    MovePolicy,
    Notes,
    Players,
    PlayerSide,
    Reply,
    Then,
    error_code,
    random_move,
)
from meridian.node.refusals import CloseCode

RETRY_S = (0.5, 1.5)  # pause after a failed sign-in step or connection
BAD_TOKEN = CloseCode.BAD_TOKEN  # log in again
FATAL_CLOSES = tuple(c for c in CloseCode if c.final and c != BAD_TOKEN)  # do not reconnect
FATAL_CLOSE_WHY = {  # what `Bot.stopped` says
    CloseCode.LOGGED_IN_ELSEWHERE: "logged in elsewhere (another program uses this account)",
    CloseCode.DISABLED: "account disabled",
    CloseCode.PROTOCOL: "protocol violation",
    CloseCode.MOVED: "the session continued on another connection",
}


@dataclass
class Shared:
    """What every bot of a crew shares."""

    settings: BotSettings
    players: Players
    rng: random.Random
    notes: Notes
    bots: list[Bot] = field(default_factory=list)
    twins: set[str] = field(default_factory=set)  # accounts that logged in twice already
    # Lower-case names of the crew's accounts whether running or not (a run's standbys):
    # bots too, besides those in `bots`.
    names: set[str] = field(default_factory=set)
    calm: bool = False  # react only (the simulator sets it at the heal)

    def note(self, node: str, kind: str, **fields: Any) -> None:
        self.notes.note(node, kind, **fields)

    @property
    def regions(self) -> list[str]:
        """The regions bots live in, log in at and travel to."""
        return list(self.settings.regions) or self.players.regions

    def other_region(self, region: str) -> str:
        return self.rng.choice([r for r in self.regions if r != region] or [region])

    def is_bot(self, name: str) -> bool:
        low = name.lower()
        return low in self.names or any(bot.name.lower() == low for bot in self.bots)


class Bot:
    """One client program with one account (see module docstring)."""

    def __init__(
        self,
        shared: Shared,
        label: str,
        name: str,
        home: str,
        phase: str,
        partner: str = "",
        *,
        password: str,
        policy: MovePolicy = random_move,
        people_only: bool = False,
    ) -> None:
        self.shared = shared
        self.partner = partner  # whom it invites first; "": it only accepts invitations
        self.people_only = people_only  # declines the crew's bots' invitations
        self.label = label
        self.name = name
        self.password = password
        self.policy = policy
        self.home = home
        self.phase = phase  # new, login, connect, resume, online, done
        self.stopped = ""  # why the phase is done
        self.observer: Callable[[Reply], None] | None = None  # an adapter's view of each push
        self.client = self._new_client(home)
        self.node = home  # the node of the next or current connection
        self.wake = 0.0
        self.busy = False
        self.uid = self.token = self.resume = ""
        self.must_rename = False
        self.renames = 0
        self.lobby = Lobby(self)
        self.table = Table(self, policy, on_saved=self.lobby.saved)

    # --- driving ---------------------------------------------------------------------------

    @property
    def rng(self) -> random.Random:
        return self.shared.rng

    @property
    def settings(self) -> BotSettings:
        return self.shared.settings

    def now(self) -> float:
        return self.shared.players.now()

    def is_bot(self, name: str) -> bool:
        return self.shared.is_bot(name)

    def act(self, now: float) -> None:
        if self.busy or now < self.wake or self.phase == "done":
            return
        if self.phase == "new":
            if not self.shared.calm:  # a new account after the heal would be a change of its own
                self._register()
        elif self.phase == "login":
            self._login()
        elif self.phase in ("connect", "resume"):
            self._connect(resume=self.phase == "resume")
        elif self.client.connected:
            self._online(now)

    def due(self, now: float) -> float:
        """The earliest time after `now` at which `act` may do something new, at most
        ``TICK_S`` away (an adapter that acts on news sleeps until then)."""
        times = [self.wake, self.table.move_due, *self.lobby.accept_at.values()]
        return min([t for t in times if t > now] + [now + TICK_S])

    def stop(self, reason: str) -> None:
        """End this client for good (it is not closed here: see `PlayerSide.close`)."""
        self.phase, self.stopped = "done", self.stopped or reason

    def request(self, kind: str, then: Then, **fields: Any) -> None:
        self._call(lambda done: self.client.request(kind, fields, done), then)

    def note(self, kind: str, **fields: Any) -> None:
        self.shared.note(self.client.node or self.node, kind, client=self.label, **fields)

    def _new_client(self, region: str) -> PlayerSide:
        client = self.shared.players.new_client(region)
        client.on_push, client.on_closed = self._push, self._closed
        return client

    def _call(self, start: Callable[[Done], None], then: Then) -> None:
        self.busy = True

        def done(reply: Reply) -> None:
            self.busy = False
            if not reply.get("ok") and reply.get("error", {}).get("code") == "internal":
                self.note("error", message=reply["error"].get("message", ""))
            then(reply)

        start(done)

    def _retry_later(self, next_node: bool = False) -> None:
        self.wake = self.now() + self.rng.uniform(*RETRY_S)
        if next_node:
            self.node = self.shared.other_region(self.node)

    # --- signing in ---------------------------------------------------------------------------

    def _pick_node(self) -> str:
        if self.rng.random() < self.settings.random_region:
            return self.rng.choice(self.shared.regions)
        return self.home

    def _register(self) -> None:
        body = {"name": self.name, "password": self.password}
        node = self.home
        if self.settings.register_home:
            body["home"] = self.home
        else:
            node = self.node  # registered wherever a node answers: that region is its home
        self._call(
            lambda done: self.client.http(node, "/api/register", body, done), self._registered
        )

    def _registered(self, reply: Reply) -> None:
        code = error_code(reply)
        if reply.get("ok"):
            self.uid = reply["uid"]
            node = self.home if self.settings.register_home else self.node
            self.shared.note(node, "registered", client=self.label, uid=self.uid, name=self.name)
        if reply.get("ok") or code == "name_taken":
            self.phase = "login"
            if self.settings.register_home:
                self.node = self._pick_node()
        else:
            self._retry_later(next_node=not self.settings.register_home)

    def _login(self) -> None:
        body = {"name": self.name, "password": self.password}
        node = self.node
        self._call(lambda done: self.client.http(node, "/api/login", body, done), self._logged_in)

    def _logged_in(self, reply: Reply) -> None:
        code = error_code(reply)
        if reply.get("ok"):
            self.uid, self.token, self.phase = reply["uid"], reply["token"], "connect"
        elif code == "bad_credentials" and not self.uid:
            # A race bot whose name another bot got first on its side, or a name registered
            # with another password.
            self.stop("the name is registered with another password")
            self.note("gave-up", reason="the name belongs to another bot")
        else:
            # The account may live only on the other side of a partition: try elsewhere.
            self._retry_later(next_node=code in ("unreachable", "unknown_user", "bad_credentials"))

    def _connect(self, *, resume: bool) -> None:
        hello: Reply = {"resume": self.resume} if resume else {"token": self.token}
        if self.table.seen:
            hello["seen"] = self.table.seen  # so a node that lacks what we saw tells us (rollback)
        node, sent = self.node, self.now()
        self._call(
            lambda done: self.client.connect(node, hello, done),
            lambda reply: self._hello(reply, sent),
        )

    def _hello(self, reply: Reply, sent: float) -> None:
        code = error_code(reply)
        if reply.get("ok"):
            self._online_again(reply, sent)
        elif code in ("unauthenticated", "bad_request"):
            self.phase = "login"  # the session is over: log in again
        else:
            self._retry_later(next_node=True)

    def _online_again(self, reply: Reply, sent: float) -> None:
        """`sent`: when the hello left (its reply may wait for a failover's catch-up)."""
        you = reply["you"]
        self.phase, self.resume = "online", reply["resume"]
        self.uid, self.name = you["uid"], you["name"]
        self.must_rename = self.must_rename or bool(you["must_rename"])
        self.table.new_connection()
        self.note(
            "hello",
            uid=self.uid,
            name=self.name,
            must_rename=you["must_rename"],
            games=reply["games"],
            sent=round(sent, 6),
        )

    # --- what the server says --------------------------------------------------------------

    def _push(self, push: Reply) -> None:
        if self.observer is not None:
            self.observer(push)
        kind = push["type"]
        if kind == "game":
            if push.get("you") is not None:
                self.lobby.own_game_seen(push["game"])
            if self.table.shown(push):
                self.lobby.game_over(self.now())
        elif kind in LOBBY_PUSHES:
            self.lobby.push(push)
        elif kind == "notice":
            self.note("notice", uid=self.uid, code=push["code"])
            self.must_rename = self.must_rename or push["code"] == "must_rename"
        elif kind == "rollback":
            self.table.rollback(push)

    def _closed(self, code: int, reason: str) -> None:
        self.note("closed", uid=self.uid, code=code)
        self.busy = False
        if code in FATAL_CLOSES:
            self.stop(f"closed by the server: {FATAL_CLOSE_WHY.get(CloseCode(code), reason)}")
        elif code == BAD_TOKEN:
            self.phase = "login"
        else:
            self.phase = "resume"
            self._retry_later(next_node=True)

    # --- online -------------------------------------------------------------------------------

    def _online(self, now: float) -> None:
        chance = TICK_S / 60
        if self.must_rename:
            self._rename()
        elif self.shared.calm:
            return
        elif self.rng.random() < self.settings.travel_per_min * chance:
            self._travel()
        elif self.rng.random() < self.settings.double_login_per_min * chance:
            self._double_login()
        elif self.table.game is not None:
            self.table.turn(now, self.table.game)
        elif self.table.watch_until:
            self.table.maybe_unwatch(now)
        else:
            self._idle(now)

    def _idle(self, now: float) -> None:
        """Answer or withdraw invitations, else maybe watch a game, else maybe invite."""
        if self.lobby.answer_or_withdraw(now):
            return
        if self.rng.random() < self.settings.watch * TICK_S:
            self.table.watch(now, self.lobby.playing())
        elif self.partner and self.rng.random() < self.settings.invite_per_s * TICK_S:
            self.lobby.maybe_invite(now, self.partner)

    def _travel(self) -> None:
        """Continue the session from another region (the resume token works on any node)."""
        self.client.close()
        self.client = self._new_client(self.shared.other_region(self.client.region))
        self.phase, self.node = "resume", self.client.region
        self.note("travel", uid=self.uid, to=self.node)

    def _double_login(self) -> None:
        if self.name in self.shared.twins or self.label.startswith("race"):
            return
        self.shared.twins.add(self.name)
        region = self.shared.other_region(self.client.region)
        twin = Bot(
            self.shared,
            f"{self.label}+twin",
            self.name,
            region,
            "login",
            password=self.password,
            policy=self.policy,
        )
        twin.node = region
        self.shared.bots.append(twin)

    def _rename(self) -> None:
        self.renames += 1
        new = f"{self.name[:10]}-{self.home[:4]}{self.renames}"  # names have 3-20 characters
        self.request("rename", lambda r: self._renamed(r, new), name=new)

    def _renamed(self, reply: Reply, new: str) -> None:
        if reply.get("ok"):
            self.note("renamed", uid=self.uid, old=self.name, new=new)
            self.name, self.must_rename = new, False

    # --- the end ------------------------------------------------------------------------------

    def end_note(self) -> None:
        games = self.table.end_views()
        self.note("end", uid=self.uid, name=self.name, open=self.client.connected, games=games)
