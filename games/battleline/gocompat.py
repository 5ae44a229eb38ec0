"""go-battleline compatibility: its positions, moves and game histories.

The encoding is described in tests/data/go-battleline/README.md. In short: a position is
``{CardPos[71], ConePos[10], PlayerReturned, CardsReturned[2], LastMoveType, LastMover,
LastMoveIx}`` and a move is ``{Mover, MoveType, Moves: [{Index, NewPos, OldPos, BoardPiece}]}``
(an empty list is written ``null``). Card numbers and place codes are the same as Meridian's.

* ``position_to_state`` reads a position (decks as sets: order does not matter for legal moves).
* ``state_to_position`` writes one, so replays can be compared with the original's positions.
* ``move_to_go`` writes a Meridian move in go encoding (draws as card backs, 71 tactic /
  72 troop, unless ``reveal`` asks for the card actually drawn).
* ``import_history`` turns a go history into a Meridian game record (see ``records``): the decks
  are rebuilt from the deal and the draws, honouring Scout's returns to the top of a deck.
"""

from __future__ import annotations

from typing import Any

from meridian.games.battleline import engine, rules
from meridian.games.battleline.cards import (
    DECK_TACTIC,
    DECK_TROOP,
    DESERTER,
    DISCARD,
    HAND,
    HAND_SIZE,
    N_CARDS,
    N_FLAGS,
    REDEPLOY,
    TACTICS,
    TRAITOR,
    TROOPS,
    is_tactic,
    is_troop,
    place_flag,
    side_place,
)
from meridian.games.battleline.moves import IllegalMove
from meridian.games.battleline.state import (
    CLAIM,
    DRAW,
    GO_CONE,
    GO_DECK,
    GO_GIVE_UP,
    GO_HAND,
    GO_INIT,
    GO_PAUSE,
    GO_SCOUT1,
    GO_SCOUT2,
    GO_SCOUT3,
    GO_SCOUT_RETURN,
    NO_PLAYER,
    OVER,
    PLAY,
    SCOUT_DRAW,
    SCOUT_RETURN,
    GameState,
)

GoMove = dict[str, Any]
RECORD_FORMAT = "meridian-battleline/1"
BACK_TACTIC = 71
BACK_TROOP = 72
_GO_NO_PLAYER = 2


class GoFormatError(ValueError):
    """Input that is not a well-formed go-battleline position, move or history."""


# ---------------------------------------------------------------- positions


def _int_list(value: object, length: int, low: int, high: int, what: str) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value
        )
    ):
        raise GoFormatError(f"{what} must be a list of {length} integers from {low} to {high}")
    return value


def _int_field(position: dict[str, Any], key: str, low: int, high: int) -> int:
    value = position.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise GoFormatError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def position_to_state(position: object) -> GameState:
    """A Meridian state for a go-battleline position (a full view: every card's place known)."""
    if not isinstance(position, dict):
        raise GoFormatError("a position must be a JSON object")
    card_pos = _int_list(position.get("CardPos"), N_CARDS + 1, 0, 23, "CardPos")
    cone_pos = _int_list(position.get("ConePos"), N_FLAGS + 1, 0, 2, "ConePos")
    returned = _int_list(position.get("CardsReturned"), 2, 0, BACK_TROOP, "CardsReturned")
    last_type = _int_field(position, "LastMoveType", 0, 10)
    last_mover = _int_field(position, "LastMover", 0, 2)
    returned_by = _int_field(position, "PlayerReturned", 0, 2)
    last_index = _int_field(position, "LastMoveIx", -1, 10**6)
    state = GameState()
    _place_cards(state, card_pos, returned if returned_by != _GO_NO_PLAYER else [])
    state.cones = [NO_PLAYER if c == 0 else c - 1 for c in cone_pos[1:]]
    state.returned_by = NO_PLAYER if returned_by == _GO_NO_PLAYER else returned_by
    state.returned = list(returned)
    state.go_last = (last_type, last_mover, last_index)
    _resume_turn(state, last_type, last_mover)
    return state


def _place_cards(state: GameState, card_pos: list[int], returned: list[int]) -> None:
    for card in range(1, N_CARDS + 1):
        place = card_pos[card]
        if (is_troop(card) and place == DECK_TACTIC) or (is_tactic(card) and place == DECK_TROOP):
            raise GoFormatError(f"card {card} cannot be in place {place} (the other deck)")
        if card in (61, 62, 63, 64) and place_flag(place) >= 0:
            raise GoFormatError(f"guile card {card} cannot lie at a flag")
        state.where[card] = place
        state.places[place].append(card)
    for deck in (DECK_TROOP, DECK_TACTIC):
        # Scout's returned cards are on top, the last returned uppermost.
        on_top = [c for c in returned if c and state.where[c] == deck]
        state.places[deck] = [c for c in sorted(state.places[deck]) if c not in on_top] + on_top


def _resume_turn(state: GameState, last_type: int, last_mover: int) -> None:
    """Set the phase and mover that follow the position's last move, as go-battleline does."""
    if last_type == GO_GIVE_UP:
        state.result = {"winner": 1 - last_mover, "reason": "give_up"}
        state.phase = OVER
        return
    if last_type == GO_PAUSE or last_type > GO_PAUSE:
        # A paused position does not say which phase it paused in; it offers no moves.
        state.paused = True
        state.mover = 0 if last_mover == _GO_NO_PLAYER else last_mover
        return
    if last_mover == _GO_NO_PLAYER:
        raise GoFormatError("LastMover must be 0 or 1 after a move")
    winner = engine.winner_of(state.cones)
    if winner is not None:
        state.result = {"winner": winner[0], "reason": winner[1]}
        state.phase = OVER
        return
    state.mover = last_mover
    follow = {
        GO_INIT: (PLAY, 0, True),
        GO_CONE: (CLAIM, 0, False),
        GO_DECK: (DRAW, 0, False),
        GO_HAND: (PLAY, 0, False),
        GO_SCOUT1: (SCOUT_DRAW, 2, True),
        GO_SCOUT2: (SCOUT_DRAW, 1, True),
        GO_SCOUT3: (SCOUT_RETURN, 0, True),
        GO_SCOUT_RETURN: (SCOUT_RETURN, 0, False),
    }
    state.phase, state.scout_left, settle_only = follow[last_type]
    if last_type == GO_INIT:
        state.mover = 1 - last_mover
        state.first_player = state.mover
    if settle_only:
        engine.settle(state)
    else:
        engine.advance(state)


def state_to_position(state: GameState) -> dict[str, Any]:
    """The go-battleline position (full view) of a state."""
    last_type, last_mover, last_index = state.go_last
    return {
        "CardPos": [0, *state.where[1:]],
        "ConePos": [0, *(0 if c == NO_PLAYER else c + 1 for c in state.cones)],
        "PlayerReturned": _GO_NO_PLAYER if state.returned_by == NO_PLAYER else state.returned_by,
        "CardsReturned": list(state.returned),
        "LastMoveType": last_type,
        "LastMover": last_mover,
        "LastMoveIx": last_index,
    }


# ---------------------------------------------------------------- moves


def _entry(index: int, old: int, new: int, cone: bool = False) -> dict[str, int]:
    return {"Index": index, "NewPos": new, "OldPos": old, "BoardPiece": 1 if cone else 0}


def _draw_entry(state: GameState, deck: str, player: int, reveal: bool) -> dict[str, int]:
    place = rules.DECK_PLACE[deck]
    if reveal:
        card = state.places[place][-1]
    else:
        card = BACK_TACTIC if place == DECK_TACTIC else BACK_TROOP
    return _entry(card, place, HAND[player])


def move_to_go(state: GameState, player: int, move: dict[str, Any], reveal: bool = False) -> GoMove:
    """A Meridian move, made in ``state`` by ``player``, in go-battleline encoding.

    Draws show a card back unless ``reveal`` (then the card on top of the deck). ``resume`` has
    no go equivalent (go drops the pause instead) and raises ValueError.
    """
    kind = move["type"]
    hand = HAND[player]
    go_type = GO_HAND
    entries: list[dict[str, int]] = []
    if kind == "claim":
        go_type = GO_CONE
        entries = [_entry(f, 0, player + 1, cone=True) for f in move["flags"]]
    elif kind == "play":
        entries = [_entry(move["card"], hand, side_place(player, move["flag"] - 1))]
    elif kind in ("traitor", "deserter", "redeploy"):
        entries = _guile_entries(state, player, move)
    elif kind == "scout":
        go_type = GO_SCOUT1
        entries = [
            _entry(64, hand, DISCARD[player]),
            _draw_entry(state, move["deck"], player, reveal),
        ]
    elif kind == "draw":
        go_type = (
            GO_DECK if state.phase == DRAW else GO_SCOUT2 if state.scout_left == 2 else GO_SCOUT3
        )
        entries = [_draw_entry(state, move["deck"], player, reveal)]
    elif kind == "scout_return":
        go_type = GO_SCOUT_RETURN
        entries = [
            _entry(c, hand, DECK_TACTIC if is_tactic(c) else DECK_TROOP) for c in move["cards"]
        ]
    elif kind in ("give_up", "timeout", "pause"):
        # go-battleline has no clock: a time-out travels as the give-up it amounts to.
        go_type = GO_PAUSE if kind == "pause" else GO_GIVE_UP
    elif kind != "pass":
        raise ValueError(f"{kind} has no go-battleline encoding")
    return {"Mover": player, "MoveType": go_type, "Moves": entries or None}


def _guile_entries(state: GameState, player: int, move: dict[str, Any]) -> list[dict[str, int]]:
    card = move["card"]
    old = state.where[card]
    if move["type"] == "traitor":
        guile, new = TRAITOR, side_place(player, move["to_flag"] - 1)
    elif move["type"] == "deserter":
        guile, new = DESERTER, DISCARD[1 - player]
    else:
        to_flag = move["to_flag"]
        guile = REDEPLOY
        new = DISCARD[player] if to_flag is None else side_place(player, to_flag - 1)
    return [_entry(guile, HAND[player], DISCARD[player]), _entry(card, old, new)]


def legal_moves_go(position: object) -> list[GoMove]:
    """The legal moves of a go-battleline position, in go encoding."""
    state = position_to_state(position)
    return [move_to_go(state, state.mover, move) for move in rules.legal_moves(state)]


# ---------------------------------------------------------------- histories


def _entries(go_move: dict[str, Any]) -> list[dict[str, int]]:
    entries = go_move.get("Moves") or []
    if not isinstance(entries, list) or not all(
        isinstance(e, dict)
        and all(isinstance(e.get(k), int) for k in ("Index", "NewPos", "OldPos"))
        for e in entries
    ):
        raise GoFormatError("Moves must be null or a list of {Index, NewPos, OldPos, BoardPiece}")
    return entries


def _hand_move(entries: list[dict[str, int]]) -> dict[str, Any]:
    """The Meridian move for a go Hand move (play a card, a guile, or pass)."""
    if not entries:
        return {"type": "pass"}
    if len(entries) == 1:
        flag = place_flag(entries[0]["NewPos"])
        if flag < 0:
            raise GoFormatError(f"card {entries[0]['Index']} is not played to a flag")
        return {"type": "play", "card": entries[0]["Index"], "flag": flag + 1}
    guile, target = entries[0]["Index"], entries[1]
    flag = place_flag(target["NewPos"])
    if guile == TRAITOR:
        return {"type": "traitor", "card": target["Index"], "to_flag": flag + 1}
    if guile == DESERTER:
        return {"type": "deserter", "card": target["Index"]}
    if guile == REDEPLOY:
        return {
            "type": "redeploy",
            "card": target["Index"],
            "to_flag": flag + 1 if flag >= 0 else None,
        }
    raise GoFormatError(f"a two-card Hand move must start with a guile card, not {guile}")


class _DeckBuilder:
    """Rebuilds the deck orders a history implies, honouring Scout's returns to the top."""

    def __init__(self, deal: list[int]) -> None:
        self.order: dict[int, list[int]] = {DECK_TROOP: list(deal), DECK_TACTIC: []}
        self.on_top: dict[int, list[int]] = {DECK_TROOP: [], DECK_TACTIC: []}

    def drawn(self, card: int, ply: int) -> str:
        deck = DECK_TACTIC if is_tactic(card) else DECK_TROOP
        if not 1 <= card <= N_CARDS:
            raise GoFormatError(f"move {ply}: the drawn card must be 1-70, got {card}")
        if self.on_top[deck]:
            expected = self.on_top[deck].pop()
            if expected != card:
                raise GoFormatError(f"move {ply}: draws {card}, but {expected} was returned on top")
        else:
            self.order[deck].append(card)
        return "tactic" if deck == DECK_TACTIC else "troop"

    def returned(self, card: int) -> None:
        self.on_top[DECK_TACTIC if is_tactic(card) else DECK_TROOP].append(card)

    def decks(self) -> dict[str, list[int]]:
        troops = self.order[DECK_TROOP]
        tactics = self.order[DECK_TACTIC]
        if len(set(troops)) != len(troops) or len(set(tactics)) != len(tactics):
            raise GoFormatError("the history draws the same card twice")
        return {
            "troop": troops + sorted(set(TROOPS) - set(troops)),
            "tactic": tactics + sorted(set(TACTICS) - set(tactics)),
        }


def _deal(init: dict[str, Any]) -> tuple[int, list[int]]:
    """The first player and the dealt cards (in deal order) of a go Init move."""
    if init.get("MoveType") != GO_INIT or init.get("Mover") not in (0, 1):
        raise GoFormatError("a history must start with the deal (MoveType 0, Mover 0 or 1)")
    first = 1 - init["Mover"]
    entries = _entries(init)
    if len(entries) != 2 * HAND_SIZE:
        raise GoFormatError(f"the deal must hand out {2 * HAND_SIZE} cards")
    for i, entry in enumerate(entries):
        if entry["NewPos"] != HAND[first if i % 2 == 0 else 1 - first]:
            raise GoFormatError("the deal must alternate between the hands, the first player first")
    return first, [e["Index"] for e in entries]


def import_history(history: object) -> dict[str, Any]:
    """A Meridian game record (see ``records``) for a go-battleline game history."""
    if not isinstance(history, dict) or not isinstance(history.get("Moves"), list):
        raise GoFormatError("a go-battleline history is an object with a Moves list")
    go_moves = history["Moves"]
    if not go_moves:
        raise GoFormatError("the history has no moves (not even the deal)")
    first, deal = _deal(go_moves[0])
    decks = _DeckBuilder(deal)
    moves = []
    for ply, go_move in enumerate(go_moves[1:], start=1):
        if not isinstance(go_move, dict) or go_move.get("Mover") not in (0, 1):
            raise GoFormatError(f"move {ply}: Mover must be 0 or 1")
        move = _import_move(go_move, decks, ply)
        moves.append({"player": go_move["Mover"], **move})
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "first_player": first,
        "decks": decks.decks(),
        "moves": moves,
    }
    if "PlayerIDs" in history or "Time" in history:
        record["source"] = {"go_player_ids": history.get("PlayerIDs"), "time": history.get("Time")}
    return record


def _import_move(go_move: dict[str, Any], decks: _DeckBuilder, ply: int) -> dict[str, Any]:
    kind = go_move.get("MoveType")
    entries = _entries(go_move)
    if kind == GO_CONE:
        return {"type": "claim", "flags": sorted(e["Index"] for e in entries)}
    if kind == GO_HAND:
        return _hand_move(entries)
    if kind in (GO_DECK, GO_SCOUT2, GO_SCOUT3) and len(entries) == 1:
        return {"type": "draw", "deck": decks.drawn(entries[0]["Index"], ply)}
    if kind == GO_SCOUT1 and len(entries) == 2:
        return {"type": "scout", "deck": decks.drawn(entries[1]["Index"], ply)}
    if kind == GO_SCOUT_RETURN:
        for entry in entries:
            decks.returned(entry["Index"])
        return {"type": "scout_return", "cards": [e["Index"] for e in entries]}
    if kind == GO_GIVE_UP:
        return {"type": "give_up"}
    if kind == GO_PAUSE:
        return {"type": "pause"}
    raise GoFormatError(f"move {ply}: cannot read MoveType {kind!r} with {len(entries)} entries")


__all__ = [
    "GoFormatError",
    "IllegalMove",
    "import_history",
    "legal_moves_go",
    "move_to_go",
    "position_to_state",
    "state_to_position",
]
