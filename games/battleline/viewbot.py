"""A bot for clients: it plays from a player's own view, as a networked player must.

A client never holds the full ``GameState``; it sees its ``player_view`` (the table, its own
hand, the opponent's hand sizes) and the legal moves. ``HeuristicBot`` already decides from
nothing but what its player may see: the table, its own hand and the set of unplayed troops
(public: every troop not on the table). So instead of a second heuristic, ``state_from_view``
builds a ``GameState`` that agrees with the view in everything visible, dealing the hidden cards
(the opponent's hand, the deck order) from the unseen cards at random, and ``ViewBot`` runs
``HeuristicBot`` on it. Its moves are then the very moves ``HeuristicBot`` makes on the real
state (tests/test_bots.py checks this move for move), at the same strength.
"""

from __future__ import annotations

import random
from typing import Any

from meridian.games.battleline.bots import HeuristicBot
from meridian.games.battleline.cards import (
    DECK_TACTIC,
    DECK_TROOP,
    DISCARD,
    HAND,
    N_FLAGS,
    TACTICS,
    TROOPS,
    side_place,
)
from meridian.games.battleline.state import NO_PLAYER, PHASES, GameState

Move = dict[str, Any]
View = dict[str, Any]


class ViewError(ValueError):
    """The view is not a player view, or its cards do not add up."""


def state_from_view(view: View, rng: random.Random) -> GameState:
    """A state consistent with a player's view; hidden cards are dealt from the unseen ones."""
    if view.get("view") != "player" or view.get("phase") not in PHASES:
        raise ViewError("a player view (view='player') with a known phase is needed")
    player = int(view["player"])
    state = GameState()
    _place_table(state, view)
    state.places[HAND[player]] = list(view["hand"])
    _deal_hidden(state, view, player, rng)
    for place, cards in enumerate(state.places):
        for card in cards:
            state.where[card] = place
    _check_all_placed(state)
    state.phase = view["phase"]
    state.mover = player if view["to_move"] is None else int(view["to_move"])
    state.paused = bool(view["paused"])
    state.result = view["result"]
    state.ply = int(view["ply"])
    state.last_move = view["last_move"]
    state.last_claim = view["last_claim"]
    return state


def _place_table(state: GameState, view: View) -> None:
    """Both sides of every flag, the cones and the discard piles: all public."""
    for index, flag in enumerate(view["flags"]):
        claimed = flag["claimed_by"]
        state.cones[index] = NO_PLAYER if claimed is None else int(claimed)
        for seat in (0, 1):
            state.places[side_place(seat, index)] = list(flag["sides"][seat])
    for seat in (0, 1):
        state.places[DISCARD[seat]] = list(view["discards"][seat])
    if len(view["flags"]) != N_FLAGS:
        raise ViewError(f"a view has {N_FLAGS} flags, this one {len(view['flags'])}")


def _deal_hidden(state: GameState, view: View, player: int, rng: random.Random) -> None:
    """The opponent's hand and both decks, from the cards the player cannot see.

    Cards this player put back with Scout are known to lie on top of their deck, so they stay
    out of the opponent's hand and go back on top.
    """
    seen = {card for cards in state.places for card in cards}
    on_top = {item["card"]: item["deck"] for item in view.get("scout_known", [])}
    counts = view["opponent_hand"]
    decks = view["decks"]
    for cards, deck_place, kind, hand_count, deck_count in (
        (TROOPS, DECK_TROOP, "troop", counts["troops"], decks["troop"]),
        (TACTICS, DECK_TACTIC, "tactic", counts["tactics"], decks["tactic"]),
    ):
        hidden = [c for c in cards if c not in seen and c not in on_top]
        known_top = [c for c, deck in on_top.items() if deck == kind]
        if len(hidden) + len(known_top) != hand_count + deck_count or len(hidden) < hand_count:
            raise ViewError(
                f"{kind}s do not add up: {len(hidden) + len(known_top)} unseen, "
                f"{hand_count} in the opponent's hand and {deck_count} in the deck"
            )
        rng.shuffle(hidden)
        state.places[HAND[1 - player]].extend(hidden[:hand_count])
        state.places[deck_place] = hidden[hand_count:] + known_top  # the deck's top is its end


def _check_all_placed(state: GameState) -> None:
    placed = sorted(card for cards in state.places for card in cards)
    if placed != list(range(1, 71)):
        raise ViewError("the view's cards do not make up the 70-card set exactly once")


class ViewBot:
    """``HeuristicBot`` for a client: ``choose(view, legal)`` picks one of the offered moves."""

    def __init__(self, seed: int) -> None:
        self.heuristic = HeuristicBot(seed)
        self.random = random.Random(seed)

    def choose(self, view: View, legal: list[Move]) -> Move:
        """The heuristic's move if the server offers it, else a random offered move."""
        if not legal:
            raise ValueError("no legal move was offered")
        state = state_from_view(view, self.random)
        move = self.heuristic.choose(state, int(view["player"]))
        # The server's list is the authority: a view that lags or a rules change must never
        # make the bot send a move the server would refuse.
        return move if move in legal else self.random.choice(legal)
