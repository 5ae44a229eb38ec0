"""What each node's game service counted as online during the run, beside the presence it held.

The final states show presence only at the end, when every node is back and every heartbeat is
fresh: a node that keeps showing the players of a region gone for a minute, or drops those of a
region still heartbeating, shows it only while it happens. So every :data:`OBSERVE_S` of true
time until the settling (when the services' timers stop), for every node that is up, the run
writes a ``presence`` note:

* ``wall_ms``: the node's wall clock, by which its service judges heartbeats;
* ``beats``: node -> the heartbeat of that node's presence document as this node holds it (read
  from the document's bytes with ``sim.reference.presence``: the public data format);
* ``counted``: uid -> [the sid of the session the service counts for the account
  (``GameService.all_sessions``: what its public list shows), the nodes whose presence documents
  this node holds with that sid in them, the session's HLC stamp (``started``: a resumed session
  is stamped anew)];
* ``uncounted``: uid -> [[node, sid], ...] for each account with a session in a presence
  document this node holds that the service counts no session for.

Notes are small: after a process's first note, each of ``beats``, ``counted`` and
``uncounted`` is written only when it differs from that process's previous note
(:func:`observations` carries them forward). ``sim.presencecheck`` judges them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meridian.sim import reference
from meridian.sim.reference import PRESENCE_PREFIX, PresenceRec

if TYPE_CHECKING:
    from meridian.sim.history import History
    from meridian.sim.node import SimNode

OBSERVE_S = 0.5
FIELDS = ("beats", "counted", "uncounted")


class PresenceWatch:
    """Writes the ``presence`` notes (module docstring) of every node into a history."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._parsed: dict[tuple[str, str], PresenceRec] = {}  # (reader, doc node) -> parsed
        self._stale: set[tuple[str, str]] = set()  # changed since parsed
        self._last: dict[str, tuple[int, dict[str, Any]]] = {}  # node -> (incarnation, fields)

    def changed(self, node_id: str, doc_id: str) -> None:
        """A presence document changed on a node (any change: a pure delete keeps its state
        vector, so the bytes are read again rather than compared)."""
        if doc_id.startswith(PRESENCE_PREFIX):
            self._stale.add((node_id, doc_id[len(PRESENCE_PREFIX) :]))

    def observe(self, t: float, node: SimNode) -> None:
        reader = node.node_id
        held = self._held(node)
        counted = {s.uid: (s.sid, s.started) for s in node.service.all_sessions()}
        holders: dict[str, list[str]] = {}
        sessions: dict[str, list[list[str]]] = {}
        for doc in held:
            for session in doc.sessions:
                holders.setdefault(session.sid, []).append(doc.node)
                sessions.setdefault(session.uid, []).append([doc.node, session.sid])
        fields: dict[str, Any] = {
            "beats": {doc.node: doc.heartbeat_ms for doc in held},
            "counted": {
                uid: [sid, sorted(holders.get(sid, [])), started]
                for uid, (sid, started) in sorted(counted.items())
            },
            "uncounted": {
                uid: found for uid, found in sorted(sessions.items()) if uid not in counted
            },
        }
        last = self._last.get(reader)
        fresh_process = last is None or last[0] != node.incarnation
        note: dict[str, Any] = {
            "t": round(t, 6),
            "node": reader,
            "kind": "presence",
            "incarnation": node.incarnation,
            "wall_ms": node.wall_ms(),
        }
        for name in FIELDS:
            if fresh_process or last is None or last[1][name] != fields[name]:
                note[name] = fields[name]
        self._last[reader] = (node.incarnation, fields)
        self.history.notes.append(note)

    def _held(self, node: SimNode) -> list[PresenceRec]:
        held = []
        for doc_id in sorted(d for d in node.engine.docs if d.startswith(PRESENCE_PREFIX)):
            key = (node.node_id, doc_id[len(PRESENCE_PREFIX) :])
            parsed = self._parsed.get(key)
            if parsed is None or key in self._stale:
                parsed = reference.presence(key[1], node.engine.docs[doc_id].get_update())
                self._parsed[key] = parsed
                self._stale.discard(key)
            held.append(parsed)
        return held

    def restarted(self, node_id: str) -> None:
        """A new process loaded its documents from disk: read them all again."""
        for key in list(self._parsed):
            if key[0] == node_id:
                del self._parsed[key]


def observations(history: History) -> dict[str, list[dict[str, Any]]]:
    """node -> its ``presence`` notes in order, each with every field (carried forward within
    one process)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for note in history.notes_of("presence"):
        mine = found.setdefault(note["node"], [])
        previous = mine[-1] if mine and mine[-1]["incarnation"] == note["incarnation"] else {}
        mine.append({**{name: previous.get(name) for name in FIELDS}, **note})
    return found
