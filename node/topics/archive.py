"""The archive: saved games (``saved``) and the log of finished games (``log:<YYYY-MM>``),
both derived from game documents, so every node that writes an entry writes the same one."""

from __future__ import annotations

import dataclasses
from typing import Any

from meridian.crdt_models.archive import (
    SAVED_DOC,
    ArchivedGame,
    archive_has,
    log_doc_id,
    put_archived,
    read_archive,
    remove_archived,
)
from meridian.crdt_models.game import GameWriter, game_doc_id
from meridian.crdt_models.hlc import Stamp
from meridian.node import protocol as p
from meridian.node.game_tracker import FINISHED, GameTracker
from meridian.node.service_state import Answer, Conn, ServiceState


def archived_json(game: ArchivedGame) -> dict[str, Any]:
    return {
        "gid": game.gid,
        "players": game.names,
        "moves": len(game.moves),
        "saved": game.stamp,
        "by": game.by,
    }


class ArchiveTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._logged: dict[str, str] = {}  # gid -> log document this node wrote it to

    # --- saved games -----------------------------------------------------------------------------

    def park(self, gid: str, tracker: GameTracker, kind: str, uid: str) -> None:
        """Save a live game (`kind`: a player's save, or a merge's parking) and mark its
        document so that it stops."""
        state = self.state
        saved = ArchivedGame.from_game(
            tracker.info,
            tracker.moves_with_players(),
            by=uid,
            stamp=tracker.chain.tip or tracker.info.created,
        )
        stamp, node, ply = state.stamp(), state.node_id, tracker.ply
        state.write(SAVED_DOC, lambda doc: put_archived(doc, saved))
        state.write(game_doc_id(gid), lambda doc: GameWriter(doc, node).mark(kind, uid, stamp, ply))

    def resave_after_rollback(self, gid: str, tracker: GameTracker) -> None:
        """A merge changed the chain of a saved or parked game: its saved entry must be the
        start of the canonical chain (a save made on a branch that lost keeps the moves that
        won). Every node that sees the stale entry writes the same corrected one."""
        doc = self.state.docs.get(SAVED_DOC)
        entry = read_archive(doc).get(gid) if doc is not None else None
        if entry is None:
            return
        chain = tracker.moves_with_players()
        if chain[: len(entry.moves)] == entry.moves:
            return
        fixed = dataclasses.replace(
            entry, moves=chain, stamp=tracker.chain.tip or tracker.info.created
        )
        self.state.write(SAVED_DOC, lambda saved: put_archived(saved, fixed))

    def resumed(self, gid: str) -> None:
        """A saved game was resumed: it leaves the saved games."""
        self.state.write(SAVED_DOC, lambda doc: remove_archived(doc, gid))

    def saved(self, conn: Conn, message: p.Saved) -> Answer:
        doc = self.state.docs.get(SAVED_DOC)
        games = read_archive(doc) if doc is not None else {}
        return Answer(
            {"games": [archived_json(g) for g in games.values() if conn.uid in g.players]}
        )

    # --- the log of finished games ---------------------------------------------------------------

    def log_finished(self, gid: str, tracker: GameTracker) -> None:
        state = self.state
        if gid in self._logged or not self._writes_log(tracker):
            return  # a node hosting a player (or the creator) writes it; the content is the same
        entry, doc_id = self._log_entry(tracker)
        self._logged[gid] = doc_id
        existing = state.docs.get(doc_id)
        if existing is not None and archive_has(existing, gid):
            return
        state.write(doc_id, lambda doc: put_archived(doc, entry))

    def _writes_log(self, tracker: GameTracker) -> bool:
        state = self.state
        hosts_player = any(state.conns_of(uid) for uid in tracker.info.players)
        return hosts_player or tracker.info.node == state.node_id

    def _log_entry(self, tracker: GameTracker) -> tuple[ArchivedGame, str]:
        """The log entry of a finished game (derived from its chain) and its log document."""
        last = tracker.chain.moves[-1]
        entry = ArchivedGame.from_game(
            tracker.info,
            tracker.moves_with_players(),
            result=self.state.rules.result(tracker.chain.state),
            stamp=last.stamp,
        )
        return entry, log_doc_id(Stamp.decode(last.stamp).wall_ms)

    def relog_after_rollback(self, gid: str, tracker: GameTracker) -> None:
        """A merge changed the chain of a game this node logged: the log must follow the
        canonical chain (a finish on a dropped branch never happened). Every node that logged
        it does the same, so the log converges on the canonical game."""
        state = self.state
        old_doc = self._logged.pop(gid, None)
        if old_doc is None:
            return
        if tracker.status == FINISHED:
            entry, doc_id = self._log_entry(tracker)
            if doc_id == old_doc:
                self._logged[gid] = doc_id
                state.write(doc_id, lambda doc: put_archived(doc, entry))
                return
        state.write(old_doc, lambda doc: remove_archived(doc, gid))
