"""``meridian battleline ...``: the command-line face of the Battleline engine.

Subcommands: ``legal-moves`` (go-battleline positions on stdin -> legal moves in go encoding),
``import`` (go history -> Meridian record), ``check`` (replay a history, report the first illegal
move), ``play`` (a game against a bot in the terminal) and ``selfplay`` (bot against bot).
This module is the I/O shell around the pure engine: it alone reads files, stdin and the clock.

Exit codes: 0 success, 1 the history holds an illegal move, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from meridian.games.battleline import engine, gocompat, notation, records, rules, selfplay
from meridian.games.battleline.cards import card_name
from meridian.games.battleline.moves import IllegalMove
from meridian.games.battleline.state import CLAIM, DRAW, PLAY, SCOUT_DRAW, SCOUT_RETURN, GameState

EXIT_OK, EXIT_ILLEGAL, EXIT_BAD_INPUT = 0, 1, 2


class InputError(Exception):
    """Input the command cannot use; the message says what is wrong."""


def add_battleline_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``battleline`` command and its subcommands to a ``meridian`` parser."""
    parser = subparsers.add_parser(
        "battleline",
        help="Battleline rules engine: legal moves, import/check histories, play, self-play",
        description="The Battleline rules engine and its go-battleline compatibility tools.",
    )
    commands = parser.add_subparsers(dest="battleline_command", metavar="COMMAND", required=True)
    _add_legal_moves(commands)
    _add_import(commands)
    _add_check(commands)
    _add_play(commands)
    _add_selfplay(commands)


def main(argv: list[str] | None = None) -> int:
    """Run ``battleline`` subcommands directly: ``python -m games.battleline.cli play``."""
    parser = argparse.ArgumentParser(prog="python -m games.battleline.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_battleline_parser(subparsers)
    args = parser.parse_args(["battleline", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


# ---------------------------------------------------------------- legal-moves


def _add_legal_moves(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "legal-moves",
        help="print the legal moves of go-battleline positions read from stdin",
        description=(
            "Read one go-battleline position (a JSON object with CardPos, ConePos, ...) or a JSON "
            'list of them from stdin (objects of the form {"position": {...}} are accepted too) '
            "and print, one line per position, the JSON list of its legal moves in go-battleline "
            "encoding. Draws show the card back (71 tactic, 72 troop)."
        ),
    )
    parser.set_defaults(func=_legal_moves)


def _legal_moves(args: argparse.Namespace) -> int:
    try:
        data = _load_json(sys.stdin.read(), "stdin")
        positions = data if isinstance(data, list) else [data]
        lines = []
        for i, position in enumerate(positions):
            if isinstance(position, dict) and "position" in position and "CardPos" not in position:
                position = position["position"]
            try:
                lines.append(json.dumps(gocompat.legal_moves_go(position), separators=(",", ":")))
            except gocompat.GoFormatError as error:
                raise InputError(f"position {i}: {error}") from None
    except InputError as error:
        return _fail(str(error))
    sys.stdout.write("".join(line + "\n" for line in lines))
    return EXIT_OK


# ---------------------------------------------------------------- import and check


def _add_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import",
        help="turn a go-battleline game history into a Meridian game record",
        description=(
            "Read a go-battleline history (JSON {Moves, PlayerIDs, Time}) and print the Meridian "
            "game record: the decks it implies (top card first), the first player and the moves. "
            "The record is checked by replaying it before it is printed."
        ),
    )
    parser.add_argument("file", help="the go-battleline history (JSON)")
    parser.add_argument("-o", "--output", help="write the record here instead of stdout")
    parser.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    try:
        history = _load_json(_read_file(args.file), args.file)
        record = gocompat.import_history(history)
        _, illegal = records.check_record(record)
    except (InputError, gocompat.GoFormatError, records.RecordError) as error:
        return _fail(str(error))
    if illegal is not None:
        return _fail(f"the history holds an illegal move: {_go_ply_text(illegal)}", EXIT_ILLEGAL)
    text = records.record_to_json(record)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check",
        help="replay a game history and report the first illegal move",
        description=(
            "Replay a go-battleline history or a Meridian game record and report the first "
            "illegal move, if any (exit 1), or the final result (exit 0). For go histories every "
            "recorded claim must also hold, since the original server recorded only the claims "
            "that succeeded."
        ),
    )
    parser.add_argument("file", help="a go-battleline history or a Meridian record (JSON)")
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    try:
        data = _load_json(_read_file(args.file), args.file)
        is_go = isinstance(data, dict) and "Moves" in data
        record = gocompat.import_history(data) if is_go else data
        state, illegal = _check_moves(record, strict_claims=is_go)
    except (InputError, gocompat.GoFormatError, records.RecordError) as error:
        return _fail(str(error))
    if illegal is not None:
        where = (
            _go_ply_text(illegal)
            if is_go
            else f"move {illegal.ply}: {illegal.code}: {illegal.message}"
        )
        print(f"illegal move at {where}")
        return EXIT_ILLEGAL
    print(f"ok: {state.ply} moves replayed; {_result_text(state)}")
    return EXIT_OK


def _check_moves(record: Any, strict_claims: bool) -> tuple[GameState, IllegalMove | None]:
    state = records.initial_state(record)
    for ply, move in enumerate(records.record_moves(record)):
        try:
            state = engine.replay_from(state, [move])
        except IllegalMove as error:
            return state, IllegalMove(error.code, error.message, ply)
        failed = state.last_claim["failed"] if state.last_claim and move["type"] == "claim" else []
        if strict_claims and failed:
            example = failed[0]
            return state, IllegalMove(
                "illegal_move",
                f"claim of flag {example['flag']} does not hold; counter-example "
                f"{example['counter_example']}",
                ply,
            )
    return state, None


def _go_ply_text(error: IllegalMove) -> str:
    go_index = (error.ply or 0) + 1  # the go history starts with the deal
    return f"go move {go_index}: {error.code}: {error.message}"


def _result_text(state: GameState) -> str:
    if state.result is None:
        return "game paused" if state.paused else f"game in progress, player {state.mover} to move"
    winner = state.result["winner"]
    who = "no winner" if winner is None else f"player {winner} won"
    return f"{who} ({state.result['reason']})"


# ---------------------------------------------------------------- play


def _add_play(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "play",
        help="play a game against a bot in the terminal",
        description=(
            "Play Battleline against a bot. You are player 0. Enter moves in short notation "
            "(g7 3, claim 2 5, pass, draw troop, traitor r5 4, ...), a number from the 'moves' "
            "list, or: help, board, moves, giveup, quit. Reads stdin, so it can be scripted."
        ),
    )
    parser.add_argument("--seed", type=int, default=1, help="game seed (default 1)")
    parser.add_argument("--bot", choices=sorted(selfplay.BOTS), default="heuristic")
    parser.add_argument("--first", choices=("human", "bot"), default="human", help="who starts")
    parser.set_defaults(func=_play)


_PHASE_HINTS = {
    CLAIM: "claim flags you can prove ('claim 3 5'), or 'claim' for none",
    PLAY: "play a card: 'g7 3' puts green 7 on flag 3 (moves lists them all)",
    DRAW: "draw a card: 'draw troop' or 'draw tactic'",
    SCOUT_DRAW: "Scout: draw another card: 'draw troop' or 'draw tactic'",
    SCOUT_RETURN: "Scout: return cards to the decks: 'return g3 r4' (the last ends on top)",
}
HUMAN = 0


def _play(args: argparse.Namespace) -> int:
    state = engine.new_game(args.seed, HUMAN if args.first == "human" else 1 - HUMAN)
    bot = selfplay.BOTS[args.bot](args.seed + 1)
    out = sys.stdout
    out.write("Battleline: you are player 0. Type help for the notation, moves for your options.\n")
    show_board = True
    while state.result is None:
        if state.mover != HUMAN:
            move = bot.choose(state, state.mover)
            state = engine.apply_move(state, state.mover, move)
            out.write(f"bot: {notation.format_move(move)}\n")
            _report_claim(out, state, move)
            show_board = True
            continue
        if show_board and state.phase in (CLAIM, PLAY):
            out.write(notation.draw_board(state, HUMAN) + "\n")
            show_board = False
        out.write(f"{_PHASE_HINTS[state.phase]}\n> ")
        out.flush()
        line = sys.stdin.readline()
        if not line:
            out.write("\nend of input: game left unfinished\n")
            return EXIT_OK
        outcome = _human_turn(out, state, line.strip())
        if outcome is None:
            return EXIT_OK
        show_board = show_board or outcome is not state
        state = outcome
    out.write(notation.draw_board(state, HUMAN) + "\n")
    out.write(f"game over: {_result_text(state)}\n")
    return EXIT_OK


def _human_turn(out: TextIO, state: GameState, line: str) -> GameState | None:
    """Handle one input line: the new state (the same if nothing moved), or None to quit."""
    moves = rules.legal_moves(state)
    if line in ("quit", "exit"):
        out.write("bye: game left unfinished\n")
        return None
    if line in ("", "help", "?"):
        out.write(
            notation.HELP + "\nAlso: board, moves, a number from the moves list, giveup, quit.\n"
        )
        return state
    if line == "board":
        out.write(notation.draw_board(state, HUMAN) + "\n")
        return state
    if line == "moves":
        out.write("".join(f"{i:>3}. {notation.format_move(m)}\n" for i, m in enumerate(moves, 1)))
        return state
    try:
        move = moves[int(line) - 1] if line.isdigit() else notation.parse_move_text(line)
        if line.isdigit() and int(line) < 1:
            raise IndexError
        new = engine.apply_move(state, HUMAN, move)
    except IndexError:
        out.write(f"no move {line}: the list has {len(moves)} (type moves)\n")
        return state
    except (ValueError, IllegalMove) as error:
        out.write(f"not possible: {getattr(error, 'message', error)}\n")
        return state
    _report_claim(out, new, move)
    return new


def _report_claim(out: TextIO, state: GameState, move: dict[str, Any]) -> None:
    claim = state.last_claim
    if move["type"] != "claim" or claim is None or not claim["flags"]:
        return
    who = "you" if claim["player"] == HUMAN else "bot"
    if claim["won"]:
        out.write(f"{who} won flag(s) {', '.join(map(str, claim['won']))}\n")
    for failed in claim["failed"]:
        cards = " ".join(card_name(c) for c in failed["counter_example"])
        out.write(
            f"{who} failed to prove flag {failed['flag']}: the other side could make {cards}\n"
        )


# ---------------------------------------------------------------- selfplay


def _add_selfplay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "selfplay",
        help="play bots against each other and print the results and games/s",
        description=(
            "Play N games of bot A against bot B (seats alternate; game i uses seed S+i) and "
            "print wins, results by reason, mean game length and games/s. A progress bar goes "
            "to stderr."
        ),
    )
    parser.add_argument("--games", type=int, default=100, help="number of games (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="first game seed (default 0)")
    parser.add_argument(
        "--bots", default="heuristic,random", help="bot A,bot B among: " + ", ".join(selfplay.BOTS)
    )
    parser.add_argument("--max-plies", type=int, default=selfplay.DEFAULT_MAX_PLIES)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=_selfplay)


def _selfplay(args: argparse.Namespace) -> int:
    names = tuple(args.bots.split(","))
    if len(names) != 2 or any(n not in selfplay.BOTS for n in names):
        return _fail(f"--bots must be two of {', '.join(selfplay.BOTS)}, like heuristic,random")
    try:
        seeds = selfplay.series_seeds(args.seed, args.games)
    except ValueError as error:
        return _fail(str(error))
    bots = (names[0], names[1])
    start = time.perf_counter()
    outcomes = []
    for done, (seed, seat) in enumerate(seeds, 1):
        outcomes.append(selfplay.play_game(seed, bots, seat, args.max_plies))
        _progress(done, len(seeds), time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    summary = selfplay.summarize(outcomes, bots)
    summary.update(
        seed=args.seed,
        seconds=round(elapsed, 3),
        games_per_second=round(len(seeds) / elapsed, 2) if elapsed else None,
    )
    sys.stdout.write(_summary_text(summary, args.json))
    return EXIT_OK


def _progress(done: int, total: int, elapsed: float) -> None:
    width = 30
    filled = width * done // total if total else width
    rate = done / elapsed if elapsed else 0.0
    end = "\n" if done == total else ""
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {rate:.1f} games/s{end}"
    )
    sys.stderr.flush()


def _summary_text(summary: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(summary) + "\n"
    a, b = summary["bots"]
    games = summary["games"] or 1
    reasons = ", ".join(f"{k} {v}" for k, v in summary["reasons"].items())
    return (
        f"games: {summary['games']}  seed: {summary['seed']}\n"
        f"A {a}: {summary['wins'][0]} wins ({100 * summary['wins'][0] / games:.1f}%)\n"
        f"B {b}: {summary['wins'][1]} wins ({100 * summary['wins'][1] / games:.1f}%)\n"
        f"undecided: {summary['undecided']}\n"
        f"results: {reasons}\n"
        f"mean moves per game: {summary['mean_plies']:.1f}\n"
        f"time: {summary['seconds']:.2f} s  games/s: {summary['games_per_second']}\n"
    )


# ---------------------------------------------------------------- helpers


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{source} is not JSON: {error}") from None


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    sys.stderr.write(f"error: {message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
