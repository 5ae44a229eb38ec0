"""Battleline engine speed: legal-move generation, claim proofs, and self-play.

Run: ``.venv/bin/python bench/battleline.py`` (add ``--json`` for machine-readable output,
``--quick`` to skip the 200-game heuristic-versus-random measurement).

Targets, on one core: at least 5,000 legal-move generations per second on mid-game positions;
claim proof p99 at most 20 ms (over every claim made in self-play); at least 20 random
self-play games per second. The script exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from meridian.games.battleline import rules
from meridian.games.battleline.cards import MUD
from meridian.games.battleline.engine import new_game
from meridian.games.battleline.selfplay import play_game, series_seeds, summarize
from meridian.games.battleline.state import PLAY, GameState

TARGET_GENERATIONS_PER_S = 5_000
TARGET_PROOF_P99_MS = 20.0
TARGET_GAMES_PER_S = 20.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def mid_game_positions(count: int) -> list[GameState]:
    """Play-phase positions between moves 40 and 100 of random games."""
    positions: list[GameState] = []
    seed = 0
    while len(positions) < count:

        def keep(state: GameState, player: int, move: dict[str, Any]) -> None:
            if 40 <= state.ply <= 100 and state.phase == PLAY and len(positions) < count:
                positions.append(state)

        play_game(seed, ("random", "random"), on_move=keep)
        seed += 1
    return positions


def bench_legal_moves(positions: list[GameState], rounds: int = 20) -> dict[str, Any]:
    start = time.perf_counter()
    moves = 0
    for _ in range(rounds):
        for state in positions:
            moves += len(rules.legal_moves(state))
    elapsed = time.perf_counter() - start
    generations = rounds * len(positions)
    return {
        "positions": len(positions),
        "generations_per_s": round(generations / elapsed),
        "mean_moves": round(moves / generations, 1),
    }


def bench_claim_proofs(games: int) -> dict[str, Any]:
    """Time every claim proof made in self-play (both bot kinds), plus a synthetic worst case."""
    timings: list[float] = []

    def time_claims(state: GameState, player: int, move: dict[str, Any]) -> None:
        for flag in move.get("flags", []) if move["type"] == "claim" else []:
            start = time.perf_counter()
            rules.prove(state, player, flag - 1)
            timings.append((time.perf_counter() - start) * 1000)

    for seed, seat in series_seeds(1000, games):
        play_game(seed, ("heuristic", "random"), seat, on_move=time_claims)
        play_game(seed, ("random", "random"), seat, on_move=time_claims)
    return {
        "claims": len(timings),
        "p50_ms": round(_percentile(timings, 0.50), 3),
        "p99_ms": round(_percentile(timings, 0.99), 3),
        "worst_ms": round(max(timings), 3),
        "mud_empty_side_ms": round(_worst_case_proof_ms(), 3),
    }


def _worst_case_proof_ms() -> float:
    """A Mud flag whose opponent side is empty: four cards to choose from ~50 unplayed troops."""
    state = new_game(5)
    for card in (7, 6, 5, 4, MUD):
        state.move_card(card, 1)  # player 0's side of flag 1
    start = time.perf_counter()
    rules.prove(state, 0, 0)
    return (time.perf_counter() - start) * 1000


def bench_selfplay(games: int, bots: tuple[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    outcomes = [play_game(seed, bots, seat) for seed, seat in series_seeds(2000, games)]
    elapsed = time.perf_counter() - start
    summary = summarize(outcomes, bots)
    summary["games_per_s"] = round(games / elapsed, 1)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="skip the 200-game heuristic run")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "legal_moves": bench_legal_moves(mid_game_positions(200)),
        "claim_proofs": bench_claim_proofs(games=40),
        "random_selfplay": bench_selfplay(100, ("random", "random")),
    }
    if not args.quick:
        report["heuristic_vs_random"] = bench_selfplay(200, ("heuristic", "random"))
    report["targets_met"] = {
        "legal_moves": report["legal_moves"]["generations_per_s"] >= TARGET_GENERATIONS_PER_S,
        "claim_proof_p99": report["claim_proofs"]["p99_ms"] <= TARGET_PROOF_P99_MS,
        "random_selfplay": report["random_selfplay"]["games_per_s"] >= TARGET_GAMES_PER_S,
    }
    if "heuristic_vs_random" in report:
        report["targets_met"]["heuristic_win_rate"] = (
            report["heuristic_vs_random"]["win_rate_a"] >= 0.8
        )
    print(json.dumps(report) if args.json else _text(report))
    return 0 if all(report["targets_met"].values()) else 1


def _text(report: dict[str, Any]) -> str:
    legal, proofs, random_play = (
        report["legal_moves"],
        report["claim_proofs"],
        report["random_selfplay"],
    )
    lines = [
        f"legal-move generations/s (mid-game, {legal['positions']} positions, "
        f"{legal['mean_moves']} moves each): {legal['generations_per_s']}  "
        f"(target >= {TARGET_GENERATIONS_PER_S})",
        f"claim proofs over {proofs['claims']} self-play claims: p50 {proofs['p50_ms']} ms, "
        f"p99 {proofs['p99_ms']} ms, worst {proofs['worst_ms']} ms  "
        f"(target p99 <= {TARGET_PROOF_P99_MS} ms)",
        f"  synthetic worst case (Mud, empty opposing side): {proofs['mud_empty_side_ms']} ms",
        f"random self-play: {random_play['games_per_s']} games/s, "
        f"{random_play['mean_plies']:.0f} moves/game  (target >= {TARGET_GAMES_PER_S})",
    ]
    if "heuristic_vs_random" in report:
        versus = report["heuristic_vs_random"]
        lines.append(
            f"heuristic vs random, {versus['games']} games: heuristic won {versus['wins'][0]} "
            f"({100 * versus['win_rate_a']:.1f}%), {versus['games_per_s']} games/s  (target >= 80%)"
        )
    lines.append(
        "targets met: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in report["targets_met"].items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
