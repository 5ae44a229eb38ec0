"""Bounds on replication lag and on the time to converge, derived from the scenario's network.

The bounds are stated in terms of the latency matrix and the sync settings, and the history says
which case each change was in, so a node that stops relaying or repairing exceeds them even when
everything still converges in the end (through periodic anti-entropy, 10 s later):

* **direct**: both ends of the origin->target link were up when the put was made and stayed up
  until it arrived: ``L(o, t) + m``;
* **relayed**: the origin had already closed its link to the target (a cut it noticed) and both
  links through a third node were up throughout: ``L(o, c) + L(c, t) + 2m`` (the best ``c``);
* **repaired**: the origin's link to the target closed after the put was made (a cut noticed
  only at the idle timeout, a reset): the node in the middle offers the target its digests when
  it hears the origin lost the link, so the put arrives by ``close + L(o, c) + 3 L(c, t) + 3m``;
* anything else (the start, until a second after every node first linked with every other; no
  path, a node down, a slow node or a clock jump around it or on the relay,
  a broken link; a slow fault counts for as long again after it ends, for the backlog) is not
  bounded here: convergence after the heal covers it.

``m`` is the per-hop margin: the coalescing window, the jitter, the frame cost and one largest
frame at the bandwidth cap, plus a fixed 20 ms. A put is over its bound when it arrived later than
the bound plus one TCP retransmission timeout of the worst hop (with ``loss`` > 0); each case may
have ``1% + 10 x loss x hops`` of its puts over (at least one), since a lost segment also delays
what follows it and losses cluster. A put whose causal predecessors (the writer's previous put in
the document, the puts to the same key it had seen) reached the target late is bounded from their
arrival instead: their own lateness is judged on their own trips.

Convergence after the heal must happen by the latest of: the heal plus one relayed delivery, and
the end of each fault that cuts or restarts something plus a reconnection: the longest silence of
a dialer (``connect_timeout_s`` after its last SYN retransmission, then up to
``reconnect_max_s`` of backoff), the connection's set-up (2 round trips), the handshake (1) and
the anti-entropy exchange (digests, step 1, step 2: 1.5), the longest path's (with connection
resets in the network, the heal itself counts as such an end). A scenario may add
``extra_s`` for what the model does not see (a slow node's backlog), saying why. That deadline
assumes no segment is lost on the way; with ``loss`` > 0 it moves by the longest wait of a batch
that lost one (the network records them: ``History.retransmissions``) among those sent by the
deadline that arrived after the heal (:func:`retransmission_s`): such a batch holds back what
follows it on its connection, and what it carried may still have a hop to go, so its wait adds to
the last delivery in full. Two lost segments on the way of one delivery (chance ``loss``
squared) are not covered.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from meridian.sim.history import History, LagSample, Retransmission

FIXED_MARGIN_S = 0.02
STARTUP_S = 1.0  # after the full mesh first formed: duplicate links collapse, digests cross
LARGEST_FRAME_BYTES = 20_000
BASE_ALLOWANCE = 0.01
LOSS_ALLOWANCE = 10  # a lost segment delays what follows it for a timeout, and losses cluster
MIN_RTO_S = 0.2
MAX_RTO_S = 60.0
SYN_RETRY_S = (1.0, 3.0, 7.0, 15.0, 31.0)  # as sim.network: Linux's SYN retransmissions
DISTURBING = ("slow", "clock-skew", "clock-jump", "broken")
PROCESS_EVENTS = ("crash", "stop", "restart")
PROCESS_SETTLE_S = 6.0  # a process stopped or started this long before a trip disturbs it


@dataclass(frozen=True)
class NetworkModel:
    """What the bounds are derived from (the scenario's network and sync settings)."""

    latency_s: dict[tuple[str, str], float]
    jitter_s: float
    loss: float
    bandwidth_bytes_s: float
    coalesce_s: float
    frame_s: float
    connect_timeout_s: float
    reconnect_max_s: float
    nodes: tuple[str, ...]
    # (kind, nodes it concerns (empty: all), start, end or None) of every fault
    faults: tuple[tuple[str, tuple[str, ...], float, float | None], ...] = ()
    cut_ends: tuple[float, ...] = ()  # when faults that cut paths or stop nodes end

    @property
    def margin_s(self) -> float:
        serialise = LARGEST_FRAME_BYTES / self.bandwidth_bytes_s if self.bandwidth_bytes_s else 0
        return self.coalesce_s + self.jitter_s + 2 * self.frame_s + serialise + FIXED_MARGIN_S

    def allowance(self, hops: int) -> float:
        return BASE_ALLOWANCE + LOSS_ALLOWANCE * self.loss * hops

    def rto(self, a: str, b: str) -> float:
        """A TCP retransmission timeout on the path (as sim.network: at least 200 ms)."""
        return max(MIN_RTO_S, 2 * self.latency_s[a, b] + 4 * self.jitter_s) if self.loss else 0.0

    def rtt(self, a: str, b: str) -> float:
        return self.latency_s[a, b] + self.latency_s[b, a]

    def reconnect_s(self) -> float:
        """Worst case from a path's return (or a node's restart) to a re-synced link."""
        syns = [0.0, *(s for s in SYN_RETRY_S if s < self.connect_timeout_s)]
        silence = max(
            max((b - a for a, b in pairwise(syns)), default=0.0),
            self.connect_timeout_s - syns[-1] + self.reconnect_max_s,
        )
        longest = max(self.rtt(a, b) for a, b in self.latency_s)
        return silence + 4.5 * longest + 3 * self.margin_s


@dataclass
class LinkBook:
    """When each node had its link to each peer up, from the history's timeline."""

    up: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    closed_at: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cut: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    process_events: list[float] = field(default_factory=list)  # crash/stop/restart times, sorted

    @staticmethod
    def of(history: History) -> LinkBook:
        book = LinkBook()
        book.process_events = sorted(e.t for e in history.timeline if e.kind in PROCESS_EVENTS)
        since: dict[tuple[str, str], float] = {}
        count: dict[tuple[str, str], int] = {}  # a node may hold two links to a peer a moment
        blocked: dict[tuple[str, str], float] = {}
        for event in history.timeline:
            if event.node is None or event.peer is None:
                continue
            key = (event.node, event.peer)
            if event.kind == "path-down":
                blocked[key] = event.t
            elif event.kind == "path-up" and key in blocked:
                # TCP retries with backoff during a blackout: a connection that survived it
                # resumes up to the blackout's length later (sim.network._release).
                start = blocked.pop(key)
                resumed = event.t + min(event.t - start, MAX_RTO_S)
                book.cut.setdefault(key, []).append((start, resumed))
            elif event.kind == "link-up":
                count[key] = count.get(key, 0) + 1
                since.setdefault(key, event.t)
            elif event.kind == "link-closed":
                count[key] = max(0, count.get(key, 0) - 1)
                if count[key] == 0 and key in since:
                    book.closed_at.setdefault(key, []).append(event.t)
                    book.up.setdefault(key, []).append((since.pop(key), event.t))
        for key, start in since.items():
            book.up.setdefault(key, []).append((start, float("inf")))
        for key, start in blocked.items():
            book.cut.setdefault(key, []).append((start, float("inf")))
        return book

    def side_up(self, a: str, b: str, t: float) -> bool:
        """Node a had its link to b up at t."""
        return any(s <= t < e for s, e in self.up.get((a, b), ()))

    def clear(self, a: str, b: str, start: float, end: float) -> bool:
        """The a-b link was up at both ends and its path open both ways for all of [start, end]."""
        return self.up_during(a, b, start, end) and not any(
            s <= end and start <= e for key in ((a, b), (b, a)) for s, e in self.cut.get(key, ())
        )

    def up_during(self, a: str, b: str, start: float, end: float) -> bool:
        """Both ends had the a-b link up for the whole of [start, end]."""
        return all(
            any(s <= start and end < e for s, e in self.up.get(key, ())) for key in ((a, b), (b, a))
        )

    def process_event_between(self, start: float, end: float) -> bool:
        """Some process crashed, stopped or started within [start, end]."""
        i = bisect_left(self.process_events, start)
        return i < len(self.process_events) and self.process_events[i] <= end

    def first_close(self, a: str, b: str, start: float, end: float) -> float | None:
        closes = [t for t in self.closed_at.get((a, b), ()) if start <= t <= end]
        return min(closes) if closes else None


@dataclass(frozen=True)
class Judged:
    sample: LagSample
    case: str  # direct, relayed, repaired, unbounded
    bound: float | None
    slack: float = 0.0  # one TCP retransmission timeout on the way

    @property
    def over(self) -> bool:
        return self.bound is not None and self.sample.lag > self.bound + self.slack


def _disturbed(
    model: NetworkModel, book: LinkBook, involved: set[str], t: float, end: float
) -> bool:
    """A fault the model does not time (a slow node, a clock fault, a broken link) touched one
    of ``involved`` around [t, end], or some process stopped or started shortly before."""
    window = (t - 1.0, end)
    for kind, nodes, start, until in model.faults:
        # A slow node works off its backlog after the fault: give it as long again.
        last = 2 * until - start if until is not None else float("inf")
        overlaps = kind in DISTURBING and start <= window[1] and last >= window[0]
        if overlaps and (not nodes or involved & set(nodes)):
            return True
    return book.process_event_between(window[0] - PROCESS_SETTLE_S, window[1])


def judge(model: NetworkModel, book: LinkBook, sample: LagSample, ready: float) -> Judged:
    """The case of one put's trip and its bound; ``ready`` is when the target held everything
    the put depends on (a Yjs item is integrated only after its causal predecessors)."""
    found = _judge(model, book, sample)
    if found.bound is None or ready == float("-inf"):
        return found
    if ready == float("inf"):
        return Judged(sample, "unbounded", None)
    bound = max(found.bound, ready - sample.t + model.margin_s)
    return Judged(sample, found.case, bound, found.slack)


def _judge(model: NetworkModel, book: LinkBook, sample: LagSample) -> Judged:
    o, b, t = sample.origin, sample.target, sample.t
    end = t + sample.lag
    if _disturbed(model, book, {o, b}, t, end):
        return Judged(sample, "unbounded", None)
    m = model.margin_s
    if book.clear(o, b, t, end):
        return Judged(sample, "direct", model.latency_s[o, b] + m, model.rto(o, b))
    relays = [
        c for c in model.nodes if c not in (o, b) and not _disturbed(model, book, {c}, t, end)
    ]
    if not book.side_up(o, b, t):
        good = [c for c in relays if book.clear(o, c, t, end) and book.clear(c, b, t, end)]
        if good:
            best, c = min((model.latency_s[o, c] + model.latency_s[c, b], c) for c in good)
            slack = max(model.rto(o, c), model.rto(c, b))
            return Judged(sample, "relayed", best + 2 * m, slack)
        return Judged(sample, "unbounded", None)
    close = book.first_close(o, b, t, end)
    if close is not None:
        good = [c for c in relays if book.clear(o, c, t, end) and book.clear(c, b, close, end)]
        if good:
            best, c = min((model.latency_s[o, c] + 3 * model.latency_s[c, b], c) for c in good)
            slack = max(model.rto(o, c), model.rto(c, b))
            return Judged(sample, "repaired", close - t + best + 3 * m, slack)
    return Judged(sample, "unbounded", None)


CASE_HOPS = {"direct": 1, "relayed": 2, "repaired": 4}


@dataclass(frozen=True)
class CaseFigures:
    case: str
    count: int
    over: int
    allowed: int
    worst: Judged | None  # the sample furthest over its bound (or closest to it)


def dependencies_ready(history: History) -> dict[tuple[int, str], float]:
    """(put, node) -> when the node held the put's causal predecessors: the previous put of the
    same writer process in the document (Yjs integrates a client's items in order) and every put
    to the same key that the writer had seen (the new item's left origin is among them);
    -inf: none, inf: one never arrived."""
    arrived: dict[tuple[int, str], float] = {}
    for sample in history.lag:
        arrived[sample.write_id, sample.target] = sample.t + sample.lag
    puts = [w for w in history.writes if w.item is not None]
    for write in puts:
        arrived[write.write_id, write.node] = write.t
    previous: dict[tuple[str, int, str], int] = {}
    same_key: dict[tuple[str, str], list[int]] = {}
    deps: dict[int, list[int]] = {}
    by_id = {w.write_id: w for w in puts}
    for write in puts:
        mine = deps.setdefault(write.write_id, [])
        before = previous.get((write.node, write.incarnation, write.doc))
        if before is not None:
            mine.append(before)
        mine += [p for p in same_key.get((write.doc, write.key), []) if write.saw(by_id[p].item)]
        previous[write.node, write.incarnation, write.doc] = write.write_id
        same_key.setdefault((write.doc, write.key), []).append(write.write_id)
    ready: dict[tuple[int, str], float] = {}
    for sample in history.lag:
        times = [
            arrived.get((d, sample.target), float("inf")) for d in deps.get(sample.write_id, [])
        ]
        ready[sample.write_id, sample.target] = max(times, default=float("-inf"))
    return ready


def mesh_formed(book: LinkBook, nodes: Sequence[str]) -> float:
    """When every node first had a link up to every other (inf: never)."""
    firsts = [
        min((start for start, _end in book.up.get((a, b), ())), default=float("inf"))
        for a in nodes
        for b in nodes
        if a != b
    ]
    return max(firsts, default=0.0)


def judge_all(model: NetworkModel, history: History) -> dict[str, CaseFigures]:
    book = LinkBook.of(history)
    ready = dependencies_ready(history)
    settled = mesh_formed(book, model.nodes) + STARTUP_S
    judged: dict[str, list[Judged]] = {case: [] for case in (*CASE_HOPS, "unbounded")}
    for sample in history.lag:
        waited = ready.get((sample.write_id, sample.target), float("-inf"))
        if sample.t < settled:
            judged["unbounded"].append(Judged(sample, "unbounded", None))
            continue
        result = judge(model, book, sample, waited)
        judged[result.case].append(result)
    figures = {}
    for case, found in judged.items():
        over = [j for j in found if j.over]
        allowed = max(1, int(model.allowance(CASE_HOPS.get(case, 1)) * len(found)))
        bounded = [j for j in found if j.bound is not None]
        worst = max(bounded, key=lambda j: j.sample.lag - (j.bound or 0), default=None)
        figures[case] = CaseFigures(case, len(found), len(over), allowed, worst)
    return figures


def convergence_bound(model: NetworkModel, heal_at: float, extra_s: float = 0.0) -> float:
    """Seconds after the heal by which every document must be identical (module docstring)."""
    longest_relay = (
        max(
            model.latency_s[a, c] + model.latency_s[c, b]
            for a in model.nodes
            for b in model.nodes
            for c in model.nodes
            if len({a, b, c}) == 3
        )
        if len(model.nodes) > 2
        else max(model.latency_s.values())
    )
    deadline = heal_at + longest_relay + 3 * model.margin_s
    for end in model.cut_ends:
        deadline = max(deadline, end + model.reconnect_s())
    return deadline - heal_at + extra_s


def describe_cases(figures: dict[str, CaseFigures], order: Sequence[str] = tuple(CASE_HOPS)) -> str:
    return ", ".join(
        f"{case} {figures[case].over}/{figures[case].count} over"
        for case in order
        if case in figures
    )


def retransmission_s(
    retransmissions: Sequence[Retransmission], heal_at: float, bound_s: float
) -> float:
    """How far a lost segment moves the convergence deadline ``heal_at + bound_s``: the longest
    wait of a batch sent by the (moved) deadline that arrived after the heal (module docstring).
    A batch that arrived before the heal delays nothing past the deadline, which leaves a whole
    relayed trip after the heal."""
    late = [r for r in retransmissions if r.arrival > heal_at]
    extra = 0.0
    while True:
        deadline = heal_at + bound_s + extra
        longest = max((r.wait_s for r in late if r.t <= deadline), default=0.0)
        if longest <= extra:
            return extra
        extra = longest
