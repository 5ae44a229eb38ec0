"""Applying moves: validation against the rules, the effect of each move, and the turn order.

The turn order is a small state machine over phases (claim -> play -> draw -> the opponent's
claim; Scout: play -> scout_draw x2 -> scout_return -> the opponent's claim). After every move
the engine moves on to the next phase in which the mover has something to do, as the original
server did; if six phases in a row offer nothing to either player the game ends as a stalemate
(the original would loop forever there). So does a game in which no card can ever move again
and no claim can succeed (checked at the start of each turn that opens with a claim phase).
"""

from __future__ import annotations

from typing import Any

from meridian.games.battleline import rules
from meridian.games.battleline.cards import (
    DECK_TACTIC,
    DECK_TROOP,
    DESERTER,
    DISCARD,
    HAND,
    HAND_SIZE,
    LEADERS,
    N_FLAGS,
    REDEPLOY,
    SCOUT,
    TRAITOR,
    card_name,
    is_environment,
    is_morale,
    is_tactic,
    is_troop,
    place_flag,
    side_place,
)
from meridian.games.battleline.moves import IllegalMove, parse_move
from meridian.games.battleline.state import (
    CLAIM,
    DRAW,
    GO_CONE,
    GO_DECK,
    GO_GIVE_UP,
    GO_HAND,
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
    check_player,
    check_seed,
    dealt_state,
    shuffled_decks,
)

Move = dict[str, Any]
_STALEMATE_PHASES = 6


def new_game(seed: int, first_player: int = 0) -> GameState:
    """A dealt game whose decks are shuffled from ``seed`` (an int in [0, 2**53))."""
    troop_deck, tactic_deck = shuffled_decks(check_seed(seed))
    state = dealt_state(troop_deck, tactic_deck, check_player(first_player, "first_player"))
    state.seed = seed
    return state


def new_game_from_decks(
    troop_deck: list[int], tactic_deck: list[int], first_player: int = 0
) -> GameState:
    """A dealt game with given decks (top card first), e.g. one imported from go-battleline."""
    return dealt_state(troop_deck, tactic_deck, first_player)


def replay(seed: int, moves: list[Move], first_player: int = 0) -> GameState:
    """The state after playing ``moves`` from the seeded deal.

    A move may carry ``player``; without it the move is the player to move's. Raises
    IllegalMove with ``ply`` set to the index of the first move the rules refuse.
    """
    return replay_from(new_game(seed, first_player), moves)


def replay_from(state: GameState, moves: list[Move]) -> GameState:
    """Play ``moves`` from ``state`` (see ``replay``)."""
    for ply, move in enumerate(moves):
        try:
            player = move.get("player", state.mover) if isinstance(move, dict) else state.mover
            state = apply_move(state, player, move)
        except IllegalMove as error:
            raise IllegalMove(error.code, error.message, ply) from None
    return state


def to_move(state: GameState) -> int | None:
    """The player to move, or None when the game is over or paused."""
    return None if state.result is not None or state.paused else state.mover


def result(state: GameState) -> dict[str, Any] | None:
    """``{"winner": 0 or 1, "reason": "flags" | "breakthrough" | "give_up" | "time"}`` once the
    game is over, else None. A stalemate (the game can no longer change) has winner None."""
    return state.result


def apply_move(state: GameState, player: int, move: object) -> GameState:
    """Validate ``move`` by ``player`` in full and return the new state (``state`` is unchanged)."""
    try:
        player = check_player(player)
    except ValueError as error:
        raise IllegalMove("malformed", str(error)) from None
    parsed = parse_move(move)
    if isinstance(move, dict) and "player" in move and move["player"] != player:
        raise IllegalMove("malformed", f"the move says player {move['player']!r}, sent by {player}")
    if state.result is not None:
        raise IllegalMove("game_over", "the game is over")
    kind = parsed["type"]
    if kind in _META:
        return _META[kind](state, player, parsed)
    if state.paused:
        raise IllegalMove("paused", "the game is paused; send a resume move first")
    if player != state.mover:
        raise IllegalMove("not_your_turn", f"it is player {state.mover}'s turn")
    handler = _HANDLERS[state.phase].get(kind)
    if handler is None:
        raise IllegalMove(
            "illegal_move",
            f"{kind} is not a move of the {state.phase} phase; "
            f"expected {' or '.join(_HANDLERS[state.phase])}",
        )
    new = state.copy()
    handler(new, parsed)
    new.ply = state.ply + 1
    new.last_move = {"player": player, "move": parsed}
    return new


# ---------------------------------------------------------------- meta moves


def _give_up(state: GameState, player: int, move: Move) -> GameState:
    new = state.copy()
    new.result = {"winner": 1 - player, "reason": "give_up"}
    new.phase = OVER
    new.paused = False
    new.go_last = (GO_GIVE_UP, player, state.go_last[2] + 1)
    return _finish_meta(new, state, player, move)


def _timeout(state: GameState, player: int, move: Move) -> GameState:
    """`player`'s time ran out: the game's clock layer (``crdt_models.game``) admits this record
    only past the deadline and never from a client; to the rules it is a give-up by the clock."""
    new = _give_up(state, player, move)
    new.result = {"winner": 1 - player, "reason": "time"}
    return new


def _pause(state: GameState, player: int, move: Move) -> GameState:
    if state.paused:
        raise IllegalMove("illegal_move", "the game is already paused")
    new = state.copy()
    new.paused = True
    new.go_saved = state.go_last
    new.go_last = (GO_PAUSE, player, state.go_last[2] + 1)
    return _finish_meta(new, state, player, move)


def _resume(state: GameState, player: int, move: Move) -> GameState:
    if not state.paused or state.go_saved is None:
        raise IllegalMove("illegal_move", "the game is not paused")
    new = state.copy()
    new.paused = False
    # go-battleline drops the pause from the history on resume, so its position goes back too.
    new.go_last = state.go_saved
    new.go_saved = None
    return _finish_meta(new, state, player, move)


def _finish_meta(new: GameState, old: GameState, player: int, move: Move) -> GameState:
    new.ply = old.ply + 1
    new.last_move = {"player": player, "move": move}
    return new


_META = {"give_up": _give_up, "timeout": _timeout, "pause": _pause, "resume": _resume}


# ---------------------------------------------------------------- claim phase


def _claim(state: GameState, move: Move) -> None:
    player = state.mover
    for flag in move["flags"]:
        if state.cones[flag - 1] != NO_PLAYER:
            raise IllegalMove("illegal_move", f"flag {flag} is already claimed")
        if not rules.has_formation(state, player, flag - 1):
            raise IllegalMove("illegal_move", f"you have no complete formation on flag {flag}")
    proofs = {flag: rules.prove(state, player, flag - 1) for flag in move["flags"]}
    won = [flag for flag, proof in proofs.items() if proof.proved]
    for flag in won:
        state.cones[flag - 1] = player
    state.last_claim = {
        "player": player,
        "flags": move["flags"],
        "won": won,
        "failed": [
            {"flag": flag, "counter_example": list(proof.counter_example)}
            for flag, proof in proofs.items()
            if not proof.proved
        ],
    }
    state.go_last = (GO_CONE, player, state.go_last[2] + 1)
    winner = winner_of(state.cones)
    if winner is not None:
        state.result = {"winner": winner[0], "reason": winner[1]}
        state.phase = OVER
        return
    advance(state)


def winner_of(cones: list[int]) -> tuple[int, str] | None:
    """Three adjacent flags (breakthrough) or five flags (envelopment) win."""
    run, last = 0, NO_PLAYER
    for owner in cones:
        run = run + 1 if owner != NO_PLAYER and owner == last else (1 if owner != NO_PLAYER else 0)
        last = owner
        if run == 3:
            return owner, "breakthrough"
    for player in (0, 1):
        if cones.count(player) >= 5:
            return player, "flags"
    return None


# ---------------------------------------------------------------- play phase


def _require_in_hand(state: GameState, card: int) -> None:
    if state.where[card] != HAND[state.mover]:
        raise IllegalMove("illegal_move", f"{card_name(card)} ({card}) is not in your hand")


def _require_tactic_allowed(state: GameState, card: int) -> None:
    player = state.mover
    if not rules.may_play_tactic(state, player):
        raise IllegalMove(
            "illegal_move",
            "you have played more tactics than your opponent; play a troop or pass",
        )
    if card in LEADERS and rules.leader_played(state, player):
        raise IllegalMove("illegal_move", "you have already played a leader this game")


def _open_flag(state: GameState, flag: int) -> None:
    if state.cones[flag - 1] != NO_PLAYER:
        raise IllegalMove("illegal_move", f"flag {flag} is already claimed")


def _require_room(state: GameState, flag: int) -> None:
    _open_flag(state, flag)
    if not rules.has_room(state, state.mover, flag - 1):
        raise IllegalMove("illegal_move", f"your side of flag {flag} is full")


def _play(state: GameState, move: Move) -> None:
    card, flag = move["card"], move["flag"]
    _require_in_hand(state, card)
    if is_tactic(card) and not (is_morale(card) or is_environment(card)):
        raise IllegalMove(
            "illegal_move",
            f"{card_name(card)} is played with its own move type ({card_name(card)}), not play",
        )
    if is_tactic(card):
        _require_tactic_allowed(state, card)
    if is_environment(card):
        _open_flag(state, flag)
    else:
        _require_room(state, flag)
    state.move_card(card, side_place(state.mover, flag - 1))
    _end_play(state)


def _pass(state: GameState, move: Move) -> None:
    player = state.mover
    if any(is_troop(c) for c in state.places[HAND[player]]) and any(
        rules.has_room(state, player, f) for f in range(N_FLAGS)
    ):
        raise IllegalMove("illegal_move", "you can play a troop, so you may not pass")
    _end_play(state)


def _use_guile(state: GameState, guile: int) -> None:
    _require_in_hand(state, guile)
    _require_tactic_allowed(state, guile)
    state.move_card(guile, DISCARD[state.mover])


def _board_card(state: GameState, card: int, owner: int, what: str) -> int:
    """The open flag (index) holding ``card`` on ``owner``'s side, else IllegalMove."""
    flag = place_flag(state.where[card])
    if flag < 0 or state.where[card] != side_place(owner, flag):
        raise IllegalMove("illegal_move", f"{card_name(card)} is not on {what} side of a flag")
    if state.cones[flag] != NO_PLAYER:
        raise IllegalMove("illegal_move", f"{card_name(card)} lies at claimed flag {flag + 1}")
    return flag


def _traitor(state: GameState, move: Move) -> None:
    card, to_flag = move["card"], move["to_flag"]
    _board_card(state, card, 1 - state.mover, "your opponent's")
    if not is_troop(card):
        raise IllegalMove("illegal_move", "Traitor takes a troop, not a tactic")
    _require_room(state, to_flag)
    _use_guile(state, TRAITOR)
    state.move_card(card, side_place(state.mover, to_flag - 1))
    _end_play(state)


def _deserter(state: GameState, move: Move) -> None:
    card = move["card"]
    _board_card(state, card, 1 - state.mover, "your opponent's")
    _use_guile(state, DESERTER)
    state.move_card(card, DISCARD[1 - state.mover])
    _end_play(state)


def _redeploy(state: GameState, move: Move) -> None:
    card, to_flag = move["card"], move["to_flag"]
    source = _board_card(state, card, state.mover, "your")
    if to_flag is not None:
        if to_flag - 1 == source:
            raise IllegalMove("illegal_move", f"{card_name(card)} is already at flag {to_flag}")
        if is_environment(card):
            _open_flag(state, to_flag)
        else:
            _require_room(state, to_flag)
    _use_guile(state, REDEPLOY)
    target = DISCARD[state.mover] if to_flag is None else side_place(state.mover, to_flag - 1)
    state.move_card(card, target)
    _end_play(state)


def _scout(state: GameState, move: Move) -> None:
    deck = rules.DECK_PLACE[move["deck"]]
    if not state.places[deck]:
        raise IllegalMove("illegal_move", f"the {move['deck']} deck is empty")
    _use_guile(state, SCOUT)
    state.draw(deck, state.mover)
    state.go_last = (GO_SCOUT1, state.mover, state.go_last[2] + 1)
    state.phase, state.scout_left = SCOUT_DRAW, 2
    settle(state)


def _end_play(state: GameState) -> None:
    state.go_last = (GO_HAND, state.mover, state.go_last[2] + 1)
    advance(state)


# ---------------------------------------------------------------- draws and Scout


def _draw(state: GameState, move: Move) -> None:
    deck = rules.DECK_PLACE[move["deck"]]
    if not state.places[deck]:
        raise IllegalMove("illegal_move", f"the {move['deck']} deck is empty")
    if state.phase == DRAW and len(state.places[HAND[state.mover]]) >= HAND_SIZE:
        raise IllegalMove("illegal_move", f"you already hold {HAND_SIZE} cards")
    state.draw(deck, state.mover)
    scout_type = GO_SCOUT2 if state.scout_left == 2 else GO_SCOUT3
    go_type = GO_DECK if state.phase == DRAW else scout_type
    state.go_last = (go_type, state.mover, state.go_last[2] + 1)
    advance(state)


def _scout_return(state: GameState, move: Move) -> None:
    cards = move["cards"]
    hand = state.places[HAND[state.mover]]
    excess = len(hand) - HAND_SIZE
    if len(cards) != excess:
        raise IllegalMove(
            "illegal_move", f"return {excess} card(s) to bring your hand to {HAND_SIZE}"
        )
    for card in cards:
        _require_in_hand(state, card)
    if len(cards) == 2 and is_troop(cards[0]) and is_tactic(cards[1]):
        cards = [cards[1], cards[0]]  # different decks: order is moot; keep one canonical form
        move["cards"] = cards
    for i, card in enumerate(cards):
        state.move_card(card, DECK_TACTIC if is_tactic(card) else DECK_TROOP)
        state.returned[i] = card
    state.returned_by = state.mover
    state.go_last = (GO_SCOUT_RETURN, state.mover, state.go_last[2] + 1)
    advance(state)


# ---------------------------------------------------------------- turn order


def _step(state: GameState) -> None:
    """Move to the phase after the current one."""
    if state.phase == CLAIM:
        state.phase = PLAY
    elif state.phase == PLAY:
        state.phase = DRAW
    elif state.phase == SCOUT_DRAW and state.scout_left == 2:
        state.scout_left = 1
    elif state.phase == SCOUT_DRAW:
        state.phase, state.scout_left = SCOUT_RETURN, 0
    else:  # DRAW or SCOUT_RETURN end the turn
        state.phase, state.mover = CLAIM, 1 - state.mover


def advance(state: GameState) -> None:
    """End the current phase: go to the next one in which the mover has something to do."""
    _step(state)
    settle(state)


def settle(state: GameState) -> None:
    """Skip phases in which the mover has nothing to do; end a game that can no longer change."""
    for _ in range(_STALEMATE_PHASES):
        if rules.has_legal_move(state):
            # A turn starting with a claim phase may be one where nothing can change any more.
            if state.phase == CLAIM and rules.is_dead(state):
                break
            return
        _step(state)
    state.phase = OVER
    state.result = {"winner": None, "reason": "stalemate"}


_HANDLERS = {
    CLAIM: {"claim": _claim},
    PLAY: {
        "play": _play,
        "pass": _pass,
        "traitor": _traitor,
        "deserter": _deserter,
        "redeploy": _redeploy,
        "scout": _scout,
    },
    DRAW: {"draw": _draw},
    SCOUT_DRAW: {"draw": _draw},
    SCOUT_RETURN: {"scout_return": _scout_return},
    OVER: {},
}
