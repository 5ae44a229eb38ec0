"""The meta-services on a simulated node: the production load observer and rebalancer.

A scenario with ``[rebalance] enabled = true`` runs, on every process of every node, the
production ``node.observer.LoadObserver`` and ``node.rebalancer.Rebalancer`` (the same policy,
``node.rebalance.plan``) on the node's own clock, as ``node.server`` runs them on its event loop:

* the observer takes a sample every ``SAMPLE_S`` (``LoadObserver.tick``; the loop is never late
  here, and the process's CPU is not modelled, so ``cpu_percent`` stays 0) and publishes the
  node's load entry in its presence document, which the engine replicates like any change;
* every ``rebalance.interval_s`` the rebalancer plans a round (`Rebalancer.plan_round`); the
  targets it wants all take players (no simulated node drains, so the ``/readyz`` probe is not
  staged), it hands the chosen players over (`Rebalancer.begin`) and tells them at safe points
  (`Rebalancer.advance`, every ``node.drain.POLL_S`` until the round is over); the next round
  comes ``interval_s`` after that.

A node's URL in its HELLO is ``sim://<node id>`` (only with the meta-services on: it is what a
``drain`` notice names); ``sim.players.SimClient`` follows such a notice to that node with the
notice's resume token. A crash or stop ends the process's meta-services with it; a restarted
process gets new ones (the rebalancer's counts go on from what it published). From the settling
on (the services' timers stopped) no new round starts.

What each round did goes into the history as ``rebalance`` notes (for the report; the checkers
in ``sim.metacheck`` judge from what the clients saw, not from these).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycrdt import Doc

from meridian.node.drain import POLL_S
from meridian.node.observer import SAMPLE_S, LoadObserver
from meridian.node.rebalance import RebalanceSettings
from meridian.node.rebalancer import Batch, Rebalancer
from meridian.node.service import GameService
from meridian.sync.engine import DocChanged, SyncEngine
from meridian.sync.replicator import ChangeListener

if TYPE_CHECKING:
    from meridian.sim.node import SimNode

URL_PREFIX = "sim://"


def node_url(node_id: str) -> str:
    """The URL a simulated node gives in its HELLO (what a drain notice names)."""
    return URL_PREFIX + node_id


def url_node(url: str) -> str | None:
    """The node id a simulated URL names (None: not one)."""
    return url.removeprefix(URL_PREFIX) if url.startswith(URL_PREFIX) else None


@dataclass(frozen=True)
class Identity:
    node_id: str
    region: str


class SimReplicator:
    """The replicator's part the meta-services use: listeners of the node's changes, writes
    (``SimNode.write`` sends what the engine has for its peers after every write: nothing is
    left to pump)."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.listeners: list[ChangeListener] = []

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        return self.node.write(doc_id, change)

    def pump(self) -> None:
        """Nothing to do (see class docstring)."""


class SimGateway:
    """The player gateway's part: hand what the service says to the players now."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    def drain(self) -> None:
        self.node.deliver_output()


class MetaHost:
    """A simulated node as the observer (``LoadSources``) and the rebalancer
    (``RebalanceHost``) see one."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.config = Identity(node.node_id, node.region)
        self.replicator = SimReplicator(node)
        self.players = SimGateway(node)

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def region(self) -> str:
        return self.node.region

    @property
    def engine(self) -> SyncEngine:
        return self.node.engine

    @property
    def service(self) -> GameService:
        return self.node.service

    @property
    def wall_ms(self) -> Callable[[], int]:
        return self.node.wall_ms


def no_cpu() -> float:
    """The simulator does not model CPU time: the figures and costs read 0."""
    return 0.0


class MetaServices:
    """One process's observer and rebalancer (see module docstring)."""

    def __init__(self, node: SimNode, settings: RebalanceSettings) -> None:
        self.node = node
        self.incarnation = node.incarnation
        self.host = MetaHost(node)
        self.observer = LoadObserver(self.host, clock=node.local_now, cpu_seconds=no_cpu)
        self.rebalancer = Rebalancer(
            self.host,
            self.observer,
            settings,
            wall_ms=node.wall_ms,
            clock=node.local_now,
            cpu_clock=no_cpu,
        )

    def start(self) -> None:
        self.observer.attach()
        self.rebalancer.load_counts()
        self.node.after_local(0.0, self._sample)
        self.node.after_local(self.rebalancer.settings.interval_s, self._round)

    def doc_changed(self, event: DocChanged) -> None:
        for listener in self.host.replicator.listeners:
            listener(event)

    def _alive(self) -> bool:
        return self.node.up and self.node.incarnation == self.incarnation

    def _sample(self) -> None:
        if not self._alive() or not self.node.service_timers:
            return
        self.observer.tick(0.0)
        self.node.after_local(SAMPLE_S, self._sample)

    def _round(self) -> None:
        if not self._alive() or not self.node.service_timers:
            return
        rebalancer = self.rebalancer
        moves = rebalancer.plan_round()
        wanted = rebalancer.wanted(moves) if moves else []
        ready = {target.node_id for target in wanted}  # no simulated node drains
        batch = rebalancer.begin(moves, rebalancer.left_out(wanted, ready)) if moves else None
        if batch is None:
            self.node.after_local(rebalancer.settings.interval_s, self._round)
        else:
            self._advance(batch)

    def _advance(self, batch: Batch) -> None:
        if not self._alive():
            return
        if not self.rebalancer.advance(batch):
            self.node.after_local(POLL_S, self._advance, batch)
            return
        self._note(batch)
        self.node.after_local(self.rebalancer.settings.interval_s, self._round)

    def _note(self, batch: Batch) -> None:
        history = self.node.history
        if history is None:
            return
        for told in batch.told:
            history.notes.append(
                {
                    "t": round(self.node.scheduler.now, 6),
                    "node": self.node.node_id,
                    "kind": "rebalance",
                    "uid": batch.owner[told.handover.sid],
                    "to": told.target.node_id if told.target is not None else None,
                    "in_game": batch.owner[told.handover.sid] in batch.in_game,
                }
            )
