"""What the HTTP routes may use of a running node: a narrow, typed view, not the whole process.

``node.server.Node`` wires everything (config file, store, dialers, discovery, the drain); the
route modules (``node.http_api``, ``node.web``, ``node.admin_api``) only answer requests. They
get a :class:`NodeContext`: the node's identity and settings they answer with, its clocks, and
the running parts they serve from (the sync engine and replicator, the game service, the player
gateway, the load observer and the rebalancer). mypy holds them to it: a route that reaches
for the config, the store or the process does not type-check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from meridian.node.observer import LoadObserver
    from meridian.node.player_api import PlayerGateway
    from meridian.node.rebalancer import Rebalancer
    from meridian.node.service import GameService
    from meridian.sync.engine import SyncEngine
    from meridian.sync.replicator import Replicator


class NodeContext(Protocol):
    """The part of a running node the routes see (see module docstring)."""

    @property
    def node_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def public_url(self) -> str: ...

    @property
    def ack_regions(self) -> int: ...

    @property
    def admin_token(self) -> str: ...

    @property
    def started_at(self) -> float: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def wall_ms(self) -> Callable[[], int]: ...

    @property
    def engine(self) -> SyncEngine: ...

    @property
    def replicator(self) -> Replicator: ...

    @property
    def service(self) -> GameService: ...

    @property
    def players(self) -> PlayerGateway: ...

    @property
    def observer(self) -> LoadObserver: ...

    @property
    def rebalancer(self) -> Rebalancer: ...
