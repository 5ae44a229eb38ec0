"""Game bots: simulated people playing Battleline on the cluster while faults happen.

The ``game-bots`` workload runs ``players`` bots, each a client program (``PlayerSide``: a
:class:`sim.players.SimClient` in the simulator, a ``node.client.PlayerClient`` in ``meridian
sim cluster``). A bot sits in a region (round robin over the regions, or over ``regions`` when
given: a scenario whose node is not to serve players lists the others), registers with that
region as its home, logs in at its nearest node or, with chance ``random_region``, at a random
one, opens the websocket and then, every ``TICK_S``:

* plays its turn after a think time drawn from ``think_s``: a random move from the ``legal``
  list of its ``game`` push, or with chance ``give_up`` gives up, with chance ``save`` saves the
  game (and later invites the same opponent to resume it);
* otherwise accepts the first incoming invitation; half the bots (the even ones, like the pairs
  of ``node.bots``) also invite, ``invite_per_s`` times a second when idle: their partner (the
  next bot) if the lobby shows it idle, else a random idle player, withdrawing an invitation
  unanswered for ``INVITE_PATIENCE_S``; with chance ``watch`` per second an idle bot watches a
  game for a while; at the table it chats now and then (``chat``);
* moves to another region (``travel_per_min``: closes the websocket, sends its resume token to
  another node) and logs in a second time from another region (``double_login_per_min``: a
  second bot with the same account, which the older session loses to, code 4100);
* when its connection drops it fails over to another node with its resume token (or logs in
  again if the session is gone); codes 4100-4104 except 4101 end that client for good;
* when told ``must_rename`` it renames itself.

``name_races`` races: at ``race_at_s`` one new bot in each of ``race_regions`` registers the
same name ``race<k>`` at its own region's node (a partition lets both succeed); the merge keeps
the earliest claim and the other must rename.

From the heal on, bots only react: they rename when told, reconnect when dropped, and start
nothing (no move, invitation, watch, chat, travel or second login), so the quiet period shows
convergence. Everything they are told
that the checkers need goes into the history as notes: ``registered``, ``hello``, ``closed``,
``notice``, ``move`` (an acknowledged move), ``rollback``, ``renamed``, ``error`` (a reply with
code ``internal``), and at the end one ``end`` per client (connection open or not, and the
latest view of each of its games on that connection). All randomness comes from the workload's
stream, so a seed replays the same games.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meridian.node.protocol import CloseCode
from meridian.sim.params import Table

TICK_S = 0.25
INVITE_PATIENCE_S = 8.0
MOVE_RETRY_S = 4.0  # a move with no news for this long may be sent again
RETRY_S = (0.5, 1.5)  # pause after a failed sign-in step or connection
WATCH_S = (3.0, 10.0)
START_S = 2.0  # bots start within the first START_S seconds
BAD_TOKEN = CloseCode.BAD_TOKEN  # log in again
FATAL_CLOSES = tuple(c for c in CloseCode if c.final and c != BAD_TOKEN)  # do not reconnect
PASSWORD = "bot-password-"

Reply = dict[str, Any]
Done = Callable[[Reply], None]


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


class Recorder(Protocol):
    """A node handle's ``note`` (sim.workload.NodeHandle)."""

    node_id: str

    def note(self, kind: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class BotSettings:
    """The ``[workload]`` keys of ``game-bots`` (see module docstring)."""

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


@dataclass
class Shared:
    """What every bot of a run shares."""

    settings: BotSettings
    players: Players
    rng: random.Random
    recorders: dict[str, Recorder]
    bots: list[Bot] = field(default_factory=list)
    twins: set[str] = field(default_factory=set)  # accounts that logged in twice already
    calm: bool = False  # after the heal: react only

    def note(self, node: str, kind: str, **fields: Any) -> None:
        self.recorders[node].note(kind, **fields)

    @property
    def regions(self) -> list[str]:
        """The regions bots live in, log in at and travel to."""
        return list(self.settings.regions) or self.players.regions

    def other_region(self, region: str) -> str:
        return self.rng.choice([r for r in self.regions if r != region])


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
    ) -> None:
        self.shared = shared
        self.partner = partner  # whom it invites first; "": it only accepts invitations
        self.label = label
        self.name = name
        self.password = PASSWORD + name
        self.home = home
        self.phase = phase  # new, login, connect, resume, online, done
        self.client = shared.players.new_client(home)
        self.client.on_push = self._push
        self.client.on_closed = self._closed
        self.node = home  # the node of the next or current connection
        self.wake = 0.0
        self.busy = False
        self.uid = self.token = self.resume = ""
        self.must_rename = False
        self.game: Reply | None = None  # the newest push of the game this client plays
        self.views: dict[str, Reply] = {}  # gid -> newest push on the current connection
        self.seen: dict[str, Reply] = {}  # gid -> {"ply", "head"} last shown (hello's "seen")
        self.invites: Reply = {}
        self.lobby: dict[str, Reply] = {}
        self.move_for: tuple[str, int] | None = None  # (game, ply) the next move is for
        self.move_due = 0.0
        self.invited_at = -INVITE_PATIENCE_S
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
        body = {"name": self.name, "password": self.password, "home": self.home}
        self._call(
            lambda done: self.client.http(self.home, "/api/register", body, done), self._registered
        )

    def _registered(self, reply: Reply) -> None:
        code = _code(reply)
        if reply.get("ok"):
            self.uid = reply["uid"]
            self.shared.note(
                self.home, "registered", client=self.label, uid=self.uid, name=self.name
            )
        if reply.get("ok") or code == "name_taken":
            self.phase, self.node = "login", self._pick_node()
        else:
            self._retry_later()

    def _login(self) -> None:
        body = {"name": self.name, "password": self.password}
        node = self.node
        self._call(lambda done: self.client.http(node, "/api/login", body, done), self._logged_in)

    def _logged_in(self, reply: Reply) -> None:
        code = _code(reply)
        if reply.get("ok"):
            self.uid, self.token, self.phase = reply["uid"], reply["token"], "connect"
        elif code == "bad_credentials" and not self.uid:
            self.phase = "done"  # a race bot whose name another bot got first on its side
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
        if push["status"] == "live":
            self.seen[gid] = {"ply": push["ply"], "head": push["head"]}
        else:
            self.seen.pop(gid, None)
        if push["you"] is None:
            return
        if push["status"] == "live":
            if self.game is None or self.game["game"] == gid:
                self.game = push
        elif self.game is not None and self.game["game"] == gid:
            self.game = None

    def _closed(self, code: int, reason: str) -> None:
        self._note("closed", uid=self.uid, code=code)
        self.busy = False
        if code in FATAL_CLOSES:
            self.phase = "done"
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
        self.client = self._moved_client(self.shared.other_region(self.client.region))
        self.phase, self.node = "resume", self.client.region
        self._note("travel", uid=self.uid, to=self.node)

    def _moved_client(self, region: str) -> PlayerSide:
        client = self.shared.players.new_client(region)
        client.on_push, client.on_closed = self._push, self._closed
        return client

    def _double_login(self) -> None:
        if self.name in self.shared.twins or self.label.startswith("race"):
            return
        self.shared.twins.add(self.name)
        region = self.shared.other_region(self.client.region)
        twin = Bot(self.shared, f"{self.label}+twin", self.name, region, "login")
        twin.node = region
        self.shared.bots.append(twin)

    def _turn(self, now: float, push: Reply) -> None:
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

    def _play(self, push: Reply) -> None:
        gid, draw = push["game"], self.rng.random()
        if draw < self.settings.give_up:
            self._request("give_up", _ignore, game=gid)
        elif draw < self.settings.give_up + self.settings.save:
            opponent = push["players"][1 - push["you"]]
            self._request("save", lambda r: self._saved(r, opponent, gid), game=gid)
        else:
            move = self.rng.choice(push["legal"])
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
            invite = incoming[0]
            self._request(
                "accept", lambda r: self._accepted(r, invite["iid"]), invite=invite["iid"]
            )
        elif self.invites.get("outgoing"):
            if now - self.invited_at > INVITE_PATIENCE_S:
                iid = self.invites["outgoing"][0]["iid"]
                self._request("retract", _ignore, invite=iid)
                self.invited_at = now
        elif self.rng.random() < self.settings.watch * TICK_S:
            self._watch(now)
        elif self.partner and self.rng.random() < self.settings.invite_per_s * TICK_S:
            self._invite(now)

    def _accepted(self, reply: Reply, iid: str) -> None:
        if not reply.get("ok"):
            self.refused.add(iid)

    def _invite(self, now: float) -> None:
        idle = sorted(
            e["name"]
            for e in self.lobby.values()
            if e["status"] == "idle" and e["name"] != self.name
        )
        if not idle:
            return
        self.invited_at = now
        if self.saved_with is not None and self.saved_with[0] in idle:
            opponent, gid = self.saved_with
            self._request("invite", self._resume_invited, to=opponent, resume=gid)
        else:
            target = self.partner if self.partner in idle else self.rng.choice(idle)
            self._request("invite", _ignore, to=target)

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


class GameBots:
    """The ``game-bots`` workload (see module docstring)."""

    def __init__(self, settings: BotSettings) -> None:
        self.settings = settings
        self.shared: Shared | None = None
        self.races_started = False

    def step(self, now: float, nodes: Sequence[Any], rng: random.Random) -> float | None:
        shared = self.shared or self._start(nodes, rng)
        if not self.races_started and now >= self.settings.race_at_s and not shared.calm:
            self.races_started = True
            self._start_races(shared)
        for bot in list(shared.bots):
            bot.act(now)
        return now + TICK_S

    def _start(self, nodes: Sequence[Any], rng: random.Random) -> Shared:
        players: Players = nodes[0].players
        recorders = {node.node_id: node for node in nodes}
        self.shared = shared = Shared(self.settings, players, rng, recorders)
        unknown = sorted(set(self.settings.regions) - set(players.regions))
        if unknown:
            raise ValueError(f"workload.regions: no region {', '.join(unknown)}")
        regions = shared.regions
        count = self.settings.players
        for index in range(count):
            partner = f"bot{index + 1}" if index % 2 == 0 and index + 1 < count else ""
            home = regions[index % len(regions)]
            bot = Bot(shared, f"b{index}", f"bot{index}", home, "new", partner)
            bot.wake = rng.uniform(0, START_S)
            shared.bots.append(bot)
        return shared

    def _start_races(self, shared: Shared) -> None:
        regions = list(self.settings.race_regions) or shared.players.regions
        unknown = sorted(set(regions) - set(shared.players.regions))
        if unknown:
            raise ValueError(f"workload.race_regions: no region {', '.join(unknown)}")
        for race in range(self.settings.name_races):
            for region in regions:
                name = f"race{race}"
                bot = Bot(shared, f"{name}@{region}", name, region, "new")
                bot.password = f"{PASSWORD}race{race}-{region}"
                shared.bots.append(bot)

    def healed(self, now: float) -> None:
        if self.shared is not None:
            self.shared.calm = True

    def finish(self, now: float) -> None:
        if self.shared is not None:
            for bot in self.shared.bots:
                bot.end_note()


def build_game_bots(params: Table) -> GameBots:
    think = params.seconds_range("think_s", BotSettings.think_s)
    return GameBots(
        BotSettings(
            players=params.integer("players", 20, 0),
            think_s=think,
            give_up=params.fraction("give_up", 0.01),
            save=params.fraction("save", 0.005),
            chat=params.fraction("chat", 0.02),
            watch=params.fraction("watch", 0.05),
            invite_per_s=params.number("invite_per_s", 0.5, 0, inclusive=True),
            random_region=params.fraction("random_region", 0.2),
            travel_per_min=params.number("travel_per_min", 0.5, 0, inclusive=True),
            double_login_per_min=params.number("double_login_per_min", 0.2, 0, inclusive=True),
            name_races=params.integer("name_races", 0, 0),
            race_at_s=params.number("race_at_s", 5.0, 0, inclusive=True),
            race_regions=tuple(params.string_list("race_regions", "region names"))
            if "race_regions" in params.values
            else (),
            regions=tuple(params.string_list("regions", "region names"))
            if "regions" in params.values
            else (),
        )
    )


GAME_BOT_KEYS = (
    "players",
    "think_s",
    "give_up",
    "save",
    "chat",
    "watch",
    "invite_per_s",
    "random_region",
    "travel_per_min",
    "double_login_per_min",
    "name_races",
    "race_at_s",
    "race_regions",
    "regions",
)
