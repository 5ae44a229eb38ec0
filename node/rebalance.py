"""Rebalancing policy: which players to move off a process that is above its threshold.

A pure function without I/O (`plan`): the cluster's load (``node.observer.ClusterLoad``), the
players each process holds, the round-trip times between regions, the previous round's state
and ``now`` in; the moves to make and the next state out. The caller (``node.rebalancer``, on
every node) carries out the moves whose source is its own process with the drain's handover
(target URL plus a fresh resume token) and calls `plan` again on a later load view.

The rules (issue 16, deliverable 2):

* **Score.** Each process's load is one number, `Policy.score` of its entry (pluggable; by
  default its player connections). A process's share is its score over the mean score of the
  live processes that may receive players.
* **Hysteresis.** A process starts shedding when its score is above ``start_above`` x the mean
  and at least ``min_excess`` above it, and keeps shedding until it is down to ``stop_below``
  x the mean (start_above > stop_below >= 1), so a process near the line does not flap between
  shedding and not. (``min_excess``, an absolute score, keeps a handful of players from being
  moved about: with 3, 2 and 2 players, 3 is 1.29 x the mean.)
* **Targets.** Players go to the process with the lowest score, and only while its score stays
  below the mean (so a process or region that joins receives players until the load is even).
  Within the player's own region first; to another region only if that region's RTT from the
  player's current region is at most ``max_extra_rtt_ms``, unless the source's whole region is
  overloaded: the mean score of its processes is above ``capacity``, an absolute score (say
  80 % CPU) the operator sets, none by default. (Relative to the cluster's mean, an empty far
  region would make every other region look overloaded.)
* **Safe point.** Only players at a safe point (`PlayerInfo.safe`: between moves, not waiting
  for their own move to be acknowledged) move; idle players (no game) first, then those in a
  game, each group longest-connected first.
* **Per-player limit.** A player moved less than ``min_interval_s`` ago does not move again.
* **Per-round limit.** At most ``max_moves_per_round`` moves per call, so the next view (a few
  seconds later) shows their effect before more are planned.

How many players each node's rebalancer moved, by target, is published in that node's presence
``meta`` beside its load entry, under ``rebalance.out.<target node>`` (`write_moved`,
`read_moved`): plain counts, which every release accepts in presence ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Map

from meridian.crdt_models.load import LoadEntry
from meridian.crdt_models.records import map_pairs

START_ABOVE = 1.25  # a process 25 % above the mean starts shedding...
STOP_BELOW = 1.05  # ...and stops once within 5 % of it
MIN_INTERVAL_S = 300.0  # one move per player per 5 minutes at most
MAX_MOVES_PER_ROUND = 20
CAPACITY = float("inf")  # a region whose processes average above this score is overloaded
MAX_EXTRA_RTT_MS = 50.0  # the most RTT between two regions that a move may add to a player
DEFAULT_INTERVAL_S = 5.0  # between two rounds of a node's rebalancer
MIN_EXCESS = 2.0  # a process starts shedding only this far above the mean (in score units)


def connections(entry: LoadEntry) -> float:
    return float(entry.connections)


def cpu_percent(entry: LoadEntry) -> float:
    return entry.cpu_percent


def moves_per_s(entry: LoadEntry) -> float:
    return entry.moves_per_s


# The scores a node's config may name (``rebalance.score``); code may pass any other.
SCORES: dict[str, Callable[[LoadEntry], float]] = {
    "connections": connections,
    "cpu_percent": cpu_percent,
    "moves_per_s": moves_per_s,
}


@dataclass(frozen=True)
class Policy:
    """The policy's settings; `score` is the pluggable measure of a process's load."""

    start_above: float = START_ABOVE
    stop_below: float = STOP_BELOW
    min_interval_s: float = MIN_INTERVAL_S
    max_moves_per_round: int = MAX_MOVES_PER_ROUND
    max_extra_rtt_ms: float = MAX_EXTRA_RTT_MS
    capacity: float = CAPACITY
    min_excess: float = MIN_EXCESS
    score: Callable[[LoadEntry], float] = connections

    def __post_init__(self) -> None:
        if not self.start_above > self.stop_below >= 1.0:
            raise ValueError("start_above > stop_below >= 1 is required for hysteresis")


@dataclass(frozen=True)
class RebalanceSettings:
    """The ``[rebalance]`` section of a node's config (docs/configuration.md); the adapter
    (``node.rebalancer``) runs `plan` with `policy` every `interval_s` when `enabled`."""

    enabled: bool = False
    interval_s: float = DEFAULT_INTERVAL_S
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class PlayerInfo:
    """A player session as the policy sees it."""

    uid: str
    node: str  # the process holding the session
    in_game: bool
    safe: bool  # at a safe point: between moves, nothing of theirs waiting for an ack
    connected_since: float  # seconds (the caller's monotonic clock)


@dataclass(frozen=True)
class Move:
    uid: str
    source: str  # node ids
    target: str


@dataclass(frozen=True)
class RebalanceState:
    """What one round hands to the next: who sheds, and when each player last moved."""

    shedding: frozenset[str] = frozenset()
    last_moved: Mapping[str, float] = field(default_factory=dict)


def plan(
    entries: Sequence[LoadEntry],
    players: Sequence[PlayerInfo],
    rtt_ms: Mapping[tuple[str, str], float],
    state: RebalanceState,
    now: float,
    policy: Policy = Policy(),
) -> tuple[list[Move], RebalanceState]:
    """The moves of one round and the state for the next (see module docstring)."""
    if len(entries) < 2:
        return [], RebalanceState(frozenset(), dict(state.last_moved))
    scores = {entry.node: policy.score(entry) for entry in entries}
    region_of = {entry.node: entry.region for entry in entries}
    mean = sum(scores.values()) / len(scores)
    shedding = _shedding(scores, mean, state.shedding, policy)
    last_moved = dict(state.last_moved)
    moves: list[Move] = []
    for source in sorted(shedding, key=lambda node: (-scores[node], node)):
        region_hot = _region_mean(region_of[source], scores, region_of) > policy.capacity
        held = sum(1 for p in players if p.node == source)
        weight = scores[source] / held if held else 0.0  # one player's share of the score
        for player in _candidates(players, source, last_moved, now, policy):
            if len(moves) >= policy.max_moves_per_round:
                break
            if scores[source] <= policy.stop_below * mean:
                break
            target = _target(source, weight, scores, region_of, rtt_ms, mean, region_hot, policy)
            if target is None:
                break
            moves.append(Move(player.uid, source, target))
            last_moved[player.uid] = now
            # expected effect, until the next view measures the real one
            scores[source] -= weight
            scores[target] += weight
    return moves, RebalanceState(frozenset(shedding), last_moved)


def _shedding(
    scores: Mapping[str, float], mean: float, before: frozenset[str], policy: Policy
) -> set[str]:
    """Processes above start_above x mean, and those already shedding still above stop_below."""
    if mean <= 0:
        return set()
    return {
        node
        for node, score in scores.items()
        if (score > policy.start_above * mean and score - mean >= policy.min_excess)
        or (node in before and score > policy.stop_below * mean)
    }


def _region_mean(region: str, scores: Mapping[str, float], region_of: Mapping[str, str]) -> float:
    members = [scores[node] for node, r in region_of.items() if r == region]
    return sum(members) / len(members) if members else 0.0


def _candidates(
    players: Sequence[PlayerInfo],
    source: str,
    last_moved: Mapping[str, float],
    now: float,
    policy: Policy,
) -> list[PlayerInfo]:
    """The source's players that may move now: safe, not moved recently; idle ones first."""
    eligible = [
        p
        for p in players
        if p.node == source
        and p.safe
        and now - last_moved.get(p.uid, float("-inf")) >= policy.min_interval_s
    ]
    return sorted(eligible, key=lambda p: (p.in_game, p.connected_since, p.uid))


def _target(
    source: str,
    weight: float,
    scores: Mapping[str, float],
    region_of: Mapping[str, str],
    rtt_ms: Mapping[tuple[str, str], float],
    mean: float,
    region_hot: bool,
    policy: Policy,
) -> str | None:
    """The least-loaded process below the mean that the player may go to (own region first)."""
    home = region_of[source]
    # Below the mean before the move (it may end one player above it): with whole players,
    # "at most the mean after" left the source above the stop line ([0, 0, 0, 0, 154]).
    below = [node for node, score in scores.items() if node != source and score < mean]
    same_region = [node for node in below if region_of[node] == home]
    if same_region:
        return min(same_region, key=lambda node: (scores[node], node))
    near = [
        node
        for node in below
        if region_hot
        or rtt_ms.get((home, region_of[node]), float("inf")) <= policy.max_extra_rtt_ms
    ]
    return min(near, key=lambda node: (scores[node], node)) if near else None


# --- the published counts of players moved ---------------------------------------------------

MOVED_PREFIX = "rebalance.out."
MAX_MOVED = 2**53 - 1  # presence meta holds numbers up to 2^53 (crdt_models.kinds)


def write_moved(meta: Map[Any], counts: Mapping[str, int]) -> None:
    """Store the players moved per target node in a presence ``meta`` map (inside one
    transaction); only counts that changed are written."""
    for target, count in counts.items():
        key = MOVED_PREFIX + target
        value = min(count, MAX_MOVED)
        if meta.get(key) != value:
            meta[key] = value


def read_moved(meta: Map[Any] | Mapping[str, Any]) -> dict[str, int]:
    """Target node -> players moved there, from a presence ``meta`` map (pycrdt gives numbers
    back as floats; anything but a number from 0 up is ignored)."""
    found: dict[str, int] = {}
    for key, value in map_pairs(meta) if isinstance(meta, Map) else meta.items():
        if not key.startswith(MOVED_PREFIX) or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and 0 <= value <= MAX_MOVED:
            found[key.removeprefix(MOVED_PREFIX)] = int(value)
    return found
