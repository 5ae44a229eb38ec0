"""The battleline command line, run as a person or a script would: through a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meridian.games.battleline import apply_move, import_history, replay_record, rules
from meridian.games.battleline.records import initial_state

DATA = Path(__file__).parent / "data" / "go-battleline"
pytestmark = pytest.mark.integration  # every test runs the CLI as a subprocess


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meridian.games.battleline.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _key(move: dict[str, Any]) -> str:
    return json.dumps(move, sort_keys=True)


@pytest.mark.parametrize("command", ["legal-moves", "import", "check", "play", "selfplay"])
def test_every_subcommand_explains_itself(command: str) -> None:
    done = run(command, "--help")
    assert done.returncode == 0 and "usage:" in done.stdout and len(done.stdout) > 200


def test_legal_moves_prints_one_line_per_position_in_go_encoding() -> None:
    entries = json.loads((DATA / "pospauseGameNo63.json").read_text())
    done = run("legal-moves", stdin=json.dumps([e["position"] for e in entries]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(entries)
    for line, entry in zip(lines, entries, strict=True):
        assert {_key(m) for m in json.loads(line)} == {_key(m) for m in entry["legal_moves"]}
    single = run("legal-moves", stdin=json.dumps(entries[0]["position"]))
    assert single.stdout == lines[0] + "\n"


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("{not json", "stdin is not JSON"),
        ('{"CardPos": [1, 2]}', "position 0: CardPos must be a list of 71 integers"),
    ],
)
def test_legal_moves_rejects_bad_input_clearly(stdin: str, message: str) -> None:
    done = run("legal-moves", stdin=stdin)
    assert done.returncode == 2 and message in done.stderr


def test_import_turns_a_go_history_into_a_replayable_record(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    done = run("import", str(DATA / "game2vs1151.json"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["format"] == "meridian-battleline/1" and len(record["moves"]) == 130
    assert replay_record(record).result == {"winner": 0, "reason": "flags"}
    checked = run("check", str(out))
    assert (checked.returncode, checked.stdout) == (
        0,
        "ok: 130 moves replayed; player 0 won (flags)\n",
    )


def test_check_accepts_the_original_histories() -> None:
    done = run("check", str(DATA / "game2vs11220.json"))
    assert (done.returncode, done.stdout) == (0, "ok: 125 moves replayed; player 1 won (give_up)\n")


def test_check_reports_the_first_illegal_move(tmp_path: Path) -> None:
    history = json.loads((DATA / "game1vs21038.json").read_text())
    history["Moves"][3]["Moves"][0]["Index"] = 10  # player 1 plays a card it does not hold
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(history))
    done = run("check", str(path))
    assert done.returncode == 1
    assert done.stdout.startswith("illegal move at go move 3: illegal_move: ")
    assert "not in your hand" in done.stdout


def _unprovable_claim(history: dict[str, Any]) -> tuple[int, int]:
    """(go move index, flag) of a claim phase where the mover had an unprovable formation."""
    record = import_history(history)
    state = initial_state(record)
    for index, move in enumerate(record["moves"], start=1):
        if state.phase == "claim":
            for flag in range(9):
                ready = rules.has_formation(state, state.mover, flag)
                if ready and not rules.prove(state, state.mover, flag).proved:
                    return index, flag + 1
        state = apply_move(state, move["player"], move)
    raise AssertionError("no unprovable formation in this history")


def test_check_reports_a_recorded_claim_that_does_not_hold(tmp_path: Path) -> None:
    # The original recorded only successful claims, so a failing one in a history is an error.
    history = json.loads((DATA / "game1vs21550.json").read_text())
    index, flag = _unprovable_claim(history)
    mover = history["Moves"][index]["Mover"]
    cone = {"Index": flag, "NewPos": mover + 1, "OldPos": 0, "BoardPiece": 1}
    history["Moves"][index]["Moves"] = [cone]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(history))
    done = run("check", str(path))
    assert done.returncode == 1
    assert done.stdout.startswith(
        f"illegal move at go move {index}: illegal_move: claim of flag {flag}"
    )


def test_check_rejects_unreadable_files(tmp_path: Path) -> None:
    missing = run("check", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    (tmp_path / "x.json").write_text('{"format": "something-else"}')
    wrong = run("check", str(tmp_path / "x.json"))
    assert wrong.returncode == 2 and "format must be" in wrong.stderr


def test_play_is_usable_from_a_pipe_to_the_end_of_a_game() -> None:
    script = "help\nboard\nmoves\nnonsense\ng11 3\nclaim 9\n" + "1\n" * 400
    done = run("play", "--seed", "5", "--bot", "random", stdin=script)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "traitor r5 4" in out  # the notation help
    assert "your hand:" in out and "opponent's hand:" in out  # the board
    assert "  1. " in out  # the numbered moves list
    assert "not possible: cannot read 'nonsense'" in out
    assert "not possible: not a card: 'g11'" in out
    assert "bot: " in out and "game over: player" in out


def test_play_stops_cleanly_at_the_end_of_input() -> None:
    done = run("play", "--seed", "2", "--first", "bot", stdin="board\n")
    assert done.returncode == 0 and "game left unfinished" in done.stdout
    assert done.stdout.count("bot: ") == 2  # the bot's play and draw came first


def test_selfplay_prints_results_rate_and_a_progress_bar() -> None:
    done = run("selfplay", "--games", "6", "--seed", "40", "--bots", "heuristic,random")
    assert done.returncode == 0, done.stderr
    assert "games: 6  seed: 40" in done.stdout and "games/s:" in done.stdout
    assert "A heuristic:" in done.stdout and "B random:" in done.stdout
    assert "6/6" in done.stderr and "[" + "#" * 30 + "]" in done.stderr
    as_json = json.loads(run("selfplay", "--games", "2", "--json").stdout)
    assert as_json["games"] == 2 and sum(as_json["wins"]) + as_json["undecided"] == 2
    bad = run("selfplay", "--bots", "heuristic,genius")
    assert bad.returncode == 2 and "--bots must be two of" in bad.stderr
