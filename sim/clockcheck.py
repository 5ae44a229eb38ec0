"""The ``time-controls`` checker: time-outs only for players out of time, one result everywhere.

Written from the rule in docs/architecture.md (*Time controls*) through the reference
(``sim.refclock``, ``sim.reference``), never production's clock code. For every game with a
time control in the final documents of every node that is up:

* **no time-out for a player who still had time**: every ``timeout`` record any node wrote (on
  the canonical chain or not) is judged on its own line of records, from the deal to its parent:
  the player it names must be the one whose time ran, and its stamp must be past that player's
  deadline as the stamps of the records before it give. A node that records a time-out early
  (its clock runs fast, or it misreads the rule) fails here even if a move later beat it.
* **one result everywhere**: the reference resolves the game to the same chain tip and result on
  every node, and every node's game log (written by production) holds the result the reference
  gives.
* **a minimum**: ``min_games`` games with a clock, and ``min_time_outs`` games finished on
  time, so a run where no clock ever ran out does not pass unnoticed.
"""

from __future__ import annotations

from typing import Any

import meridian.games.battleline as battleline
from meridian.games.base import IllegalMove
from meridian.sim.gamecheck import games_on
from meridian.sim.history import FinalStates, History
from meridian.sim.refclock import Timing, admit, is_timeout
from meridian.sim.reference import Game, MoveRec, archive
from meridian.sim.verdict import Checker, Verdict

NAME = "time-controls"
LOG_PREFIX = "log:"


def line_of(game: Game, record: MoveRec) -> list[MoveRec] | None:
    """The records from the deal up to `record`'s parent (None: a parent is missing)."""
    by_key = {rec.key: rec for rec in game.records}
    line: list[MoveRec] = []
    parent = record.parent
    while parent:
        found = by_key.get(parent)
        if found is None or len(line) > len(game.records):
            return None
        line.append(found)
        parent = found.parent
    return line[::-1]


def timing_before(game: Game, line: list[MoveRec]) -> Timing | None:
    """The time state after `line` by the reference rule (None: the line is not one a chain
    could take, so no time-out can follow it)."""
    state = battleline.replay(game.seed, [dict(m) for m in game.start_moves], game.first)
    total = game.clock_ms
    timing: Timing | None = Timing(
        game.increment_ms, (total, total), battleline.to_move(state), game.created[0]
    )
    for rec in line:
        try:
            state, timing = admit(battleline, state, timing, rec.player, rec.move, rec.stamp[0])
        except IllegalMove:
            return None
    return timing


def early_time_out(game: Game) -> str | None:
    """A time-out recorded for a player who still had time, described; None if there is none."""
    for rec in game.records:
        if not is_timeout(rec.move):
            continue
        line = line_of(game, rec)
        timing = timing_before(game, line) if line is not None else None
        if timing is None:
            continue
        deadline = timing.deadline()
        if timing.owner == rec.player and deadline is not None and rec.stamp[0] > deadline:
            continue
        whose = "nobody's" if timing.owner is None else f"seat {timing.owner}'s"
        return (
            f"game {game.gid}: {rec.node} recorded a time-out for seat {rec.player} at ply "
            f"{rec.ply}, stamped {rec.stamp_text}, while {whose} time ran "
            f"(deadline {deadline}, wall {rec.stamp[0]})"
        )
    return None


def logged_results(final: FinalStates, node: str) -> dict[str, Any]:
    results = {}
    for doc_id, state in final[node].items():
        if doc_id.startswith(LOG_PREFIX):
            for gid, entry in archive(state.update).items():
                results[gid] = entry.get("result")
    return results


def disagreement(history: History, final: FinalStates, clocked: set[str]) -> str | None:
    """Two nodes that resolve a clock game differently, or a log that says otherwise."""
    nodes = [node for node in history.nodes if node in final]
    first: dict[str, tuple[str, Any]] = {}
    for node in nodes:
        games, logged = games_on(final, node), logged_results(final, node)
        for gid in sorted(clocked):
            game = games.get(gid)
            if game is None:
                return f"game {gid} is missing on {node}"
            seen = first.setdefault(gid, (game.tip, game.result))
            if seen != (game.tip, game.result):
                return f"game {gid}: {node} resolves it to {game.result}, another node to {seen[1]}"
            if gid in logged and logged[gid] != game.result:
                return f"game {gid}: {node}'s log says {logged[gid]}, its records {game.result}"
    return None


def time_controls(min_games: int, min_time_outs: int) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        nodes = [node for node in history.nodes if node in final]
        games = {gid: g for gid, g in games_on(final, nodes[0]).items() if g.clock_ms > 0}
        for node in nodes:
            for game in games_on(final, node).values():
                early = early_time_out(game) if game.clock_ms > 0 else None
                if early is not None:
                    return Verdict(NAME, False, early)
        problem = disagreement(history, final, set(games))
        if problem is not None:
            return Verdict(NAME, False, problem)
        on_time = [g for g in games.values() if g.result and g.result.get("reason") == "time"]
        recorded = sum(1 for g in games.values() for r in g.records if is_timeout(r.move))
        figures = {
            "clock_games": len(games),
            "finished_on_time": len(on_time),
            "time_outs_recorded": recorded,
            "time_outs_off_chain": recorded - len(on_time),
        }
        if len(games) < min_games or len(on_time) < min_time_outs:
            message = f"{len(games)} games with a clock, {len(on_time)} finished on time; "
            message += f"the scenario asks for at least {min_games} and {min_time_outs}"
            return Verdict(NAME, False, message, figures=figures)
        message = f"{len(games)} games with a clock, {len(on_time)} lost on time, "
        message += f"{recorded} time-outs recorded, each past its deadline by the move stamps; "
        message += "every node resolves each to one result"
        return Verdict(NAME, True, message, figures=figures)

    return check
