"""What the one bot (`node.botbrain.Bot`) is given: its transport, clock, notes and settings.

Every bot runs the same machine; what differs between ``meridian bot``, the demo and the
simulator is injected through the types of this module:

* the transport: a `PlayerSide` per connection (HTTP calls, a websocket, requests; replies come
  back through callbacks), made by `Players.new_client`, which also tells the time;
* the move policy: a `MovePolicy` picks a move from a ``game`` push (`random_move` in the
  simulator; `node.bots` uses the engine's heuristic on the bot's view);
* what is written down: `Notes.note` receives every note (see `node.botbrain`);
* the behaviour: `BotSettings`, whose defaults are the simulator's.

`BotHandle` is what the bot's parts (`node.botplay.Table`, `node.botlobby.Lobby`) use of their
bot: they send requests and write notes through it and never reach each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

TICK_S = 0.25  # a bot acts at least this often

Reply = dict[str, Any]
Done = Callable[[Reply], None]
Then = Callable[[Reply], None]
MovePolicy = Callable[[Reply, random.Random], Reply]


def random_move(push: Reply, rng: random.Random) -> Reply:
    """A uniformly random legal move of a ``game`` push (the simulator's policy)."""
    move: Reply = rng.choice(push["legal"])
    return move


def ignore(reply: Reply) -> None:
    """A reply nobody waits for (a refusal is already noted when its code is ``internal``)."""
    return None


def error_code(reply: Reply) -> str:
    """A refusal's code; "" for a success."""
    return "" if reply.get("ok") else str(reply.get("error", {}).get("code", ""))


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
    """How the bots of a crew behave (see `node.botbrain`, `node.botplay` and `node.botlobby`;
    defaults are the simulator's)."""

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


# No random acts: no give-ups, saves, chat, watching, travel, double logins or logins at a random
# region (the simulator's faults). Bots for real players start from these (`node.bots`).
STEADY = BotSettings(
    give_up=0.0,
    save=0.0,
    chat=0.0,
    watch=0.0,
    random_region=0.0,
    travel_per_min=0.0,
    double_login_per_min=0.0,
)


class BotHandle(Protocol):
    """What a bot's parts use of their bot (`node.botbrain.Bot` is one)."""

    name: str
    uid: str
    people_only: bool  # accepts only people's invitations and declines bots'

    @property
    def rng(self) -> random.Random: ...

    @property
    def settings(self) -> BotSettings: ...

    def now(self) -> float: ...

    def is_bot(self, name: str) -> bool: ...

    def request(self, kind: str, then: Then, **fields: Any) -> None: ...

    def note(self, kind: str, **fields: Any) -> None: ...
