"""Reference implementations of Meridian's merge rules, written from docs/ for the checkers.

Each rule is re-implemented here in the plainest form, from its statement in
``docs/architecture.md`` and ``docs/protocol.md``, and reads the documents only through
``sim.refdocs`` (the public data formats). Nothing is imported from ``crdt_models``, ``sync`` or
``node``; game legality comes from the rules engine's public API (``meridian.games.battleline``:
``replay``, ``apply_move``, ``result``). So a bug in production's version of a rule makes
production disagree with the reference instead of changing what the checker calls correct.

The rules:

* **names**: a claim is ``names['<lowercased name>|<uid>'] = {uid, name, stamp, region}``; the
  claim with the smallest HLC stamp owns the name (ties: the smaller uid); every other account
  whose current name is that name must rename.
* **accounts** (home-region authority): ``users['<uid>|<region>']`` is the account as last written
  by that region, with ``stamp``, ``base`` (the stamp of the account it was written from, "" at
  registration), ``base_home`` (the home region at that base) and ``writer``. A version written
  after its writer saw another one (``base >= other.stamp``) supersedes it; of the versions no
  other supersedes, one written by the home region (``writer == base_home``) beats one that is
  not; between equals the later stamp wins. That decides the name and status only: the
  **password hash and home** come from ``auth['<uid>|<region>']``, the versions a region wrote
  as the account's home (``writer == base_home``; any other is no home record), the newest stamp
  winning. A version by another region carries an empty password hash. Records may carry a
  signature (``signer``, ``sig``): extra fields, ignored here (the peers check them).
* **the canonical move chain**: ``moves['<ply:05d>|<stamp>'] = {ply, parent, player, move, stamp,
  node}``; from the deal, at each ply take, of the records whose ``parent`` is the current tip and
  whose ``ply`` is the chain's length, the one with the smallest stamp that the rules accept;
  stop when there is none. In a game with a time control the rule of ``sim.refclock`` also has to
  take the record (a move in time; a ``timeout`` past the deadline). A game is finished when its
  chain has a result, else parked if it has a ``superseded`` mark, saved if it has a ``save``
  mark, else live.
* **presence**: a node's presence document counts for a reader while its heartbeat is within
  ``PRESENCE_TTL_MS`` of the reader's wall clock (a node's own always counts); of the counted
  sessions of one account, the one started last (HLC, then sid) is the session.
* **the HLC**: a stamp is ``(wall_ms, counter, node)``; ``now`` gives ``(physical, 0)`` when the
  physical clock passed the last stamp's wall time, else ``(last wall, last counter + 1)``, and a
  counter past 99999 borrows the next millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import meridian.games.battleline as battleline
from meridian.games.base import IllegalMove
from meridian.sim.refclock import Timing, admit, timing_of
from meridian.sim.refdocs import NO_STAMP, Stamp, maps_of, parse_stamp, record

# Document and root map names: the public data format (docs/architecture.md, "The game service").
ACCOUNTS_DOC = "accounts"
GAME_PREFIX = "game:"
PRESENCE_PREFIX = "presence:"
SAVED_DOC = "saved"
LOG_PREFIX = "log:"
PRESENCE_TTL_MS = 15_000  # docs/architecture.md: a node whose heartbeat is older than 15 s is gone
MAX_COUNTER = 99_999  # the HLC counter's five digits
LIVE, FINISHED, SAVED, PARKED = "live", "finished", "saved", "parked"
RULES = {"battleline": battleline}


# --- names and accounts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    lower: str
    name: str
    uid: str
    stamp: Stamp
    region: str


def claims(update: bytes) -> dict[str, list[Claim]]:
    """Lowercased name -> its claims, the owner (earliest stamp, then uid) first."""
    return claims_of(maps_of(update).get("names", {}))


def claims_of(names: dict[str, Any]) -> dict[str, list[Claim]]:
    """The same from ``names`` map entries (key -> record text)."""
    found: dict[str, list[Claim]] = {}
    for key, text in names.items():
        fields = record(text)
        stamp = parse_stamp(fields.get("stamp")) if fields else None
        if fields is None or stamp is None or not isinstance(fields.get("uid"), str):
            continue
        lower = key.split("|", 1)[0]
        claim = Claim(
            lower, str(fields.get("name", "")), fields["uid"], stamp, str(fields.get("region"))
        )
        found.setdefault(lower, []).append(claim)
    return {lower: sorted(c, key=lambda c: (c.stamp, c.uid)) for lower, c in sorted(found.items())}


def owners(update: bytes) -> dict[str, str]:
    return {lower: found[0].uid for lower, found in claims(update).items()}


@dataclass(frozen=True)
class Version:
    uid: str
    name: str
    home: str
    password_hash: str
    status: str
    stamp: Stamp
    base: Stamp
    base_home: str
    writer: str


@dataclass(frozen=True)
class Account:
    uid: str
    name: str
    home: str
    password_hash: str
    status: str
    must_rename: bool

    def view(self) -> list[str]:
        """As the simulator records each service's view of an account."""
        return [self.name, self.home, self.status, self.password_hash]


def resolve(versions: list[Version]) -> Version:
    """The account a set of versions resolves to (see module docstring)."""
    standing = [v for v in versions if not any(o.base >= v.stamp for o in versions if o is not v)]
    return max(standing or versions, key=lambda v: (v.writer == v.base_home, v.stamp))


def version_of(text: Any) -> Version | None:
    fields = record(text)
    if fields is None:
        return None
    stamp = parse_stamp(fields.get("stamp"))
    base = NO_STAMP if fields.get("base") == "" else parse_stamp(fields.get("base"))
    names = ("uid", "name", "home", "password_hash", "status", "base_home", "writer")
    if stamp is None or base is None or not all(isinstance(fields.get(n), str) for n in names):
        return None
    uid, name, home, password_hash, status = (fields[n] for n in names[:5])
    return Version(
        uid, name, home, password_hash, status, stamp, base, fields["base_home"], fields["writer"]
    )


def versions_in(entries: dict[str, Any]) -> dict[str, list[Version]]:
    """uid -> its readable versions in a ``users`` or ``auth`` map (key -> record text)."""
    versions: dict[str, list[Version]] = {}
    for _key, text in sorted(entries.items()):
        version = version_of(text)
        if version is not None:
            versions.setdefault(version.uid, []).append(version)
    return versions


def home_record(records: list[Version]) -> Version | None:
    """The ``auth`` record that sets the password and home: the newest one the home wrote."""
    own = [r for r in records if r.writer == r.base_home]
    return max(own, key=lambda r: r.stamp, default=None)


@lru_cache(maxsize=256)
def accounts(update: bytes) -> dict[str, Account]:
    """uid -> the resolved account, with ``must_rename`` by the name rule."""
    maps = maps_of(update)
    versions = versions_in(maps.get("users", {}))
    home_records = versions_in(maps.get("auth", {}))
    owned = owners(update)
    resolved = {}
    for uid, found in sorted(versions.items()):
        v = resolve(found)
        home = home_record(home_records.get(uid, []))
        password_hash, region = (home.password_hash, home.home) if home else ("", v.home)
        must_rename = owned.get(v.name.lower()) != uid
        resolved[uid] = Account(uid, v.name, region, password_hash, v.status, must_rename)
    return resolved


# --- games -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveRec:
    ply: int
    parent: str
    player: int
    move: dict[str, Any]
    stamp: Stamp
    stamp_text: str
    node: str

    @property
    def key(self) -> str:
        return f"{self.ply:05d}|{self.stamp_text}"


@dataclass(frozen=True)
class Game:
    """One game document, resolved by the reference rules."""

    gid: str
    game: str
    players: tuple[str, ...]
    seed: int
    first: int
    created: Stamp
    node: str
    resumed_from: str
    start_moves: tuple[dict[str, Any], ...]
    records: tuple[MoveRec, ...]
    chain: tuple[MoveRec, ...]
    marks: tuple[tuple[str, str], ...]  # (kind, uid)
    status: str
    result: dict[str, Any] | None
    problem: str  # why the game cannot be resolved (unknown rules, a bad start), or ""
    clock_ms: int = 0  # the time control (sim.refclock); 0: none
    increment_ms: int = 0
    timing: Timing | None = None  # the time state at the chain's tip

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.chain)

    @property
    def moves(self) -> tuple[dict[str, Any], ...]:
        """Every move from the deal, each with its "player" (the log and saved-games format)."""
        return self.start_moves + tuple(dict(r.move, player=r.player) for r in self.chain)

    @property
    def ply(self) -> int:
        return len(self.start_moves) + len(self.chain)

    @property
    def tip(self) -> str:
        return self.chain[-1].key if self.chain else ""

    def last_move(self) -> dict[str, Any] | None:
        if not self.chain:
            return None
        return {"player": self.chain[-1].player, "move": self.chain[-1].move}

    def marked(self, kind: str) -> bool:
        return any(k == kind for k, _uid in self.marks)


def move_record_of(text: Any) -> MoveRec | None:
    fields = record(text)
    if fields is None:
        return None
    stamp = parse_stamp(fields.get("stamp"))
    ply, player, move = fields.get("ply"), fields.get("player"), fields.get("move")
    valid = (
        stamp is not None
        and isinstance(ply, int)
        and isinstance(player, int)
        and isinstance(move, dict)
        and isinstance(fields.get("parent"), str)
        and isinstance(fields.get("node"), str)
    )
    if not valid:
        return None
    return MoveRec(ply, fields["parent"], player, move, stamp, fields["stamp"], fields["node"])  # type: ignore[arg-type]


def chain_of(
    rules: Any, state: Any, records: Iterable[MoveRec], timing: Timing | None = None
) -> tuple[tuple[MoveRec, ...], Any]:
    """The canonical chain (see module docstring) and the state at its tip."""
    chain, state, _timing = timed_chain_of(rules, state, records, timing)
    return chain, state


def timed_chain_of(
    rules: Any, state: Any, records: Iterable[MoveRec], timing: Timing | None
) -> tuple[tuple[MoveRec, ...], Any, Timing | None]:
    """The canonical chain, the state and the time state at its tip."""
    children: dict[str, list[MoveRec]] = {}
    for rec in sorted(records, key=lambda r: (r.stamp, r.node)):
        children.setdefault(rec.parent, []).append(rec)
    chain: list[MoveRec] = []
    while True:
        tip = chain[-1].key if chain else ""
        for rec in children.get(tip, []):
            if rec.ply != len(chain):
                continue
            try:
                state, timing = admit(rules, state, timing, rec.player, rec.move, rec.stamp[0])
            except IllegalMove:
                continue
            chain.append(rec)
            break
        else:
            return tuple(chain), state, timing


@lru_cache(maxsize=4096)
def game(update: bytes) -> Game | None:
    """A game document resolved, or None while its setup has not arrived."""
    maps = maps_of(update)
    info = record(maps.get("info", {}).get("game"))
    if info is None:
        return None
    records = tuple(
        rec for rec in (move_record_of(t) for _k, t in sorted(maps.get("moves", {}).items())) if rec
    )
    marks = []
    for _key, text in sorted(maps.get("marks", {}).items()):
        mark = record(text)
        if mark is not None and isinstance(mark.get("kind"), str):
            marks.append((mark["kind"], str(mark.get("uid"))))
    rules = RULES.get(str(info.get("game")))
    start = tuple(info.get("start_moves") or ())
    chain: tuple[MoveRec, ...] = ()
    result, problem, timing = None, "", None
    created = parse_stamp(info.get("created")) or NO_STAMP
    if rules is None:
        problem = f"unknown rules {info.get('game')!r}"
    else:
        try:
            state = rules.replay(int(info["seed"]), [dict(m) for m in start], int(info["first"]))
        except (IllegalMove, KeyError, TypeError, ValueError) as error:
            problem = f"the start does not replay: {error}"
        else:
            timing = timing_of(info, rules, state, created[0])
            chain, state, timing = timed_chain_of(rules, state, records, timing)
            result = rules.result(state)
    kinds = {kind for kind, _uid in marks}
    status = (
        FINISHED
        if result is not None
        else PARKED
        if "superseded" in kinds
        else SAVED
        if "save" in kinds
        else LIVE
    )
    return Game(
        gid=str(info.get("gid")),
        game=str(info.get("game")),
        players=tuple(info.get("players") or ()),
        seed=int(info.get("seed", 0)),
        first=int(info.get("first", 0)),
        created=created,
        node=str(info.get("node")),
        resumed_from=str(info.get("resumed_from") or ""),
        start_moves=start,
        records=records,
        chain=chain,
        marks=tuple(marks),
        status=status,
        result=result,
        problem=problem,
        clock_ms=int(info.get("clock_ms") or 0),
        increment_ms=int(info.get("increment_ms") or 0),
        timing=timing,
    )


def archive(update: bytes) -> dict[str, dict[str, Any]]:
    """Saved games or a log period: gid -> the entry (its ``moves`` list every move)."""
    entries = {}
    for gid, text in sorted(maps_of(update).get("games", {}).items()):
        entry = record(text)
        if entry is not None and isinstance(entry.get("moves"), list):
            entries[gid] = entry
    return entries


# --- presence ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRec:
    sid: str
    uid: str
    name: str
    node: str
    started: Stamp
    connected: bool


@dataclass(frozen=True)
class PresenceRec:
    node: str
    heartbeat_ms: int
    sessions: tuple[SessionRec, ...]

    def fresh(self, wall_ms: int) -> bool:
        return wall_ms - self.heartbeat_ms <= PRESENCE_TTL_MS


@lru_cache(maxsize=1024)
def presence(node: str, update: bytes) -> PresenceRec:
    maps = maps_of(update)
    heartbeat = maps.get("meta", {}).get("heartbeat")
    sessions = []
    for sid, text in sorted(maps.get("sessions", {}).items()):
        fields = record(text)
        started = parse_stamp(fields.get("started")) if fields else None
        if fields is None or started is None or not isinstance(fields.get("uid"), str):
            continue
        sessions.append(
            SessionRec(
                sid,
                fields["uid"],
                str(fields.get("name")),
                str(fields.get("node")),
                started,
                fields.get("connected") is True,
            )
        )
    beat = int(heartbeat) if isinstance(heartbeat, int | float) else 0
    return PresenceRec(node, beat, tuple(sessions))


def counted_sessions(
    presences: Iterable[PresenceRec], reader: str, wall_ms: int
) -> dict[str, SessionRec]:
    """uid -> the session that counts for the node ``reader`` at its wall time ``wall_ms``."""
    newest: dict[str, SessionRec] = {}
    for doc in presences:
        if doc.node != reader and not doc.fresh(wall_ms):
            continue
        for session in doc.sessions:
            current = newest.get(session.uid)
            if current is None or (session.started, session.sid) > (current.started, current.sid):
                newest[session.uid] = session
    return newest


# --- the hybrid logical clock -------------------------------------------------------------------


def next_stamp(last: Stamp | None, physical_ms: int, node: str) -> Stamp:
    """What ``now()`` must return after ``last`` when the physical clock reads ``physical_ms``."""
    if last is None or physical_ms > last[0]:
        return (physical_ms, 0, node)
    wall, counter = last[0], last[1] + 1
    if counter > MAX_COUNTER:
        wall, counter = wall + 1, 0
    return (wall, counter, node)
