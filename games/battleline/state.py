"""The Battleline game state, the seeded shuffle and the deal.

Every card is in exactly one of 24 places (see ``cards``); ``GameState.places[p]`` lists the
cards in place ``p`` and ``GameState.where[c]`` is the place of card ``c``, kept in step.
The two decks are stacks whose last element is the top card.

The shuffle must give the same decks on every node, whatever Python version a node runs, so it
is spelled out here instead of borrowed from ``random``: SplitMix64 seeded with the game seed,
and a Fisher-Yates shuffle (from the last position down, an unbiased index drawn by rejection)
of the troops 1-60, then of the tactics 61-70, from the same stream. The shuffled list is the
deck from the top down.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from meridian.games.battleline.cards import (
    DECK_TACTIC,
    DECK_TROOP,
    HAND,
    HAND_SIZE,
    N_CARDS,
    N_FLAGS,
    TACTICS,
    TROOPS,
)

MAX_SEED = 2**53
_MASK64 = 2**64 - 1
N_PLACES = 24

CLAIM = "claim"
PLAY = "play"
DRAW = "draw"
SCOUT_DRAW = "scout_draw"
SCOUT_RETURN = "scout_return"
OVER = "over"
PHASES = (CLAIM, PLAY, DRAW, SCOUT_DRAW, SCOUT_RETURN, OVER)

NO_PLAYER = -1
# go-battleline move type codes; the state remembers the last one for position export.
GO_INIT, GO_CONE, GO_DECK, GO_HAND, GO_SCOUT1, GO_SCOUT2, GO_SCOUT3 = range(7)
GO_SCOUT_RETURN, GO_GIVE_UP, GO_PAUSE = 7, 8, 9


class GameState:
    """One position of a game. Treat it as immutable: ``apply_move`` returns a new state."""

    __slots__ = (
        "cones",
        "first_player",
        "go_last",
        "go_saved",
        "last_claim",
        "last_move",
        "mover",
        "paused",
        "phase",
        "places",
        "ply",
        "result",
        "returned",
        "returned_by",
        "scout_left",
        "seed",
        "where",
    )

    def __init__(self) -> None:
        self.seed: int | None = None
        self.first_player = 0
        self.places: list[list[int]] = [[] for _ in range(N_PLACES)]
        self.where: list[int] = [0] * (N_CARDS + 1)
        self.cones: list[int] = [NO_PLAYER] * N_FLAGS  # flag index -> winner, or NO_PLAYER
        self.phase = PLAY
        self.mover = 0
        self.scout_left = 0
        self.paused = False
        self.result: dict[str, Any] | None = None
        self.ply = 0
        self.last_move: dict[str, Any] | None = None
        self.last_claim: dict[str, Any] | None = None
        self.returned_by = NO_PLAYER  # who made the (only possible) Scout return
        self.returned: list[int] = [0, 0]  # the cards returned, in go-battleline's layout
        self.go_last: tuple[int, int, int] = (GO_INIT, 1, 0)  # (type, mover, move index)
        self.go_saved: tuple[int, int, int] | None = None  # go_last before a pause

    def copy(self) -> GameState:
        """A copy sharing nothing mutable (result and move dicts are never mutated)."""
        other = GameState.__new__(GameState)
        other.seed = self.seed
        other.first_player = self.first_player
        other.places = [list(cards) for cards in self.places]
        other.where = list(self.where)
        other.cones = list(self.cones)
        other.phase = self.phase
        other.mover = self.mover
        other.scout_left = self.scout_left
        other.paused = self.paused
        other.result = self.result
        other.ply = self.ply
        other.last_move = self.last_move
        other.last_claim = self.last_claim
        other.returned_by = self.returned_by
        other.returned = list(self.returned)
        other.go_last = self.go_last
        other.go_saved = self.go_saved
        return other

    def move_card(self, card: int, place: int) -> None:
        """Move a card from wherever it is to ``place`` (on top, for a deck)."""
        self.places[self.where[card]].remove(card)
        self.places[place].append(card)
        self.where[card] = place

    def draw(self, deck: int, player: int) -> int:
        """Move the top card of a deck (DECK_TROOP or DECK_TACTIC) to a player's hand."""
        card = self.places[deck].pop()
        self.places[HAND[player]].append(card)
        self.where[card] = HAND[player]
        return card


def _splitmix64(seed: int) -> Iterator[int]:
    state = seed & _MASK64
    while True:
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        yield z ^ (z >> 31)


def _below(stream: Iterator[int], bound: int) -> int:
    """An unbiased integer in [0, bound) (rejection keeps every value equally likely)."""
    limit = (2**64 // bound) * bound
    while True:
        value = next(stream)
        if value < limit:
            return value % bound


def shuffled_decks(seed: int) -> tuple[list[int], list[int]]:
    """The troop and tactic decks for a seed, each listed from the top card down."""
    check_seed(seed)
    stream = _splitmix64(seed)
    decks = []
    for cards in (TROOPS, TACTICS):
        deck = list(cards)
        for i in range(len(deck) - 1, 0, -1):
            j = _below(stream, i + 1)
            deck[i], deck[j] = deck[j], deck[i]
        decks.append(deck)
    return decks[0], decks[1]


def check_seed(seed: object) -> int:
    """The seed, if it is an int in [0, 2**53) (JSON- and pycrdt-safe); ValueError otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**53), got {seed!r}")
    return seed


def check_player(player: object, what: str = "player") -> int:
    """The player, if it is 0 or 1; ValueError otherwise."""
    if not isinstance(player, int) or isinstance(player, bool) or player not in (0, 1):
        raise ValueError(f"{what} must be 0 or 1, got {player!r}")
    return player


def check_decks(troop_deck: Sequence[int], tactic_deck: Sequence[int]) -> None:
    """ValueError unless the decks hold each troop / each tactic exactly once."""
    if sorted(troop_deck) != list(TROOPS):
        raise ValueError("the troop deck must hold each of the cards 1-60 exactly once")
    if sorted(tactic_deck) != list(TACTICS):
        raise ValueError("the tactic deck must hold each of the cards 61-70 exactly once")


def dealt_state(
    troop_deck: Sequence[int], tactic_deck: Sequence[int], first_player: int
) -> GameState:
    """A game with these decks (top card first) after the deal: 7 troops each, alternately,
    the first card to ``first_player``, who then moves first."""
    check_player(first_player, "first_player")
    check_decks(troop_deck, tactic_deck)
    state = GameState()
    state.first_player = first_player
    state.places[DECK_TROOP] = list(reversed(troop_deck))
    state.places[DECK_TACTIC] = list(reversed(tactic_deck))
    for card in troop_deck:
        state.where[card] = DECK_TROOP
    for card in tactic_deck:
        state.where[card] = DECK_TACTIC
    for i in range(2 * HAND_SIZE):
        state.draw(DECK_TROOP, first_player if i % 2 == 0 else 1 - first_player)
    state.mover = first_player
    state.phase = PLAY
    state.go_last = (GO_INIT, 1 - first_player, 0)
    return state
