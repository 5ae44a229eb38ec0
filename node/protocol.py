"""The player protocol's one schema: every websocket message and every HTTP body, typed and capped.

Input is decoded once, here, into frozen msgspec Structs; handlers never see raw JSON. Client
websocket messages are a tagged union on ``type`` (`CLIENT_MESSAGES`); each HTTP route has its
body Struct. Every string and list length and every integer's range is capped; unknown fields,
lone surrogates and values nested deeper than the schema (or too deep to skip) are refused.
A bad input gets a named `ErrorCode` (an HTTP status from `HTTP_STATUS`, or a websocket reply),
or a `CloseCode` when the websocket cannot go on. docs/protocol.md lists both tables and every
message with its fields; tests/test_protocol_schema.py checks that page against this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct

from meridian.node.refusals import (
    HTTP_STATUS,
    MIN_PASSWORD_CHARS,
    NAME_PATTERN,
    RESERVED_NAMES,
    CloseCode,
    ErrorCode,
    NoticeCode,
    Refused,
    check_name,
    check_password,
    move_refusal,
)

__all__ = [
    "HTTP_STATUS",
    "MIN_PASSWORD_CHARS",
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "CloseCode",
    "ErrorCode",
    "NoticeCode",
    "Refused",
    "check_name",
    "check_password",
    "encode_message",
    "move_refusal",
]

MAX_MESSAGE_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 64 * 1024
MAX_CHAT_CHARS: Final = 500
MAX_REQUEST_ID_CHARS: Final = 64
MAX_TOKEN_CHARS: Final = 128
MAX_ID_CHARS: Final = 64  # gid, iid, uid
MAX_NAME_FIELD_CHARS: Final = 64  # a name as given (the name rule then asks for 3-20)
MAX_PASSWORD_CHARS: Final = 1024
MAX_REGION_CHARS: Final = 64
MAX_SEEN_GAMES: Final = 16
MAX_LOST_LINES: Final = 4  # per game in hello's seen: lines told only a bound, until settled
MAX_SEEN_PLY: Final = 10_000
MAX_HEAD_CHARS: Final = 80
MAX_MOVE_KEYS: Final = 16
MAX_MOVE_LIST: Final = 64
MAX_MOVE_INT: Final = 2**31 - 1
MAX_TYPE_CHARS: Final = 32
MAX_DOC_KEY_CHARS: Final = 200
MAX_BATCH_ITEMS: Final = 10_000
MAX_SAFE_INT: Final = 2**53 - 1
# An invitation's time control: each player's time at the start, and the Fischer increment.
MIN_CLOCK_INITIAL_S: Final = 15
MAX_CLOCK_INITIAL_S: Final = 3 * 60 * 60
MAX_CLOCK_INCREMENT_S: Final = 60

# --- field types ----------------------------------------------------------------------------

RequestId = Annotated[str, Meta(max_length=MAX_REQUEST_ID_CHARS)]
Token = Annotated[str, Meta(max_length=MAX_TOKEN_CHARS)]
Id = Annotated[str, Meta(max_length=MAX_ID_CHARS)]
NameField = Annotated[str, Meta(max_length=MAX_NAME_FIELD_CHARS)]
Password = Annotated[str, Meta(max_length=MAX_PASSWORD_CHARS)]
Region = Annotated[str, Meta(min_length=1, max_length=MAX_REGION_CHARS)]
ChatText = Annotated[str, Meta(max_length=MAX_MESSAGE_BYTES)]  # the 500-char rule: too_large
MoveInt = Annotated[int, Meta(ge=-MAX_MOVE_INT, le=MAX_MOVE_INT)]
MoveScalar = MoveInt | Annotated[str, Meta(max_length=MAX_TYPE_CHARS)] | bool | None
MoveValue = MoveScalar | Annotated[list[MoveInt | str], Meta(max_length=MAX_MOVE_LIST)]
# A game's move object: flat, at most MAX_MOVE_KEYS keys (the rules check the rest).
MoveObject = Annotated[
    dict[Annotated[str, Meta(max_length=MAX_TYPE_CHARS)], MoveValue],
    Meta(max_length=MAX_MOVE_KEYS),
]
SafeInt = Annotated[int, Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
DocScalar = str | bool | None | SafeInt | float
DocKey = Annotated[str, Meta(min_length=1, max_length=MAX_DOC_KEY_CHARS)]


class Lost(Struct, frozen=True, forbid_unknown_fields=True):
    """``seen[gid].lost``: a line a ``rollback`` with ``settled`` false only bounded (`told`)."""

    ply: Annotated[int, Meta(ge=0, le=MAX_SEEN_PLY)]
    head: Annotated[str, Meta(max_length=MAX_HEAD_CHARS)]
    told: Annotated[int, Meta(ge=0, le=MAX_SEEN_PLY)]


class Seen(Struct, frozen=True, forbid_unknown_fields=True):
    """hello's report of the last `game` push shown for one game (and a line still unsettled)."""

    ply: Annotated[int, Meta(ge=0, le=MAX_SEEN_PLY)]
    head: Annotated[str, Meta(max_length=MAX_HEAD_CHARS)]
    lost: Annotated[list[Lost], Meta(max_length=MAX_LOST_LINES)] = []


class TimeControl(Struct, frozen=True, forbid_unknown_fields=True):
    """invite's ``clock``: seconds per player at the start and the increment per turn."""

    initial_s: Annotated[int, Meta(ge=MIN_CLOCK_INITIAL_S, le=MAX_CLOCK_INITIAL_S)]
    increment_s: Annotated[int, Meta(ge=0, le=MAX_CLOCK_INCREMENT_S)] = 0


# --- websocket: client messages -------------------------------------------------------------


class ClientMessage(
    Struct, tag_field="type", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """The envelope every client message shares: ``type`` (the tag) and the optional ``id``."""

    id: RequestId | None = None


class Hello(ClientMessage, tag="hello", frozen=True):
    token: Token | None = None
    resume: Token | None = None
    seen: Annotated[dict[Id, Seen], Meta(max_length=MAX_SEEN_GAMES)] | None = None


class Invite(ClientMessage, tag="invite", frozen=True):
    to: NameField
    resume: Id | None = None
    clock: TimeControl | None = None


class Retract(ClientMessage, tag="retract", frozen=True):
    invite: Id


class Accept(ClientMessage, tag="accept", frozen=True):
    invite: Id


class Decline(ClientMessage, tag="decline", frozen=True):
    invite: Id


class Move(ClientMessage, tag="move", frozen=True):
    game: Id
    move: MoveObject


class Save(ClientMessage, tag="save", frozen=True):
    game: Id


class GiveUp(ClientMessage, tag="give_up", frozen=True):
    game: Id


class Watch(ClientMessage, tag="watch", frozen=True):
    game: Id


class Unwatch(ClientMessage, tag="unwatch", frozen=True):
    pass


class Chat(ClientMessage, tag="chat", frozen=True):
    text: ChatText
    to: NameField | None = None
    game: Id | None = None

    def __post_init__(self) -> None:
        if (self.to is None) == (self.game is None):
            raise ValueError("chat needs exactly one of `to` and `game`")


class Saved(ClientMessage, tag="saved", frozen=True):
    pass


class Rename(ClientMessage, tag="rename", frozen=True):
    name: NameField


class Ping(ClientMessage, tag="ping", frozen=True):
    pass


class LobbyPage(ClientMessage, tag="lobby_page", frozen=True):
    after: NameField | None = None


AnyClientMessage = (
    Hello
    | Invite
    | Retract
    | Accept
    | Decline
    | Move
    | Save
    | GiveUp
    | Watch
    | Unwatch
    | Chat
    | Saved
    | Rename
    | Ping
    | LobbyPage
)
CLIENT_MESSAGES: Final[tuple[type[ClientMessage], ...]] = get_args(AnyClientMessage)


def message_type(cls: type[ClientMessage]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


MESSAGE_TYPES: Final = frozenset(message_type(cls) for cls in CLIENT_MESSAGES)


class _Envelope(Struct, frozen=True):
    """What is read first: enough to admit the frame and address a reply (unknown fields are
    skipped here, refused by the full decode)."""

    type: Annotated[str, Meta(max_length=MAX_TYPE_CHARS)]
    id: RequestId | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_MESSAGE = msgspec.json.Decoder(AnyClientMessage)
_ENCODER = msgspec.json.Encoder()


def encode_message(message: dict[str, Any]) -> str:
    """A server message as websocket text (msgspec: several times faster than ``json.dumps``;
    each push is encoded once per audience, not per connection)."""
    return _ENCODER.encode(message).decode()


class Frame(Struct, frozen=True):
    """A websocket frame read as far as the envelope: its `type`, its `id`, and its bytes."""

    type: str
    id: str | None
    raw: bytes


class ProtocolViolation(Exception):
    """A frame that ends the connection: `code` is the close code, `reason` says why."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def read_frame(text: str) -> Frame:
    """The envelope of one websocket text frame, or `ProtocolViolation`."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolViolation(CloseCode.PROTOCOL, "message is not valid UTF-8") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            CloseCode.TOO_LARGE, f"message larger than {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        envelope = _ENVELOPE.decode(raw)
    except msgspec.ValidationError as error:  # (a subclass of DecodeError: first)
        raise ProtocolViolation(
            CloseCode.PROTOCOL, f"message is not an object with a type and an id: {error}"
        ) from None
    except msgspec.DecodeError:
        raise ProtocolViolation(
            CloseCode.PROTOCOL, "message is not JSON (or holds a lone surrogate)"
        ) from None
    except RecursionError:
        raise ProtocolViolation(CloseCode.PROTOCOL, "message nested too deep") from None
    return Frame(envelope.type, envelope.id, raw)


def decode_message(frame: Frame) -> AnyClientMessage:
    """The typed message of an admitted frame, or `Refused` (unknown_type, bad_request)."""
    if frame.type not in MESSAGE_TYPES:
        raise Refused(ErrorCode.UNKNOWN_TYPE, f"no message type {frame.type[:32]!r}")
    try:
        return _MESSAGE.decode(frame.raw)
    except msgspec.ValidationError as error:
        raise Refused(ErrorCode.BAD_REQUEST, str(error)) from None
    except (msgspec.DecodeError, RecursionError):  # read_frame let it through: cannot happen
        raise Refused(ErrorCode.BAD_REQUEST, "malformed message") from None


# --- HTTP bodies ----------------------------------------------------------------------------


class Body(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An HTTP request body."""


class RegisterBody(Body, frozen=True):
    """``POST /api/register`` and ``POST /api/admin/accounts``."""

    name: NameField
    password: Password
    home: Region | None = None


class LoginBody(Body, frozen=True):
    """``POST /api/login``."""

    name: NameField
    password: Password


class LogoutBody(Body, frozen=True):
    """``POST /api/logout`` (the session is the bearer token)."""


class PasswordBody(Body, frozen=True):
    """``POST /api/password``."""

    old: Password
    new: Password


class HomeBody(Body, frozen=True):
    """``POST /api/home``."""

    region: Region


class DocValueBody(Body, frozen=True):
    """``PUT /api/admin/docs/{doc}/{key}``."""

    value: DocScalar


class DocBatchBody(Body, frozen=True):
    """``POST /api/admin/docs/{doc}``."""

    items: Annotated[list[tuple[DocKey, DocScalar]], Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


class BackupBody(Struct, frozen=True, kw_only=True):
    """``POST /api/admin/import``: a backup file (later formats may add fields)."""

    format: Annotated[str, Meta(max_length=64)]
    documents: dict[Annotated[str, Meta(max_length=256)], str]
    node: str = ""


BodyT = TypeVar("BodyT", bound=Struct)
_BODY_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_body(
    raw: bytes, body_type: type[BodyT], *, code: ErrorCode = ErrorCode.BAD_REQUEST
) -> BodyT:
    """An HTTP body as `body_type`, or `Refused` with `code` (an empty body reads as ``{}``)."""
    decoder = _BODY_DECODERS.get(body_type)
    if decoder is None:
        decoder = _BODY_DECODERS[body_type] = msgspec.json.Decoder(body_type)
    try:
        result: BodyT = decoder.decode(raw.strip() or b"{}")
    except msgspec.ValidationError as error:  # (a subclass of DecodeError: first)
        raise Refused(code, f"body: {error}") from None
    except msgspec.DecodeError:
        raise Refused(code, "body is not JSON (or holds a lone surrogate)") from None
    except RecursionError:
        raise Refused(code, "body nested too deep") from None
    return result


# The body schema of every HTTP route that takes one (docs/protocol.md lists the same).
HTTP_BODIES: Final[dict[str, type[Struct]]] = {
    "POST /api/register": RegisterBody,
    "POST /api/login": LoginBody,
    "POST /api/logout": LogoutBody,
    "POST /api/password": PasswordBody,
    "POST /api/home": HomeBody,
    "POST /api/admin/accounts": RegisterBody,
    "PUT /api/admin/docs/DOC/KEY": DocValueBody,
    "POST /api/admin/docs/DOC": DocBatchBody,
    "POST /api/admin/import": BackupBody,
}
