"""Meridian game records: a whole game as one JSON object, and replaying or checking one.

A record is ``{"format": "meridian-battleline/1", "first_player": 0 or 1, "moves": [...]}`` plus
either ``"seed"`` (an int in [0, 2**53): the decks are shuffled from it) or ``"decks"``
(``{"troop": [60 cards], "tactic": [10 cards]}``, top card first; used for games imported from
go-battleline, whose decks came from elsewhere). Each move is a move object (see ``moves``) with
a ``"player"`` field. A game is fully described by its record: replaying it gives every
position exactly.
"""

from __future__ import annotations

import json
from typing import Any

from meridian.games.battleline.engine import new_game, new_game_from_decks, replay_from
from meridian.games.battleline.gocompat import RECORD_FORMAT
from meridian.games.battleline.moves import IllegalMove
from meridian.games.battleline.state import GameState


class RecordError(ValueError):
    """A game record that is not well-formed (as opposed to one with an illegal move)."""


def initial_state(record: object) -> GameState:
    """The dealt state a record starts from."""
    if not isinstance(record, dict):
        raise RecordError("a game record must be a JSON object")
    if record.get("format") != RECORD_FORMAT:
        raise RecordError(f'format must be "{RECORD_FORMAT}", got {record.get("format")!r}')
    first = record.get("first_player", 0)
    try:
        if record.get("seed") is not None:
            return new_game(record["seed"], first)
        decks = record.get("decks")
        if (
            not isinstance(decks, dict)
            or not isinstance(decks.get("troop"), list)
            or not isinstance(decks.get("tactic"), list)
        ):
            raise RecordError('a record needs "seed" or "decks": {"troop": [...], "tactic": [...]}')
        return new_game_from_decks(decks["troop"], decks["tactic"], first)
    except RecordError:
        raise
    except ValueError as error:
        raise RecordError(str(error)) from None


def record_moves(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The move list of a record, checked to be a list of objects."""
    moves = record.get("moves")
    if not isinstance(moves, list) or not all(isinstance(m, dict) for m in moves):
        raise RecordError('"moves" must be a list of move objects')
    return moves


def replay_record(record: object) -> GameState:
    """The final state of a record; IllegalMove (with ``ply``) at the first refused move."""
    state = initial_state(record)
    assert isinstance(record, dict)
    return replay_from(state, record_moves(record))


def check_record(record: object) -> tuple[GameState, IllegalMove | None]:
    """Replay a record as far as it is legal: the last legal state and the first error, if any."""
    state = initial_state(record)
    assert isinstance(record, dict)
    for ply, move in enumerate(record_moves(record)):
        try:
            state = replay_from(state, [move])
        except IllegalMove as error:
            return state, IllegalMove(error.code, error.message, ply)
    return state, None


def make_record(seed: int, moves: list[dict[str, Any]], first_player: int = 0) -> dict[str, Any]:
    """The record of a seeded game."""
    return {"format": RECORD_FORMAT, "seed": seed, "first_player": first_player, "moves": moves}


def record_to_json(record: dict[str, Any]) -> str:
    """The record as JSON text with one move per line (readable, and diffs well)."""
    fields = [
        f" {json.dumps(key)}: {json.dumps(value)}"
        for key, value in record.items()
        if key != "moves"
    ]
    moves = ",\n".join(f"  {json.dumps(move)}" for move in record.get("moves", []))
    fields.append(f' "moves": [\n{moves}\n ]' if moves else ' "moves": []')
    return "{\n" + ",\n".join(fields) + "\n}\n"
