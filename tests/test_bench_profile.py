"""bench/nodeprofile.py: py-spy's raw stacks summarised into areas and functions."""

from __future__ import annotations

from bench.nodeprofile import summarise

MAIN = "<module> (/v/meridian/__main__.py:6)"
RAW = "\n".join(
    [
        f"{MAIN};run (/usr/lib/python3.11/asyncio/runners.py:118);"
        "_dispatch (/v/meridian/node/service.py:251) 6",
        f"{MAIN};apply_update (/v/.venv/lib/python3.11/site-packages/pycrdt/_doc.py:208) 3",
        f"{MAIN};_run_once (/usr/lib/python3.11/asyncio/base_events.py:1922) 1",
        "not a stack line",
    ]
)


def test_each_sample_counts_for_the_innermost_frames_area_and_function() -> None:
    profile = summarise(RAW)
    assert profile.samples == 10
    assert profile.areas == [
        ("node: service, topics, websocket adapter", 0.6),
        ("pycrdt", 0.3),
        ("asyncio loop", 0.1),
    ]
    assert profile.functions[0] == ("_dispatch (node/service.py)", 0.6)
    assert profile.functions[1] == ("apply_update (pycrdt/_doc.py)", 0.3)


def test_no_samples_is_an_empty_profile_not_a_division_by_zero() -> None:
    assert summarise("").samples == 0
