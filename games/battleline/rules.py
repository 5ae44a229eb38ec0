"""The rules: which moves are legal, and what a move does to the state.

A turn is: claim flags (only offered when the mover has a complete formation somewhere), play
one card (or pass, allowed only when no troop can be played), draw one card (only with fewer
than 7 in hand). Scout replaces the draw: it draws three cards, then returns as many as bring the
hand back to 7. A phase in which the mover has nothing to do is skipped, exactly like the original
server. These rules decisions come from go-battleline (see tests/data/go-battleline/README.md):

* Tactics: a player may play a tactic only while they have played no more tactics than the
  opponent (tactics in the discard piles count); each player plays at most one leader per game.
* Troops and morale tactics go on a flag only while the player's side holds fewer than 3 of
  them (4 under Mud); Mud and Fog go on any unclaimed flag. If Mud leaves a flag, a side left
  with 4 cards keeps them and its best 3 count.
* Traitor takes an opponent's troop from an unclaimed flag to any unclaimed flag with room on
  the mover's side (the same flag included). Deserter discards any opponent card from an
  unclaimed flag. Redeploy moves an own card from an unclaimed flag to another unclaimed flag
  with room, or to the discard pile.
* A claim lists any set of flags on which the mover has a complete formation; each flag is
  proved separately (see ``claims``) and the ones that fail stay open.
* Five flags, or three adjacent, win; the check is made after each claim.

``apply_move`` never changes the state it is given; it returns a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meridian.games.battleline import claims
from meridian.games.battleline.cards import (
    DECK_TACTIC,
    DECK_TROOP,
    DESERTER,
    FOG,
    HAND,
    HAND_SIZE,
    LEADERS,
    MUD,
    N_FLAGS,
    REDEPLOY,
    TRAITOR,
    is_environment,
    is_morale,
    is_tactic,
    is_troop,
    place_flag,
    side_place,
)
from meridian.games.battleline.state import (
    CLAIM,
    DRAW,
    NO_PLAYER,
    OVER,
    PLAY,
    SCOUT_DRAW,
    SCOUT_RETURN,
    GameState,
)

DECK_PLACE = {"troop": DECK_TROOP, "tactic": DECK_TACTIC}
Move = dict[str, Any]


# ---------------------------------------------------------------- flag facts


def flag_size(state: GameState, flag: int) -> int:
    """Cards in a formation on this flag (index 0-8): 4 under Mud, else 3."""
    return 4 if place_flag(state.where[MUD]) == flag else 3


def flag_fog(state: GameState, flag: int) -> bool:
    """True if Fog lies beside this flag (index 0-8)."""
    return place_flag(state.where[FOG]) == flag


def side(state: GameState, player: int, flag: int) -> list[int]:
    """The cards on a player's side of a flag (index 0-8), in the order played."""
    return state.places[side_place(player, flag)]


def formation_count(state: GameState, player: int, flag: int) -> int:
    """Troops and morale tactics on a player's side of a flag (Mud and Fog do not count)."""
    place = side_place(player, flag)
    count = len(state.places[place])
    if state.where[MUD] == place:
        count -= 1
    if state.where[FOG] == place:
        count -= 1
    return count


def has_room(state: GameState, player: int, flag: int) -> bool:
    """True if the player may add a troop or morale tactic to this flag."""
    return state.cones[flag] == NO_PLAYER and formation_count(state, player, flag) < flag_size(
        state, flag
    )


def has_formation(state: GameState, player: int, flag: int) -> bool:
    """True if the flag is open and the player's formation on it is complete (claimable)."""
    return state.cones[flag] == NO_PLAYER and formation_count(state, player, flag) >= flag_size(
        state, flag
    )


def table_owner(place: int) -> int:
    """The player whose flags or discard pile a place is, or -1 (hands and decks)."""
    return 0 if 1 <= place <= 10 else 1 if 11 <= place <= 20 else -1


def tactics_played(state: GameState, player: int) -> int:
    """Tactics the player has put on the table (their flags and discard pile)."""
    return sum(1 for card in range(61, 71) if table_owner(state.where[card]) == player)


def may_play_tactic(state: GameState, player: int) -> bool:
    """The tactic limit: no more tactics played than the opponent before playing this one."""
    return tactics_played(state, player) <= tactics_played(state, 1 - player)


def leader_played(state: GameState, player: int) -> bool:
    """True once the player has played a leader (at most one per player per game)."""
    return any(table_owner(state.where[card]) == player for card in LEADERS)


def unplayed_troops(state: GameState) -> list[int]:
    """Troops not yet on the table: the troop deck and both hands."""
    hands = state.places[HAND[0]] + state.places[HAND[1]]
    return state.places[DECK_TROOP] + [c for c in hands if is_troop(c)]


def prove(state: GameState, player: int, flag: int) -> claims.ClaimProof:
    """Prove the player's claim on a flag (index 0-8) where their formation is complete."""
    return claims.prove_claim(
        side(state, player, flag),
        side(state, 1 - player, flag),
        flag_size(state, flag),
        flag_fog(state, flag),
        unplayed_troops(state),
    )


# ---------------------------------------------------------------- legal moves


def legal_moves(state: GameState) -> list[Move]:
    """Every legal move of the player to move; [] when the game is over or paused.

    ``give_up``, ``pause`` and ``resume`` are always open to both players and are not listed.
    """
    if state.result is not None or state.paused:
        return []
    return _GENERATORS[state.phase](state)


def has_legal_move(state: GameState) -> bool:
    """``bool(legal_moves(state))`` without listing them (the engine asks after every move):
    a play phase in which a troop card fits on an open flag answers at once."""
    if state.result is not None or state.paused:
        return False
    if state.phase == PLAY and _can_play_troop(state, state.mover):
        return True
    return bool(_GENERATORS[state.phase](state))


def _can_play_troop(state: GameState, player: int) -> bool:
    if not any(is_troop(card) for card in state.places[HAND[player]]):
        return False
    return any(state.cones[f] == NO_PLAYER and has_room(state, player, f) for f in range(N_FLAGS))


def _claim_moves(state: GameState) -> list[Move]:
    ready = [f + 1 for f in range(N_FLAGS) if has_formation(state, state.mover, f)]
    if not ready:
        return []
    return [
        {"type": "claim", "flags": [f for i, f in enumerate(ready) if mask >> i & 1]}
        for mask in range(1 << len(ready))
    ]


def _play_moves(state: GameState) -> list[Move]:
    return play_moves(state, state.mover)


def play_moves(state: GameState, player: int) -> list[Move]:
    """The card plays (and pass) ``player`` would have in a play phase now."""
    hand = sorted(state.places[HAND[player]])
    open_flags = [f for f in range(N_FLAGS) if state.cones[f] == NO_PLAYER]
    roomy = [f for f in open_flags if has_room(state, player, f)]
    moves = [
        {"type": "play", "card": card, "flag": f + 1}
        for card in hand
        if is_troop(card)
        for f in roomy
    ]
    troop_moves = len(moves)
    if may_play_tactic(state, player):
        for card in hand:
            if is_tactic(card):
                moves.extend(_tactic_moves(state, player, card, open_flags, roomy))
    if moves and not troop_moves:
        moves.append({"type": "pass"})
    return moves


def can_move_a_card(state: GameState, player: int) -> bool:
    """True if the player could move a card on a turn now: draw one, or play one."""
    hand = state.places[HAND[player]]
    if len(hand) < HAND_SIZE and (state.places[DECK_TROOP] or state.places[DECK_TACTIC]):
        return True
    return bool(play_moves(state, player))


def is_dead(state: GameState) -> bool:
    """No card can ever move again and no claim can succeed: nothing can change any more.

    Claims only close flags, so once neither player can draw or play, the cards stay where they
    are for good, and a claim that fails now fails forever.
    """
    if can_move_a_card(state, 0) or can_move_a_card(state, 1):
        return False
    return not any(
        has_formation(state, player, flag) and prove(state, player, flag).proved
        for player in (0, 1)
        for flag in range(N_FLAGS)
    )


def _tactic_moves(
    state: GameState, player: int, card: int, open_flags: list[int], roomy: list[int]
) -> list[Move]:
    if is_morale(card):
        if card in LEADERS and leader_played(state, player):
            return []
        return [{"type": "play", "card": card, "flag": f + 1} for f in roomy]
    if is_environment(card):
        return [{"type": "play", "card": card, "flag": f + 1} for f in open_flags]
    if card == DESERTER:
        return [
            {"type": "deserter", "card": c} for f in open_flags for c in side(state, 1 - player, f)
        ]
    if card == TRAITOR:
        return [
            {"type": "traitor", "card": c, "to_flag": to + 1}
            for f in open_flags
            for c in side(state, 1 - player, f)
            if is_troop(c)
            for to in roomy
        ]
    if card == REDEPLOY:
        return [
            m
            for f in open_flags
            for c in side(state, player, f)
            for m in _redeploy_moves(state, c, f, open_flags, roomy)
        ]
    return [
        {"type": "scout", "deck": d} for d in ("tactic", "troop") if state.places[DECK_PLACE[d]]
    ]


def _redeploy_moves(
    state: GameState, card: int, source: int, open_flags: list[int], roomy: list[int]
) -> list[Move]:
    targets = open_flags if is_environment(card) else roomy
    moves: list[Move] = [
        {"type": "redeploy", "card": card, "to_flag": to + 1} for to in targets if to != source
    ]
    moves.append({"type": "redeploy", "card": card, "to_flag": None})
    return moves


def _draw_moves(state: GameState) -> list[Move]:
    if state.phase == DRAW and len(state.places[HAND[state.mover]]) >= HAND_SIZE:
        return []
    return [{"type": "draw", "deck": d} for d in ("tactic", "troop") if state.places[DECK_PLACE[d]]]


def _return_moves(state: GameState) -> list[Move]:
    hand = sorted(state.places[HAND[state.mover]])
    excess = len(hand) - HAND_SIZE
    if excess == 1:
        return [{"type": "scout_return", "cards": [c]} for c in hand]
    if excess != 2:
        return []
    tactics = [c for c in hand if is_tactic(c)]
    troops = [c for c in hand if is_troop(c)]
    same_deck = [[a, b] for group in (tactics, troops) for a in group for b in group if a != b]
    mixed = [[a, b] for a in tactics for b in troops]
    return [{"type": "scout_return", "cards": pair} for pair in same_deck + mixed]


def _no_moves(state: GameState) -> list[Move]:
    return []


_GENERATORS: dict[str, Callable[[GameState], list[Move]]] = {
    CLAIM: _claim_moves,
    PLAY: _play_moves,
    DRAW: _draw_moves,
    SCOUT_DRAW: _draw_moves,
    SCOUT_RETURN: _return_moves,
    OVER: _no_moves,
}
