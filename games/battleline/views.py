"""What each party may see of a game: a player, a spectator, and the full (server) view.

All views share the public part: the flags (cards on both sides, Mud/Fog, who claimed them),
the discard piles, deck sizes, hand sizes, tactics and leaders played, the phase, the player to
move, the last move and claim, and the result. A player's view adds their own hand, the legal
moves when it is their turn, and the cards they returned with Scout while those are still on
top of a deck. Nothing hidden (the other hand, deck order, what was drawn) appears in a view
that may not see it; only ``full_view`` shows everything.
"""

from __future__ import annotations

from typing import Any

from meridian.games.battleline import rules
from meridian.games.battleline.cards import (
    DECK_TACTIC,
    DECK_TROOP,
    DISCARD,
    HAND,
    N_FLAGS,
    is_tactic,
)
from meridian.games.battleline.engine import to_move
from meridian.games.battleline.state import NO_PLAYER, GameState

View = dict[str, Any]


def _hand_counts(state: GameState, player: int) -> dict[str, int]:
    hand = state.places[HAND[player]]
    tactics = sum(1 for card in hand if is_tactic(card))
    return {"troops": len(hand) - tactics, "tactics": tactics}


def _flags(state: GameState) -> list[dict[str, Any]]:
    return [
        {
            "flag": flag + 1,
            "claimed_by": None if state.cones[flag] == NO_PLAYER else state.cones[flag],
            "mud": rules.flag_size(state, flag) == 4,
            "fog": rules.flag_fog(state, flag),
            "sides": [list(rules.side(state, 0, flag)), list(rules.side(state, 1, flag))],
        }
        for flag in range(N_FLAGS)
    ]


def _last_move(state: GameState, viewer: int | None) -> dict[str, Any] | None:
    """The last move; a Scout return shows its cards only to the player who returned them."""
    last = state.last_move
    if last is None or last["move"]["type"] != "scout_return" or viewer == last["player"]:
        return last
    decks = ["tactic" if is_tactic(c) else "troop" for c in last["move"]["cards"]]
    return {"player": last["player"], "move": {"type": "scout_return", "decks": decks}}


def _public(state: GameState, viewer: int | None) -> View:
    return {
        "ply": state.ply,
        "phase": state.phase,
        "to_move": to_move(state),
        "paused": state.paused,
        "result": state.result,
        "flags": _flags(state),
        "discards": [list(state.places[DISCARD[0]]), list(state.places[DISCARD[1]])],
        "decks": {"troop": len(state.places[DECK_TROOP]), "tactic": len(state.places[DECK_TACTIC])},
        "tactics_played": [rules.tactics_played(state, 0), rules.tactics_played(state, 1)],
        "leader_played": [rules.leader_played(state, 0), rules.leader_played(state, 1)],
        "last_move": _last_move(state, viewer),
        "last_claim": state.last_claim,
    }


def _scout_known(state: GameState, player: int) -> list[dict[str, Any]]:
    """Cards this player returned with Scout that still lie on a deck (they know where)."""
    if state.returned_by != player:
        return []
    return [
        {"card": card, "deck": "tactic" if place == DECK_TACTIC else "troop"}
        for card in state.returned
        if card and (place := state.where[card]) in (DECK_TROOP, DECK_TACTIC)
    ]


def player_view(state: GameState, player: int) -> View:
    """What ``player`` (0 or 1) sees: own hand, the opponent's hand sizes, moves if to move."""
    if player not in (0, 1):
        raise ValueError(f"player must be 0 or 1, got {player!r}")
    return _player_part(state, player, _public(state, player))


def seat_views(state: GameState) -> list[View]:
    """``[player_view(state, 0), player_view(state, 1)]``, the table built once for both."""
    public = _public(state, None)
    return [_player_part(state, player, public) for player in (0, 1)]


def _player_part(state: GameState, player: int, public: View) -> View:
    view = dict(public)  # (the table's lists are shared, never changed)
    view["last_move"] = _last_move(state, player)
    view.update(
        view="player",
        player=player,
        hand=sorted(state.places[HAND[player]]),
        opponent_hand=_hand_counts(state, 1 - player),
        scout_known=_scout_known(state, player),
        legal_moves=rules.legal_moves(state) if to_move(state) == player else [],
    )
    return view


def spectator_view(state: GameState) -> View:
    """What a watcher sees: the table and the sizes of both hands."""
    view = _public(state, None)
    view.update(view="spectator", hands=[_hand_counts(state, 0), _hand_counts(state, 1)])
    return view


def full_view(state: GameState) -> View:
    """Everything: both hands, the deck order (top first), the seed and the legal moves."""
    view = _public(state, state.last_move["player"] if state.last_move else None)
    view.update(
        view="full",
        seed=state.seed,
        first_player=state.first_player,
        hands=[sorted(state.places[HAND[0]]), sorted(state.places[HAND[1]])],
        deck_order={
            "troop": list(reversed(state.places[DECK_TROOP])),
            "tactic": list(reversed(state.places[DECK_TACTIC])),
        },
        scout_returned={"player": state.returned_by, "cards": list(state.returned)}
        if state.returned_by != NO_PLAYER
        else None,
        legal_moves=rules.legal_moves(state),
    )
    return view


REPLAY_HIDDEN = ("deck_order", "legal_moves", "scout_returned", "seed")


def replay_view(state: GameState) -> View:
    """A finished game's position after a ply, for its replay: both hands, but neither the
    order of the decks nor the seed (the rest of the deal) nor a Scout's returned cards."""
    view = full_view(state)
    for key in REPLAY_HIDDEN:
        view.pop(key, None)
    return view


def public_move(move: View) -> View:
    """A move as anyone may see it: which decks a Scout's returned cards went to, not the cards."""
    if move.get("type") != "scout_return" or not isinstance(move.get("cards"), list):
        return move
    decks = ["tactic" if is_tactic(card) else "troop" for card in move["cards"]]
    return {"type": "scout_return", "decks": decks, "player": move.get("player")}
