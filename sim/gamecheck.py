"""Game-level checkers: pure functions of (history, final states), like those in sim.checkers.

They read the final documents the way the game service does (``crdt_models``), what each node's
service believed at the end (``view`` notes; the simulator records them, ``meridian sim
cluster`` only the sessions), and what the players were told (the bots' notes, see sim.bots).

* ``unique-names``: after the merge every name has one owner, the earliest claim (every other
  claimant must rename); every node's service agrees on each owner; every loser connected at
  the end was told ``must_rename`` (in its ``hello`` or as a notice), and no owner was.
* ``one-session``: at most one live session per account after the heal: no account has two
  open connections at the end, the live presence documents hold at most one session per
  account, every node's service counts the same one, and no session is shown connected for an
  account that has no open connection (a ghost).
* ``one-game``: at most one live game per player after the heal (a partition let some start
  two; the later must have been parked), and every node's service agrees on each game's status.
* ``legal-chains``: every game's canonical chain (``crdt_models.game.canonical_chain``) replays
  as legal Battleline with ``games.battleline.replay``; it is the same on every node; each
  node's service follows that chain; every player still connected at the end was last shown
  it (same ply, same last move); every finished game's log entry holds exactly its moves.
* ``acknowledged-moves``: every move a player was told is done (the ``ok`` reply) is in the
  game document on every node. With ``ack_regions`` >= 1 a missing one fails the check; with 0
  it is the documented window (a node that dies before the move replicates loses it) and is only
  counted. A present move off the canonical chain lost a same-ply merge: counted, not a failure.

Each failure names the first violation with the history lines that show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

from pycrdt import Doc

import meridian.games.battleline as battleline
from meridian.crdt_models.accounts import ACCOUNTS_DOC, AccountsIndex
from meridian.crdt_models.archive import LOG_PREFIX, read_archive
from meridian.crdt_models.game import (
    SAVE,
    SUPERSEDED,
    GameInfo,
    MoveRecord,
    canonical_chain,
    read_info,
    read_marks,
    read_moves,
)
from meridian.crdt_models.presence import (
    HEARTBEAT,
    META,
    PRESENCE_PREFIX,
    SESSIONS,
    Presence,
    Session,
)
from meridian.crdt_models.records import RecordError, map_items, root_map
from meridian.games.base import IllegalMove
from meridian.sim.history import FinalStates, History
from meridian.sim.verdict import Verdict

LIVE, FINISHED, SAVED, PARKED = "live", "finished", "saved", "parked"
SHOWN = 6  # how many history lines an excerpt shows


# --- reading the final documents ---------------------------------------------------------


def rebuild(update: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    return doc


@dataclass(frozen=True)
class GameSummary:
    """One game document as every node's service should see it."""

    info: GameInfo
    keys: tuple[str, ...]  # the canonical chain's record keys
    moves: tuple[dict[str, Any], ...]  # its moves from the deal, each with its "player"
    records: tuple[MoveRecord, ...]  # every move record in the document
    status: str
    illegal: str  # why the chain does not replay, or ""

    @property
    def ply(self) -> int:
        return len(self.moves)

    def last_move(self) -> dict[str, Any] | None:
        if len(self.keys) == 0:
            return None
        last = dict(self.moves[-1])
        return {"player": last.pop("player"), "move": last}


@lru_cache(maxsize=4096)
def summarize_game(update: bytes) -> GameSummary | None:
    """The canonical chain and status of a game document (None before its info arrived)."""
    doc = rebuild(update)
    info = read_info(doc)
    if info is None:
        return None
    records = read_moves(doc)
    chain = canonical_chain(battleline.rules_module(), info, records)
    moves = tuple(info.start_moves) + tuple(dict(r.move, player=r.player) for r in chain.moves)
    illegal = ""
    try:
        state = battleline.replay(info.seed, list(moves), info.first)
    except IllegalMove as error:
        illegal, state = str(error), chain.state
    kinds = {mark["kind"] for mark in read_marks(doc)}
    status = (
        FINISHED
        if battleline.result(state) is not None
        else PARKED
        if SUPERSEDED in kinds
        else SAVED
        if SAVE in kinds
        else LIVE
    )
    keys = tuple(r.key for r in chain.moves)
    return GameSummary(info, keys, moves, tuple(records), status, illegal)


def games_on(final: FinalStates, node: str) -> dict[str, GameSummary]:
    games = {}
    for doc_id, state in final[node].items():
        if doc_id.startswith("game:"):
            summary = summarize_game(state.update)
            if summary is not None:
                games[doc_id[len("game:") :]] = summary
    return games


@lru_cache(maxsize=256)
def _accounts(update: bytes) -> AccountsIndex:
    return AccountsIndex(rebuild(update))


def accounts_on(final: FinalStates, node: str) -> AccountsIndex:
    state = final[node].get(ACCOUNTS_DOC)
    return _accounts(state.update) if state is not None else AccountsIndex(Doc())


def presences_on(final: FinalStates, node: str) -> list[Presence]:
    """The presence documents a node holds that are live (heartbeat within the TTL of the
    newest heartbeat: the checker has no clock of its own)."""
    found = [
        _presence(doc_id[len(PRESENCE_PREFIX) :], rebuild(state.update))
        for doc_id, state in sorted(final[node].items())
        if doc_id.startswith(PRESENCE_PREFIX)
    ]
    newest = max((p.heartbeat_ms for p in found), default=0)
    return [p for p in found if p.live(newest)]


def _presence(node: str, doc: Doc[Any]) -> Presence:
    """The sessions and heartbeat of one presence document (unreadable records skipped)."""
    sessions = []
    for _key, text in map_items(doc, SESSIONS):
        try:
            sessions.append(Session.from_text(text))
        except (RecordError, TypeError):
            continue
    heartbeat = root_map(doc, META).get(HEARTBEAT)
    return Presence(node, int(heartbeat or 0), sessions, [])


def owners(index: AccountsIndex) -> dict[str, str]:
    return {name: claims[0].uid for name, claims in sorted(index.claims.items())}


def names_of(history: History, final: FinalStates) -> dict[str, str]:
    """uid -> a name to show in messages (the account's name at the end)."""
    names = {n["uid"]: n["name"] for n in history.notes if n.get("uid") and "name" in n}
    for node in final:
        names.update({a.uid: a.name for a in accounts_on(final, node).all_accounts()})
    return names


def _who(history: History, final: FinalStates) -> dict[str, str]:
    """uid -> "name (client label, uid)", telling apart accounts that raced for one name."""
    names = names_of(history, final)
    labels = {n["uid"]: n["client"] for n in history.notes_of("registered")}
    return {uid: f"{name} ({labels.get(uid, '?')}, {uid})" for uid, name in names.items()}


def _up(history: History, final: FinalStates) -> list[str]:
    return [node for node in history.nodes if node in final]


def _lines(notes: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    lines = []
    for note in list(notes)[:SHOWN]:
        fields = ", ".join(f"{k}={v}" for k, v in note.items() if k not in ("t", "kind", "node"))
        lines.append(f"{note['t']:.3f} s {note['kind']} on {note['node']}: {fields}")
    return tuple(lines)


def _merges(history: History, kind: str) -> tuple[str, ...]:
    return tuple(m.describe() for m in history.merges if m.kind == kind)[:SHOWN]


def _views(history: History) -> dict[str, dict[str, Any]]:
    return {note["node"]: note for note in history.notes_of("view")}


def _fail(checker: str, message: str, excerpt: Iterable[str] = (), **figures: Any) -> Verdict:
    return Verdict(checker, False, message, tuple(excerpt)[: SHOWN + 2], figures)


# --- unique names -------------------------------------------------------------------------------


def check_unique_names(history: History, final: FinalStates) -> Verdict:
    nodes = _up(history, final)
    index = accounts_on(final, nodes[0])
    owned = owners(index)
    losers = {uid for claims in index.claims.values() for uid in (c.uid for c in claims[1:])}
    figures = {"names": len(owned), "contested": len(index.contested_names())}
    problem = _names_disagree(history, final, nodes, owned) or _told_wrong(history, losers, owned)
    if problem is not None:
        message, excerpt = problem
        return _fail("unique-names", message, excerpt, **figures)
    renamed = len(history.notes_of("renamed"))
    message = f"{len(owned)} names, one owner each; {figures['contested']} still contested, "
    message += f"{renamed} renamed after a merge; every connected loser was told"
    return Verdict("unique-names", True, message, figures=figures | {"renamed": renamed})


def _names_disagree(
    history: History, final: FinalStates, nodes: list[str], owned: dict[str, str]
) -> tuple[str, tuple[str, ...]] | None:
    names = _who(history, final)
    for node in nodes[1:]:
        if owners(accounts_on(final, node)) != owned:
            return f"the accounts documents of {nodes[0]} and {node} name different owners", ()
    for node, view in sorted(_views(history).items()):
        believed = view.get("names")
        if believed is None:
            continue
        for name, uid in sorted(owned.items()):
            if believed.get(name) != uid:
                other = believed.get(name)
                message = (
                    f"name {name!r}: the earliest claim is by {names.get(uid, uid)}, but the "
                    f"service on {node} gives it to {names.get(str(other), other)}"
                )
                return message, _merges(history, "name")
    return None


def _told_wrong(
    history: History, losers: set[str], owned: dict[str, str]
) -> tuple[str, tuple[str, ...]] | None:
    told = {n["uid"] for n in history.notes_of("notice") if n["code"] == "must_rename"}
    told |= {n["uid"] for n in history.notes_of("hello") if n["must_rename"]}
    renamed = {n["uid"] for n in history.notes_of("renamed")}
    connected = {n["uid"]: n for n in history.notes_of("end") if n["open"]}
    for uid in sorted(losers):
        if uid in connected and uid not in told:
            mine = [n for n in history.notes if n.get("uid") == uid]
            name = connected[uid]["name"]
            message = f"{name} ({uid}) lost its name in a merge and is connected, but was never "
            message += f"told must_rename (connected to {connected[uid]['node']})"
            return message, _lines(mine[-SHOWN:]) + _merges(history, "name")
    owners_told = sorted(uid for uid in told if uid in owned.values() and uid not in renamed)
    if owners_told:
        uid = owners_told[0]
        name = next(n for n, owner in owned.items() if owner == uid)
        notes = [n for n in history.notes if n.get("uid") == uid and n["kind"] == "notice"]
        return f"{name} ({uid}) owns its name yet was told must_rename", _lines(notes)
    return None


# --- one session --------------------------------------------------------------------------------


def check_one_session(history: History, final: FinalStates) -> Verdict:
    names = names_of(history, final)
    open_clients: dict[str, list[dict[str, Any]]] = {}
    for note in history.notes_of("end"):
        if note["open"]:
            open_clients.setdefault(note["uid"], []).append(note)
    checks: list[Callable[[], tuple[str, tuple[str, ...]] | None]] = [
        lambda: _two_connections(history, open_clients, names),
        lambda: _two_sessions(history, final, names),
        lambda: _sessions_disagree(history, names),
        lambda: _ghosts(final, history, open_clients, names),
    ]
    for check in checks:
        problem = check()
        if problem is not None:
            return _fail("one-session", problem[0], problem[1])
    closed = sum(1 for n in history.notes_of("closed") if n["code"] == 4100)
    message = f"{len(open_clients)} accounts connected at the end, one session each; "
    message += f"{closed} older sessions closed with 4100"
    return Verdict("one-session", True, message, figures={"closed_4100": closed})


def _two_connections(
    history: History, open_clients: dict[str, list[dict[str, Any]]], names: dict[str, str]
) -> tuple[str, tuple[str, ...]] | None:
    for uid, clients in sorted(open_clients.items()):
        if len(clients) > 1:
            where = ", ".join(f"{c['client']} on {c['node']}" for c in clients)
            mine = [n for n in history.notes if n.get("uid") == uid and n["kind"] != "move"]
            message = f"{names.get(uid, uid)} has {len(clients)} live connections at the end: "
            return message + where, _lines(mine[-SHOWN:]) + _merges(history, "double_login")
    return None


def _two_sessions(
    history: History, final: FinalStates, names: dict[str, str]
) -> tuple[str, tuple[str, ...]] | None:
    for node in _up(history, final):
        sids: dict[str, set[tuple[str, str]]] = {}
        for presence in presences_on(final, node):
            for session in presence.sessions:
                sids.setdefault(session.uid, set()).add((session.sid, presence.node))
        for uid, found in sorted(sids.items()):
            if len({sid for sid, _ in found}) > 1:
                where = ", ".join(f"{sid} on {host}" for sid, host in sorted(found))
                message = f"{names.get(uid, uid)} has {len(found)} sessions in the presence "
                return message + f"documents {node} holds: {where}", _merges(
                    history, "double_login"
                )
    return None


def _sessions_disagree(
    history: History, names: dict[str, str]
) -> tuple[str, tuple[str, ...]] | None:
    views = sorted(_views(history).items())
    for (node, view), (other, other_view) in pairwise(views):
        mine, theirs = view.get("sessions"), other_view.get("sessions")
        if mine is None or theirs is None or mine == theirs:
            continue
        uid = sorted(set(mine) ^ set(theirs) or {u for u in mine if mine[u] != theirs[u]})[0]
        message = f"{node} and {other} count different sessions for {names.get(uid, uid)}: "
        return message + f"{mine.get(uid)} vs {theirs.get(uid)}", ()
    return None


def _ghosts(
    final: FinalStates,
    history: History,
    open_clients: dict[str, list[dict[str, Any]]],
    names: dict[str, str],
) -> tuple[str, tuple[str, ...]] | None:
    if not history.notes_of("end"):
        return None  # no clients recorded: nothing to compare with
    for node in _up(history, final):
        for presence in presences_on(final, node):
            for session in presence.sessions:
                if session.connected and session.uid not in open_clients:
                    mine = [n for n in history.notes if n.get("uid") == session.uid]
                    message = f"the presence of {presence.node} shows {names.get(session.uid)} "
                    message += "connected, but no client of that account is connected (a ghost)"
                    return message, _lines(mine[-SHOWN:])
    return None


# --- one live game per player -------------------------------------------------------------------


def check_one_game(history: History, final: FinalStates) -> Verdict:
    names = names_of(history, final)
    for node in _up(history, final):
        games = games_on(final, node)
        live: dict[str, list[str]] = {}
        for gid, game in sorted(games.items()):
            if game.status == LIVE:
                for uid in game.info.players:
                    live.setdefault(uid, []).append(gid)
        for uid, gids in sorted(live.items()):
            if len(gids) > 1:
                message = f"{names.get(uid, uid)} is in {len(gids)} live games on {node} after "
                message += f"the heal: {', '.join(gids)} (the later ones should be parked)"
                notes = [n for n in history.notes if n.get("game") in gids][:SHOWN]
                return _fail("one-game", message, _lines(notes) + _merges(history, "two_games"))
    problem = _statuses_disagree(history, final)
    if problem is not None:
        return _fail("one-game", problem)
    counts = _status_counts(games_on(final, _up(history, final)[0]))
    parked = counts.get(PARKED, 0)
    message = f"every player in at most one live game; {parked} games parked by a merge"
    return Verdict("one-game", True, message, figures={"games": counts})


def _status_counts(games: dict[str, GameSummary]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for game in games.values():
        counts[game.status] = counts.get(game.status, 0) + 1
    return dict(sorted(counts.items()))


def _statuses_disagree(history: History, final: FinalStates) -> str | None:
    for node, view in sorted(_views(history).items()):
        games = games_on(final, node) if node in final else {}
        for gid, (status, _ply, _tip) in sorted(view.get("games", {}).items()):
            if gid in games and games[gid].status != status:
                return f"game {gid} is {games[gid].status} by its document, {status} on {node}"
    return None


# --- legal chains --------------------------------------------------------------------------------


def check_legal_chains(history: History, final: FinalStates) -> Verdict:
    nodes = _up(history, final)
    games = games_on(final, nodes[0])
    for check in (_illegal, _chains_differ, _services_differ, _players_shown):
        problem = check(history, final, games)
        if problem is not None:
            return _fail("legal-chains", problem[0], problem[1])
    plies = sum(game.ply for game in games.values())
    rolled = sum(len(game.records) - len(game.keys) for game in games.values())
    message = f"{len(games)} games, {plies} moves: every chain replays legally and is the same "
    message += "everywhere, as the players were shown"
    figures = {"games": len(games), "plies": plies, "records_off_chain": rolled}
    return Verdict("legal-chains", True, message, figures=figures)


Problem = tuple[str, tuple[str, ...]] | None


def _illegal(history: History, final: FinalStates, games: dict[str, GameSummary]) -> Problem:
    for gid, game in sorted(games.items()):
        if game.illegal:
            return f"game {gid}'s canonical chain does not replay: {game.illegal}", ()
    return None


def _chains_differ(history: History, final: FinalStates, games: dict[str, GameSummary]) -> Problem:
    nodes = _up(history, final)
    for node in nodes[1:]:
        theirs = games_on(final, node)
        for gid in sorted(set(games) | set(theirs)):
            mine, other = games.get(gid), theirs.get(gid)
            if mine is None or other is None or mine.keys != other.keys:
                plies = [g.ply if g else None for g in (mine, other)]
                message = f"game {gid}: {nodes[0]}'s chain has {plies[0]} moves, {node}'s "
                return message + f"{plies[1]} (different records)", _merges(history, "same_ply")
    return None


def _services_differ(
    history: History, final: FinalStates, games: dict[str, GameSummary]
) -> Problem:
    for node, view in sorted(_views(history).items()):
        for gid, (_status, ply, tip) in sorted(view.get("games", {}).items()):
            game = games.get(gid)
            if game is None:
                continue
            if ply != game.ply or tip != (game.keys[-1] if game.keys else ""):
                message = f"game {gid}: the service on {node} follows a chain of {ply} moves "
                message += f"ending {tip or '-'}, the canonical one has {game.ply} ending "
                message += f"{game.keys[-1] if game.keys else '-'}"
                return message, _merges(history, "same_ply")
    return None


def _players_shown(history: History, final: FinalStates, games: dict[str, GameSummary]) -> Problem:
    for note in history.notes_of("end"):
        if not note["open"]:
            continue
        for gid, view in sorted(note["games"].items()):
            game = games.get(gid)
            tip = game.keys[-1] if game is not None and game.keys else ""
            if game is None or (view["ply"], view["head"]) == (game.ply, tip):
                continue
            message = f"{note['name']} ({note['client']} on {note['node']}) was last shown game "
            message += f"{gid} at ply {view['ply']}, the canonical chain is at ply {game.ply}"
            if view["ply"] == game.ply:
                message += " with another last move"
            notes = [n for n in history.notes if n.get("game") == gid]
            return message, _lines(notes[-SHOWN:]) + _merges(history, "same_ply")
    return None


def check_game_log(history: History, final: FinalStates) -> Verdict:
    """Every finished game in the log (``log:<month>``) is the canonical game."""
    node = _up(history, final)[0]
    games = games_on(final, node)
    logged = 0
    for doc_id, state in sorted(final[node].items()):
        if not doc_id.startswith(LOG_PREFIX):
            continue
        for gid, entry in sorted(read_archive(rebuild(state.update)).items()):
            logged += 1
            game = games.get(gid)
            if game is None or (list(game.moves), game.status) == (entry.moves, FINISHED):
                continue
            message = f"game {gid} is in {doc_id} as finished after {len(entry.moves)} moves "
            message += f"({entry.result}), but its canonical chain is {game.status} after "
            message += f"{game.ply} moves"
            if game.ply == len(entry.moves):
                message += " (different moves)"
            notes = [n for n in history.notes if n.get("game") == gid]
            excerpt = _lines(notes[-SHOWN:]) + _merges_of_game(history, gid)
            return _fail("game-log", message, excerpt, logged=logged)
    message = f"{logged} finished games logged, each exactly as its canonical chain"
    return Verdict("game-log", True, message, figures={"logged": logged})


def _merges_of_game(history: History, gid: str) -> tuple[str, ...]:
    return tuple(m.describe() for m in history.merges if gid in m.detail)[:SHOWN]


# --- acknowledged moves ----------------------------------------------------------------------


def _holds(game: GameSummary | None, note: dict[str, Any]) -> MoveRecord | None:
    if game is None:
        return None
    ply = note["ply"] - len(game.info.start_moves)
    for record in game.records:
        if record.ply == ply and record.player == note["seat"] and record.move == note["move"]:
            return record
    return None


def check_acknowledged_moves(history: History, final: FinalStates) -> Verdict:
    nodes = _up(history, final)
    per_node = {node: games_on(final, node) for node in nodes}
    acked = history.notes_of("move")
    lost: list[tuple[dict[str, Any], str]] = []
    off_chain = 0
    for note in acked:
        missing = [n for n in nodes if _holds(per_node[n].get(note["game"]), note) is None]
        if missing:
            lost.append((note, missing[0]))
            continue
        record = _holds(per_node[nodes[0]].get(note["game"]), note)
        off_chain += record is not None and record.key not in per_node[nodes[0]][note["game"]].keys
    figures = {"acknowledged": len(acked), "lost": len(lost), "rolled_back": off_chain}
    summary = f"{len(acked)} acknowledged moves; {off_chain} lost a same-ply merge"
    if not lost:
        return Verdict("acknowledged-moves", True, summary + ", none missing", figures=figures)
    note, node = lost[0]
    first = f"move at ply {note['ply']} of game {note['game']} acknowledged on {note['node']} "
    first += f"at {note['t']:.3f} s is missing on {node}"
    if history.ack_regions == 0:
        message = f"{summary}; {len(lost)} lost in the documented window (ack_regions = 0), "
        return Verdict("acknowledged-moves", True, message + f"first: {first}", figures=figures)
    excerpt = [e.describe() for e in history.timeline if e.kind in ("crash", "stop", "restart")]
    message = f"{len(lost)} of {len(acked)} acknowledged moves lost; first: {first}"
    return _fail("acknowledged-moves", message, excerpt, **figures)
