"""Faults as timed events: what each one does to the simulated world, and how it is undone.

Every fault starts at ``at_s`` (seconds from the start of the run) and ends at ``until_s``, or
at the heal if it has none, or never if it is ``permanent`` (it then lasts through the quiet
period too). :meth:`Fault.begin` applies it and returns the function that undoes it.

* ``partition``: ``groups``; nodes in different groups exchange no byte. A majority/minority
  split is two groups, a full partition one group per node.
* ``partial-partition``: ``pairs``; each pair is cut, every node still reaches the others
  (A-/-B, both reach C).
* ``one-way``: bytes ``from`` -> ``to`` are held while the connection stays open, so the
  receiver's idle timeout fires.
* ``flap``: ``pairs`` go down for ``down_s`` and up for ``up_s`` (each drawn from its
  [min, max] range), over and over.
* ``crash``: ``node``'s process is killed. ``keep_disk``: committed changes survive; ``silent``:
  the machine is gone, no RST reaches the peers. It restarts at ``until_s`` or at the heal.
* ``restart``: ``node`` stops cleanly (SHUTDOWN to its peers, pending commits flushed) and
  starts again ``down_s`` later.
* ``clock-skew``: ``node``'s clocks run at ``rate`` (1.0 is true time).
* ``clock-jump``: ``node``'s clocks jump by ``seconds``; forward moves both clocks (a paused
  VM), backward only the wall clock.
* ``slow``: ``node`` processes each received frame ``factor`` times slower.
* ``broken``: frames on ``pairs`` (default: every pair) are silently dropped, duplicated or
  reordered with the given probabilities while the connection stays up.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Protocol

from meridian.sim.clock import NodeClock
from meridian.sim.network import Breakage
from meridian.sim.params import Table

Undo = Callable[[], None]
Route = tuple[str, str]


class FaultTarget(Protocol):
    """What faults act on (the simulation)."""

    rng: random.Random

    @property
    def now(self) -> float: ...

    def after(self, delay: float, action: Callable[[], None]) -> None: ...

    def block(self, src: str, dst: str) -> None: ...

    def unblock(self, src: str, dst: str) -> None: ...

    def add_breakage(self, src: str, dst: str, breakage: Breakage) -> None: ...

    def remove_breakage(self, src: str, dst: str, breakage: Breakage) -> None: ...

    def crash(self, node_id: str, *, keep_disk: bool, silent: bool) -> None: ...

    def stop(self, node_id: str) -> None: ...

    def start(self, node_id: str) -> None: ...

    def clock(self, node_id: str) -> NodeClock: ...

    def set_slow(self, node_id: str, factor: float) -> None: ...


@dataclass(frozen=True)
class Fault:
    """Common fields; subclasses say what happens in ``begin``."""

    kind: str
    at_s: float
    until_s: float | None
    permanent: bool

    def describe(self) -> str:
        return self.kind

    def begin(self, target: FaultTarget) -> Undo:
        raise NotImplementedError

    def involves(self) -> tuple[str, ...]:
        """The nodes it acts on (empty: all of them)."""
        return ()

    @property
    def cuts(self) -> bool:
        """Whether it closes links (cut paths, stopped processes, a clock jumping past the idle
        timeout): its end is followed by reconnections (sim.bounds)."""
        return self.kind not in ("clock-skew", "slow", "broken")

    def ends_at(self, heal_s: float) -> float | None:
        """When it is over: ``until_s``, the heal, its start for an instant one; None if never."""
        if self.until_s is not None:
            return self.until_s
        if self.kind in INSTANT_KINDS:
            return self.at_s
        return None if self.permanent else heal_s


def _both_ways(pairs: Sequence[Sequence[str]]) -> list[Route]:
    return [route for a, b in pairs for route in ((a, b), (b, a))]


def _block(target: FaultTarget, routes: list[Route]) -> Undo:
    for src, dst in routes:
        target.block(src, dst)

    def undo() -> None:
        for src, dst in routes:
            target.unblock(src, dst)

    return undo


@dataclass(frozen=True)
class Partition(Fault):
    groups: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        return "partition " + " | ".join(",".join(group) for group in self.groups)

    def begin(self, target: FaultTarget) -> Undo:
        pairs = [
            (a, b) for left, right in combinations(self.groups, 2) for a in left for b in right
        ]
        return _block(target, _both_ways(pairs))


@dataclass(frozen=True)
class PartialPartition(Fault):
    pairs: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return "partial partition " + ", ".join(f"{a}-/-{b}" for a, b in self.pairs)

    def begin(self, target: FaultTarget) -> Undo:
        return _block(target, _both_ways(self.pairs))

    def involves(self) -> tuple[str, ...]:
        return _nodes_of(self.pairs)


@dataclass(frozen=True)
class OneWay(Fault):
    src: str
    dst: str

    def describe(self) -> str:
        return f"one-way partition {self.src}-/->{self.dst}"

    def begin(self, target: FaultTarget) -> Undo:
        return _block(target, [(self.src, self.dst)])

    def involves(self) -> tuple[str, ...]:
        return (self.src, self.dst)


@dataclass(frozen=True)
class Flap(Fault):
    pairs: tuple[tuple[str, str], ...]
    down_s: tuple[float, float]
    up_s: tuple[float, float]

    def describe(self) -> str:
        return "flapping " + ", ".join(f"{a}<->{b}" for a, b in self.pairs)

    def begin(self, target: FaultTarget) -> Undo:
        flapper = _Flapper(target, _both_ways(self.pairs), self.down_s, self.up_s)
        flapper.go_down()
        return flapper.stop

    def involves(self) -> tuple[str, ...]:
        return _nodes_of(self.pairs)


class _Flapper:
    def __init__(
        self,
        target: FaultTarget,
        routes: list[Route],
        down_s: tuple[float, float],
        up_s: tuple[float, float],
    ) -> None:
        self.target, self.routes, self.down_s, self.up_s = target, routes, down_s, up_s
        self.restore: Undo | None = None
        self.running = True

    def go_down(self) -> None:
        if self.running:
            self.restore = _block(self.target, self.routes)
            self.target.after(self.target.rng.uniform(*self.down_s), self.go_up)

    def go_up(self) -> None:
        if self.running and self.restore is not None:
            self.restore()
            self.restore = None
            self.target.after(self.target.rng.uniform(*self.up_s), self.go_down)

    def stop(self) -> None:
        self.running = False
        if self.restore is not None:
            self.restore()
            self.restore = None


@dataclass(frozen=True)
class Crash(Fault):
    node: str
    keep_disk: bool
    silent: bool
    clean: bool  # a clean stop (the ``restart`` kind) rather than a kill

    def describe(self) -> str:
        if self.clean:
            return f"restart {self.node}"
        disk = "with its disk" if self.keep_disk else "losing its disk"
        return f"crash {self.node} {disk}" + (" (machine gone)" if self.silent else "")

    def begin(self, target: FaultTarget) -> Undo:
        if self.clean:
            target.stop(self.node)
        else:
            target.crash(self.node, keep_disk=self.keep_disk, silent=self.silent)
        return lambda: target.start(self.node)

    def involves(self) -> tuple[str, ...]:
        return (self.node,)


@dataclass(frozen=True)
class ClockSkew(Fault):
    node: str
    rate: float

    def describe(self) -> str:
        return f"clock of {self.node} runs at x{self.rate:g}"

    def begin(self, target: FaultTarget) -> Undo:
        clock = target.clock(self.node)
        before = clock.rate
        clock.set_rate(target.now, self.rate)
        return lambda: clock.set_rate(target.now, before)

    def involves(self) -> tuple[str, ...]:
        return (self.node,)


@dataclass(frozen=True)
class ClockJump(Fault):
    node: str
    seconds: float

    def describe(self) -> str:
        return f"clock of {self.node} jumps {self.seconds:+g} s"

    def begin(self, target: FaultTarget) -> Undo:
        target.clock(self.node).jump(self.seconds)
        return lambda: None

    def involves(self) -> tuple[str, ...]:
        return (self.node,)


@dataclass(frozen=True)
class Slow(Fault):
    node: str
    factor: float

    def describe(self) -> str:
        return f"{self.node} {self.factor:g}x slower"

    def begin(self, target: FaultTarget) -> Undo:
        target.set_slow(self.node, self.factor)
        return lambda: target.set_slow(self.node, 1.0)

    def involves(self) -> tuple[str, ...]:
        return (self.node,)


@dataclass(frozen=True)
class Broken(Fault):
    pairs: tuple[tuple[str, str], ...]
    breakage: Breakage

    def describe(self) -> str:
        b = self.breakage
        return f"broken network (drop {b.drop:g}, duplicate {b.duplicate:g}, reorder {b.reorder:g})"

    def begin(self, target: FaultTarget) -> Undo:
        routes = _both_ways(self.pairs)
        for src, dst in routes:
            target.add_breakage(src, dst, self.breakage)

        def undo() -> None:
            for src, dst in routes:
                target.remove_breakage(src, dst, self.breakage)

        return undo

    def involves(self) -> tuple[str, ...]:
        return _nodes_of(self.pairs)


def _nodes_of(pairs: Sequence[Sequence[str]]) -> tuple[str, ...]:
    return tuple(sorted({node for pair in pairs for node in pair}))


# --- parsing ---------------------------------------------------------------------------------

COMMON_KEYS = ("kind", "at_s", "until_s", "permanent")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "partition": ("groups",),
    "partial-partition": ("pairs",),
    "one-way": ("from", "to"),
    "flap": ("pairs", "down_s", "up_s"),
    "crash": ("node", "keep_disk", "silent"),
    "restart": ("node", "down_s"),
    "clock-skew": ("node", "rate"),
    "clock-jump": ("node", "seconds"),
    "slow": ("node", "factor"),
    "broken": ("pairs", "drop", "duplicate", "reorder"),
}
INSTANT_KINDS = ("clock-jump",)


def parse_fault(table: Table, nodes: Sequence[str], faulty_s: float) -> Fault:
    """One ``[[faults]]`` entry; ``faulty_s`` is when the heal comes."""
    kind = table.choice("kind", list(KIND_KEYS))
    table.only(COMMON_KEYS + KIND_KEYS[kind])
    at_s = table.number("at_s", 0.0, 0, inclusive=True)
    if at_s >= faulty_s:
        raise table.error("at_s", f"must be before the heal (phases.faulty_s = {faulty_s:g})")
    until_s = _until(table, kind, at_s, faulty_s)
    common = (kind, at_s, until_s, table.boolean("permanent", False))
    return _PARSERS[kind](table, nodes, common)


def _until(table: Table, kind: str, at_s: float, faulty_s: float) -> float | None:
    if kind == "restart":
        if "until_s" in table.values:
            raise table.error("until_s", "a restart lasts down_s; remove until_s")
        return at_s + table.number("down_s", 2.0, 0, inclusive=False)
    until_s = table.optional_number("until_s", 0)
    if until_s is None:
        return None
    if kind in INSTANT_KINDS:
        raise table.error("until_s", f"a {kind} is instantaneous; remove until_s")
    if not at_s < until_s <= faulty_s:
        raise table.error("until_s", f"expected at_s < until_s <= phases.faulty_s ({faulty_s:g})")
    return until_s


Common = tuple[str, float, float | None, bool]


def _pairs(
    table: Table, nodes: Sequence[str], default: object = None
) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a, b in table.node_pairs("pairs", nodes, default))


def _partition(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    raw = table.raw("groups", None, "a list of node groups")
    if not isinstance(raw, list) or len(raw) < 2:
        raise table.wrong_type("groups", raw, "at least two groups of node names")
    groups = [table.node_list(f"groups[{i}]", nodes, group) for i, group in enumerate(raw)]
    listed = [node for group in groups for node in group]
    if sorted(listed) != sorted(nodes):
        raise table.error("groups", f"every node must be in exactly one group: {', '.join(nodes)}")
    return Partition(*common, groups=tuple(tuple(group) for group in groups))


def _partial(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    return PartialPartition(*common, pairs=_pairs(table, nodes))


def _one_way(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    src, dst = table.node("from", nodes), table.node("to", nodes)
    if src == dst:
        raise table.error("to", "must differ from 'from'")
    return OneWay(*common, src=src, dst=dst)


def _flap(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    return Flap(
        *common,
        pairs=_pairs(table, nodes),
        down_s=table.seconds_range("down_s", (1.0, 8.0)),
        up_s=table.seconds_range("up_s", (1.0, 5.0)),
    )


def _crash(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    return Crash(
        *common,
        node=table.node("node", nodes),
        keep_disk=table.boolean("keep_disk", True),
        silent=table.boolean("silent", False),
        clean=False,
    )


def _restart(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    return Crash(*common, node=table.node("node", nodes), keep_disk=True, silent=False, clean=True)


def _clock_skew(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    return ClockSkew(
        *common, node=table.node("node", nodes), rate=table.number("rate", 1.0, 0, inclusive=False)
    )


def _clock_jump(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    seconds = table.raw("seconds", None, "a number of seconds (negative: backwards)")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise table.wrong_type("seconds", seconds, "a number of seconds (negative: backwards)")
    return ClockJump(*common, node=table.node("node", nodes), seconds=float(seconds))


def _slow(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    factor = table.number("factor", 10.0, 1, inclusive=True)
    return Slow(*common, node=table.node("node", nodes), factor=factor)


def _broken(table: Table, nodes: Sequence[str], common: Common) -> Fault:
    every_pair = [list(pair) for pair in combinations(nodes, 2)]
    breakage = Breakage(
        drop=table.fraction("drop", 0.0),
        duplicate=table.fraction("duplicate", 0.0),
        reorder=table.fraction("reorder", 0.0),
    )
    return Broken(*common, pairs=_pairs(table, nodes, every_pair), breakage=breakage)


_PARSERS: dict[str, Callable[[Table, Sequence[str], Common], Fault]] = {
    "partition": _partition,
    "partial-partition": _partial,
    "one-way": _one_way,
    "flap": _flap,
    "crash": _crash,
    "restart": _restart,
    "clock-skew": _clock_skew,
    "clock-jump": _clock_jump,
    "slow": _slow,
    "broken": _broken,
}
