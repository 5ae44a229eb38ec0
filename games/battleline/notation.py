"""A short text notation for moves and a text drawing of the board, for people at a terminal.

Cards: a colour letter and a strength for troops (``g7`` green 7, ``r10``; colours g r p y b o),
tactics by name (``traitor deserter redeploy scout mud fog 123 8 darius alexander``, or
``alex``/``dar``). Moves::

    g7 3                play green 7 (or a morale tactic, Mud, Fog) on flag 3
    claim 2 5           claim flags 2 and 5 ("claim" alone claims nothing)
    pass
    draw troop          or: draw tactic (also in the middle of a Scout)
    traitor r5 4        take the opponent's red 5 to your flag 4
    deserter r5         discard the opponent's red 5
    redeploy g7 4       move your green 7 to flag 4 ("redeploy g7 discard" discards it)
    scout troop         play Scout, drawing first from the troop deck
    return g3 mud       give back cards after a Scout (the last one ends on top)
"""

from __future__ import annotations

from typing import Any

from meridian.games.battleline.cards import card_name, parse_card
from meridian.games.battleline.claims import split_side
from meridian.games.battleline.formations import describe, evaluate
from meridian.games.battleline.rules import flag_fog, flag_size, formation_count, side
from meridian.games.battleline.state import GameState

Move = dict[str, Any]

HELP = __doc__.split("Moves::", 1)[1] if __doc__ else ""


def format_move(move: Move) -> str:
    """A move in the short notation."""
    kind = move["type"]
    if kind == "play":
        return f"{card_name(move['card'])} {move['flag']}"
    if kind == "claim":
        return " ".join(["claim", *map(str, move["flags"])]) if move["flags"] else "claim (none)"
    if kind in ("draw", "scout"):
        return f"{kind} {move['deck']}"
    if kind == "deserter":
        return f"deserter {card_name(move['card'])}"
    if kind in ("traitor", "redeploy"):
        target = "discard" if move["to_flag"] is None else str(move["to_flag"])
        return f"{kind} {card_name(move['card'])} {target}"
    if kind == "scout_return":
        if "cards" not in move:  # another player's return: only the decks are known
            return "return " + " ".join(move["decks"])
        return "return " + " ".join(card_name(c) for c in move["cards"])
    return str(kind).replace("_", " ")


def _flag_number(word: str) -> int:
    if not word.isdigit() or not 1 <= int(word) <= 9:
        raise ValueError(f"not a flag number: {word!r} (flags are 1-9)")
    return int(word)


def _deck(word: str) -> str:
    if word not in ("troop", "tactic"):
        raise ValueError(f'say "troop" or "tactic", not {word!r}')
    return word


def parse_move_text(text: str) -> Move:
    """Read a move in the short notation; ValueError with a hint when it cannot."""
    words = text.lower().split()
    if not words:
        raise ValueError("empty move")
    head, args = words[0], words[1:]
    if head == "claim":
        return {"type": "claim", "flags": sorted({_flag_number(w) for w in args})}
    if head in ("pass", "give_up", "giveup", "pause", "resume") and not args:
        return {"type": "give_up" if head.startswith("give") else head}
    if head in ("draw", "scout") and len(args) == 1:
        return {"type": head, "deck": _deck(args[0])}
    if head == "deserter" and len(args) == 1:
        return {"type": "deserter", "card": parse_card(args[0])}
    if head in ("traitor", "redeploy") and len(args) == 2:
        target = None if head == "redeploy" and args[1] == "discard" else _flag_number(args[1])
        return {"type": head, "card": parse_card(args[0]), "to_flag": target}
    if head == "return" and 1 <= len(args) <= 2:
        return {"type": "scout_return", "cards": [parse_card(w) for w in args]}
    if len(words) == 2:
        return {"type": "play", "card": parse_card(head), "flag": _flag_number(args[0])}
    raise ValueError(f"cannot read {text!r}; type help for the notation")


def _side_text(state: GameState, player: int, flag: int) -> str:
    cards = " ".join(card_name(c) for c in side(state, player, flag))
    size = flag_size(state, flag)
    if formation_count(state, player, flag) >= size:
        troops, morales = split_side(side(state, player, flag))
        cards += f"  ({describe(evaluate(troops, morales, size, flag_fog(state, flag)))})"
    return cards


def draw_board(state: GameState, player: int) -> str:
    """The table as ``player`` sees it (own hand shown, the opponent's only counted)."""
    opponent = 1 - player
    lines = [f"{'flag':<8}| {'opponent':<30}| you"]
    for flag in range(9):
        owner = state.cones[flag]
        mark = " you" if owner == player else " opp" if owner == opponent else ""
        terrain = ("M" if flag_size(state, flag) == 4 else " ") + (
            "F" if flag_fog(state, flag) else " "
        )
        lines.append(
            f"{flag + 1:>2}{terrain}{mark:>4}| {_side_text(state, opponent, flag):<30}"
            f"| {_side_text(state, player, flag):<30}"
        )
    hand = state.places[21 + player]
    other = state.places[21 + opponent]
    other_tactics = sum(1 for c in other if c > 60)
    lines.append("(M = Mud, F = Fog; 'you'/'opp' marks a claimed flag)")
    lines.append("your hand: " + " ".join(card_name(c) for c in sorted(hand)))
    lines.append(
        f"opponent's hand: {len(other) - other_tactics} troops, {other_tactics} tactics; "
        f"decks: {len(state.places[0])} troops, {len(state.places[23])} tactics"
    )
    return "\n".join(lines)
