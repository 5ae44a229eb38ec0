"""One document per game (``game:<gid>``): its setup, the move records and the canonical chain.

Layout (flat root maps, one writer per key):

* ``info``: key ``game`` -> the setup (players, seed, first player, created stamp, creating node,
  the time control: ``clock_ms`` per player and ``increment_ms``, 0 for none, and for a resumed
  game the id it resumes and the moves it starts from), written once when the game is created.
* ``moves``: key ``<ply:05d>|<stamp>`` -> a move record ``{ply, parent, player, move, stamp,
  node}``, where ``parent`` is the key of the record it follows ("" for the first move).
* ``marks``: key ``<kind>|<stamp>|<uid>`` -> ``{kind, uid, stamp, ply}``; kinds: ``save`` (a
  player paused the game to the saved games), ``superseded`` (the merge found a player in two
  live games and parked this one, see ``crdt_models.archive``).

The canonical chain is the same on every node for the same set of records: starting from the
root, at each ply the child of the current tip with the smallest stamp that the rules accept is
taken; records on any other branch are dropped (and their players told, by the node). In normal
play only the player to move writes, so there is a single branch and no coordination.

In a game with a time control the records' stamps also run the clocks (``games.clock``, on the
wall part of the stamps; such a game cannot be paused, so no ``pause`` record is accepted): a
record stamped after the running player's deadline is not accepted,
except a ``timeout`` record for that player, which ends the game; a ``timeout`` record stamped
at or before the deadline (or in a game without a clock) is never accepted. So a move stamped in
time beats a time-out recorded concurrently (its stamp is smaller, and it is the only one of the
two that can be accepted before the deadline), and the result is the same on every node. Which
node writes the ``timeout`` record, and when, is the game service's rule (``node.topics.games``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from pycrdt import Doc, Map

from meridian.crdt_models.records import (
    RecordError,
    decode_record,
    encode_record,
    map_get,
    map_items,
    map_pairs,
    root_map,
    stamp_wall,
)
from meridian.games.base import GameRules, IllegalMove, Move
from meridian.games.clock import PAUSE, TIMEOUT, Clock, TimeControl

INFO = "info"
MOVES = "moves"
MARKS = "marks"
INFO_KEY = "game"
SAVE = "save"
SUPERSEDED = "superseded"
StateT = TypeVar("StateT")
# A region name as the keyring spells it (sync.identity); a game names at most this many.
REGION_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
MAX_REPLICAS = 64


GAME_PREFIX = "game:"  # a game's document id: the prefix, then its gid


def game_doc_id(gid: str) -> str:
    return GAME_PREFIX + gid


@dataclass(frozen=True)
class GameInfo:
    gid: str
    game: str  # rules name, e.g. "battleline"
    players: list[str]  # uids, seat 0 and seat 1
    names: list[str]
    seed: int
    first: int
    created: str  # HLC stamp
    node: str  # node that created it
    resumed_from: str = ""
    start_moves: list[dict[str, Any]] = field(default_factory=list)  # moves before ply 0 here
    clock_ms: int = 0  # each player's time at the start; 0: no time control
    increment_ms: int = 0  # the Fischer increment per turn
    # The regions that keep the game (partial replication); empty: every region (a record
    # written without placement, or by a release before it: such records carry no field).
    replicas: list[str] = field(default_factory=list)

    @classmethod
    def from_text(cls, text: Any) -> GameInfo:
        record = decode_record(
            text, ("gid", "game", "players", "names", "seed", "first", "created", "node")
        )
        record["seed"] = int(record["seed"])
        record["first"] = int(record["first"])
        for name in ("clock_ms", "increment_ms"):
            value = record.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RecordError(f"{name} is not a count of milliseconds")
        record["replicas"] = _replicas(record.get("replicas", []))
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})

    def kept_in(self, region: str) -> bool:
        """Whether the game's placement has `region` keep it (no placement: every region)."""
        return not self.replicas or region in self.replicas

    @property
    def time_control(self) -> TimeControl | None:
        if self.clock_ms <= 0:
            return None
        return TimeControl(self.clock_ms, self.increment_ms)

    def to_text(self) -> str:
        record = asdict(self)
        if not self.replicas:
            del record["replicas"]  # the record of a fully replicated game stays as it was
        return encode_record(record)

    def seat_of(self, uid: str) -> int | None:
        return self.players.index(uid) if uid in self.players else None


def _replicas(value: Any) -> list[str]:
    """A game's replica regions as its record holds them, or RecordError: a list of distinct
    region names, at most MAX_REPLICAS (an empty list is no placement)."""
    if not isinstance(value, list) or len(value) > MAX_REPLICAS:
        raise RecordError(f"replicas is not a list of at most {MAX_REPLICAS} regions")
    if not all(isinstance(r, str) and REGION_PATTERN.fullmatch(r) for r in value):
        raise RecordError("replicas holds something that is not a region name")
    if len(set(value)) != len(value):
        raise RecordError("replicas names a region twice")
    return list(value)


@dataclass(frozen=True)
class MoveRecord:
    ply: int
    parent: str
    player: int
    move: dict[str, Any]
    stamp: str
    node: str

    @property
    def key(self) -> str:
        return move_key(self.ply, self.stamp)

    @classmethod
    def from_text(cls, text: Any) -> MoveRecord:
        record = decode_record(text, ("ply", "parent", "player", "move", "stamp", "node"))
        if not isinstance(record["move"], dict):
            raise RecordError("move is not an object")
        return cls(
            int(record["ply"]),
            str(record["parent"]),
            int(record["player"]),
            record["move"],
            str(record["stamp"]),
            str(record["node"]),
        )

    def to_text(self) -> str:
        # (not dataclasses.asdict: its deep copy of the move cost more than the JSON itself)
        record = {
            "ply": self.ply,
            "parent": self.parent,
            "player": self.player,
            "move": self.move,
            "stamp": self.stamp,
            "node": self.node,
        }
        return encode_record(record)


def move_key(ply: int, stamp: str) -> str:
    return f"{ply:05d}|{stamp}"


@dataclass
class Chain(Generic[StateT]):
    """The canonical move chain and the game state at its tip."""

    moves: list[MoveRecord]
    dropped: list[MoveRecord]
    state: StateT
    clock: Clock | None = None  # the clocks at the tip, in a game with a time control

    @property
    def tip(self) -> str:
        return self.moves[-1].key if self.moves else ""


def read_info(doc: Doc[Any]) -> GameInfo | None:
    text = map_get(root_map(doc, INFO), INFO_KEY)
    return GameInfo.from_text(text) if text is not None else None


def read_moves(doc: Doc[Any], skip: set[str] | frozenset[str] = frozenset()) -> list[MoveRecord]:
    """The move records of a game, except those whose key is in `skip` (already read)."""
    records = []
    for _, text in map_pairs(root_map(doc, MOVES), skip):
        try:
            records.append(MoveRecord.from_text(text))
        except RecordError:
            continue  # a record no rule can use is ignored (and never wins a ply)
    return records


def read_marks(doc: Doc[Any]) -> list[dict[str, Any]]:
    marks = []
    for _key, text in map_items(doc, MARKS):
        try:
            marks.append(decode_record(text, ("kind", "uid", "stamp", "ply")))
        except RecordError:
            continue
    return sorted(marks, key=lambda m: (m["stamp"], m["uid"]))


def start_state(rules: GameRules[StateT], info: GameInfo) -> StateT:
    return rules.replay(info.seed, info.start_moves, info.first)


def start_clock(rules: GameRules[StateT], info: GameInfo, state: StateT) -> Clock | None:
    """The clocks at the start of a game with a time control: the first mover's runs from the
    game's creation stamp."""
    control = info.time_control
    if control is None:
        return None
    try:
        created = stamp_wall(info.created)
    except RecordError:
        created = 0  # a malformed stamp: the time is long out, a time-out can end the game
    return Clock.start(control, rules.to_move(state), created)


def step(
    rules: GameRules[StateT], state: StateT, clock: Clock | None, record: MoveRecord
) -> tuple[StateT, Clock | None]:
    """The state and clocks after `record`, or IllegalMove if the chain cannot take it here: the
    rules refuse it, it comes after the running player's time ran out, or it is a ``timeout``
    record that is not due (see module docstring)."""
    is_timeout = record.move.get("type") == TIMEOUT
    if clock is None:
        if is_timeout:
            raise IllegalMove("illegal_move", "a game without a clock has no time-out")
        return rules.apply_move(state, record.player, record.move), None
    try:
        at_ms = stamp_wall(record.stamp)
    except RecordError as error:
        raise IllegalMove("malformed", str(error)) from None
    late = clock.is_late(at_ms)
    if is_timeout:
        if not late or record.player != clock.running:
            raise IllegalMove("illegal_move", f"player {record.player}'s time is not out")
        return rules.apply_move(state, record.player, record.move), clock.timed_out()
    if late:
        raise IllegalMove("time_out", f"player {clock.running}'s time ran out before this move")
    if record.move.get("type") == PAUSE:
        raise IllegalMove("illegal_move", "a game with a time control cannot be paused")
    new_state = rules.apply_move(state, record.player, record.move)
    return new_state, clock.after(at_ms, rules.to_move(new_state))


def canonical_chain(
    rules: GameRules[StateT], info: GameInfo, records: list[MoveRecord]
) -> Chain[StateT]:
    """Resolve the records into the canonical chain (see module docstring)."""
    children: dict[str, list[MoveRecord]] = {}
    for record in sorted(records, key=lambda r: (r.stamp, r.node)):
        children.setdefault(record.parent, []).append(record)
    state = start_state(rules, info)
    clock = start_clock(rules, info, state)
    chain: list[MoveRecord] = []
    parent = ""
    while True:
        accepted = _first_accepted(rules, state, clock, len(chain), children.get(parent, []))
        if accepted is None:
            break
        record, state, clock = accepted
        chain.append(record)
        parent = record.key
    kept = {id(r) for r in chain}
    return Chain(chain, [r for r in records if id(r) not in kept], state, clock)


def _first_accepted(
    rules: GameRules[StateT],
    state: StateT,
    clock: Clock | None,
    ply: int,
    candidates: list[MoveRecord],
) -> tuple[MoveRecord, StateT, Clock | None] | None:
    for record in candidates:
        if record.ply != ply:
            continue
        try:
            return (record, *step(rules, state, clock, record))
        except IllegalMove:
            continue
    return None


class GameWriter:
    """Writes to one game document; call inside one transaction (engine.writing)."""

    def __init__(self, doc: Doc[Any], node: str) -> None:
        self.doc = doc
        self.node = node

    def create(self, info: GameInfo) -> None:
        root_map(self.doc, INFO)[INFO_KEY] = info.to_text()

    def add_move(self, ply: int, parent: str, player: int, move: Move, stamp: str) -> MoveRecord:
        record = MoveRecord(ply, parent, player, move, stamp, self.node)
        put_move(root_map(self.doc, MOVES), record)
        return record

    def mark(self, kind: str, uid: str, stamp: str, ply: int) -> None:
        record = {"kind": kind, "uid": uid, "stamp": stamp, "ply": ply}
        root_map(self.doc, MARKS)[f"{kind}|{stamp}|{uid}"] = encode_record(record)


def put_move(moves: Map[Any], record: MoveRecord) -> None:
    """Write a move record into a game document's move map (inside a transaction)."""
    moves[record.key] = record.to_text()


def resolve_game(rules: GameRules[StateT], doc: Doc[Any]) -> tuple[GameInfo, Chain[StateT]] | None:
    """Info and canonical chain of a game document, or None while its info has not arrived."""
    info = read_info(doc)
    if info is None:
        return None
    return info, canonical_chain(rules, info, read_moves(doc))
