"""The one bot: a Battleline player as a state machine, without I/O.

Every Meridian bot runs this machine: ``meridian bot`` and ``meridian demo`` (through the asyncio
adapter `node.bots`, each client a websocket of a real node) and the simulator's ``game-bots``
workload (`sim.bots`, each client a simulated connection, or a real websocket under ``meridian
sim cluster``). What differs between them is injected:

* the transport: a `PlayerSide` per connection (HTTP calls, a websocket, requests; replies come
  back through callbacks), made by `Players.new_client`, which also tells the time;
* the randomness: one `random.Random` shared by a crew of bots (`Shared.rng`), so a seed replays
  a run;
* the move policy: a `MovePolicy` picks a move from a ``game`` push (`random_move` in the
  simulator; `node.bots` uses the engine's heuristic on the bot's view);
* what is written down: `Notes.note` receives every note (see below);
* the behaviour: `BotSettings`, whose defaults are the simulator's.

A bot lives in a region (``home``), registers there (with that region as its home when
``register_home``; else at whichever node answers), logs in at its home node or, with chance
``random_region``, at a random one, opens the websocket and then, on each `Bot.act` (every
``TICK_S``):

* plays its turn after a think time drawn from ``think_s``: the policy's move, or with chance
  ``give_up`` gives up, with chance ``save`` saves the game (and later invites the same opponent
  to resume it); a game with no progress for ``stall_s`` (if set) is saved and given up on;
* otherwise accepts an incoming invitation: the first, or people's before bots' with
  ``people_first``; a person's invitation (from a name that is not one of the crew's bots) is
  accepted ``accept_pause_s`` after the bot saw it, and ``greeting`` (if set) goes to the new
  game's chat, so the person sees the invitation arrive and be accepted;
* a bot with a ``partner`` also invites, ``invite_per_s`` times a second when idle (and
  ``pause_s`` after its last game): its partner if the lobby shows it idle, else (with
  ``invite_anyone``) a random idle player; an invitation unanswered for ``INVITE_PATIENCE_S`` is
  withdrawn; after an invitation it sends none for ``reinvite_s`` (a node may drop an invitation
  it acknowledged before it counted the inviter online); a bot without a partner never invites,
  so bots reserved for people are left alone by the others when nobody has them as partner;
* with chance ``watch`` per second an idle bot watches a game for a while; at the table it
  chats now and then (``chat``);
* moves to another region (``travel_per_min``: closes the websocket, sends its resume token to
  another node) and logs in a second time from another region (``double_login_per_min``: a
  second bot with the same account, which the older session loses to with
  `CloseCode.LOGGED_IN_ELSEWHERE`);
* when its connection drops it fails over to another node with its resume token (or logs in
  again if the session is gone, `CloseCode.BAD_TOKEN`); the other final close codes end that
  client for good (`Bot.stopped` says why);
* when told ``must_rename`` it renames itself.

After `Shared.calm` is set (the simulator's heal) bots only react: they rename when told,
reconnect when dropped, and start nothing. Notes: ``registered``, ``hello``, ``closed``,
``notice``, ``shown`` (each game push), ``move`` (an acknowledged move), ``move-unreplicated``,
``rollback``, ``renamed``, ``travel``, ``gave-up``, ``stalled``, ``error`` (a reply with code
``internal``), and ``end`` (`Bot.end_note`); the simulator's checkers read them from the
history, `node.bots` keeps its game records from them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from meridian.node.refusals import CloseCode

TICK_S = 0.25
INVITE_PATIENCE_S = 8.0
MOVE_RETRY_S = 4.0  # a move with no news for this long may be sent again
RETRY_S = (0.5, 1.5)  # pause after a failed sign-in step or connection
WATCH_S = (3.0, 10.0)
BAD_TOKEN = CloseCode.BAD_TOKEN  # log in again
FATAL_CLOSES = tuple(c for c in CloseCode if c.final and c != BAD_TOKEN)  # do not reconnect
FATAL_CLOSE_WHY = {  # what `Bot.stopped` says
    CloseCode.LOGGED_IN_ELSEWHERE: "logged in elsewhere (another program uses this account)",
    CloseCode.DISABLED: "account disabled",
    CloseCode.PROTOCOL: "protocol violation",
    CloseCode.MOVED: "the session continued on another connection",
}

Reply = dict[str, Any]
Done = Callable[[Reply], None]
MovePolicy = Callable[[Reply, random.Random], Reply]


def random_move(push: Reply, rng: random.Random) -> Reply:
    """A uniformly random legal move of a ``game`` push (the simulator's policy)."""
    move: Reply = rng.choice(push["legal"])
    return move


class PlayerSide(Protocol):
    """One player program's connection to the cluster (see module docstring)."""

    region: str
    node: str | None
    on_push: Callable[[Reply], None]
    on_closed: Callable[[int, str], None]

    def http(self, node: str, path: str, body: Reply, done: Done) -> None: ...

    def connect(self, node: str, hello: Reply, done: Done) -> None: ...

    def request(self, kind: str, fields: Reply, done: Done) -> None: ...

    def close(self) -> None: ...

    @property
    def connected(self) -> bool: ...


class Players(Protocol):
    """What bots need from the world: new clients, the regions and the time."""

    regions: list[str]

    def new_client(self, region: str) -> PlayerSide: ...

    def now(self) -> float: ...


class Notes(Protocol):
    """Where a bot's notes go (the simulator's history; `node.bots`' records)."""

    def note(self, node: str, kind: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class BotSettings:
    """How the bots of a crew behave (see module docstring; defaults are the simulator's)."""

    players: int = 20
    think_s: tuple[float, float] = (2.0, 8.0)
    give_up: float = 0.01
    save: float = 0.005
    chat: float = 0.02
    watch: float = 0.05
    invite_per_s: float = 0.5
    random_region: float = 0.2
    travel_per_min: float = 0.5
    double_login_per_min: float = 0.2
    name_races: int = 0
    race_at_s: float = 5.0
    race_regions: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()  # where bots live and log in; () for every region
    register_home: bool = True  # send the home region at registration (else: where it lands)
    invite_anyone: bool = True  # invite a random idle player when the partner is not idle
    people_first: bool = False  # accept people's invitations before bots'
    accept_pause_s: float = 0.0  # before accepting a person's invitation
    greeting: str = ""  # said in the chat of a game a person invited the bot to
    pause_s: float = 0.0  # after a game, before inviting again
    reinvite_s: float = 0.0  # after an invitation, before the next one
    stall_s: float | None = None  # a game without progress this long is saved and left
    clock: tuple[int, int] | None = None  # (initial_s, increment_s) asked in every invitation
    # Finished games still reported in hello's ``seen`` (as the web page does): an ending it
    # was shown (a give-up, a time-out) can lose a fork to a move made elsewhere, which a node
    # it moves to then tells it of.
    finished_seen: int = 6


@dataclass
class Shared:
    """What every bot of a crew shares."""

    settings: BotSettings
    players: Players
    rng: random.Random
    notes: Notes
    bots: list[Bot] = field(default_factory=list)
    twins: set[str] = field(default_factory=set)  # accounts that logged in twice already
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
        return any(bot.name.lower() == name.lower() for bot in self.bots)


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
    ) -> None:
        self.shared = shared
        self.partner = partner  # whom it invites first; "": it only accepts invitations
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
        self.game: Reply | None = None  # the newest push of the game this client plays
        self.progress_at = 0.0  # when that game last moved on
        self.views: dict[str, Reply] = {}  # gid -> newest push on the current connection
        self.seen: dict[str, Reply] = {}  # gid -> {"ply", "head"} last shown (hello's "seen")
        self.finished: list[str] = []  # finished games still in `seen`, oldest first
        self.invites: Reply = {}
        self.lobby: dict[str, Reply] = {}
        self.move_for: tuple[str, int] | None = None  # (game, ply) the next move is for
        self.move_due = 0.0
        self.invited_at = -INVITE_PATIENCE_S
        self.pause_until = 0.0
        self.accept_at: dict[str, float] = {}  # a person's invitation -> when to accept it
        self.refused: set[str] = set()
        self.saved_with: tuple[str, str] | None = None  # (opponent, gid) to resume
        self.watch_until = 0.0
        self.watching = ""  # the game watched (its pushes stop at unwatch)
        self.renames = 0

    # --- driving ---------------------------------------------------------------------------

    @property
    def rng(self) -> random.Random:
        return self.shared.rng

    @property
    def settings(self) -> BotSettings:
        return self.shared.settings

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
        times = [self.wake, self.move_due, *self.accept_at.values()]
        return min([t for t in times if t > now] + [now + TICK_S])

    def stop(self, reason: str) -> None:
        """End this client for good (it is not closed here: see `PlayerSide.close`)."""
        self.phase, self.stopped = "done", self.stopped or reason

    def _new_client(self, region: str) -> PlayerSide:
        client = self.shared.players.new_client(region)
        client.on_push, client.on_closed = self._push, self._closed
        return client

    def _call(self, start: Callable[[Done], None], then: Callable[[Reply], None]) -> None:
        self.busy = True

        def done(reply: Reply) -> None:
            self.busy = False
            if not reply.get("ok") and reply.get("error", {}).get("code") == "internal":
                self._note("error", message=reply["error"].get("message", ""))
            then(reply)

        start(done)

    def _request(self, kind: str, then: Callable[[Reply], None], **fields: Any) -> None:
        self._call(lambda done: self.client.request(kind, fields, done), then)

    def _note(self, kind: str, **fields: Any) -> None:
        self.shared.note(self.client.node or self.node, kind, client=self.label, **fields)

    def _retry_later(self, next_node: bool = False) -> None:
        self.wake = self.shared.players.now() + self.rng.uniform(*RETRY_S)
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
        code = _code(reply)
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
        code = _code(reply)
        if reply.get("ok"):
            self.uid, self.token, self.phase = reply["uid"], reply["token"], "connect"
        elif code == "bad_credentials" and not self.uid:
            # A race bot whose name another bot got first on its side, or a name registered
            # with another password.
            self.stop("the name is registered with another password")
            self._note("gave-up", reason="the name belongs to another bot")
        else:
            # The account may live only on the other side of a partition: try elsewhere.
            self._retry_later(next_node=code in ("unreachable", "unknown_user", "bad_credentials"))

    def _connect(self, *, resume: bool) -> None:
        hello: Reply = {"resume": self.resume} if resume else {"token": self.token}
        if self.seen:
            hello["seen"] = self.seen  # so a node that lacks what we saw tells us (rollback)
        node = self.node
        self._call(lambda done: self.client.connect(node, hello, done), self._hello)

    def _hello(self, reply: Reply) -> None:
        code = _code(reply)
        if reply.get("ok"):
            self._online_again(reply)
        elif code in ("unauthenticated", "bad_request"):
            self.phase = "login"  # the session is over: log in again
        else:
            self._retry_later(next_node=True)

    def _online_again(self, reply: Reply) -> None:
        you = reply["you"]
        self.phase, self.resume = "online", reply["resume"]
        self.uid, self.name = you["uid"], you["name"]
        self.must_rename = self.must_rename or bool(you["must_rename"])
        self.views, self.game, self.move_for, self.watching = {}, None, None, ""
        self._note(
            "hello",
            uid=self.uid,
            name=self.name,
            must_rename=you["must_rename"],
            games=reply["games"],
        )

    # --- what the server says --------------------------------------------------------------

    def _push(self, push: Reply) -> None:
        if self.observer is not None:
            self.observer(push)
        kind = push["type"]
        if kind == "game":
            self._game_push(push)
        elif kind == "lobby":
            self.lobby = {entry["name"]: entry for entry in push["players"]}
        elif kind == "lobby_update":
            for name in push["gone"]:
                self.lobby.pop(name, None)
            self.lobby.update({entry["name"]: entry for entry in push["changed"]})
        elif kind == "invites":
            self.invites = push
        elif kind == "notice":
            self._note("notice", uid=self.uid, code=push["code"])
            self.must_rename = self.must_rename or push["code"] == "must_rename"
        elif kind == "rollback":
            self._note("rollback", uid=self.uid, game=push["game"], ply=push["ply"])
            self.move_for = None

    def _game_push(self, push: Reply) -> None:
        gid = push["game"]
        self.views[gid] = push
        # What this player saw: the shown-plies checker holds the cluster to it (sim.shown).
        self._note("shown", uid=self.uid, game=gid, ply=push["ply"], head=push["head"])
        self._remember_seen(push)
        if push["you"] is None:
            return
        if push["status"] == "live":
            if self.game is None or self.game["game"] == gid:
                if self.game is None or self.game["ply"] != push["ply"]:
                    self.progress_at = self.shared.players.now()
                self.game = push
        elif self.game is not None and self.game["game"] == gid:
            self.game = None
            self.pause_until = self.shared.players.now() + self.settings.pause_s

    def _remember_seen(self, push: Reply) -> None:
        """What hello's ``seen`` reports: live games, and the last ``finished_seen`` finished
        games this bot played or watched."""
        gid = push["game"]
        if gid in self.finished:
            self.finished.remove(gid)
        if push["status"] == "live":
            self.seen[gid] = {"ply": push["ply"], "head": push["head"]}
        elif self.settings.finished_seen:  # played or only watched: either may be taken back
            self.seen[gid] = {"ply": push["ply"], "head": push["head"]}
            self.finished.append(gid)
            while len(self.finished) > self.settings.finished_seen:
                self.seen.pop(self.finished.pop(0), None)
        else:
            self.seen.pop(gid, None)

    def _closed(self, code: int, reason: str) -> None:
        self._note("closed", uid=self.uid, code=code)
        self.busy = False
        if code in FATAL_CLOSES:
            self.stop(f"closed by the server: {FATAL_CLOSE_WHY.get(CloseCode(code), reason)}")
        elif code == BAD_TOKEN:
            self.phase = "login"
        else:
            self.phase = "resume"
            self._retry_later(next_node=True)

    # --- playing ------------------------------------------------------------------------------

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
        elif self.game is not None:
            self._turn(now, self.game)
        elif self.watch_until:
            self._maybe_unwatch(now)
        else:
            self._idle(now)

    def _travel(self) -> None:
        """Continue the session from another region (the resume token works on any node)."""
        self.client.close()
        self.client = self._new_client(self.shared.other_region(self.client.region))
        self.phase, self.node = "resume", self.client.region
        self._note("travel", uid=self.uid, to=self.node)

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

    def _turn(self, now: float, push: Reply) -> None:
        stall = self.settings.stall_s
        if stall is not None and now - self.progress_at > stall:
            self._leave_stalled(push)
            return
        if push["to_move"] != push["you"] or not push["legal"]:
            if self.rng.random() < self.settings.chat * TICK_S:
                self._request("chat", _ignore, text="your move", game=push["game"])
            return
        if self.move_for != (push["game"], push["ply"]):
            self.move_for = (push["game"], push["ply"])
            self.move_due = now + self.rng.uniform(*self.settings.think_s)
        if now < self.move_due:
            return
        self.move_due = now + MOVE_RETRY_S  # until a push shows the move (or it was refused)
        self._play(push)

    def _leave_stalled(self, push: Reply) -> None:
        """Save a game that made no progress for ``stall_s`` and stop waiting for it."""
        self._note("stalled", uid=self.uid, game=push["game"], ply=push["ply"])
        self.game = None
        self._request("save", _ignore, game=push["game"])

    def _play(self, push: Reply) -> None:
        gid, draw = push["game"], self.rng.random()
        if draw < self.settings.give_up:
            self._request("give_up", _ignore, game=gid)
        elif draw < self.settings.give_up + self.settings.save:
            opponent = push["players"][1 - push["you"]]
            self._request("save", lambda r: self._saved(r, opponent, gid), game=gid)
        else:
            move = self.policy(push, self.rng)
            self._request("move", lambda r: self._moved(r, push, move), game=gid, move=move)

    def _moved(self, reply: Reply, push: Reply, move: Reply) -> None:
        if reply.get("ok"):
            fields = {"game": push["game"], "ply": reply["ply"], "seat": push["you"]}
            self._note("move", uid=self.uid, move=move, **fields)
        elif _code(reply) == "not_replicated":
            self._note("move-unreplicated", uid=self.uid, game=push["game"], move=move)

    def _saved(self, reply: Reply, opponent: str, gid: str) -> None:
        if reply.get("ok"):
            self.saved_with = (opponent, gid)
            self.game = None

    def _idle(self, now: float) -> None:
        incoming = [i for i in self.invites.get("incoming", []) if i["iid"] not in self.refused]
        if incoming:
            self._answer(now, incoming)
        elif self.invites.get("outgoing"):
            if now - self.invited_at > INVITE_PATIENCE_S:
                iid = self.invites["outgoing"][0]["iid"]
                self._request("retract", _ignore, invite=iid)
                self.invited_at = now
        elif self.rng.random() < self.settings.watch * TICK_S:
            self._watch(now)
        elif self.partner and self.rng.random() < self.settings.invite_per_s * TICK_S:
            self._maybe_invite(now)

    def _answer(self, now: float, incoming: list[Reply]) -> None:
        """Accept an incoming invitation (a person's after ``accept_pause_s``)."""
        if self.settings.people_first:
            incoming = sorted(incoming, key=lambda i: self.shared.is_bot(i["from"]))
        invite = incoming[0]
        iid, person = invite["iid"], not self.shared.is_bot(invite["from"])
        if person and self.settings.accept_pause_s:
            due = self.accept_at.setdefault(iid, now + self.settings.accept_pause_s)
            if now < due:
                return
        self._request("accept", lambda r: self._accepted(r, iid, person), invite=iid)

    def _accepted(self, reply: Reply, iid: str, person: bool) -> None:
        self.accept_at.pop(iid, None)
        if not reply.get("ok"):
            self.refused.add(iid)
        elif person and self.settings.greeting:
            self._request("chat", _ignore, text=self.settings.greeting, game=reply["game"])

    def _maybe_invite(self, now: float) -> None:
        """Invite unless the last game or invitation is too recent (``pause_s``,
        ``reinvite_s``)."""
        if now >= self.pause_until and now - self.invited_at >= self.settings.reinvite_s:
            self._invite(now)

    def _invite(self, now: float) -> None:
        idle = sorted(
            e["name"]
            for e in self.lobby.values()
            if e["status"] == "idle" and e["name"] != self.name
        )
        if not idle:
            return
        if self.saved_with is not None and self.saved_with[0] in idle:
            self.invited_at = now
            opponent, gid = self.saved_with
            self._send_invitation(self._resume_invited, to=opponent, resume=gid)
        elif self.partner in idle or self.settings.invite_anyone:
            self.invited_at = now
            target = self.partner if self.partner in idle else self.rng.choice(idle)
            self._send_invitation(_ignore, to=target)

    def _send_invitation(self, then: Callable[[Reply], None], **fields: Any) -> None:
        clock = self.settings.clock
        if clock is not None:
            fields["clock"] = {"initial_s": clock[0], "increment_s": clock[1]}
        self._request("invite", then, **fields)

    def _resume_invited(self, reply: Reply) -> None:
        if _code(reply) == "not_found":
            self.saved_with = None  # resumed, parked or gone meanwhile

    def _watch(self, now: float) -> None:
        playing = sorted(e["game"] for e in self.lobby.values() if e["status"] == "playing")
        if playing:
            self.watching = self.rng.choice(playing)
            self._request("watch", self._watched, game=self.watching)
            self.watch_until = now + self.rng.uniform(*WATCH_S)

    def _watched(self, reply: Reply) -> None:
        if reply.get("ok"):
            self.views[reply["game"]["game"]] = reply["game"]  # the view until the next push

    def _maybe_unwatch(self, now: float) -> None:
        if now >= self.watch_until:
            self.views.pop(self.watching, None)
            self.watch_until, self.watching = 0.0, ""
            self._request("unwatch", _ignore)

    def _rename(self) -> None:
        self.renames += 1
        new = f"{self.name[:10]}-{self.home[:4]}{self.renames}"  # names have 3-20 characters
        self._request("rename", lambda r: self._renamed(r, new), name=new)

    def _renamed(self, reply: Reply, new: str) -> None:
        if reply.get("ok"):
            self._note("renamed", uid=self.uid, old=self.name, new=new)
            self.name, self.must_rename = new, False

    # --- the end ------------------------------------------------------------------------------

    def end_note(self) -> None:
        views = {
            gid: {
                "ply": p["ply"],
                "status": p["status"],
                "head": p["head"],
                "you": p["you"],
            }
            for gid, p in sorted(self.views.items())
            if p["you"] is not None or gid == self.watching
        }
        self._note("end", uid=self.uid, name=self.name, open=self.client.connected, games=views)


def _code(reply: Reply) -> str:
    return "" if reply.get("ok") else str(reply.get("error", {}).get("code", ""))


def _ignore(reply: Reply) -> None:
    return None
