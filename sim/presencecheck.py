"""Presence expiry during the run, judged on the ``presence`` notes (``sim.presence_watch``).

The rule (docs/architecture.md, ``sim.reference``): a node's presence document counts for a
reader while its heartbeat is within ``PRESENCE_TTL_MS`` (15 s) of the reader's wall clock, and a
reader's own always counts; an account with a session in a counted document is online (the
public list shows the session started last). A service applies the rule when it rebuilds its
picture of who is online: at once after a presence change, and otherwise at its next tick
(every :data:`SERVICE_TICK_S` of its own clock), at most every :data:`PICTURE_INTERVAL_S`
(docs/protocol.md, ``lobby_update``). So a change of what the rule says shows in the picture
within ``lag_s = (SERVICE_TICK_S + PICTURE_INTERVAL_S) / the slowest clock rate`` of true time.

Per node and process, at each observation k, with j the last observation at least ``lag_s``
before it (the node's wall clock not stepped back in between):

* **shown past expiry**: an account whose counted session, the same from j to k, is held only in
  other nodes' presence documents that were stale at j and still have the same heartbeat at k
  (so stale all along), or in none;
* **dropped while fresh**: an account not counted at k although node P's presence document held
  one of its sessions at every observation from j to k, P's own at that, or with a heartbeat
  that was at j already recent enough to keep it fresh up to k.

Either fails ``one-session``; the settling (timers stopped) is not observed.

And a login outranks what its node knew (docs/architecture.md, *double_login*): a node stamps a
new session above the account's newest session it knows of, so the double-login merge keeps
the newer login however far the clocks of the two nodes are apart. Each ``login`` note
(``sim.players``) names the session the node counted for the account when it answered (``knew``,
with its stamp ``knew_started``). From ``lag_s`` after the login until :data:`LOGIN_LIVES_S`
after it, in the same process, that node must never count the known session again with the
same stamp (``login_problem``): only the login's own, a newer session, or the known one resumed
since (a resume stamps it anew) may count. Stamps are compared only for equality, never ordered,
so a node whose clock runs behind cannot make the checker agree with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from meridian.sim.history import History
from meridian.sim.presence_watch import observations
from meridian.sim.reference import PRESENCE_TTL_MS

SERVICE_TICK_S = 1.0  # the game service's tick (docs/simulator.md: every second of its clock)
PICTURE_INTERVAL_S = 0.2  # the public list is rebuilt at most this often (docs/protocol.md)
# Within this long after a login nothing but a newer session ends its session: a login never
# used on a websocket, or one whose connection dropped, lives 60 s (the resume grace).
LOGIN_LIVES_S = 10.0

Observation = dict[str, Any]


def picture_lag_s(slowest_clock_rate: float) -> float:
    """True seconds within which a service's picture follows the presence rule."""
    return (SERVICE_TICK_S + PICTURE_INTERVAL_S) / slowest_clock_rate


@dataclass(frozen=True)
class ExpiryProblem:
    message: str
    lines: tuple[str, ...]
    t: float


def expiry_problem(history: History, lag_s: float, names: dict[str, str]) -> ExpiryProblem | None:
    """The first (earliest) observation at which a service broke the expiry rule, if any."""
    found: list[ExpiryProblem] = []
    for node, seen in sorted(observations(history).items()):
        problem = _first_on(node, seen, lag_s, names)
        if problem is not None:
            found.append(problem)
    return min(found, key=lambda p: p.t, default=None)


def _first_on(
    node: str, seen: Sequence[Observation], lag_s: float, names: dict[str, str]
) -> ExpiryProblem | None:
    start = 0  # the window [j, k] of observations, within one process
    for k, now in enumerate(seen):
        if k and seen[k - 1]["incarnation"] != now["incarnation"]:
            start = k
        j = _window_start(seen, start, k, lag_s)
        if j is None:
            continue
        window = seen[j : k + 1]
        problem = _shown_past_expiry(node, window, names) or _dropped_fresh(node, window, names)
        if problem is not None:
            return problem
    return None


def _window_start(seen: Sequence[Observation], start: int, k: int, lag_s: float) -> int | None:
    """The last observation of this process at least lag_s before k (None: none, or the wall
    clock went back in between: expiry is judged by it)."""
    j = None
    for i in range(k, start - 1, -1):
        if seen[i]["t"] <= seen[k]["t"] - lag_s:
            j = i
            break
    if j is None:
        return None
    walls = [o["wall_ms"] for o in seen[j : k + 1]]
    return j if all(a <= b for a, b in pairwise(walls)) else None


def _stale(wall_ms: int, beat: int) -> bool:
    return wall_ms - beat > PRESENCE_TTL_MS


def _shown_past_expiry(
    node: str, window: Sequence[Observation], names: dict[str, str]
) -> ExpiryProblem | None:
    first, now = window[0], window[-1]
    for uid, (sid, holders, *_started) in sorted(now["counted"].items()):
        if node in holders or any(o["counted"].get(uid) != now["counted"][uid] for o in window):
            continue
        if not all(
            p in first["beats"]
            and now["beats"].get(p) == first["beats"][p]
            and _stale(first["wall_ms"], first["beats"][p])
            for p in holders
        ):
            continue
        where = " and ".join(
            f"{p}'s presence (heartbeat {(now['wall_ms'] - now['beats'][p]) / 1000:.1f} s old)"
            for p in holders
        )
        held = f"held only in {where}" if holders else "in no presence document"
        message = (
            f"{node} still showed {names.get(uid, uid)} online at {now['t']:.3f} s: its session "
            f"{sid} is {held}, stale since {first['t']:.3f} s at the latest (expiry: "
            f"{PRESENCE_TTL_MS / 1000:g} s after the heartbeat by {node}'s wall clock)"
        )
        return ExpiryProblem(message, _lines(node, window, uid), now["t"])
    return None


def _dropped_fresh(
    node: str, window: Sequence[Observation], names: dict[str, str]
) -> ExpiryProblem | None:
    first, now = window[0], window[-1]
    for uid, entries in sorted(now["uncounted"].items()):
        for p, sid in entries:
            if p != node and not (
                p in first["beats"] and not _stale(now["wall_ms"], first["beats"][p])
            ):
                continue
            if not all(_holds(o, uid, p, sid) for o in window):
                continue
            age = (now["wall_ms"] - now["beats"][p]) / 1000
            whose = f"{node}'s own presence" if p == node else f"the presence of {p}"
            message = (
                f"{node} did not show {names.get(uid, uid)} online at {now['t']:.3f} s although "
                f"{whose} held its session {sid} since {first['t']:.3f} s at the latest, "
                f"with a fresh heartbeat ({age:.1f} s old by {node}'s wall clock; expiry: "
                f"{PRESENCE_TTL_MS / 1000:g} s)"
            )
            return ExpiryProblem(message, _lines(node, window, uid), now["t"])
    return None


def _holds(seen: Observation, uid: str, p: str, sid: str) -> bool:
    """Whether p's presence document held session sid of uid at this observation."""
    counted = seen["counted"].get(uid)
    if counted is not None:
        return bool(counted[0] == sid and p in counted[1])
    return [p, sid] in seen["uncounted"].get(uid, [])


def _lines(node: str, window: Sequence[Observation], uid: str) -> tuple[str, ...]:
    lines = []
    for o in (window[0], window[-1]):
        ages = ", ".join(
            f"{p} {(o['wall_ms'] - beat) / 1000:.1f} s" for p, beat in sorted(o["beats"].items())
        )
        shown = o["counted"].get(uid)
        lines.append(
            f"    {o['t']:.3f} s presence on {node}: heartbeat ages {ages}; counts "
            f"{shown[0] + ' from ' + ','.join(shown[1]) if shown else 'nothing'} for this account"
        )
    return tuple(lines)


@dataclass(frozen=True)
class LoginProblem:
    message: str
    lines: tuple[str, ...]
    uid: str


def login_problem(history: History, lag_s: float, names: dict[str, str]) -> LoginProblem | None:
    """The first login whose node went on counting the session it knew of (module docstring)."""
    seen = observations(history)
    for login in history.notes_of("login"):
        knew, uid, node = login.get("knew"), login["uid"], login["node"]
        if not knew:
            continue
        for now in seen.get(node, []):
            after = now["t"] - login["t"]
            if now["incarnation"] != login["incarnation"] or not lag_s <= after <= LOGIN_LIVES_S:
                continue
            if now["counted"].get(uid, [])[::2] == [knew, login["knew_started"]]:
                message = (
                    f"{node} counted session {knew} of {names.get(uid, uid)} at {now['t']:.3f} s, "
                    f"though a login it answered at {login['t']:.3f} s ({login['client']}, "
                    f"session {login['sid']}) knew of it: a login outranks every session its "
                    "node knew of"
                )
                return LoginProblem(message, _lines(node, [now, now], uid)[:1], uid)
    return None
