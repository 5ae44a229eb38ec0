"""A player websocket's writer (`player_api.Connection`): what is put is written in order, a
close last, and a close decided while the connection's own task hands a message over is sent
by that task (which then reads until the player answers it), not by the writer."""

from __future__ import annotations

import asyncio
from typing import Any

from meridian.node.delivery import Close, Send
from meridian.node.player_api import Connection


class FakeSocket:
    """Records what is written; `close` notes which task called it."""

    def __init__(self) -> None:
        self.written: list[str] = []

    async def send_str(self, text: str) -> None:
        await asyncio.sleep(0)  # a write may wait for the socket
        self.written.append(text)

    async def close(self, *, code: int, message: bytes) -> bool:
        task = asyncio.current_task()
        self.written.append(f"close {code} {message.decode()} by {task.get_name() if task else ''}")
        return True


def send(text: str) -> Send:
    return Send("c1", {}, text=text)


def test_a_close_from_elsewhere_is_written_by_the_writer_after_what_came_before() -> None:
    async def run() -> list[str]:
        ws: Any = FakeSocket()
        connection = Connection(ws)
        connection.put(send("a"))
        connection.put(Close("c1", 4001, "idle"))
        connection.put(send("after the close"))
        assert connection.writer is not None
        connection.writer.set_name("writer")
        await connection.writer
        return list(ws.written)

    assert asyncio.run(run()) == ["a", "close 4001 idle by writer"]


def test_a_close_decided_while_the_reader_hands_a_message_over_is_sent_by_the_reader() -> None:
    async def run() -> list[str]:
        ws: Any = FakeSocket()
        connection = Connection(ws)
        connection.reading = True  # (as the websocket handler sets it around `_on_message`)
        connection.put(send("rate_limited"))
        connection.put(Close("c1", 4002, "flood"))
        connection.reading = False
        assert connection.reader_closes
        assert connection.writer is not None
        connection.writer.set_name("writer")
        await connection.writer  # the writer writes the reply and leaves the close alone
        assert ws.written == ["rate_limited"]
        await connection.close_from_reader()
        return list(ws.written)

    reply, close = asyncio.run(run())
    assert reply == "rate_limited"
    assert close.startswith("close 4002 flood by") and not close.endswith("by writer")


class StuckSocket(FakeSocket):
    """A player that reads nothing: every write waits for good."""

    async def send_str(self, text: str) -> None:
        await asyncio.Event().wait()


def test_a_close_by_the_reader_gives_up_on_a_player_that_reads_nothing() -> None:
    async def run() -> Connection:
        ws: Any = StuckSocket()
        connection = Connection(ws)
        connection.reading = True
        connection.put(send("rate_limited"))
        connection.put(Close("c1", 4002, "flood"))
        connection.reading = False
        await asyncio.wait_for(connection.close_from_reader(wait_s=0.05), 5)
        await asyncio.sleep(0)  # the cancelled writer's own clean-up
        return connection

    connection = asyncio.run(run())
    assert connection.writer is None  # the writer was cancelled, not left waiting
