"""Why the store snapshots with ``merge_updates`` and not with ``Doc.get_update()``.

A node stores updates as they arrive, and peers may deliver an update before the one it depends
on (Yjs "pending" structs). A snapshot must keep such updates so that the document is complete
once the missing update arrives. These tests pin down, on pycrdt 0.14, that a Doc does not keep
them (so a Doc cannot be the snapshot builder) and that the store does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, Text, merge_updates

from meridian.sync.store import DocumentStore


def two_dependent_updates() -> tuple[bytes, bytes, str]:
    """Two updates of one client, the second inserting after text the first inserted."""
    doc: Doc[Any] = Doc(client_id=1)
    text = doc.get("t", type=Text)
    before = doc.get_state()
    text += "move 1;"
    first = bytes(doc.get_update(before))
    middle = doc.get_state()
    text += "move 2;"
    second = bytes(doc.get_update(middle))
    return first, second, str(text)


def text_of(*updates: bytes) -> str:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


def test_doc_get_update_drops_pending_structs() -> None:
    """The reason for merge_updates: a Doc holding only the second update exports nothing of it."""
    first, second, full_text = two_dependent_updates()
    holder: Doc[Any] = Doc()
    holder.apply_update(second)  # pending: its origin (in `first`) has not arrived

    exported = bytes(holder.get_update())

    assert text_of(exported, first) == "move 1;"  # "move 2;" is gone
    assert text_of(merge_updates(second), first) == full_text


def test_doc_fed_pending_updates_out_of_order_can_drop_one() -> None:
    """Why load() callers should apply LoadedState.merged_update, not the rows one by one."""
    doc: Doc[Any] = Doc(client_id=1)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(bytes(event.update)))
    doc.get("t", type=Text).insert(0, "A")
    doc.get("m", type=Map)["k"] = 1
    doc.get("t", type=Text).insert(1, "B")

    assert text_of(updates[1], updates[2], updates[0]) == "A"  # "B" lost inside the Doc
    assert text_of(merge_updates(updates[1], updates[2], updates[0])) == "AB"


def test_snapshot_keeps_an_update_whose_dependency_has_not_arrived(tmp_path: Path) -> None:
    first, second, full_text = two_dependent_updates()
    store = DocumentStore(tmp_path / "node.sqlite3", snapshot_every=1)
    store.stage("game:1", second)
    store.stage("game:1", b"\x00\x00")  # a second row, so the commit folds both into a snapshot
    assert store.commit().snapshots == 1
    store.close()

    store = DocumentStore(tmp_path / "node.sqlite3")
    loaded = store.load()
    store.close()

    assert len(loaded.updates["game:1"]) == 1  # only the snapshot row is left
    assert text_of(loaded.merged_update("game:1"), first) == full_text


def test_snapshot_keeps_a_delete_of_an_item_not_yet_received(tmp_path: Path) -> None:
    author: Doc[Any] = Doc(client_id=1)
    author.get("t", type=Text).insert(0, "typo")
    insert = bytes(author.get_update())
    editor: Doc[Any] = Doc(client_id=2)
    editor.apply_update(insert)
    before = editor.get_state()
    del editor.get("t", type=Text)[0:4]
    delete_only = bytes(editor.get_update(before))  # a pure delete: a delete set, no structs

    store = DocumentStore(tmp_path / "node.sqlite3", snapshot_every=1)
    store.stage("game:1", delete_only)
    store.stage("game:1", b"\x00\x00")
    assert store.commit().snapshots == 1
    loaded = store.load()
    store.close()

    assert text_of(loaded.merged_update("game:1"), insert) == ""
    holder: Doc[Any] = Doc()
    holder.apply_update(delete_only)
    assert text_of(bytes(holder.get_update()), insert) == "typo"  # a Doc-built snapshot forgets
