"""The move protocol: the JSON objects a client sends, checked for shape before the rules see them.

Every move is a small object with a ``type`` and the fields that type needs, nothing else
(an optional ``player`` is allowed so a stored move record can carry its author). Flags are
numbered 1-9, cards 1-70 (see ``cards``), decks are ``"troop"`` or ``"tactic"``.

==============  ===========================================  ==================================
type            fields                                        when
==============  ===========================================  ==================================
claim           flags: list of flag numbers (may be empty)    claim phase, start of a turn
play            card, flag                                    troop, morale tactic, Mud or Fog
pass            (none)                                        only when no troop can be played
traitor         card (opponent's troop), to_flag              play phase
deserter        card (opponent's card on a flag)              play phase
redeploy        card (own card on a flag), to_flag or null    play phase; null discards it
scout           deck (the first of three cards to draw)       play phase
draw            deck                                          draw phase, and Scout's 2nd/3rd
scout_return    cards: 1 or 2 cards, the last ends on top     after Scout's draws
give_up         (none)                                        either player, any time
timeout         (none)                                        a player's time ran out (written by
                                                              a node, never sent by a client)
pause / resume  (none)                                        either player, any time
==============  ===========================================  ==================================
"""

from __future__ import annotations

from typing import Any

from meridian.games.base import IllegalMove
from meridian.games.battleline.cards import N_CARDS, N_FLAGS

__all__ = ["DECKS", "META_TYPES", "MOVE_TYPES", "IllegalMove", "parse_move"]


DECKS = ("troop", "tactic")

_FIELDS: dict[str, tuple[str, ...]] = {
    "claim": ("flags",),
    "play": ("card", "flag"),
    "pass": (),
    "traitor": ("card", "to_flag"),
    "deserter": ("card",),
    "redeploy": ("card", "to_flag"),
    "scout": ("deck",),
    "draw": ("deck",),
    "scout_return": ("cards",),
    "give_up": (),
    "timeout": (),
    "pause": (),
    "resume": (),
}
MOVE_TYPES = tuple(_FIELDS)
META_TYPES = ("give_up", "timeout", "pause", "resume")


def _malformed(message: str) -> IllegalMove:
    return IllegalMove("malformed", message)


def _int_in(value: object, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _malformed(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return value


def _card(value: object) -> int:
    return _int_in(value, 1, N_CARDS, "card")


def _flag(value: object, what: str = "flag") -> int:
    return _int_in(value, 1, N_FLAGS, what)


def _deck(value: object) -> str:
    if value not in DECKS:
        raise _malformed(f'deck must be "troop" or "tactic", got {value!r}')
    return str(value)


def _flag_list(value: object) -> list[int]:
    if not isinstance(value, list):
        raise _malformed(f"flags must be a list of flag numbers, got {value!r}")
    flags = [_flag(f) for f in value]
    if len(set(flags)) != len(flags):
        raise _malformed(f"flags lists a flag twice: {value!r}")
    return sorted(flags)


def _card_list(value: object) -> list[int]:
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise _malformed(f"cards must be a list of one or two cards, got {value!r}")
    cards = [_card(c) for c in value]
    if len(set(cards)) != len(cards):
        raise _malformed(f"cards lists a card twice: {value!r}")
    return cards


def parse_move(move: object) -> dict[str, Any]:
    """The move in canonical form (claim flags sorted, no ``player``); IllegalMove if malformed."""
    if not isinstance(move, dict):
        raise _malformed(f"a move must be a JSON object, got {type(move).__name__}")
    kind = move.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise _malformed(f"unknown move type {kind!r}; expected one of {', '.join(MOVE_TYPES)}")
    fields = _FIELDS[kind]
    extra = sorted(set(move) - {"type", "player", *fields})
    if extra:
        raise _malformed(f"{kind} move has unexpected field(s) {', '.join(map(str, extra))}")
    missing = [f for f in fields if f not in move]
    if missing:
        raise _malformed(f"{kind} move needs field(s) {', '.join(missing)}")
    parsed: dict[str, Any] = {"type": kind}
    for field in fields:
        parsed[field] = _parse_field(field, move[field])
    if kind == "traitor" and parsed["to_flag"] is None:
        raise _malformed("traitor needs to_flag: the flag the troop goes to")
    return parsed


def _parse_field(field: str, value: object) -> object:
    if field == "flags":
        return _flag_list(value)
    if field == "cards":
        return _card_list(value)
    if field == "card":
        return _card(value)
    if field == "flag":
        return _flag(value)
    if field == "deck":
        return _deck(value)
    # to_flag: a flag, or null for "to my discard pile" (redeploy only; traitor needs a flag)
    return None if value is None else _flag(value, "to_flag")
