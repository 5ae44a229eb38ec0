"""The push gate (node.delivery): nothing that shows a change leaves before the change is kept.

Sans-IO: a `Delivery` fed with messages and a hand-driven `Progress` (how far the store has
committed, how many regions acknowledged what).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meridian.node.delivery import Close, Delivery, Gate, Send


@dataclass
class FakeProgress:
    durable: int = 0
    held: dict[tuple[str, int], int] = field(default_factory=dict)
    unanswered: set[str] = field(default_factory=set)

    def durable_through(self) -> int:
        return self.durable

    def regions_holding(self, doc_id: str, event_no: int) -> int:
        return self.held.get((doc_id, event_no), 0)

    def oldest_peer_protocol(self) -> int | None:
        return None

    def asking(self, doc_id: str) -> bool:
        return doc_id in self.unanswered


def reply(conn: str, event: int, doc: str = "game:g") -> Send:
    return Send(conn, {"re": "r1", "ok": True, "ply": 3}, Gate(doc, event, event))


def push(conn: str, event: int, doc: str = "game:g", local: int = 0) -> Send:
    return Send(conn, {"type": "game", "ply": 3}, Gate(doc, event, local))


def test_a_push_showing_a_move_waits_for_the_commit_and_leaves_with_its_reply() -> None:
    delivery, progress = Delivery(ack_regions=0), FakeProgress()
    delivery.put([reply("mover", 7), push("opponent", 7), push("watcher", 7)])
    assert delivery.release(0.0, progress) == []
    progress.durable = 6
    assert delivery.release(0.1, progress) == []
    progress.durable = 7
    released = delivery.release(0.2, progress)
    assert [item.conn for item in released] == ["mover", "opponent", "watcher"]
    assert delivery.waiting() == 0


def test_messages_for_one_connection_keep_their_order_behind_a_held_one() -> None:
    delivery, progress = Delivery(ack_regions=0), FakeProgress(durable=3)
    lobby = Send("c1", {"type": "lobby_update"})
    other = Send("c2", {"type": "lobby_update"})
    delivery.put([push("c1", 5), lobby, other])
    assert delivery.release(0.0, progress) == [other]  # c2 is not behind anything
    progress.durable = 5
    assert [
        item.message["type"] for item in delivery.release(0.1, progress) if isinstance(item, Send)
    ] == [
        "game",
        "lobby_update",
    ]


def test_with_ack_regions_a_push_waits_until_enough_regions_hold_the_change() -> None:
    delivery, progress = Delivery(ack_regions=1), FakeProgress(durable=9)
    delivery.put([push("opponent", 9, local=9)])
    assert delivery.release(0.0, progress) == []
    progress.held[("game:g", 9)] = 1
    assert [item.conn for item in delivery.release(0.01, progress)] == ["opponent"]


def test_a_change_learnt_from_another_region_waits_only_for_the_local_commit() -> None:
    delivery, progress = Delivery(ack_regions=2), FakeProgress(durable=4)
    delivery.put([push("opponent", 4, local=0)])
    assert [item.conn for item in delivery.release(0.0, progress)] == ["opponent"]


def test_a_replication_wait_ends_with_not_replicated_for_a_reply_and_the_push_as_it_is() -> None:
    delivery, progress = Delivery(ack_regions=1, replication_wait_s=5.0), FakeProgress(durable=2)
    delivery.put([reply("mover", 2), push("opponent", 2, local=2)])
    assert delivery.release(10.0, progress) == []
    assert delivery.next_deadline() == 15.0
    assert delivery.release(14.9, progress) == []
    released = delivery.release(15.0, progress)
    answer, shown = released
    assert isinstance(answer, Send) and answer.message["ok"] is False
    assert answer.message["error"]["code"] == "not_replicated" and answer.message["re"] == "r1"
    assert isinstance(shown, Send) and shown.message == {"type": "game", "ply": 3}
    assert delivery.released_late == 2 and delivery.next_deadline() is None


def test_the_replication_wait_ends_at_its_deadline_despite_float_rounding() -> None:
    # 11.043 - 6.043 is a hair under 5.0: released at the deadline `next_deadline` names, or the
    # adapter, woken then, would find nothing to do and wake again at the same instant forever.
    delivery, progress = Delivery(ack_regions=1, replication_wait_s=5.0), FakeProgress(durable=2)
    delivery.put([push("opponent", 2, local=2)])
    assert delivery.release(6.043, progress) == []
    due = delivery.next_deadline()
    assert due is not None and len(delivery.release(due, progress)) == 1


def test_a_reply_waiting_for_a_catch_up_leaves_once_every_asked_document_is_answered() -> None:
    """A failover's hello (node.service_handlers._catch_up): durable here, replicated nowhere,
    and held with the pushes behind it until the linked regions answered for its games."""
    delivery, progress = Delivery(ack_regions=1), FakeProgress(durable=3)
    hello = Send("arriving", {"re": "h", "ok": True}, Gate("presence:eu", 3, 0, ("game:a",)))
    progress.unanswered = {"game:a"}
    delivery.put([hello, push("arriving", 3)])
    assert delivery.release(0.0, progress) == []
    progress.unanswered = set()
    released = delivery.release(0.1, progress)
    assert [item.message.get("re") for item in released if isinstance(item, Send)] == ["h", None]


def test_a_catch_up_nobody_answers_releases_the_reply_as_it_is_after_the_wait() -> None:
    delivery, progress = Delivery(ack_regions=1, replication_wait_s=5.0), FakeProgress(durable=3)
    progress.unanswered = {"game:a"}
    delivery.put(
        [Send("arriving", {"re": "h", "ok": True}, Gate("presence:eu", 3, 0, ("game:a",)))]
    )
    assert delivery.release(1.0, progress) == [] and delivery.next_deadline() == 6.0
    (answer,) = delivery.release(6.0, progress)
    assert isinstance(answer, Send) and answer.message == {"re": "h", "ok": True}


def test_a_close_leaves_in_order_and_drops_what_follows_it() -> None:
    delivery, progress = Delivery(ack_regions=0), FakeProgress(durable=1)
    delivery.put([Send("c1", {"type": "a"}), Close("c1", 4100, "elsewhere"), push("c1", 1)])
    released = delivery.release(0.0, progress)
    assert released == [Send("c1", {"type": "a"}), Close("c1", 4100, "elsewhere")]
    assert delivery.waiting() == 0
