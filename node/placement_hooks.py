"""Partial replication as the game service sees it (``replication.game_backups``, docs/
architecture.md *Partial replication of games*): where a new game is kept, which games a player
here needs kept current, and when one is no longer needed. The node gives the hooks
(`node.game_placement`); without them every region keeps every game and this does nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meridian.crdt_models.game import game_doc_id
from meridian.crdt_models.presence import Invite
from meridian.node.service_state import ServiceState


@dataclass(frozen=True)
class PlacementHooks:
    """What the game service is given under partial replication (``PlacementTopic.hooks``)."""

    place: Callable[[Iterable[str], Iterable[str]], list[str]]  # (homes, node ids) -> replicas
    fetch: Callable[[str], None]  # a player here needs this document current (hello, watch)
    release: Callable[[str], None]  # no longer needed current here (its game is over)


class PlacementTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.hooks: PlacementHooks | None = None  # set by the node; None: full replication

    def replicas(self, players: list[str], invite: Invite) -> list[str]:
        """The replica regions of a new game ([] without partial replication: every region):
        the players' homes and the regions of this node and the inviter's are kept."""
        if self.hooks is None:
            return []
        accounts = self.state.accounts
        homes = [a.home for a in (accounts.account(uid) for uid in players) if a is not None]
        return self.hooks.place(homes, (self.state.node_id, invite.node))

    def fetch_missing(self, gids: Iterable[str]) -> None:
        """Have the node fetch the games a player here was shown that it does not keep current
        (a resume, a failover, a drain or rebalancing move to a region that is no replica; the
        node decides: ``node.game_placement``); their views are pushed when they arrive, like
        any game from a peer."""
        if self.hooks is not None:
            for gid in gids:
                self.hooks.fetch(game_doc_id(gid))

    def release(self, doc_id: str) -> None:
        """A game that is over need not be kept current here any more."""
        if self.hooks is not None:
            self.hooks.release(doc_id)
