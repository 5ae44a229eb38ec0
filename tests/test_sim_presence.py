"""Presence expiry judged during the run, not only on the final states (sim.presencecheck).

At the end of a run every node is back and every heartbeat fresh, so a node that keeps showing
the players of a region cut off for longer than the 15 s time-to-live, or drops those of a region
still heartbeating, shows it only while it happens. Hand-made ``presence`` notes pin both rules,
their allowance for the service's tick, and the cases where nothing can be judged; one real run
shows a service whose presence never expires is caught mid-run. The same notes judge that a
login outranks every session its node knew of (a double login where the new login's node runs
behind the old one's clock), by hand-made notes and by a real run with the rule broken.
"""

from __future__ import annotations

from typing import Any

import meridian.crdt_models.presence as production_presence
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.sim.history import History
from meridian.sim.presencecheck import LOGIN_LIVES_S, expiry_problem, login_problem, picture_lag_s
from meridian.sim.scenario import SCENARIO_DIR, load_scenario
from meridian.sim.world import Simulation

EPOCH = 1_767_225_600_000
LAG = picture_lag_s(1.0)  # 1.2 s: a tick and the public list's refresh interval


def note(t: float, beats: dict[str, float], counted: dict[str, Any], **more: Any) -> dict[str, Any]:
    """What ``sim.presence_watch`` writes for node ap at true time t (wall clock = t)."""
    return {
        "t": t,
        "node": "ap",
        "kind": "presence",
        "incarnation": more.get("incarnation", 1),
        "wall_ms": EPOCH + int(1000 * more.get("wall", t)),
        "beats": {node: EPOCH + int(1000 * beat) for node, beat in beats.items()},
        "counted": counted,
        "uncounted": more.get("uncounted", {}),
    }


def judge(notes: list[dict[str, Any]]) -> str | None:
    history = History("hand-made", 1, ["eu", "ap"], 30.0, 40.0, notes=notes)
    found = expiry_problem(history, LAG, {"u1": "alice"})
    return None if found is None else found.message


SHOWN = {"u1": ["s1", ["eu"]]}


def test_a_session_shown_from_a_presence_stale_for_longer_than_a_tick_fails() -> None:
    # eu's last heartbeat was at 5 s: stale for ap from 20 s on.
    notes = [note(t, {"eu": 5, "ap": t}, SHOWN) for t in (19.5, 20.5, 21.0, 21.5, 22.0)]
    # stale from 20 s; at 21.5 s the last note at least a tick earlier (19.5 s) saw it fresh
    assert judge(notes[:4]) is None
    message = judge(notes)
    assert message is not None and message.startswith("ap still showed alice online at 22.000 s")
    assert "held only in eu's presence (heartbeat 17.0 s old)" in message


def test_a_heartbeat_that_arrived_in_between_or_a_clock_stepped_back_is_not_judged() -> None:
    beat_came = [note(20.5, {"eu": 5}, SHOWN), note(22.0, {"eu": 21.9}, SHOWN)]
    assert judge(beat_came) is None
    stepped_back = [
        note(20.5, {"eu": 5}, SHOWN),
        note(21.0, {"eu": 5}, SHOWN, wall=40.0),
        note(22.0, {"eu": 5}, SHOWN, wall=10.0),
    ]
    assert judge(stepped_back) is None
    restarted = [note(20.5, {"eu": 5}, SHOWN), note(22.0, {"eu": 5}, SHOWN, incarnation=2)]
    assert judge(restarted) is None


def test_a_session_in_a_fresh_presence_that_is_not_shown_fails() -> None:
    held = {"uncounted": {"u1": [["eu", "s1"]]}}
    notes = [note(t, {"eu": 4.0 + t / 2}, {}, **held) for t in (10.0, 10.5, 11.0, 11.5)]
    assert judge(notes[:3]) is None  # within a tick of the first note
    message = judge(notes)
    assert message is not None and message.startswith("ap did not show alice online at 11.500 s")
    # one that turns stale within the window may be dropped
    ageing = [note(t, {"eu": -4.0}, {}, **held) for t in (10.0, 10.5, 11.0, 11.5)]
    assert judge(ageing) is None


def test_a_service_whose_presence_never_expires_is_caught_while_a_region_is_cut_off(
    monkeypatch: Any,
) -> None:
    """partition-heal cuts eu off for 15 s: us and ap must stop showing eu's players once
    eu's last heartbeat is 15 s old, and eu theirs, before the heal brings eu back (which the
    final states show). The production rule is planted wrong in this process only (four times
    the TTL); which side's stale player the checker meets first depends on the heartbeats'
    timing."""
    monkeypatch.setattr(production_presence, "PRESENCE_TTL_MS", 60_000)
    result = Simulation(load_scenario(SCENARIO_DIR / "partition-heal.toml"), 1).run()
    verdict = {v.checker: v for v in result.verdicts}["one-session"]
    assert not verdict.ok
    assert "still showed" in verdict.message and "stale since" in verdict.message
    assert "eu still showed" in verdict.message or "eu's presence" in verdict.message


def login_note(t: float, **more: Any) -> dict[str, Any]:
    """A login answered by ap at true time t, which counted session s1 (stamped "A") then."""
    fields = {"uid": "u1", "sid": "s2", "knew": "s1", "knew_started": "A", "incarnation": 1}
    return {"t": t, "node": "ap", "kind": "login", "client": "ap-player-1", **fields, **more}


def judge_login(notes: list[dict[str, Any]]) -> str | None:
    history = History("hand-made", 1, ["eu", "ap"], 30.0, 40.0, notes=notes)
    found = login_problem(history, LAG, {"u1": "alice"})
    return None if found is None else found.message


def test_a_node_that_counts_the_session_its_login_knew_fails() -> None:
    known = {"u1": ["s1", ["eu"], "A"]}
    assert judge_login([login_note(10.0), note(10.5, {"eu": 10}, known)]) is None  # too soon
    message = judge_login([login_note(10.0), note(11.5, {"eu": 11}, known)])
    assert message is not None
    assert message.startswith("ap counted session s1 of alice at 11.500 s, though a login")
    assert "session s2" in message


def test_the_login_s_own_a_newer_or_a_resumed_session_may_count() -> None:
    own = {"u1": ["s2", ["ap"], "B"]}
    resumed = {"u1": ["s1", ["eu"], "C"]}  # resumed since the login: stamped anew
    known = {"u1": ["s1", ["eu"], "A"]}
    for counted in (own, resumed):
        assert judge_login([login_note(10.0), note(11.5, {"eu": 11}, counted)]) is None
    restarted = note(11.5, {"eu": 11}, known, incarnation=2)
    assert judge_login([login_note(10.0), restarted]) is None
    late = note(10.0 + LOGIN_LIVES_S + 0.5, {"eu": 20}, known)  # the login may have lapsed
    assert judge_login([login_note(10.0), late]) is None


def test_a_login_stamped_by_a_clock_behind_is_caught(monkeypatch: Any) -> None:
    """clock-skew-games runs nodes' clocks apart and lets bots log in twice: a login stamped by
    its node's clock alone (not above the session it knew of) loses the double-login merge to
    that older session. Planted in this process only; the mutation suite finds it on seed 12."""
    monkeypatch.setattr(HybridLogicalClock, "now_after", lambda self, _other: self.now())
    result = Simulation(load_scenario(SCENARIO_DIR / "clock-skew-games.toml"), 12).run()
    verdict = {v.checker: v for v in result.verdicts}["one-session"]
    assert not verdict.ok
    assert "a login outranks every session its node knew of" in verdict.message
