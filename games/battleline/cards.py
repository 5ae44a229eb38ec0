"""The 70 Battleline cards, the places a card can be, and a short text notation for people.

Card numbers follow the original go-battleline server, so positions and histories convert
without a lookup table:

* 1-60 troops: colour ``(c - 1) // 10`` (0 green, 1 red, 2 purple, 3 yellow, 4 blue, 5 orange),
  strength ``c % 10`` with 0 meaning 10.
* 61 Traitor, 62 Deserter, 63 Redeploy, 64 Scout (guile tactics); 65 Mud, 66 Fog
  (environment tactics); 67 "123", 68 "8", 69 Darius, 70 Alexander (morale tactics; the last
  two are the leaders).

Places use the go-battleline position codes too: 0 troop deck, 1-9 player 0's side of flags 1-9,
10 player 0's discard pile, 11-19 player 1's side of flags 1-9, 20 player 1's discard pile,
21 player 0's hand, 22 player 1's hand, 23 tactic deck.
"""

from __future__ import annotations

N_TROOPS = 60
N_CARDS = 70
N_FLAGS = 9
HAND_SIZE = 7

TRAITOR = 61
DESERTER = 62
REDEPLOY = 63
SCOUT = 64
MUD = 65
FOG = 66
MORALE_123 = 67
MORALE_8 = 68
DARIUS = 69
ALEXANDER = 70

GUILES = (TRAITOR, DESERTER, REDEPLOY, SCOUT)
ENVIRONMENTS = (MUD, FOG)
MORALES = (MORALE_123, MORALE_8, DARIUS, ALEXANDER)
LEADERS = (DARIUS, ALEXANDER)
TACTICS = tuple(range(N_TROOPS + 1, N_CARDS + 1))
TROOPS = tuple(range(1, N_TROOPS + 1))

DECK_TROOP = 0
DECK_TACTIC = 23
HAND = (21, 22)
DISCARD = (10, 20)

COLOR_NAMES = ("green", "red", "purple", "yellow", "blue", "orange")
COLOR_LETTERS = ("g", "r", "p", "y", "b", "o")

TACTIC_NAMES = {
    TRAITOR: "traitor",
    DESERTER: "deserter",
    REDEPLOY: "redeploy",
    SCOUT: "scout",
    MUD: "mud",
    FOG: "fog",
    MORALE_123: "123",
    MORALE_8: "8",
    DARIUS: "darius",
    ALEXANDER: "alexander",
}
_TACTIC_BY_NAME = {name: card for card, name in TACTIC_NAMES.items()}
_TACTIC_BY_NAME.update({"alex": ALEXANDER, "dar": DARIUS})

# Indexed by card number; index 0 is unused so that STRENGTH[card] works directly.
STRENGTH = (0, *((c % 10) or 10 for c in TROOPS))
COLOR = (-1, *((c - 1) // 10 for c in TROOPS))

# The strengths a morale card may stand for, and the strongest of them.
MORALE_STRENGTHS: dict[int, frozenset[int]] = {
    MORALE_123: frozenset((1, 2, 3)),
    MORALE_8: frozenset((8,)),
    DARIUS: frozenset(range(1, 11)),
    ALEXANDER: frozenset(range(1, 11)),
}
MORALE_MAX = {MORALE_123: 3, MORALE_8: 8, DARIUS: 10, ALEXANDER: 10}


def is_troop(card: int) -> bool:
    """True for the 60 coloured troop cards."""
    return 1 <= card <= N_TROOPS


def is_tactic(card: int) -> bool:
    """True for the 10 tactic cards."""
    return N_TROOPS < card <= N_CARDS


def is_morale(card: int) -> bool:
    """True for the four morale tactics: they count towards a formation like troops."""
    return MORALE_123 <= card <= ALEXANDER


def is_environment(card: int) -> bool:
    """True for Mud and Fog, which change the rules of the flag they lie beside."""
    return card in (MUD, FOG)


def troop_card(color: int, strength: int) -> int:
    """The card number of the troop of this colour (0-5) and strength (1-10)."""
    return color * 10 + strength


def side_place(player: int, flag: int) -> int:
    """The place code of a player's side of a flag (flag index 0-8)."""
    return 1 + flag + 10 * player


def place_flag(place: int) -> int:
    """The flag index (0-8) of a side-of-flag place code, or -1 for any other place."""
    if 1 <= place <= 9:
        return place - 1
    if 11 <= place <= 19:
        return place - 11
    return -1


def place_owner(place: int) -> int:
    """The player a place belongs to (sides, discard pile, hand), or -1 for the decks."""
    if 1 <= place <= 10 or place == HAND[0]:
        return 0
    if 11 <= place <= 20 or place == HAND[1]:
        return 1
    return -1


def card_name(card: int) -> str:
    """Short notation: ``g7`` (green 7), ``r10``, or a tactic's name (``traitor``, ``123``)."""
    if is_troop(card):
        return f"{COLOR_LETTERS[COLOR[card]]}{STRENGTH[card]}"
    if is_tactic(card):
        return TACTIC_NAMES[card]
    raise ValueError(f"no card numbered {card} (cards are 1-70)")


def card_long_name(card: int) -> str:
    """Long notation for people: ``green 7``, ``Traitor``, ``Alexander``."""
    if is_troop(card):
        return f"{COLOR_NAMES[COLOR[card]]} {STRENGTH[card]}"
    return card_name(card).capitalize()


def parse_card(text: str) -> int:
    """Read a card in short notation (``g7``, ``R10``, ``traitor``, ``alex``); ValueError if bad."""
    word = text.strip().lower()
    if word in _TACTIC_BY_NAME:
        return _TACTIC_BY_NAME[word]
    if len(word) >= 2 and word[0] in COLOR_LETTERS and word[1:].isdigit():
        strength = int(word[1:])
        if 1 <= strength <= 10:
            return troop_card(COLOR_LETTERS.index(word[0]), strength)
    raise ValueError(
        f"not a card: {text!r} (troops are a colour letter g/r/p/y/b/o and 1-10, like g7; "
        f"tactics by name: {', '.join(sorted(TACTIC_NAMES.values()))})"
    )
