"""Checkers of the meta-services (rebalancing, issue 16), from what the players saw.

Written from the rules in docs/architecture.md (*Rebalancing*) and docs/protocol.md (*Drain*),
not from ``node.rebalance``: they read only the history's notes, which the simulated clients
and bots write (``sim.players.SimClient``: ``moved``, one per drain notice followed, with what
the player was doing when it arrived; the bots: ``move`` per acknowledged move, ``end`` per
client with the node it was connected to), and the end-of-run ``view`` notes (each game's
status on each node).

* **rebalanced**: at the end, the players connected to each node (``end`` notes of open
  clients) are within the policy's start line: none above ``start_above`` x the mean over the
  scenario's nodes plus ``slack`` players (players move whole), every node of ``least`` holds
  at least its stated number (a node that joined takes players), and at least ``min_moved``
  players were moved (so a rebalancer that does nothing fails).
* **safe-moves**: a player is moved only at a safe point, between moves: when the notice
  arrived it was to move in none of its live games, and no move of its awaited its reply; and
  no player was moved more than ``max_per_player`` times (the per-player limit).
* **games-continue**: every live game of a moved player that was going on (created, that is
  first shown to a player, or given an acknowledged move within ``idle_s`` before the notice)
  went on after the move: a later acknowledged
  move in it, or it is no longer live on any node at the end, or the move came within
  ``grace_s`` of the heal (from then on the bots only react: nothing more is played). A game
  that had stalled before (a bot that lost track of it) is counted, not judged.
* **game-copies**: every game (a game document on any node up at the end, or a game with an
  acknowledged move) is held, with every acknowledged move of it, by at least ``k`` + 1 of the
  nodes up at the end (all of them, when fewer are up): a region lost with its disk takes no
  game with it. The game documents are read with ``sim.reference`` (``sim.gamecheck.games_on``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from meridian.sim.gamecheck import games_on, held_record
from meridian.sim.history import FinalStates, History
from meridian.sim.placementview import PlacedStates
from meridian.sim.verdict import Checker, Verdict

EXCERPT_LINES = 12


def _describe(note: Mapping[str, Any]) -> str:
    fields = ", ".join(
        f"{k}={v}" for k, v in sorted(note.items()) if k not in ("t", "node", "kind", "type")
    )
    return f"{note['t']:.3f} s {note['kind']} on {note['node']}: {fields}"


def _connected_at_end(history: History) -> Counter[str]:
    return Counter(n["node"] for n in history.notes_of("end") if n.get("open"))


def rebalanced(
    nodes: tuple[str, ...],
    start_above: float,
    slack: float,
    min_moved: int,
    least: Mapping[str, int],
) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        counts = _connected_at_end(history)
        shown = {node: counts.get(node, 0) for node in nodes}
        total = sum(shown.values())
        mean = total / len(nodes)
        line = start_above * mean + slack
        moved = len(history.notes_of("moved"))
        figures = {"players": shown, "mean": round(mean, 2), "line": round(line, 2)}
        figures["moved"] = moved
        over = {node: n for node, n in shown.items() if n > line}
        if over:
            worst = max(over, key=lambda node: over[node])
            message = (
                f"{worst} ends with {over[worst]} players connected, above the line "
                f"{line:.2f} ({start_above:g} x the mean {mean:.2f} + {slack:g}): {shown}"
            )
            return Verdict("rebalanced", False, message, figures=figures)
        short = {node: shown.get(node, 0) for node, n in least.items() if shown.get(node, 0) < n}
        if short:
            node = sorted(short)[0]
            message = f"{node} ends with {short[node]} players, fewer than {least[node]}: {shown}"
            return Verdict("rebalanced", False, message, figures=figures)
        if moved < min_moved:
            message = f"{moved} players moved, fewer than {min_moved}: {shown}"
            return Verdict("rebalanced", False, message, figures=figures)
        return Verdict("rebalanced", True, f"{moved} moved, ending {shown}", figures=figures)

    return check


def safe_moves(max_per_player: int) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        moved = history.notes_of("moved")
        unsafe = [n for n in moved if n.get("mid_turn") or n.get("awaiting")]
        per_player = Counter(str(n.get("uid") or n.get("client")) for n in moved)
        figures = {
            "moved": len(moved),
            "in_a_game": sum(1 for n in moved if n.get("live")),
            "most_per_player": max(per_player.values(), default=0),
        }
        if unsafe:
            first = unsafe[0]
            why = (
                f"it was to move in {', '.join(first['mid_turn'])}"
                if first.get("mid_turn")
                else "a move of its awaited its reply"
            )
            message = (
                f"{first.get('uid') or first['client']} was told to move to "
                f"{first.get('to')} at {first['t']:.3f} s while not at a safe point: {why} "
                f"({len(unsafe)} such notices)"
            )
            excerpt = tuple(_describe(n) for n in unsafe[:EXCERPT_LINES])
            return Verdict("safe-moves", False, message, excerpt, figures)
        too_often = {who: n for who, n in per_player.items() if n > max_per_player}
        if too_often:
            who = sorted(too_often)[0]
            message = f"{who} was moved {too_often[who]} times, more than {max_per_player}"
            excerpt = tuple(
                _describe(n) for n in moved if (n.get("uid") or n.get("client")) == who
            )[:EXCERPT_LINES]
            return Verdict("safe-moves", False, message, excerpt, figures)
        return Verdict("safe-moves", True, f"{len(moved)} moves, all at safe points", (), figures)

    return check


def games_continue(grace_s: float, idle_s: float) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        acked: dict[str, list[float]] = {}
        for note in history.notes_of("move"):
            acked.setdefault(str(note.get("game")), []).append(float(note["t"]))
        first_shown: dict[str, float] = {}
        for note in history.notes_of("shown"):
            gid = str(note.get("game"))
            first_shown[gid] = min(float(note["t"]), first_shown.get(gid, float(note["t"])))
        live_at_end = {
            gid
            for view in history.notes_of("view")
            for gid, (status, *_rest) in view.get("games", {}).items()
            if status == "live"
        }
        stalled, followed, idle = [], 0, 0
        for note in history.notes_of("moved"):
            for gid in note.get("live", []):
                moves = acked.get(gid, [])
                went_on = any(t > note["t"] for t in moves)
                recent = [*moves, first_shown.get(gid, -idle_s - 1)]
                if not any(note["t"] - idle_s <= t <= note["t"] for t in recent):
                    idle += 1  # not going on when the player moved: not the move's doing
                elif went_on or gid not in live_at_end:
                    followed += 1
                elif note["t"] < history.heal_at - grace_s:
                    stalled.append((gid, note))
        figures = {
            "games_moved_in": followed + len(stalled) + idle,
            "idle_before": idle,
            "stalled": len(stalled),
        }
        if stalled:
            gid, note = stalled[0]
            message = (
                f"game {gid} made no move after {note.get('uid') or note['client']} was moved "
                f"to {note.get('to')} at {note['t']:.3f} s, and is still live at the end"
            )
            return Verdict("games-continue", False, message, (_describe(note),), figures)
        return Verdict(
            "games-continue", True, f"{followed} games went on after a move", (), figures
        )

    return check


def game_copies(k: int) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        really = final.held if isinstance(final, PlacedStates) else final  # not the placed view
        nodes = sorted(really)
        per_node = {node: games_on(really, node) for node in nodes}
        acked: dict[str, list[dict[str, Any]]] = {}
        for note in history.notes_of("move"):
            acked.setdefault(str(note["game"]), []).append(note)
        gids = sorted(set(acked) | {gid for games in per_node.values() for gid in games})
        wanted = min(k + 1, len(nodes))
        copies: dict[str, list[str]] = {}
        for gid in gids:
            copies[gid] = [
                node
                for node in nodes
                if gid in per_node[node]
                and all(held_record(per_node[node][gid], n) is not None for n in acked.get(gid, []))
            ]
        figures = {
            "games": len(gids),
            "live_nodes": len(nodes),
            "fewest_copies": min((len(held) for held in copies.values()), default=0),
        }
        short = [gid for gid in gids if len(copies[gid]) < wanted]
        if short:
            gid = short[0]
            held = copies[gid]
            message = (
                f"game {gid} ({len(acked.get(gid, []))} acknowledged moves) is held whole by "
                f"{len(held)} of the {len(nodes)} nodes up at the end ({', '.join(held) or '-'}), "
                f"fewer than k + 1 = {wanted}; {len(short)} such games"
            )
            excerpt = tuple(e.describe() for e in history.timeline if e.kind in ("crash", "stop"))
            return Verdict("game-copies", False, message, excerpt, figures)
        message = f"{len(gids)} games, each held whole by at least {wanted} live nodes"
        return Verdict("game-copies", True, message, (), figures)

    return check
