"""The ``shown-plies`` checker: a move shown to a player is a move kept.

Every ``game`` push a bot receives is noted (``shown``: game, ply, and ``head``, the key of the
move record it shows last). At the end, each shown ply must be in the final canonical chain of
that game on the surviving nodes: the chain is at least that long and its record at that ply is
the one shown. The one
excuse is a ``rollback`` notice to that player for that game, to a ply below the shown one,
received after it was shown, and only for a reason the rules allow (docs/protocol.md): a fork
resolved against the move (a same-ply merge of that game was recorded), or, with
``ack_regions = 0``, a node that lost its disk (the documented window). A process that crashes
with its disk, or any loss within ``ack_regions``, must not take back anything a player saw.
A client closed because its account logged in elsewhere (close code 4100), and that never said
hello again, is owed nothing for what it was shown before (docs/protocol.md, *Who is told of a
rollback*): it must not reconnect on its own, and the session that replaced it reports only
what it was shown itself.

It reads the final game documents through `sim.gamecheck.games_on` (the canonical chain as
replayed from the documents) and the history's notes; the release rule it checks lives in
``node.delivery`` and is not called here.
"""

from __future__ import annotations

from typing import Any

from meridian.sim.gamecheck import GameSummary, games_on
from meridian.sim.history import FinalStates, History
from meridian.sim.verdict import Verdict

NAME = "shown-plies"


def check_shown_plies(history: History, final: FinalStates) -> Verdict:
    nodes = [node for node in history.nodes if node in final]
    if not nodes:
        return Verdict(NAME, False, "no node survived to hold the final state")
    games = games_on(final, nodes[0])
    forked = {m.detail.split()[1] for m in history.merges if m.kind == "same_ply"}
    disk_lost = any(e.kind == "crash" and e.detail == "disk lost" for e in history.timeline)
    loss_allowed = history.ack_regions == 0 and disk_lost
    rollbacks = history.notes_of("rollback")
    replaced = _replaced_for_good(history)
    shown = [n for n in history.notes_of("shown") if n["ply"] > 0]
    excused = 0
    for note in shown:
        if _kept(games.get(note["game"]), note):
            continue
        fork_or_loss = loss_allowed or note["game"] in forked
        if fork_or_loss and (
            _rolled_back(note, rollbacks) or replaced.get(note["client"], -1.0) >= note["t"]
        ):
            excused += 1
            continue
        return Verdict(NAME, False, _describe(note, games.get(note["game"]), nodes[0]))
    figures = {"shown": len(shown), "rolled_back": excused}
    summary = f"{len(shown)} plies shown to players, all kept"
    if excused:
        summary += f" but {excused} taken back with a rollback notice"
    return Verdict(NAME, True, summary, figures=figures)


def _kept(game: GameSummary | None, note: dict[str, Any]) -> bool:
    """The shown ply is on the final chain: the record the push named as its head (`head`, the
    record key) is the chain's record at that ply."""
    ply = note["ply"]
    if game is None or game.ply < ply:
        return False
    index = ply - 1 - (game.ply - len(game.keys))  # plies before this document: start moves
    return index < 0 or bool(game.keys[index] == note["head"])


def _rolled_back(note: dict[str, Any], rollbacks: list[dict[str, Any]]) -> bool:
    return any(
        r["uid"] == note["uid"]
        and r["game"] == note["game"]
        and r["ply"] < note["ply"]
        and r["t"] >= note["t"]
        for r in rollbacks
    )


LOGGED_IN_ELSEWHERE = 4100  # docs/protocol.md, Closing


def _replaced_for_good(history: History) -> dict[str, float]:
    """client -> when it was closed as logged in elsewhere, for clients that said no hello after."""
    closed = {
        n["client"]: n["t"] for n in history.notes_of("closed") if n["code"] == LOGGED_IN_ELSEWHERE
    }
    for hello in history.notes_of("hello"):
        if hello["client"] in closed and hello["t"] > closed[hello["client"]]:
            del closed[hello["client"]]
    return closed


def _describe(note: dict[str, Any], game: GameSummary | None, node: str) -> str:
    where = f"game {note['game']} ply {note['ply']} shown to {note['client']} at {note['t']:.3f} s"
    if game is None:
        return f"{where}; the game is missing on {node}"
    if game.ply < note["ply"]:
        return f"{where}; the final chain on {node} ends at ply {game.ply}, with no rollback notice"
    return f"{where}; the final chain on {node} holds another move at that ply"
