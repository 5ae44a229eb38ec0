"""The one schema (node/protocol.py) against what documents and speaks it.

docs/protocol.md's message, body, error-code and close-code tables must match the schema; the
JS client's table of final close codes and the error codes it reacts to must be in it; and the
exact hostile inputs that once got "internal", a 500 or a dropped socket get a named refusal.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from meridian.node import protocol
from meridian.node.protocol import (
    CLIENT_MESSAGES,
    HTTP_BODIES,
    HTTP_STATUS,
    CloseCode,
    ErrorCode,
    LoginBody,
    NoticeCode,
    PasswordBody,
    ProtocolViolation,
    Refused,
    RegisterBody,
    decode_body,
    message_type,
    read_frame,
)
from tests.service_harness import ServiceHarness

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_MD = (ROOT / "docs" / "protocol.md").read_text()
JS = ROOT / "node" / "static" / "js"
CLIENT_ONLY_CODES = {"network", "timeout", "disconnected"}  # made up by the JS client itself


def _section(title: str) -> str:
    start = PROTOCOL_MD.index(title)
    rest = PROTOCOL_MD[start + len(title) :]
    end = re.search(r"\n#{2,3} ", rest)
    return rest[: end.start()] if end else rest


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # the header


def _fields(cls: type[msgspec.Struct]) -> dict[str, bool]:
    """field -> optional, besides the envelope's ``id``."""
    info = msgspec.structs.fields(cls)
    return {
        f.name: f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
        for f in info
        if f.name != "id"
    }


def test_the_client_message_table_lists_every_type_with_its_fields() -> None:
    documented = {}
    for row in _rows(_section("### Client messages")):
        kind = row[0].strip("`")
        fields = {}
        for word in re.findall(r"`(\w+)`(\??)", row[1]):
            fields[word[0]] = word[1] == "?"
        documented[kind] = fields
    assert documented == {message_type(cls): _fields(cls) for cls in CLIENT_MESSAGES}


def test_the_http_tables_list_every_body_with_its_fields() -> None:
    documented = {}
    for title in ("## HTTP API", "Administration (admin token"):
        for row in _rows(_section(title)):
            route = row[0].strip("`").split("?")[0].replace("GID", "{gid}")
            body = row[1]
            if not body.startswith("`{"):
                continue
            fields = {name: opt == "?" for name, opt in re.findall(r'"(\w+)"(\??)', body)}
            documented[route] = fields
    assert documented == {route: _fields(cls) for route, cls in HTTP_BODIES.items()}


def test_the_error_code_table_is_the_schemas() -> None:
    rows = _rows(_section("## Error codes"))
    documented = {row[0].strip("`"): int(row[1]) for row in rows}
    assert documented == {str(code): status for code, status in HTTP_STATUS.items()}
    assert set(HTTP_STATUS) == set(ErrorCode)


def test_the_close_code_table_is_the_schemas() -> None:
    rows = _rows(_section("### Closing"))
    documented = {int(row[0]): (row[1].strip("`"), row[3].startswith("no")) for row in rows}
    assert documented == {int(c): (c.name.lower(), c.final) for c in CloseCode}


def test_the_js_clients_final_closes_are_the_schemas() -> None:
    text = (JS / "connection.js").read_text()
    table = text[text.index("FINAL_CLOSES = {") : text.index("};", text.index("FINAL_CLOSES"))]
    in_js = {int(code): name for code, name in re.findall(r'(\d{4}): "(\w+)"', table)}
    assert in_js == {int(c): c.name.lower() for c in CloseCode if c.final}


def test_every_error_code_the_js_client_reacts_to_is_in_the_table() -> None:
    seen: set[str] = set()
    for path in JS.glob("*.js"):
        text = path.read_text()
        seen.update(re.findall(r'code (?:===|!==) "(\w+)"', text))
        for block in re.findall(r"const known = \{(.*?)\};", text, re.S):
            seen.update(re.findall(r"^\s*(\w+):", block, re.M))
    assert seen, "the JS client's error handling was not found"
    known = {str(c) for c in ErrorCode} | {str(c) for c in NoticeCode}
    assert seen - CLIENT_ONLY_CODES <= known


def test_the_python_clients_close_tables_use_the_schemas_codes() -> None:
    from meridian.node import botbrain

    finals = {int(c) for c in CloseCode if c.final}
    assert set(botbrain.FATAL_CLOSE_WHY) <= finals
    assert set(botbrain.FATAL_CLOSES) <= finals


# --- the exact inputs of the hostile-input report -------------------------------------------

DEEP = "[" * 1200 + "]" * 1200
HUGE_INT = "9" * 4400


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "hello", "token": "\\ud800"}',
        '{"type": "hello", "resume": "\\ud800"}',
        '{"type": "hello", "token": ' + DEEP + "}",
        '{"type": "hello", "x": ' + DEEP + "}",
        '{"type": "hello", "token": ' + HUGE_INT + "}",
        DEEP,
    ],
)
def test_hostile_frames_before_login_get_4103_or_bad_request_never_internal(frame: str) -> None:
    harness = ServiceHarness()
    conn = harness.open()
    reply = harness.send(conn, frame)
    closed = conn.closed is not None and conn.closed[0] == CloseCode.PROTOCOL
    refused = reply is not None and reply["error"]["code"] == "bad_request"
    assert closed or refused
    assert not any(r.get("error", {}).get("code") == "internal" for r in conn.received)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"text": "hi", "game": ["g"]}, "bad_request"),
        ({"text": "hi", "game": {"g": 1}}, "bad_request"),
        ({"text": "hi", "to": ["bob"]}, "bad_request"),
        ({"text": "hi", "game": "g", "to": "bob"}, "bad_request"),
        ({"text": "hi", "game": int(HUGE_INT[:30])}, "bad_request"),
    ],
)
def test_hostile_chat_gets_a_named_refusal(fields: dict[str, object], code: str) -> None:
    harness = ServiceHarness()
    alice = harness.online("alice")
    reply = harness.request(alice, "chat", **fields)
    assert reply["ok"] is False and reply["error"]["code"] == code
    assert alice.closed is None


def test_a_deep_or_huge_frame_after_login_closes_with_4103() -> None:
    harness = ServiceHarness()
    for frame in ('{"type": "ping", "x": ' + DEEP + "}", '{"type": "ping", "x": ' + HUGE_INT + "}"):
        alice = harness.online("alice" + str(len(harness.connections)))
        reply = harness.send(alice, frame)
        closed = alice.closed is not None and alice.closed[0] == CloseCode.PROTOCOL
        refused = reply is not None and reply["error"]["code"] == "bad_request"
        assert closed or refused


@pytest.mark.parametrize(
    ("raw", "body_type"),
    [
        (b"[", RegisterBody),
        (b"[]", RegisterBody),
        (b'{"name": "alice", "password": "\\ud800\\ud800\\ud800\\ud800"}', RegisterBody),
        (b'{"name": "alice", "password": "\\ud800\\ud800\\ud800\\ud800"}', LoginBody),
        (b'{"old": "\\ud800", "new": "\\udfff\\udfff\\udfff\\udfff"}', PasswordBody),
        (b'{"name": "alice", "password": "long enough", "home": ["eu"]}', RegisterBody),
        (b'{"name": "alice", "password": "long enough", "home": {"r": 1}}', RegisterBody),
        (b'{"name": ' + DEEP.encode() + b"}", RegisterBody),
        (b'{"name": "a", "x": ' + DEEP.encode() + b"}", LoginBody),
        (b'{"name": ' + HUGE_INT.encode() + b"}", LoginBody),
    ],
)
def test_hostile_bodies_are_a_400_with_a_named_code(raw: bytes, body_type: type) -> None:
    with pytest.raises(Refused) as refused:
        decode_body(raw, body_type)
    assert refused.value.code == ErrorCode.BAD_REQUEST and refused.value.status == 400


def test_a_frame_over_the_size_limit_is_4003() -> None:
    with pytest.raises(ProtocolViolation) as violation:
        read_frame("x" * (protocol.MAX_MESSAGE_BYTES + 1))
    assert violation.value.code == CloseCode.TOO_LARGE
