"""Indexes of the connections on a node (uid, session or game -> connection ids), kept small:
most keys have one or two connections, and idle players are many."""

from __future__ import annotations


def add_member(index: dict[str, tuple[str, ...]], key: str, conn_id: str) -> None:
    """Add `conn_id` to an index kept as tuples (a 1-tuple costs a fifth of a set)."""
    members = index.get(key, ())
    if conn_id not in members:
        index[key] = (*members, conn_id)


def remove_member(index: dict[str, tuple[str, ...]], key: str, conn_id: str) -> None:
    """Remove `conn_id` from an index kept as tuples (and the key once it is empty)."""
    left = tuple(c for c in index.get(key, ()) if c != conn_id)
    if left:
        index[key] = left
    else:
        index.pop(key, None)


def discard_member(index: dict[str, set[str]], key: str, conn_id: str) -> None:
    """Remove `conn_id` from an index kept as sets (and the key once it is empty)."""
    members = index.get(key)
    if members is not None:
        members.discard(conn_id)
        if not members:
            del index[key]
