"""The mutation suite's machinery: bugs are planted in a throw-away copy, never in the checkout,
and the simulator alone reports which it caught (the full suite is a bench: bench/mutate.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from meridian.sim.mutate import (
    MUTATION_DIR,
    ROOT,
    MutationError,
    apply_mutation,
    copy_code,
    load_mutations,
    run_mutations,
)

QUICK = ("hlc-counter-stuck", "chain-later-stamp-wins", "authority-ignored")


def digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def test_every_mutation_applies_to_exactly_one_place_of_the_current_code(tmp_path: Path) -> None:
    mutations = load_mutations(MUTATION_DIR)
    assert len(mutations) >= 15
    assert len({m.category for m in mutations}) >= 10
    copy = copy_code(ROOT, tmp_path / "copy")
    for mutation in mutations:
        apply_mutation(mutation, copy)  # raises if the text is not there exactly once


def test_three_mutations_in_a_copy_one_caught_the_checkout_untouched() -> None:
    mutations = load_mutations(MUTATION_DIR, QUICK)
    files = [ROOT / m.file for m in mutations]
    before = digest(files)
    lines: list[str] = []
    outcomes = {
        o.mutation: o for o in run_mutations(mutations, ["partition-heal"], 1, 2, lines.append)
    }
    assert digest(files) == before, "the checkout was modified"
    caught = outcomes["hlc-counter-stuck"]
    assert (
        caught.caught
        and caught.checker == "hlc"
        and (caught.scenario, caught.seed)
        == (
            "partition-heal",
            1,
        )
    )
    assert "the HLC rule gives" in caught.message
    assert outcomes["chain-later-stamp-wins"].verdict in ("caught", "SURVIVED")
    survivor = outcomes["authority-ignored"]
    assert survivor.verdict == "SURVIVED" and survivor.runs == 1  # no account edits there
    assert sum("[" in line and "/3]" in line for line in lines) == 3  # progress per mutation


def test_a_mutation_whose_text_is_gone_is_refused(tmp_path: Path) -> None:
    mutation = load_mutations(MUTATION_DIR, ["relay-off"])[0]
    copy = copy_code(ROOT, tmp_path / "copy")
    apply_mutation(mutation, copy)
    with pytest.raises(MutationError, match="occurs 0 times"):
        apply_mutation(mutation, copy)
