"""go-battleline conformance: legal moves of all 585 positions, and the 7 histories replayed."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from meridian.games.battleline import (
    apply_move,
    import_history,
    legal_moves,
    legal_moves_go,
    move_to_go,
    position_to_state,
    replay_record,
    state_to_position,
)
from meridian.games.battleline.records import initial_state

DATA = Path(__file__).parent / "data" / "go-battleline"
GAMES = [
    "game1vs21038",
    "game1vs21550",
    "game2vs11220",
    "game2vs1151",
    "pauseGameNo43",
    "pauseGameNo63",
    "pauseGameNo64",
]


@cache
def _load(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


def _key(move: dict[str, Any]) -> str:
    return json.dumps(move, sort_keys=True)


def test_fixture_sizes() -> None:
    positions = sum(len(_load(f"pos{game}")) for game in GAMES)
    moves = sum(len(e["legal_moves"]) for game in GAMES for e in _load(f"pos{game}"))
    assert (positions, moves) == (585, 12_711)


@pytest.mark.parametrize("game", GAMES)
def test_legal_moves_equal_the_fixture_in_every_position(game: str) -> None:
    for index, entry in enumerate(_load(f"pos{game}")):
        ours = [_key(m) for m in legal_moves_go(entry["position"])]
        assert len(ours) == len(set(ours)), f"{game} position {index}: duplicate moves"
        assert set(ours) == {_key(m) for m in entry["legal_moves"]}, f"{game} position {index}"


@pytest.mark.parametrize("game", GAMES)
def test_history_replays_to_the_recorded_positions(game: str) -> None:
    history, positions = _load(game), _load(f"pos{game}")
    record = import_history(history)
    state = initial_state(record)
    assert state_to_position(state) == positions[0]["position"]
    for index, move in enumerate(record["moves"], start=1):
        state = apply_move(state, move["player"], move)
        assert state_to_position(state) == positions[index]["position"], f"{game} move {index}"
    assert len(record["moves"]) + 1 == len(positions)
    assert replay_record(record).where == state.where


def _entries(go_move: dict[str, Any]) -> list[tuple[int, int]]:
    # Draws in the stored histories have OldPos 0 even from the tactic deck (an artefact of the
    # original's format conversion), so compare the card and where it went.
    return [(e["Index"], e["NewPos"]) for e in go_move["Moves"] or []]


@pytest.mark.parametrize("game", GAMES)
def test_moves_written_in_go_encoding_match_the_history(game: str) -> None:
    history = _load(game)
    record = import_history(history)
    state = initial_state(record)
    for index, move in enumerate(record["moves"], start=1):
        player = move["player"]
        parsed = {k: v for k, v in move.items() if k != "player"}
        ours, theirs = move_to_go(state, player, parsed, reveal=True), history["Moves"][index]
        assert (ours["Mover"], ours["MoveType"]) == (theirs["Mover"], theirs["MoveType"])
        assert _entries(ours) == _entries(theirs), f"{game} move {index}"
        state = apply_move(state, player, move)


def test_every_fixture_move_is_one_of_ours_in_meridian_form() -> None:
    # The mapping go -> Meridian is one-to-one on legal moves: counts agree position by position.
    for game in GAMES:
        for entry in _load(f"pos{game}"):
            state = position_to_state(entry["position"])
            assert len(legal_moves(state)) == len(entry["legal_moves"])


def test_imported_decks_follow_the_deal_and_the_draws() -> None:
    record = import_history(_load("game1vs21038"))
    deal = [e["Index"] for e in _load("game1vs21038")["Moves"][0]["Moves"]]
    assert record["decks"]["troop"][:14] == deal
    assert sorted(record["decks"]["troop"]) == list(range(1, 61))
    assert sorted(record["decks"]["tactic"]) == list(range(61, 71))
    assert record["first_player"] == 0
