"""The entry rule for game records a peer sends: move records must be legal where they hang.

Run by ``crdt_models.kinds`` on each ``moves`` and ``info`` key an update changes, on the scratch
copy of the game document with the whole update applied (``sync.checks``). A move record
``{ply, parent, player, move, stamp, node}`` under key ``<ply:05d>|<stamp>`` is refused when:

* ``bad_record``: its key is not its own ``<ply>|<stamp>``, or its ``node`` is not the node its
  stamp names;
* ``duplicate_move``: it replaces an existing move record with another one, or deletes one (a
  record is written once: the key carries the writer's unique stamp); likewise ``info``;
* ``missing_parent`` (deferred, `MissingReference`): its parent record, or the game's ``info``,
  is not in the document. This may only mean reordering in transit, so the engine pulls the
  document from the sender and checks again; it refuses only if the sender's whole document
  lacks the parent too;
* ``illegal_move``: replaying the record's ancestors (following ``parent`` links from the
  game's start, ``info``'s seed, first player and start moves) and then the record itself, the
  ply is not the parent's ply + 1, or the rules refuse the move for that player (not their
  turn, not a legal move, the game over).

Every one of these reads only the record, its ancestors and ``info``, which are immutable once
held; so every node reaches the same verdict whatever the order the records arrive in, and the
honest nodes converge. Two children of one parent (a fork) are *not* refused: a partition makes
them legitimately (one player, two regions), and the node that got one first would refuse the
other forever; the canonical chain (``crdt_models.game``) picks one on read, as before.

Replaying costs one rules application per record in normal play: the state after each record
checked is kept (`STATES_KEPT_PER_GAME` per scratch copy) and ``sync.checks`` hands the changes
over in key order, so a parent is checked, and kept, before its children.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.game import INFO, INFO_KEY, MOVES, GameInfo, MoveRecord, start_state
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.records import (
    Change,
    CheckContext,
    MissingReference,
    RecordError,
    RecordRefused,
    map_get,
    root_map,
)
from meridian.games.base import GameRules, IllegalMove
from meridian.games.battleline import rules_module

STATES_KEPT_PER_GAME = 8  # a move hangs on the last one checked; 256 copies x 8 states, a few MB
RULES_BY_GAME: dict[str, GameRules[Any]] = {"battleline": rules_module()}

# A game's state after a move record: (the record's text, its ply, the state). The text guards
# against a key whose record changed since (only this node's own writes could do that).
_Kept = tuple[str, int, Any]
_states: weakref.WeakKeyDictionary[Doc[Any], OrderedDict[str, _Kept]] = weakref.WeakKeyDictionary()


def check_info_change(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    """A game's setup is written once, when the game is created."""
    _written_once(change, "the game's setup")


def check_move_change(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    """Refuse (RecordRefused) or defer (MissingReference) one changed move key; the record's
    shape and stamp were checked before."""
    _written_once(change, "a move record")
    assert isinstance(change.new, str)
    record = MoveRecord.from_text(change.new)
    if record.key != change.key:
        raise RecordError(f"the record of ply {record.ply} at {record.stamp} is not under its key")
    if Stamp.decode(record.stamp).node_id != record.node:
        raise RecordError(f"the record says node {record.node[:40]!r}, its stamp another")
    info_text = map_get(root_map(doc, INFO), INFO_KEY)
    if info_text is None:
        raise MissingReference("missing_parent", f"{change.where}: the game's setup is missing")
    info = GameInfo.from_text(info_text)
    rules = RULES_BY_GAME.get(info.game)
    if rules is None:
        raise RecordRefused("illegal_move", f"{change.where}: no rules for {info.game[:40]!r}")
    kept = _kept(doc)
    _state_after(rules, info, doc, kept, change.key, change.new, change.where)


def _written_once(change: Change, what: str) -> None:
    if change.deleted:
        raise RecordRefused("duplicate_move", f"{change.where}: deletes {what}")
    if change.old is not None and change.old != change.new:
        raise RecordRefused("duplicate_move", f"{change.where}: rewrites {what}")


def _kept(doc: Doc[Any]) -> OrderedDict[str, _Kept]:
    kept = _states.get(doc)
    if kept is None:
        kept = _states[doc] = OrderedDict()
    return kept


def _state_after(
    rules: GameRules[Any],
    info: GameInfo,
    doc: Doc[Any],
    kept: OrderedDict[str, _Kept],
    key: str,
    text: str,
    where: str,
) -> Any:
    """The game state after the record `text` at `key`: its ancestors are walked back to the
    start (or to a kept state), then replayed forward with every rule checked."""
    moves = root_map(doc, MOVES)
    path: list[tuple[str, str, MoveRecord]] = []
    seen: set[str] = set()
    cursor: str | None = key
    cursor_text = text
    while cursor is not None:
        hit = kept.get(cursor)
        if hit is not None and hit[0] == cursor_text:
            kept.move_to_end(cursor)
            break
        if cursor in seen:
            raise RecordRefused("illegal_move", f"{where}: its ancestors form a loop")
        seen.add(cursor)
        try:
            record = MoveRecord.from_text(cursor_text)
        except RecordError as exc:
            raise RecordRefused("illegal_move", f"{where}: ancestor {cursor}: {exc}") from None
        path.append((cursor, cursor_text, record))
        if not record.parent:
            cursor = None
            break
        parent_text = map_get(moves, record.parent)
        if parent_text is None:
            raise MissingReference(
                "missing_parent", f"{where}: its ancestor {record.parent[:80]!r} is missing"
            )
        cursor, cursor_text = record.parent, parent_text
    if cursor is None:
        try:
            ply, state = -1, start_state(rules, info)
        except IllegalMove as exc:
            raise RecordRefused("illegal_move", f"{where}: the game's start moves: {exc}") from None
    else:
        _, ply, state = kept[cursor]
    for at, at_text, record in reversed(path):
        state = _apply(rules, state, ply, record, where if at == key else f"{where} ancestor {at}")
        ply = record.ply
        kept[at] = (at_text, ply, state)
        kept.move_to_end(at)
    while len(kept) > STATES_KEPT_PER_GAME:
        kept.popitem(last=False)
    return state


def _apply(
    rules: GameRules[Any], state: Any, parent_ply: int, record: MoveRecord, where: str
) -> Any:
    if record.ply != parent_ply + 1:
        raise RecordRefused(
            "illegal_move",
            f"{where}: ply {record.ply} follows ply {parent_ply}, not {record.ply - 1}",
        )
    try:
        return rules.apply_move(state, record.player, record.move)
    except IllegalMove as exc:
        raise RecordRefused("illegal_move", f"{where}: {exc.code}: {exc.message}") from None
