"""Checkers: pure functions of (history, final states) that say whether an invariant held.

Each returns a :class:`Verdict` whose message names the first violation, with the lines of the
history that show it, and whose ``figures`` carry measurements for the report.

* ``converged``: after the heal and the quiet period, every document is identical on every node
  that is up: the same state vector, delete set and content of every root map, each decoded from
  the document's bytes (``sim.refdocs``), not the engine's digest.
* ``acknowledged-writes``: no write the client was told is safe was lost. "Present" is defined
  with causality (``WriteRecord.knew``: the other write had reached this one's writer): an
  acknowledged put's Yjs item is integrated on every node; and the key's final value is the
  acknowledged write's own, or comes from a write it did **not** know (a later write that
  replaced it, or a concurrent one that won the merge). After an acknowledged put the key may be
  absent only if a later write knew that put (a delete, or a put deleted in turn), or a
  concurrent put raced it (the merge kept the other, which was then deleted). A delete adds no
  Yjs item; it is judged by what its writer knew, which is exactly what it could delete.
* ``replication-lag``: per link (origin -> receiving node), how long puts took to be integrated
  there, p50/p90/p99/max; fails only if ``max_p99_s`` is set and exceeded.
* ``convergence-time``: seconds from the heal until every document was identical everywhere;
  fails if that never happened, or took longer than ``max_s`` when set.

To add one: a function ``build(params) -> checker``, registered in :data:`CHECKERS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meridian.sim import clockcheck, gamecheck, metacheck, refcheck, shown
from meridian.sim.bounds import (
    CaseFigures,
    NetworkModel,
    convergence_bound,
    describe_cases,
    judge_all,
    retransmission_s,
)
from meridian.sim.faults import Fault
from meridian.sim.history import DocState, FinalStates, History, WriteRecord, write_thing
from meridian.sim.network import PathProfile
from meridian.sim.params import Table
from meridian.sim.presencecheck import picture_lag_s
from meridian.sim.refdocs import Replica, replica
from meridian.sim.reference import PRESENCE_PREFIX
from meridian.sim.verdict import Checker, Verdict
from meridian.sync.settings import SyncSettings

NOTABLE = ("fault", "fault-end", "crash", "stop", "restart", "heal")
EXCERPT_LINES = 8
EMPTY_STATE = DocState(b"", {}, {}, b"")


def percentile(values: list[float], fraction: float) -> float | None:
    """The value below which ``fraction`` of ``values`` lie (nearest rank), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _replica(state: DocState) -> Replica:
    return replica(state.update) if state.update else Replica({}, {}, {})


__all__ = ["CHECKERS", "Checker", "Verdict"]


# --- converged -------------------------------------------------------------------------------


def check_converged(history: History, final: FinalStates) -> Verdict:
    nodes = [node for node in history.nodes if node in final]
    down = [node for node in history.nodes if node not in final]
    # Presence documents last: the game layer rewrites them all the time, so their difference
    # is the least telling symptom when something else differs too.
    doc_ids = sorted(
        {doc_id for states in final.values() for doc_id in states},
        key=lambda doc_id: (doc_id.startswith(PRESENCE_PREFIX), doc_id),
    )
    for doc_id in doc_ids:
        reference = final[nodes[0]].get(doc_id, EMPTY_STATE)
        for node in nodes[1:]:
            state = final[node].get(doc_id, EMPTY_STATE)
            if _replica(state) != _replica(reference):
                message, excerpt = _difference(
                    history, doc_id, (nodes[0], reference), (node, state)
                )
                return Verdict("converged", False, message, excerpt)
    where = f"{len(nodes)} nodes" + (f" (down: {', '.join(down)})" if down else "")
    return Verdict("converged", True, f"{len(doc_ids)} documents identical on {where}")


def _difference(
    history: History, doc_id: str, left: tuple[str, DocState], right: tuple[str, DocState]
) -> tuple[str, tuple[str, ...]]:
    (a, sa), (b, sb) = left, right
    ra, rb = _replica(sa), _replica(sb)
    keys = sorted(set(sa.values) | set(sb.values))
    differing = [key for key in keys if sa.values.get(key) != sb.values.get(key)]
    digests = f"{len(ra.state_vector)} vs {len(rb.state_vector)} clients"
    if not differing:
        what = _record_difference(ra, rb, a, b)
        if what is None:
            what = _history_difference(ra, rb)
        return f"{doc_id} differs after heal between {a} and {b}: {what}", ()
    key = differing[0]
    message = (
        f"{doc_id} differs after heal: {a} {_shows(sa, key)}, {b} {_shows(sb, key)} "
        f"({len(differing)} keys differ, {digests})"
    )
    writes = [w for w in history.writes if w.doc == doc_id and w.key == key][-4:]
    lines = [
        f"{w.describe()}; on {a}: {_presence(w, sa)}, on {b}: {_presence(w, sb)}" for w in writes
    ]
    return message, tuple(lines + _notable(history, set(history.nodes)))


def _history_difference(ra: Replica, rb: Replica) -> str:
    clients = sorted(set(ra.state_vector) | set(rb.state_vector))
    lacking = [c for c in clients if ra.state_vector.get(c) != rb.state_vector.get(c)]
    if lacking:
        return f"same values but different histories (clients {lacking[:3]} differ)"
    deleted = sorted(set(ra.delete_set) | set(rb.delete_set))
    differ = [c for c in deleted if ra.delete_set.get(c) != rb.delete_set.get(c)]
    return f"same values and state vectors but different delete sets (clients {differ[:3]})"


def _record_difference(ra: Replica, rb: Replica, a: str, b: str) -> str | None:
    """The first record (root map and key) of a document that differs, if any."""
    for root in sorted(set(ra.maps) | set(rb.maps)):
        mine, theirs = ra.maps.get(root, {}), rb.maps.get(root, {})
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                shown = [_short(side.get(key)) for side in (mine, theirs)]
                return f"{root}[{key!r}] is {shown[0]} on {a}, {shown[1]} on {b}"
    return None


def _short(value: Any) -> str:
    text = "absent" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _shows(state: DocState, key: str) -> str:
    return f"has {key}={state.values[key]!r}" if key in state.values else f"lacks {key}"


def _presence(write: WriteRecord, state: DocState) -> str:
    if write.item is None:
        return "(a delete)"
    return "integrated" if state.holds(write.item) else "MISSING"


# --- acknowledged writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class LostWrite:
    write: WriteRecord
    node: str
    reason: str
    related: WriteRecord | None = None


def lost_acknowledged_writes(history: History, final: FinalStates) -> list[LostWrite]:
    """Acknowledged writes whose effect is missing from some node's final state (see module)."""
    same_key: dict[tuple[str, str], list[WriteRecord]] = {}
    by_value: dict[tuple[str, str, str], WriteRecord] = {}
    for write in history.writes:
        same_key.setdefault((write.doc, write.key), []).append(write)
        if write.value is not None:
            by_value[write.doc, write.key, write.value] = write
    lost = []
    for write in history.writes:
        if not write.acknowledged:
            continue
        for node in (n for n in history.nodes if n in final):
            state = final[node].get(write.doc, EMPTY_STATE)
            found = _missing(write, state, same_key[write.doc, write.key], by_value)
            if found is not None:
                reason, related = found
                lost.append(LostWrite(write, node, reason, related))
                break
    return lost


def _missing(
    write: WriteRecord,
    state: DocState,
    same_key: list[WriteRecord],
    by_value: dict[tuple[str, str, str], WriteRecord],
) -> tuple[str, WriteRecord | None] | None:
    if write.item is not None and not state.holds(write.item):
        return f"its Yjs item {write.item} is not in the state", None
    if write.key in state.values:
        value = state.values[write.key]
        if write.op == "put" and value == write.value:
            return None
        winner = by_value.get((write.doc, write.key, str(value)))
        if winner is None:
            return f"{write.key} holds {value!r}, which no recorded write put", None
        if write.knew(winner):
            return f"{write.key} went back to {value!r}, which this write had replaced", winner
        return None
    if write.op == "delete" or any(_explains_absence(write, other) for other in same_key):
        return None
    return f"{write.key} is absent, yet no write knew this put or raced it", None


def _explains_absence(put: WriteRecord, other: WriteRecord) -> bool:
    if other is put:
        return False
    concurrent = other.op == "put" and not put.knew(other) and not other.knew(put)
    return other.knew(put) or concurrent


def check_acknowledged_writes(history: History, final: FinalStates) -> Verdict:
    acknowledged = sum(1 for w in history.writes if w.acknowledged)
    found = lost_acknowledged_writes(history, final)
    window = [lost for lost in found if _in_window(history, lost.write)]
    lost = [lost for lost in found if lost not in window]
    figures: dict[str, Any] = {"acknowledged": acknowledged, "lost": len(lost)}
    figures["lost_in_window"] = len(window)
    if window:
        exposed = max(_disk_lost_after(history, w.write) - (w.write.acked_at or 0) for w in window)
        figures["window_s"] = round(exposed, 6)
    if not lost:
        message = f"all {acknowledged} acknowledged writes present on every node"
        if window:
            message = (
                f"{len(window)} of {acknowledged} acknowledged writes lost with their writer's "
                f"disk before any other region held them (the ack_regions = 0 window, up to "
                f"{figures['window_s']:.3f} s after the acknowledgement); the others present"
            )
        return Verdict("acknowledged-writes", True, message, figures=figures)
    first = lost[0]
    message = (
        f"{len(lost)} of {acknowledged} acknowledged writes lost; first: "
        f"{first.write.describe()}: on {first.node}, {first.reason}"
    )
    lines = [first.write.describe()]
    if first.related is not None:
        lines.append(f"replaced by it: {first.related.describe()}")
    lines += _notable(history, {first.write.node, first.node}, since=first.write.t)
    return Verdict("acknowledged-writes", False, message, tuple(lines), figures)


def _disk_lost_after(history: History, write: WriteRecord) -> float:
    """When the write's node next lost its disk (inf: never)."""
    losses = [
        e.t
        for e in history.timeline
        if e.kind == "crash" and e.node == write.node and "disk lost" in e.detail and e.t >= write.t
    ]
    return min(losses, default=math.inf)


def _in_window(history: History, write: WriteRecord) -> bool:
    """With ack_regions = 0 an acknowledgement means durable on the writer only: a put lost with
    the writer's disk before any other region had made it durable is the documented window."""
    if history.ack_regions or write.item is None:
        return False
    lost_at = _disk_lost_after(history, write)
    others = history.held.get(write_thing(write.write_id), {})
    return lost_at < math.inf and not any(
        t <= lost_at for node, times in others.items() if node != write.node for t in times
    )


# --- replication lag ---------------------------------------------------------------------------


def lag_by_link(history: History) -> dict[str, dict[str, float | int]]:
    """Per link, the count and p50/p90/p99/max of put replication lag (seconds)."""
    samples: dict[str, list[float]] = {}
    for sample in history.lag:
        samples.setdefault(sample.link, []).append(sample.lag)
    return {link: _summary(samples[link]) for link in sorted(samples)}


def _summary(values: list[float]) -> dict[str, float | int]:
    figures: dict[str, float | int] = {"count": len(values)}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        figures[name] = round(percentile(values, fraction) or 0.0, 6)
    return figures


def overall_lag(history: History) -> dict[str, float | int]:
    return _summary([sample.lag for sample in history.lag])


@dataclass(frozen=True)
class CheckContext:
    """What a checker may know of its scenario besides the history: the network and settings
    its bounds are derived from (sim.bounds)."""

    nodes: tuple[str, ...]
    paths: dict[tuple[str, str], PathProfile]
    sync: SyncSettings
    connect_timeout_s: float
    frame_s: float
    faults: tuple[Fault, ...]
    heal_s: float
    slowest_clock_rate: float = 1.0  # of any node's clock, at any time (sim.presencecheck)

    def model(self) -> NetworkModel:
        any_path = next(iter(self.paths.values()))
        faults = tuple((f.kind, f.involves(), f.at_s, f.ends_at(self.heal_s)) for f in self.faults)
        cut_ends = tuple(
            end for f in self.faults if f.cuts and (end := f.ends_at(self.heal_s)) is not None
        )
        if any(profile.resets_per_hour for profile in self.paths.values()):
            cut_ends += (self.heal_s,)  # a connection may be reset at any moment, the heal too
        return NetworkModel(
            latency_s={pair: profile.latency_s for pair, profile in self.paths.items()},
            jitter_s=any_path.jitter_s,
            loss=any_path.loss,
            bandwidth_bytes_s=any_path.bandwidth_bytes_s,
            coalesce_s=self.sync.coalesce_ms / 1000,
            frame_s=self.frame_s,
            connect_timeout_s=self.connect_timeout_s,
            reconnect_max_s=self.sync.reconnect_max_s,
            nodes=self.nodes,
            faults=faults,
            cut_ends=cut_ends,
        )


def replication_lag(model: NetworkModel | None, max_p99_s: float | None) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        links = lag_by_link(history)
        figures: dict[str, Any] = {"links": links, "all": overall_lag(history)}
        if not links:
            return Verdict("replication-lag", True, "no puts were replicated", figures=figures)
        worst = max(links, key=lambda link: links[link]["p99"])
        p99 = links[worst]["p99"]
        summary = f"worst p99 {p99:.3f} s on {worst}"
        if model is not None:
            cases = judge_all(model, history)
            figures["cases"] = {
                case: {"count": c.count, "over": c.over, "allowed": c.allowed}
                for case, c in cases.items()
            }
            summary += f"; over the bound: {describe_cases(cases)}"
            broken = next((c for c in cases.values() if c.over > c.allowed), None)
            if broken is not None and broken.worst is not None:
                return _lag_failure(history, broken, figures)
        if max_p99_s is None or p99 <= max_p99_s:
            return Verdict("replication-lag", True, summary, figures=figures)
        slowest = max((s for s in history.lag if s.link == worst), key=lambda s: s.lag)
        excerpt = (
            f"slowest: put made at {slowest.t:.3f} s reached after {slowest.lag:.3f} s",
            *_notable(history, set(worst.split("->")), since=slowest.t),
        )
        message = f"{summary}, over the limit of {max_p99_s:g} s"
        return Verdict("replication-lag", False, message, excerpt, figures)

    return check


def _lag_failure(history: History, case: CaseFigures, figures: dict[str, Any]) -> Verdict:
    assert case.worst is not None
    sample, bound = case.worst.sample, case.worst.bound or 0.0
    message = (
        f"{case.over} of {case.count} {case.case} puts arrived later than their bound "
        f"(allowed: {case.allowed}); worst: a put on {sample.origin} at {sample.t:.3f} s reached "
        f"{sample.target} after {sample.lag:.3f} s, bound {bound:.3f} s ({CASE_RULES[case.case]})"
    )
    involved = {sample.origin, sample.target, None}
    excerpt = tuple(
        e.describe()
        for e in history.timeline
        if sample.t - 6 <= e.t <= sample.t + sample.lag
        and e.node in involved
        and e.kind in ("fault", "fault-end", "link-closed", "link-up", "crash", "restart")
    )[:EXCERPT_LINES]
    return Verdict("replication-lag", False, message, excerpt, figures)


CASE_RULES = {
    "direct": "one-way latency + margin",
    "relayed": "through the third region: two latencies + margins; is relay working?",
    "repaired": "link closed after the put: close + L(o,c) + 3 L(c,t); are the lost-link digests "
    "sent?",
}


def build_replication_lag(params: Table, context: CheckContext) -> Checker:
    derived = params.boolean("derived", True)
    return replication_lag(
        context.model() if derived else None, params.optional_number("max_p99_s", 0)
    )


# --- convergence time --------------------------------------------------------------------------


def convergence_time(max_s: float, *, lossy: bool = False) -> Checker:
    """``lossy``: the bound is derived for a network without loss; batches that waited for a
    TCP retransmission around the end move it by their wait (sim.bounds.retransmission_s)."""

    def check(history: History, final: FinalStates) -> Verdict:
        if history.converged_at is None:
            message = f"never converged in the {history.end_at - history.heal_at:g} s after heal"
            excerpt = tuple(_notable(history, set(history.nodes)))
            return Verdict("convergence-time", False, message, excerpt, {"seconds": None})
        seconds = round(history.converged_at - history.heal_at, 6)
        waited = retransmission_s(history.retransmissions, history.heal_at, max_s) if lossy else 0.0
        bound = max_s + waited
        figures = {"seconds": seconds, "bound": round(bound, 3), "retransmission": waited}
        message = f"converged {seconds:.3f} s after heal (bound {bound:.3f} s"
        if waited:
            message += f", of which {waited:.3f} s for a batch that lost a TCP segment"
        message += ")"
        if seconds > bound:
            message += ": over the bound; did every link re-sync when it came back?"
            excerpt = tuple(_notable(history, set(history.nodes), since=history.heal_at - 10))
            return Verdict("convergence-time", False, message, excerpt, figures)
        return Verdict("convergence-time", True, message, figures=figures)

    return check


def build_convergence_time(params: Table, context: CheckContext) -> Checker:
    """``max_s`` states the bound outright; otherwise it is derived (sim.bounds), plus
    ``extra_s`` for what the model does not see (the scenario says why)."""
    stated = params.optional_number("max_s", 0)
    if stated is not None:
        return convergence_time(stated)
    extra = params.number("extra_s", 0.0, 0, inclusive=True)
    model = context.model()
    bound = convergence_bound(model, context.heal_s, extra)
    return convergence_time(bound, lossy=model.loss > 0)


# --- helpers and the registry -----------------------------------------------------------------


def _notable(history: History, nodes: Iterable[str], since: float = 0.0) -> list[str]:
    """Faults, crashes, restarts and the heal concerning these nodes, from ``since`` on."""
    wanted = set(nodes)
    events = [
        event.describe()
        for event in history.timeline
        if event.kind in NOTABLE
        and event.t >= since
        and (event.node is None or event.node in wanted)
    ]
    return events[: EXCERPT_LINES - 2]


MERGE_KINDS = ("name", "double_login", "same_ply", "two_games")


def _minimum_merges(params: Table) -> dict[str, int]:
    """``min = { name = 4 }``: at least that many distinct merges of each kind listed."""
    table = params.table("min", required=False)
    table.only(MERGE_KINDS)
    return {kind: table.integer(kind, 0, 0) for kind in table.values}


def _least(params: Table) -> dict[str, int]:
    """``least = { ap = 4 }``: players a node must hold at the end (``rebalanced``)."""
    table = params.table("least", required=False)
    return {node: table.integer(node, 0, 0) for node in table.values}


@dataclass(frozen=True)
class CheckerSpec:
    build: Callable[[Table, CheckContext], Checker]
    keys: tuple[str, ...]  # the TOML keys it reads (others are errors)
    summary: str


CHECKERS: dict[str, CheckerSpec] = {
    "converged": CheckerSpec(
        lambda params, context: check_converged,
        (),
        "every document identical on every node after heal",
    ),
    "acknowledged-writes": CheckerSpec(
        lambda params, context: check_acknowledged_writes, (), "no acknowledged write lost"
    ),
    "replication-lag": CheckerSpec(
        build_replication_lag,
        ("max_p99_s", "derived"),
        "put replication lag per link, each put within its bound derived from the latencies",
    ),
    "convergence-time": CheckerSpec(
        build_convergence_time,
        ("max_s", "extra_s"),
        "time from heal until all documents are identical, within the derived bound",
    ),
    "unique-names": CheckerSpec(
        lambda params, context: gamecheck.check_unique_names,
        (),
        "one owner per name after a merge, every connected loser told must_rename",
    ),
    "one-session": CheckerSpec(
        lambda params, context: gamecheck.one_session(
            params.number("clock_tolerance_s", 0.05, 0, inclusive=True),
            picture_lag_s(context.slowest_clock_rate),
        ),
        ("clock_tolerance_s",),
        "at most one live session per account, the newest; every service counts the reference's",
    ),
    "accounts": CheckerSpec(
        lambda params, context: gamecheck.check_accounts,
        (),
        "every service resolves every account as the home-region authority rule does",
    ),
    "ack-rule": CheckerSpec(
        lambda params, context: refcheck.ack_rule(params.boolean("pending_fails", True)),
        ("pending_fails",),
        "an acknowledged write or move was durable on its writer and ack_regions other regions",
    ),
    "dedup": CheckerSpec(
        lambda params, context: refcheck.check_dedup,
        (),
        "no node makes a change (persisted, sent on) out of content it already held",
    ),
    "restart-durability": CheckerSpec(
        lambda params, context: refcheck.check_restart_durability,
        (),
        "a restart that kept its disk reloads every change that disk had made durable",
    ),
    "hlc": CheckerSpec(
        lambda params, context: refcheck.check_hlc, (), "every HLC stamp drawn follows the HLC rule"
    ),
    "merges": CheckerSpec(
        lambda params, context: refcheck.merges_checker(_minimum_merges(params)),
        ("min",),
        "every reported merge is real, none missing, at least the stated minimum of each kind",
    ),
    "one-game": CheckerSpec(
        lambda params, context: gamecheck.one_game(params.boolean("stale_saved_fails", True)),
        ("stale_saved_fails",),
        "at most one live game per player; every parked or saved game in the saved games",
    ),
    "legal-chains": CheckerSpec(
        lambda params, context: gamecheck.check_legal_chains,
        (),
        "every game's canonical chain replays legally, the same everywhere, as players saw it",
    ),
    "game-log": CheckerSpec(
        lambda params, context: gamecheck.check_game_log,
        (),
        "every logged finished game is its canonical chain, finished",
    ),
    "acknowledged-moves": CheckerSpec(
        lambda params, context: gamecheck.check_acknowledged_moves,
        (),
        "every acknowledged move in the final game documents (fails with ack_regions >= 1)",
    ),
    "forged-refused": CheckerSpec(
        lambda params, context: gamecheck.check_forged_refused,
        (),
        "no move record an insider forged reached an honest node (its peers refuse it)",
    ),
    clockcheck.NAME: CheckerSpec(
        lambda params, context: clockcheck.time_controls(
            params.integer("min_games", 1, 0), params.integer("min_time_outs", 0, 0)
        ),
        ("min_games", "min_time_outs"),
        "every time-out past its player's deadline by the move stamps; one result on every node",
    ),
    "rebalanced": CheckerSpec(
        lambda params, context: metacheck.rebalanced(
            context.nodes,
            params.number("start_above", 1.25, 1, inclusive=False),
            params.number("slack", 1, 0, inclusive=True),
            params.integer("min_moved", 1, 0),
            _least(params),
        ),
        ("start_above", "slack", "min_moved", "least"),
        "players connected at the end within the rebalancing line; a joined node took players",
    ),
    "safe-moves": CheckerSpec(
        lambda params, context: metacheck.safe_moves(params.integer("max_per_player", 1, 1)),
        ("max_per_player",),
        "players moved only between their moves, each at most max_per_player times",
    ),
    "games-continue": CheckerSpec(
        lambda params, context: metacheck.games_continue(
            params.number("grace_s", 5, 0, inclusive=True),
            params.number("idle_s", 5, 0, inclusive=False),
        ),
        ("grace_s", "idle_s"),
        "every live game of a moved player went on after the move",
    ),
    "game-copies": CheckerSpec(
        lambda params, context: metacheck.game_copies(params.integer("k", 1, 0)),
        ("k",),
        "every game held, with its acknowledged moves, by at least k + 1 live nodes at the end",
    ),
    shown.NAME: CheckerSpec(
        lambda params, context: shown.check_shown_plies,
        (),
        "every ply shown to a player is in the final chain, or the player was told of a rollback",
    ),
}
