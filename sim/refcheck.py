"""Checkers of the rules only the run's own books can show: the ack rule, dedup, the HLC, merges.

Like every checker these are pure functions of (history, final states), and like those in
``sim.gamecheck`` they compare production's behaviour with the reference rules
(``sim.reference``) instead of asking production what is correct.

* ``ack-rule``: ``ack_regions = k`` means that when a client was told a write or a move is
  done, its writer and k other regions had made it durable. "Durable" comes from the simulator's
  ledger (``sim.ledger``: when the simulated disk of each node committed the change that brought
  it), not from the engine's acks. A region that loses its disk after that does not undo the
  acknowledgement (its copy was one of the k + 1 the rule is for).
  A write's acknowledgement time is exact; a move's is the moment its player received the ``ok``
  reply less ``LOCAL_S`` (the reply left the node at least that long before), which can only
  count a holder that arrived up to one trip late, never miss one.
* ``dedup``: no node turned an update that carried nothing new into a change (``empty-change``
  notes from the ledger): "nothing new, nothing sent".
* ``hlc``: every stamp a node's game service drew is exactly what the HLC rule gives for the
  previous stamp and the node's physical wall clock at that instant (``reference.next_stamp``).
* ``merges``: every merge a service reported is one the reference rules see in the final
  documents or the claims journal (a name lost by that account: its claim was not the earliest
  ever filed for the name, a game with a record off its chain at that ply, a parked
  game with an earlier rival); when no node restarted, every contested name's loser and every
  parked game was reported; and the scenario's stated minimum of each kind happened (``min``).
"""

from __future__ import annotations

import re
from typing import Any

from meridian.sim.bounds import dependencies_ready
from meridian.sim.gamecheck import games_on, has_earlier_rival, held_records
from meridian.sim.history import FinalStates, History, move_thing, write_thing
from meridian.sim.players import LOCAL_S
from meridian.sim.refdocs import parse_stamp
from meridian.sim.reference import ACCOUNTS_DOC, Game, claims, claims_of, next_stamp, owners
from meridian.sim.verdict import Checker, Verdict

SHOWN = 6
EPSILON_S = 1e-6  # times are sums of float delays: "at the same instant" may differ in the last bit
NAME_MERGE = re.compile(r"name '(?P<name>[^']*)': account (?P<uid>\S+) must rename")
ROLLBACK = re.compile(r"game (?P<gid>\S+) went back to ply (?P<ply>\d+)")
PARKED = re.compile(r"game (?P<gid>\S+) parked")


# --- the ack rule --------------------------------------------------------------------------


class Holdings:
    """When each node had made each thing durable (``History.held``). A node that loses its disk
    after that does not undo an acknowledgement it allowed: that is the single failure the other
    copies are for."""

    def __init__(self, history: History) -> None:
        self.held = history.held

    def at(self, thing: str, node: str, t: float) -> bool:
        return any(d <= t + EPSILON_S for d in self.held.get(thing, {}).get(node, []))

    def holders(self, thing: str, nodes: list[str], t: float) -> list[str]:
        return [node for node in nodes if self.at(thing, node, t)]


def ack_rule(pending_fails: bool) -> Checker:
    """``pending_fails``: whether an acknowledgement that counted a region holding the write only
    as a pending Yjs struct (see docs/simulator.md, Findings) fails the check or is counted."""

    def check(history: History, final: FinalStates) -> Verdict:
        return _check_ack_rule(history, final, pending_fails)

    return check


def check_ack_rule(history: History, final: FinalStates) -> Verdict:
    return _check_ack_rule(history, final, True)


def _check_ack_rule(history: History, final: FinalStates, pending_fails: bool) -> Verdict:
    if not history.held:
        return Verdict("ack-rule", True, "no durability ledger in this run (nothing to check)")
    holdings, k = Holdings(history), history.ack_regions
    checked, pending = 0, 0
    waiting_for: dict[tuple[int, str], float] | None = None
    for write in history.writes:
        if not write.acknowledged or write.item is None or write.acked_at is None:
            continue
        checked += 1
        problem = _ack_broken(
            holdings, history.nodes, write_thing(write.write_id), write.node, write.acked_at, k
        )
        if problem is not None:
            waiting_for = waiting_for or _held_pending(history)
            if not pending_fails and _was_pending(history, write, waiting_for):
                pending += 1
                continue
            message = f"{write.describe()}: {problem}"
            if _was_pending(history, write, waiting_for):
                message += " (the regions that lacked it were waiting for a causal predecessor)"
            return _ack_failure(history, message, write.node, write.t, checked)
    nodes = [node for node in history.nodes if node in final]
    games = games_on(final, nodes[0]) if nodes else {}
    unknown = 0
    for note in history.notes_of("move"):
        records = held_records(games.get(note["game"]), note)
        if not records:
            unknown += 1  # lost (acknowledged-moves counts it): no key to look up
            continue
        checked += 1
        told = note["t"] - LOCAL_S
        problems = [
            _ack_broken(holdings, history.nodes, move_thing(note["game"], r.key), r.node, told, k)
            for r in records
        ]
        problem = None if None in problems else problems[0]
        if problem is not None:
            record = records[0]
            message = f"move at ply {note['ply']} of game {note['game']} (acknowledged to "
            message += f"{note['client']} at {note['t']:.3f} s): {problem}"
            return _ack_failure(history, message, record.node, told, checked)
    message = f"{checked} acknowledgements each held durably by the writer and {k} other "
    message += f"region{'s' if k != 1 else ''} when given"
    if pending:
        message += f"; {pending} counted a region that held the write only pending (a finding)"
    if unknown:
        message += f" ({unknown} acknowledged moves absent at the end, not checked)"
    figures = {"checked": checked, "unknown": unknown, "pending": pending}
    return Verdict("ack-rule", True, message, figures=figures)


def _held_pending(history: History) -> dict[tuple[int, str], float]:
    """(put, node) -> when the node integrated it, for puts it integrated the moment one of
    their causal predecessors arrived: until then Yrs held them pending."""
    ready = dependencies_ready(history)
    found = {}
    for sample in history.lag:
        arrived = sample.t + sample.lag
        if ready.get((sample.write_id, sample.target), float("-inf")) >= arrived - EPSILON_S:
            found[sample.write_id, sample.target] = arrived
    return found


def _was_pending(history: History, write: Any, pending: dict[tuple[int, str], float]) -> bool:
    """Every region short of the count integrated the put only when a predecessor came, after
    the acknowledgement: the acknowledging region may have received it and held it pending."""
    at = write.acked_at or 0.0
    others = [node for node in history.nodes if node != write.node]
    return any(pending.get((write.write_id, node), 0.0) > at for node in others)


def _ack_broken(
    holdings: Holdings, nodes: list[str], thing: str, writer: str, t: float, k: int
) -> str | None:
    if not holdings.at(thing, writer, t):
        return f"acknowledged at {t:.3f} s before it was durable on its writer {writer}"
    others = [n for n in holdings.holders(thing, nodes, t) if n != writer]
    if len(others) < k:
        held = ", ".join(others) or "none"
        when = {n: holdings.held.get(thing, {}).get(n) for n in nodes if n != writer}
        return (
            f"acknowledged at {t:.3f} s with ack_regions = {k}, but other regions holding it "
            f"durably then: {held} (durable at: {when})"
        )
    return None


def _ack_failure(history: History, message: str, node: str, since: float, checked: int) -> Verdict:
    lines = [
        e.describe()
        for e in history.timeline
        if e.t >= since - 1 and e.kind in ("crash", "stop", "restart", "fault", "link-closed")
    ][:SHOWN]
    return Verdict("ack-rule", False, message, tuple(lines), {"checked": checked})


# --- duplicate suppression ----------------------------------------------------------------


def check_dedup(history: History, final: FinalStates) -> Verdict:
    """No node turns an update that brings nothing new (a duplicate frame, a re-sent sync step,
    a relay of what it holds) into a change that is persisted and sent on."""
    empty = history.notes_of("empty-change")
    if not empty:
        message = "no node made a change out of content it already held"
        return Verdict("dedup", True, message, figures={"empty_changes": 0})
    first = empty[0]
    source = f"from {first['origin']}" if first["origin"] else "written locally"
    message = f"{len(empty)} changes carried nothing new; first: {first['doc']} on "
    message += f"{first['node']} at {first['t']:.3f} s ({source}), persisted and sent on anyway"
    lines = tuple(
        e.describe()
        for e in history.timeline
        if e.kind in ("fault", "link-up", "link-closed") and e.t <= first["t"]
    )[-SHOWN:]
    return Verdict("dedup", False, message, lines, {"empty_changes": len(empty)})


# --- durability across restarts ------------------------------------------------------------


def check_restart_durability(history: History, final: FinalStates) -> Verdict:
    """Every restart that kept its disk reloaded everything that disk had made durable."""
    reloads = history.notes_of("reloaded")
    expected = sum(note["expected"] for note in reloads)
    figures = {"restarts": len(reloads), "things_expected": expected}
    bad = [note for note in reloads if note["missing_count"]]
    if not bad:
        message = f"{len(reloads)} restarts reloaded all {expected} things their disks held"
        return Verdict("restart-durability", True, message, figures=figures)
    first = bad[0]
    message = f"{first['node']} restarted at {first['t']:.3f} s without "
    message += f"{first['missing_count']} of the {first['expected']} things its disk had made "
    message += f"durable, e.g. {', '.join(first['missing'][:3])}"
    lines = tuple(
        e.describe()
        for e in history.timeline
        if e.kind in ("crash", "stop", "restart") and e.t <= first["t"]
    )[-SHOWN:]
    return Verdict("restart-durability", False, message, lines, figures)


# --- the HLC -----------------------------------------------------------------------------------


def check_hlc(history: History, final: FinalStates) -> Verdict:
    last: dict[str, Any] = {}
    drawn = 0
    for record in history.stamps:
        got = parse_stamp(record.stamp) if record.stamp else None
        if record.kind == "start" or record.kind == "observe":
            last[record.node] = got
            continue
        drawn += 1
        want = next_stamp(last.get(record.node), record.physical_ms, record.node)
        if got != want:
            before = last.get(record.node)
            message = (
                f"{record.node} (process #{record.incarnation}) drew HLC stamp {record.stamp} at "
                f"{record.t:.3f} s with its physical clock at {record.physical_ms} ms after "
                f"{_stamp_text(before)}; the HLC rule gives {_stamp_text(want)}"
            )
            return Verdict("hlc", False, message, (), {"stamps": drawn})
        last[record.node] = got
    message = f"{drawn} HLC stamps, each exactly as the HLC rule gives"
    return Verdict("hlc", True, message, figures={"stamps": drawn})


def _stamp_text(stamp: Any) -> str:
    if stamp is None:
        return "nothing"
    return f"{stamp[0]:016d}.{stamp[1]:05d}.{stamp[2]}"


# --- merges ------------------------------------------------------------------------------------


def merges_checker(minimum: dict[str, int]) -> Checker:
    def check(history: History, final: FinalStates) -> Verdict:
        nodes = [node for node in history.nodes if node in final]
        games = games_on(final, nodes[0])
        accounts = final[nodes[0]].get(ACCOUNTS_DOC)
        owned = owners(accounts.update) if accounts is not None else {}
        contested = claims(accounts.update) if accounts is not None else {}
        problem = _unsound(history, owned, games) or _missing(history, contested, games)
        counts = _distinct(history)
        if problem is None:
            short = {kind: n for kind, n in sorted(minimum.items()) if counts.get(kind, 0) < n}
            if short:
                problem = "fewer merges than the scenario exists to make: " + ", ".join(
                    f"{kind} {counts.get(kind, 0)} < {n}" for kind, n in short.items()
                )
        if problem is not None:
            lines = tuple(m.describe() for m in history.merges[:SHOWN])
            return Verdict("merges", False, problem, lines, {"distinct": counts})
        message = "every reported merge is one the reference rules see: " + (
            ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
        )
        return Verdict("merges", True, message, figures={"distinct": counts})

    return check


def _distinct(history: History) -> dict[str, int]:
    seen = {(m.kind, m.detail) for m in history.merges}
    counts: dict[str, int] = {}
    for kind, _detail in seen:
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _unsound(history: History, owned: dict[str, str], games: dict[str, Game]) -> str | None:
    for merge in history.merges:
        if merge.kind == "name" and (found := NAME_MERGE.search(merge.detail)):
            name, uid = found["name"], found["uid"]
            ever = claims_of(history.claims).get(name, [])
            if owned.get(name) == uid or (ever and ever[0].uid == uid):
                return (
                    f"{merge.node} told {uid} to rename, but its claim of {name!r} is the "
                    f"earliest: {merge.describe()}"
                )
        elif merge.kind == "same_ply" and (found := ROLLBACK.search(merge.detail)):
            game = games.get(found["gid"])
            ply = int(found["ply"])
            if game is not None and not any(
                r.ply == ply - len(game.start_moves) and r.key not in game.keys
                for r in game.records
            ):
                return (
                    f"{merge.node} rolled game {game.gid} back to ply {ply}, but the game has "
                    f"no record off its chain there: {merge.describe()}"
                )
        elif merge.kind == "two_games" and (found := PARKED.search(merge.detail)):
            game = games.get(found["gid"])
            if game is not None and not has_earlier_rival(game, games):
                return (
                    f"{merge.node} parked game {game.gid}, but no game created before it has "
                    f"a player in common: {merge.describe()}"
                )
    return None


def _missing(history: History, contested: dict[str, Any], games: dict[str, Game]) -> str | None:
    """With no process restarted (a merge found while a service starts is not recorded), every
    merge the final documents show was reported by some node."""
    if any(e.kind in ("crash", "stop", "restart") for e in history.timeline):
        return None
    reported = {(m.kind, m.detail) for m in history.merges}
    told = {
        found["uid"]
        for kind, detail in reported
        if kind == "name" and (found := NAME_MERGE.search(detail))
    }
    for name, found_claims in sorted(contested.items()):
        for claim in found_claims[1:]:
            if claim.uid not in told:
                return (
                    f"{claim.uid} lost the name {name!r} (a later claim), but no node reported "
                    "the merge"
                )
    parked = {
        found["gid"]
        for kind, detail in reported
        if kind == "two_games" and (found := PARKED.search(detail))
    }
    for gid, game in sorted(games.items()):
        if game.marked("superseded") and gid not in parked:
            return f"game {gid} carries a superseded mark, but no node reported parking it"
    return None
