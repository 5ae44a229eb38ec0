"""Game-level checkers: pure functions of (history, final states), like those in sim.checkers.

They never ask production code what is correct. The final documents are read through their public
data formats (``sim.refdocs``) and resolved by the reference rules (``sim.reference``: the
canonical chain with legality from the rules engine's public API, name ownership, home-region
authority, presence); what each node's game service believed at the end (the ``view`` notes the
simulation takes; ``meridian sim cluster`` records only the sessions) and what the players were
told (the bots' notes, see sim.bots) are then compared with that.

* ``unique-names``: every name has one owner, the earliest claim; every node's service names
  that owner and marks exactly the reference's losers ``must_rename``; every loser connected at
  the end was told (in its ``hello`` or as a notice), and no owner was.
* ``accounts`` (home-region authority): every account version records as ``base_home`` the home
  of the version it was written from (by the journal of every version ever seen); every home
  record (a version written as the home) was written by the home the newest earlier one names,
  and a home change a node outside the home region refused was refused with ``not_home``
  (``account-edit`` notes); and every node's
  service resolves every account (name, home, status, password) as the reference resolves the
  versions and home records in the accounts document.
* ``one-session``: no account has two open connections at the end; the fresh presence documents
  hold at most one session per account; every node's service counts, for every account, the
  session the reference counts (the newest in the presence documents fresh at that node's wall
  clock); no session is shown connected without an open connection (a ghost); and a client
  closed with 4100 ("logged in elsewhere") was not the account's newest session (give or take
  how far apart the nodes' wall clocks were: sessions are ordered by HLC stamps); and during the
  run no service showed a session only stale presence documents hold, or left out one a fresh
  document holds, for longer than its tick allows (``sim.presencecheck``).
* ``one-game``: at most one live game per player; every node's service gives each game the
  reference status; every game parked or saved is in the saved games (unless it was resumed),
  and a parked game had an earlier-created game with a player in common.
* ``legal-chains``: every game's reference chain is the same on every node and replays with
  ``games.battleline.replay``; each node's service follows it; every player still connected at
  the end was last shown it (same ply, same last move).
* ``game-log``: every game in the log of finished games is finished by its reference chain, with
  exactly those moves.
* ``forged-refused``: no move record an insider node forged against a rule the peers check (an
  illegal move, a wrong player or parent, a stamp far in the future) is in any honest node's
  documents.
* ``acknowledged-moves``: every move a player was told is done (the ``ok`` reply) is in the game
  document on every node. With ``ack_regions`` >= 1 a missing one fails the check; with 0 it is
  the documented window (a node that dies before the move replicates loses it) and is only
  counted. A present move off the reference chain lost a same-ply merge: counted, not a failure.

Each failure names the first violation with the history lines that show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

import meridian.games.battleline as battleline
from meridian.games.base import IllegalMove
from meridian.sim import reference
from meridian.sim.history import FinalStates, History
from meridian.sim.presencecheck import expiry_problem, login_problem
from meridian.sim.refdocs import format_stamp, maps_of, rebuild
from meridian.sim.reference import (
    ACCOUNTS_DOC,
    FINISHED,
    GAME_PREFIX,
    LIVE,
    LOG_PREFIX,
    PARKED,
    PRESENCE_PREFIX,
    SAVED,
    SAVED_DOC,
    Account,
    Game,
    PresenceRec,
)
from meridian.sim.verdict import Verdict

SHOWN = 6  # how many history lines an excerpt shows
CLOSE_ELSEWHERE = 4100  # docs/protocol.md: a newer session of this account opened
STALE_SLACK_S = 5.0
# A session starts at its login (HTTP), its client says hello after connecting; the older session
# may be closed in between. A rival's hello up to this long after the close still counts.
LOGIN_TO_HELLO_S = (
    10.0  # a service's picture may predate the final states by the settling plus this
)

__all__ = ["GameSummary", "games_on", "rebuild"]

# How a node outside the home region may answer a home change: refused as not the home, or,
# before the login's session has replicated to it, as not knowing the session at all.
AWAY_REFUSALS = ("not_home", "unauthenticated")
Problem = tuple[str, tuple[str, ...]] | None
GameSummary = Game  # the name older callers use


# --- reading the final documents ---------------------------------------------------------


def games_on(final: FinalStates, node: str) -> dict[str, Game]:
    games = {}
    for doc_id, state in final[node].items():
        if doc_id.startswith(GAME_PREFIX):
            found = reference.game(state.update)
            if found is not None:
                games[doc_id[len(GAME_PREFIX) :]] = found
    return games


def accounts_on(final: FinalStates, node: str) -> dict[str, Account]:
    state = final[node].get(ACCOUNTS_DOC)
    return reference.accounts(state.update) if state is not None else {}


def owners_on(final: FinalStates, node: str) -> dict[str, str]:
    state = final[node].get(ACCOUNTS_DOC)
    return reference.owners(state.update) if state is not None else {}


def claimants_on(final: FinalStates, node: str) -> dict[str, list[str]]:
    state = final[node].get(ACCOUNTS_DOC)
    found = reference.claims(state.update) if state is not None else {}
    return {lower: [c.uid for c in claims] for lower, claims in found.items()}


def presences_on(final: FinalStates, node: str) -> list[PresenceRec]:
    return [
        reference.presence(doc_id[len(PRESENCE_PREFIX) :], state.update)
        for doc_id, state in sorted(final[node].items())
        if doc_id.startswith(PRESENCE_PREFIX)
    ]


def names_of(history: History, final: FinalStates) -> dict[str, str]:
    """uid -> a name to show in messages (the account's name at the end)."""
    names = {n["uid"]: n["name"] for n in history.notes if n.get("uid") and "name" in n}
    for node in final:
        names.update({uid: a.name for uid, a in accounts_on(final, node).items()})
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


def _first(checks: Iterable[Callable[[], Problem]]) -> Problem:
    for check in checks:
        problem = check()
        if problem is not None:
            return problem
    return None


# --- unique names -------------------------------------------------------------------------------


def check_unique_names(history: History, final: FinalStates) -> Verdict:
    nodes = _up(history, final)
    owned = owners_on(final, nodes[0])
    contested = {
        lower: uids for lower, uids in claimants_on(final, nodes[0]).items() if len(uids) > 1
    }
    losers = {uid for uid, account in accounts_on(final, nodes[0]).items() if account.must_rename}
    figures = {"names": len(owned), "contested": len(contested)}
    problem = _first(
        [
            lambda: _names_disagree(history, final, nodes, owned),
            lambda: _marks_disagree(history, final, nodes[0]),
            lambda: _told_wrong(history, losers, owned),
        ]
    )
    if problem is not None:
        message, excerpt = problem
        return _fail("unique-names", message, excerpt, **figures)
    renamed = len(history.notes_of("renamed"))
    message = f"{len(owned)} names, one owner each; {len(contested)} still contested, "
    message += f"{renamed} renamed after a merge; every connected loser was told"
    return Verdict("unique-names", True, message, figures=figures | {"renamed": renamed})


def _names_disagree(
    history: History, final: FinalStates, nodes: list[str], owned: dict[str, str]
) -> Problem:
    names = _who(history, final)
    for node in nodes[1:]:
        if owners_on(final, node) != owned:
            return f"the accounts documents of {nodes[0]} and {node} name different owners", ()
    for node, view in sorted(_views(history).items()):
        believed = view.get("names")
        if believed is None:
            continue
        for name in sorted(set(owned) | set(believed)):
            uid, other = owned.get(name), believed.get(name)
            if other != uid:
                message = (
                    f"name {name!r}: the earliest claim is by {names.get(str(uid), uid)}, but "
                    f"the service on {node} gives it to {names.get(str(other), other)}"
                )
                return message, _merges(history, "name")
    return None


def _marks_disagree(history: History, final: FinalStates, node: str) -> Problem:
    expected = accounts_on(final, node)
    names = _who(history, final)
    for viewer, view in sorted(_views(history).items()):
        for uid, shown in sorted((view.get("accounts") or {}).items()):
            account = expected.get(uid)
            if account is not None and bool(shown[4]) != account.must_rename:
                should = "must rename" if account.must_rename else "keeps its name"
                message = f"{names.get(uid, uid)} {should} by the earliest claim of "
                message += f"{account.name!r}, but the service on {viewer} says the opposite"
                return message, _merges(history, "name")
    return None


def _told_wrong(history: History, losers: set[str], owned: dict[str, str]) -> Problem:
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
    owners_told += sorted(uid for uid in told if _never_lost(history, uid))
    if owners_told:
        uid = owners_told[0]
        name = next((n for n, owner in owned.items() if owner == uid), "its name")
        notes = [
            n for n in history.notes if n.get("uid") == uid and n["kind"] in ("notice", "hello")
        ]
        message = f"{name} ({uid}) owns its name (the earliest claim) yet was told must_rename"
        return message, _lines(notes)
    return None


def _never_lost(history: History, uid: str) -> bool:
    """Whether every name the account ever claimed was the earliest claim of that name (by the
    claims journal: a rename deletes the old claim from the document)."""
    ever = reference.claims_of(history.claims)
    mine = [found for found in ever.values() if any(c.uid == uid for c in found)]
    return bool(mine) and all(found[0].uid == uid for found in mine)


# --- home-region authority ------------------------------------------------------------------


def check_accounts(history: History, final: FinalStates) -> Verdict:
    """Every service resolves every account as the reference does (home-region authority)."""
    nodes = _up(history, final)
    expected = accounts_on(final, nodes[0])
    names = _who(history, final)
    fields = ("name", "home", "status", "password")
    for node in nodes[1:]:
        if accounts_on(final, node) != expected:
            return _fail("accounts", f"{nodes[0]} and {node} resolve the accounts differently")
    problem = _wrong_base(history, names) or _edits_wrong(history, expected, names)
    if problem is not None:
        return _fail("accounts", problem[0], problem[1])
    compared = 0
    for viewer, view in sorted(_views(history).items()):
        for uid, shown in sorted((view.get("accounts") or {}).items()):
            account = expected.get(uid)
            if account is None:
                message = f"the service on {viewer} knows account {uid}, the documents do not"
                return _fail("accounts", message)
            compared += 1
            for field, want, got in zip(fields, account.view(), shown[:4], strict=True):
                if want != got:
                    message = f"{names.get(uid, uid)}: the service on {viewer} resolves its "
                    message += f"{field} to {_short(got)}, the versions in the accounts document "
                    message += f"resolve to {_short(want)} (the home region's write wins)"
                    notes = [n for n in history.notes if n.get("uid") == uid]
                    return _fail("accounts", message, _lines(notes[-SHOWN:]))
    edits = history.notes_of("account-edit")
    refused = sum(1 for n in edits if n["code"] == "not_home")
    message = f"{len(expected)} accounts resolved alike by every service ({compared} views); "
    message += f"{len(edits)} account edits, {refused} refused as not_home"
    figures = {"accounts": len(expected), "edits": len(edits), "not_home": refused}
    return Verdict("accounts", True, message, figures=figures)


def _wrong_base(history: History, names: dict[str, str]) -> Problem:
    """Every account version names as ``base_home`` the home of the version it was written from
    (by the journal of every version ever seen): authority is judged from that field."""
    versions = [v for v in map(reference.version_of, history.account_versions) if v is not None]
    by_stamp = {(v.uid, v.stamp): v for v in versions}
    for version in versions:
        base = by_stamp.get((version.uid, version.base))
        if base is not None and version.base_home != base.home:
            message = f"{names.get(version.uid, version.uid)}: the version {version.writer} wrote "
            message += f"at {format_stamp(version.stamp)} records base_home {version.base_home!r}, "
            message += f"but the version it was written from has home {base.home!r}"
            notes = [n for n in history.notes if n.get("uid") == version.uid]
            return message, _lines(notes[-SHOWN:])
    return None


def _edits_wrong(history: History, expected: dict[str, Account], names: dict[str, str]) -> Problem:
    """Only the home region changes an account's home. Each home record ever seen (a version
    its writer wrote as the home, from the journal) was written by the home the newest earlier
    home record names; and a home change sent to a node of another region than the home (as
    far as the editor knew when it sent it) that the node refused was refused with one of
    `AWAY_REFUSALS`. A node with a stale picture may accept a change it takes for a no-op, so
    an accepted edit proves nothing by itself: the home records do."""
    versions = [v for v in map(reference.version_of, history.account_versions) if v is not None]
    chains: dict[str, list[reference.Version]] = {}
    for version in sorted(versions, key=lambda v: v.stamp):
        if version.writer != version.base_home:
            continue
        chain = chains.setdefault(version.uid, [])
        if chain and chain[-1].home != version.writer:
            message = f"{names.get(version.uid, version.uid)}: {version.writer} wrote a home "
            message += f"record at {format_stamp(version.stamp)} while the newest earlier one "
            message += f"(by {chain[-1].writer}) names {chain[-1].home} as the home"
            notes = [n for n in history.notes if n.get("uid") == version.uid]
            return message, _lines(notes[-SHOWN:])
        chain.append(version)
    for note in history.notes_of("account-edit"):
        away = note["via"] != note["was_home"] and note["home"] != note["was_home"]
        if away and not note["ok"] and note["code"] not in AWAY_REFUSALS:
            message = f"{names.get(note['uid'], note['uid'])}: a home change sent to "
            message += f"{note['via']} while the home was {note['was_home']} was refused with "
            message += f"{note['code']!r}, not 'not_home'"
            return message, _lines([note])
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- one session --------------------------------------------------------------------------------


def one_session(
    clock_tolerance_s: float, picture_lag_s: float
) -> Callable[[History, FinalStates], Verdict]:
    def check(history: History, final: FinalStates) -> Verdict:
        names = names_of(history, final)
        open_clients: dict[str, list[dict[str, Any]]] = {}
        for note in history.notes_of("end"):
            if note["open"]:
                open_clients.setdefault(note["uid"], []).append(note)
        problem = _first(
            [
                lambda: _two_connections(history, open_clients, names),
                lambda: _two_sessions(history, final, names),
                lambda: _sessions_disagree(history, final, names),
                lambda: _ghosts(final, history, open_clients, names),
                lambda: _newest_closed(
                    history, names, max(clock_tolerance_s, clock_spread_s(history))
                ),
                lambda: _expiry(history, picture_lag_s, names),
                lambda: _login_outranked(history, picture_lag_s, names),
            ]
        )
        if problem is not None:
            return _fail("one-session", problem[0], problem[1])
        closed = sum(1 for n in history.notes_of("closed") if n["code"] == CLOSE_ELSEWHERE)
        message = f"{len(open_clients)} accounts connected at the end, one session each; "
        message += f"{closed} older sessions closed with 4100"
        return Verdict("one-session", True, message, figures={"closed_4100": closed})

    return check


def _expiry(history: History, picture_lag_s: float, names: dict[str, str]) -> Problem:
    found = expiry_problem(history, picture_lag_s, names)
    return None if found is None else (found.message, found.lines)


def _login_outranked(history: History, picture_lag_s: float, names: dict[str, str]) -> Problem:
    found = login_problem(history, picture_lag_s, names)
    if found is None:
        return None
    notes = [n for n in history.notes if n.get("uid") == found.uid and n["kind"] != "move"]
    return found.message, found.lines + _lines(notes[-SHOWN:])


def _two_connections(
    history: History, open_clients: dict[str, list[dict[str, Any]]], names: dict[str, str]
) -> Problem:
    for uid, clients in sorted(open_clients.items()):
        if len(clients) > 1:
            where = ", ".join(f"{c['client']} on {c['node']}" for c in clients)
            mine = [n for n in history.notes if n.get("uid") == uid and n["kind"] != "move"]
            message = f"{names.get(uid, uid)} has {len(clients)} live connections at the end: "
            return message + where, _lines(mine[-SHOWN:]) + _merges(history, "double_login")
    return None


def _fresh(history: History, final: FinalStates, node: str) -> list[PresenceRec]:
    """The presence documents a node holds that were fresh for it when the run ended."""
    wall = _views(history).get(node, {}).get("wall_ms")
    found = presences_on(final, node)
    if wall is None:  # no clock recorded (sim cluster): the newest heartbeat stands for it
        wall = max((p.heartbeat_ms for p in found), default=0)
    return [p for p in found if p.node == node or p.fresh(wall)]


def _two_sessions(history: History, final: FinalStates, names: dict[str, str]) -> Problem:
    for node in _up(history, final):
        sids: dict[str, set[tuple[str, str]]] = {}
        for doc in _fresh(history, final, node):
            for session in doc.sessions:
                sids.setdefault(session.uid, set()).add((session.sid, doc.node))
        for uid, found in sorted(sids.items()):
            if len({sid for sid, _ in found}) > 1:
                where = ", ".join(f"{sid} on {host}" for sid, host in sorted(found))
                message = f"{names.get(uid, uid)} has {len(found)} sessions in the presence "
                return message + f"documents {node} holds: {where}", _merges(
                    history, "double_login"
                )
    return None


def _sessions_disagree(history: History, final: FinalStates, names: dict[str, str]) -> Problem:
    views = sorted(_views(history).items())
    for node, view in views:
        counted, wall = view.get("sessions"), view.get("wall_ms")
        if counted is None or wall is None or node not in final:
            continue
        expected, unsure = _reference_sessions(history, final, node, wall)
        for uid in sorted(set(expected) | set(counted)):
            want = expected[uid].sid if uid in expected else None
            if uid in unsure or counted.get(uid) == want:
                continue
            message = f"the service on {node} counts {counted.get(uid) or 'no session'} for "
            message += f"{names.get(uid, uid)}, the fresh presence documents give "
            message += f"{want or 'none'} (the session started last)"
            return message, _merges(history, "double_login")
    for (node, view), (other, other_view) in pairwise(views):
        mine, theirs = view.get("sessions"), other_view.get("sessions")
        if mine is None or theirs is None or mine == theirs or "wall_ms" in view:
            continue
        uid = sorted(set(mine) ^ set(theirs) or {u for u in mine if mine[u] != theirs[u]})[0]
        message = f"{node} and {other} count different sessions for {names.get(uid, uid)}: "
        return message + f"{mine.get(uid)} vs {theirs.get(uid)}", ()
    return None


def _reference_sessions(
    history: History, final: FinalStates, node: str, wall_ms: int
) -> tuple[dict[str, reference.SessionRec], set[str]]:
    """What the node's service must count at the end, and the accounts it may count either way:
    its picture may be as old as its last refresh, which the settling (heartbeats stopped) and
    one heartbeat period bound."""
    docs = presences_on(final, node)
    expected = reference.counted_sessions(docs, node, wall_ms)
    settle_s = (history.final_at or history.end_at) - history.end_at
    earlier = wall_ms - int((settle_s + STALE_SLACK_S) * 1000)
    maybe = reference.counted_sessions(docs, node, earlier)
    unsure = {uid for uid in set(expected) | set(maybe) if expected.get(uid) != maybe.get(uid)}
    return expected, unsure


def _ghosts(
    final: FinalStates,
    history: History,
    open_clients: dict[str, list[dict[str, Any]]],
    names: dict[str, str],
) -> Problem:
    if not history.notes_of("end"):
        return None  # no clients recorded: nothing to compare with
    for node in _up(history, final):
        for doc in _fresh(history, final, node):
            for session in doc.sessions:
                if session.connected and session.uid not in open_clients:
                    mine = [n for n in history.notes if n.get("uid") == session.uid]
                    message = f"the presence of {doc.node} shows {names.get(session.uid)} "
                    message += "connected, but no client of that account is connected (a ghost)"
                    return message, _lines(mine[-SHOWN:])
    return None


def clock_spread_s(history: History) -> float:
    """How far apart the nodes' wall clocks were at most, from the physical readings the HLC
    stamps were drawn with (seconds; 0 without stamps)."""
    offsets = [s.physical_ms / 1000 - s.t for s in history.stamps]
    return max(offsets) - min(offsets) if offsets else 0.0


def _newest_closed(history: History, names: dict[str, str], tolerance_s: float) -> Problem:
    """A client closed with 4100 must not hold the account's newest session: some other client
    of the account said hello later (within the scenario's clock tolerance: sessions are ordered
    by HLC stamps, which follow each node's wall clock), or shortly after the close (its session
    began at its login, before its hello). The same client's hello on another node counts as
    another client: a client that travelled during a partition left a session there that the
    node it left could not close."""
    hellos: dict[str, list[dict[str, Any]]] = {}
    for note in history.notes:
        if note["kind"] == "hello":
            hellos.setdefault(note["uid"], []).append(note)
    for closed in history.notes_of("closed"):
        if closed["code"] != CLOSE_ELSEWHERE:
            continue
        uid, client, at = closed["uid"], closed["client"], closed["t"]
        mine = [h for h in hellos.get(uid, []) if h["client"] == client and h["t"] <= at]
        if not mine:
            continue
        # Its session began when the node took its hello, which may be well before the reply
        # (a failover's reply waits for the catch-up): from the hello's sending on.
        started = mine[-1].get("sent", mine[-1]["t"])
        rivals = [
            h
            for h in hellos.get(uid, [])
            if (h["client"] != client or h["node"] != closed["node"])
            and started - tolerance_s < h["t"] <= at + LOGIN_TO_HELLO_S
        ]
        if not rivals:
            message = f"{names.get(uid, uid)}: {client} was closed with 4100 at {at:.3f} s, yet "
            message += f"its session (hello at {started:.3f} s) was the newest: no other client "
            message += "of the account said hello after it"
            notes = [n for n in history.notes if n.get("uid") == uid and n["kind"] != "move"]
            return message, _lines(notes[-SHOWN:]) + _merges(history, "double_login")
    return None


# --- one live game per player -------------------------------------------------------------------


def one_game(stale_saved_fails: bool) -> Callable[[History, FinalStates], Verdict]:
    """``stale_saved_fails``: whether a saved entry that is not the start of its game's chain (a
    rollback after the game was saved; see docs/simulator.md, Findings) fails the check or is
    only counted."""

    def check(history: History, final: FinalStates) -> Verdict:
        return _check_one_game(history, final, stale_saved_fails)

    return check


def check_one_game(history: History, final: FinalStates) -> Verdict:
    return _check_one_game(history, final, True)


def _check_one_game(history: History, final: FinalStates, stale_saved_fails: bool) -> Verdict:
    names = names_of(history, final)
    nodes = _up(history, final)
    for node in nodes:
        games = games_on(final, node)
        live: dict[str, list[str]] = {}
        for gid, game in sorted(games.items()):
            if game.status == LIVE:
                for uid in game.players:
                    live.setdefault(uid, []).append(gid)
        for uid, gids in sorted(live.items()):
            if len(gids) > 1:
                message = f"{names.get(uid, uid)} is in {len(gids)} live games on {node} after "
                message += f"the heal: {', '.join(gids)} (the later ones should be parked)"
                notes = [n for n in history.notes if n.get("game") in gids][:SHOWN]
                return _fail("one-game", message, _lines(notes) + _merges(history, "two_games"))
    games = games_on(final, nodes[0])
    stale: list[str] = []
    problem = _statuses_disagree(history, final) or _parked_wrong(history, final, games, stale)
    if problem is None and stale and stale_saved_fails:
        problem = _stale_problem(history, games, stale[0])
    if problem is not None:
        return _fail("one-game", problem[0], problem[1])
    counts = _status_counts(games)
    parked = counts.get(PARKED, 0)
    message = f"every player in at most one live game; {parked} games parked by a merge, each "
    message += "in the saved games"
    if stale:
        message += f"; {len(stale)} saved entries left behind by a rollback (a known finding)"
    return Verdict("one-game", True, message, figures={"games": counts, "stale_saved": len(stale)})


def _status_counts(games: dict[str, Game]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for game in games.values():
        counts[game.status] = counts.get(game.status, 0) + 1
    return dict(sorted(counts.items()))


def _statuses_disagree(history: History, final: FinalStates) -> Problem:
    for node, view in sorted(_views(history).items()):
        games = games_on(final, node) if node in final else {}
        for gid, (status, _ply, _tip) in sorted(view.get("games", {}).items()):
            if gid in games and games[gid].status != status:
                message = f"game {gid} is {games[gid].status} by its document, {status} on {node}"
                return message, _merges(history, "two_games")
    return None


def _parked_wrong(
    history: History, final: FinalStates, games: dict[str, Game], stale: list[str]
) -> Problem:
    """A parked or saved game missing from the saved games, or parked without an earlier
    rival; the ids of saved entries that are not the start of their chain go to ``stale``."""
    node = _up(history, final)[0]
    saved_state = final[node].get(SAVED_DOC)
    saved = reference.archive(saved_state.update) if saved_state is not None else {}
    resumed = {game.resumed_from for game in games.values() if game.resumed_from}
    for gid, game in sorted(games.items()):
        if game.status not in (PARKED, SAVED) or gid in resumed:
            continue
        entry = saved.get(gid)
        notes = [n for n in history.notes if n.get("game") == gid]
        excerpt = _lines(notes[-SHOWN:]) + _merges_of_game(history, gid)
        if entry is None:
            message = f"game {gid} is {game.status} but not in the saved games (nor resumed): "
            return message + "its players cannot resume it", excerpt
        if list(game.moves[: len(entry["moves"])]) != entry["moves"]:
            stale.append(gid)
        if game.status == PARKED and not has_earlier_rival(game, games):
            message = f"game {gid} was parked by a merge, but no game created before it has a "
            message += "player in common (the later game must be parked, not the earlier)"
            return message, excerpt
    return None


def _stale_problem(history: History, games: dict[str, Game], gid: str) -> Problem:
    notes = [n for n in history.notes if n.get("game") == gid]
    message = f"game {gid} is {games[gid].status}, but its saved entry is not the start of its "
    message += f"chain ({games[gid].ply} moves): a rollback after it was saved left it behind"
    return message, _lines(notes[-SHOWN:]) + _merges_of_game(history, gid)


def has_earlier_rival(game: Game, games: dict[str, Game]) -> bool:
    return any(
        set(other.players) & set(game.players)
        and (other.created, other.gid) < (game.created, game.gid)
        for other in games.values()
        if other.gid != game.gid
    )


# --- legal chains --------------------------------------------------------------------------------


def check_legal_chains(history: History, final: FinalStates) -> Verdict:
    nodes = _up(history, final)
    games = games_on(final, nodes[0])
    for check in (_unresolvable, _chains_differ, _services_differ, _players_shown):
        problem = check(history, final, games)
        if problem is not None:
            return _fail("legal-chains", problem[0], problem[1])
    plies = sum(game.ply for game in games.values())
    rolled = sum(len(game.records) - len(game.chain) for game in games.values())
    message = f"{len(games)} games, {plies} moves: every chain replays legally and is the same "
    message += "everywhere, as the players were shown"
    figures = {"games": len(games), "plies": plies, "records_off_chain": rolled}
    return Verdict("legal-chains", True, message, figures=figures)


def _unresolvable(history: History, final: FinalStates, games: dict[str, Game]) -> Problem:
    for gid, game in sorted(games.items()):
        if game.problem:
            return f"game {gid} cannot be resolved: {game.problem}", ()
        try:
            battleline.replay(game.seed, [dict(m) for m in game.moves], game.first)
        except IllegalMove as error:
            return f"game {gid}'s canonical chain does not replay: {error}", ()
    return None


def _chains_differ(history: History, final: FinalStates, games: dict[str, Game]) -> Problem:
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


def _services_differ(history: History, final: FinalStates, games: dict[str, Game]) -> Problem:
    for node, view in sorted(_views(history).items()):
        for gid, (_status, ply, tip) in sorted(view.get("games", {}).items()):
            game = games.get(gid)
            if game is None:
                continue
            if ply != game.ply or tip != game.tip:
                message = f"game {gid}: the service on {node} follows a chain of {ply} moves "
                message += f"ending {tip or '-'}, the canonical one has {game.ply} ending "
                message += f"{game.tip or '-'}"
                return message, _merges(history, "same_ply")
    return None


def _players_shown(history: History, final: FinalStates, games: dict[str, Game]) -> Problem:
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
        for gid, entry in sorted(reference.archive(state.update).items()):
            logged += 1
            game = games.get(gid)
            if game is None or (list(game.moves), game.status) == (entry["moves"], FINISHED):
                continue
            message = f"game {gid} is in {doc_id} as finished after {len(entry['moves'])} moves "
            message += f"({entry.get('result')}), but its canonical chain is {game.status} after "
            message += f"{game.ply} moves"
            if game.ply == len(entry["moves"]):
                message += " (different moves)"
            notes = [n for n in history.notes if n.get("game") == gid]
            excerpt = _lines(notes[-SHOWN:]) + _merges_of_game(history, gid)
            return _fail("game-log", message, excerpt, logged=logged)
    message = f"{logged} finished games logged, each exactly as its canonical chain"
    return Verdict("game-log", True, message, figures={"logged": logged})


def _merges_of_game(history: History, gid: str) -> tuple[str, ...]:
    return tuple(m.describe() for m in history.merges if gid in m.detail)[:SHOWN]


# --- acknowledged moves ----------------------------------------------------------------------


def held_records(game: Game | None, note: dict[str, Any]) -> list[reference.MoveRec]:
    """The records that may be the one an acknowledged move (a bot's ``move`` note) wrote: same
    ply, player and move, written by the node it was acknowledged on first (another node, or a
    forger, may have written the same move)."""
    if game is None:
        return []
    ply = note["ply"] - len(game.start_moves)
    found = [
        r
        for r in game.records
        if r.ply == ply and r.player == note["seat"] and r.move == note["move"]
    ]
    return sorted(found, key=lambda r: r.node != note["node"])


def held_record(game: Game | None, note: dict[str, Any]) -> reference.MoveRec | None:
    found = held_records(game, note)
    return found[0] if found else None


def check_acknowledged_moves(history: History, final: FinalStates) -> Verdict:
    nodes = _up(history, final)
    per_node = {node: games_on(final, node) for node in nodes}
    acked = history.notes_of("move")
    lost: list[tuple[dict[str, Any], str]] = []
    off_chain = 0
    for note in acked:
        missing = [n for n in nodes if held_record(per_node[n].get(note["game"]), note) is None]
        if missing:
            lost.append((note, missing[0]))
            continue
        game = per_node[nodes[0]][note["game"]]
        record = held_record(game, note)
        off_chain += record is not None and record.key not in game.keys
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


# --- forged records ------------------------------------------------------------------------


# Forgeries that break a rule the peers check (docs/security.md): a stamp more than
# ``clock.max_ahead_ms`` ahead (``future_stamp``), a move the rules refuse where it hangs, for the
# wrong player or after the wrong parent (``illegal_move``, ``missing_parent``). An earlier twin
# of a move is a fork, which a partition also makes: peers accept it, and the canonical-chain
# rule, not the peer checks, decides between the two (the other checkers judge that).
REFUSED_FORGERIES = ("illegal", "wrong-player", "wrong-parent", "future")


def check_forged_refused(history: History, final: FinalStates) -> Verdict:
    """No move record an insider forged (``forged`` notes) against a rule its peers check is in
    a game document of an honest node at the end: the peers refuse it on their scratch copy
    (docs/security.md), so it is never applied nor relayed. Run on the honest view
    (`sim.history.honest_view`)."""
    forged = [n for n in history.notes_of("forged") if n["forgery"] in REFUSED_FORGERIES]
    nodes = _up(history, final)
    if not nodes:
        return _fail("forged-refused", "no honest node survived to hold the final state")
    for note in forged:
        for node in nodes:
            state = final[node].get(GAME_PREFIX + note["game"])
            moves = maps_of(state.update).get("moves", {}) if state is not None else {}
            if note["key"] in moves:
                message = f"the {note['forgery']} record {note['key']} {note['node']} forged in "
                message += f"game {note['game']} reached the honest node {node}"
                return _fail("forged-refused", message, _lines([note]))
    message = f"{len(forged)} records forged against the peer checks, none on the "
    message += f"{len(nodes)} honest nodes"
    return Verdict("forged-refused", True, message, figures={"forged": len(forged)})
