"""Chat: a message to one player (anywhere) or to a game's table, carried in the sender's node's
presence document for CHAT_KEEP_S and pushed by every node to its recipients connected there."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc

from meridian.crdt_models.records import decode_record, encode_record, map_get, root_map
from meridian.node import protocol as p
from meridian.node.protocol import MAX_CHAT_CHARS, ErrorCode, Refused
from meridian.node.service_state import Answer, Conn, ServiceState

CHATS = "chats"
CHAT_KEEP_S = 30.0


class ChatTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._seen: set[str] = set()
        self._sent_at: dict[str, float] = {}

    def check_text(self, message: p.Chat) -> str:
        text = message.text
        if not text.strip():
            raise Refused(ErrorCode.BAD_REQUEST, "chat needs a text")
        if len(text) > MAX_CHAT_CHARS:
            raise Refused(
                ErrorCode.TOO_LARGE, f"chat text is limited to {MAX_CHAT_CHARS} characters"
            )
        return text

    def to_table(self, conn: Conn, message: p.Chat, gid: str, now: float) -> Answer:
        """Chat to everyone at a game's table: only its players and watchers may."""
        state = self.state
        text = self.check_text(message)
        tracker = state.games.get(gid)
        if tracker is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such game")
        if conn.uid not in tracker.info.players and conn.watching != gid:
            raise Refused(
                ErrorCode.NOT_PLAYER, "only the players and watchers of a game chat there"
            )
        return self._post(conn, {"text": text, "game": gid}, now)

    def to_player(self, conn: Conn, message: p.Chat, uid: str, name: str, now: float) -> Answer:
        text = self.check_text(message)
        if uid not in self.state.picture.sessions:
            raise Refused(ErrorCode.OFFLINE, f"{name} is not online")
        return self._post(conn, {"text": text, "to_uid": uid, "to": name}, now)

    def _post(self, conn: Conn, fields: dict[str, str], now: float) -> Answer:
        state = self.state
        record = {"from": conn.name, "from_uid": conn.uid, "stamp": state.stamp(), **fields}
        key = state.new_token()[:16]
        self._sent_at[key] = now
        event = state.write(
            state.presence_doc,
            lambda doc: root_map(doc, CHATS).__setitem__(key, encode_record(record)),
        )
        return Answer({}, state.presence_doc, event)

    def deliver(self, doc: Doc[Any]) -> None:
        """Push the chat messages of a presence document not seen before to their audience."""
        chats = root_map(doc, CHATS)
        for key in sorted(set(chats.keys()) - self._seen):  # read only the new values
            self._seen.add(key)
            text = map_get(chats, key)
            try:
                record = decode_record(text, ("from", "from_uid", "text", "stamp"))
            except ValueError:
                continue
            push = {"type": "chat", "from": record["from"], "text": record["text"]}
            push.update({k: record[k] for k in ("to", "game") if k in record})
            for conn in self._audience(record):
                self.state.send(conn.conn_id, push)

    def _audience(self, record: dict[str, Any]) -> list[Conn]:
        state = self.state
        if "game" in record:
            tracker = state.games.get(str(record["game"]))
            return state.game_audience(str(record["game"]), tracker) if tracker else []
        return state.conns_of(str(record.get("to_uid", "")))

    def prune(self, now: float) -> None:
        """Remove this node's chat messages older than CHAT_KEEP_S (every node saw them)."""
        old = [key for key, at in self._sent_at.items() if now - at > CHAT_KEEP_S]
        if not old:
            return
        for key in old:
            del self._sent_at[key]
        self.state.write(
            self.state.presence_doc, lambda doc: [root_map(doc, CHATS).pop(k, None) for k in old]
        )
