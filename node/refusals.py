"""Every way a node says no to a player: close codes, error codes and their HTTP statuses,
`Refused`, and the rules for names and passwords (docs/protocol.md lists the same tables;
tests/test_protocol_schema.py checks them). ``node.protocol`` re-exports all of it."""

from __future__ import annotations

import enum
import re
from typing import Any, Final

MIN_PASSWORD_CHARS: Final = 8

NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{3,20}")
# Names nobody may register or take by renaming (compared ignoring case); a node also reserves
# its own id, its region and the ids of the nodes it hears from.
RESERVED_NAMES: Final = frozenset(
    {
        "admin",
        "administrator",
        "root",
        "system",
        "moderator",
        "mod",
        "meridian",
        "server",
        "support",
        "operator",
        "sysop",
        "staff",
        "owner",
        "nobody",
        "null",
        "undefined",
    }
)


class CloseCode(enum.IntEnum):
    """Websocket close codes: 40xx may reconnect, 41xx must not (docs/protocol.md, Closing)."""

    SHUTDOWN = 4000
    IDLE = 4001
    FLOOD = 4002
    TOO_LARGE = 4003
    LOGGED_IN_ELSEWHERE = 4100
    BAD_TOKEN = 4101
    DISABLED = 4102
    PROTOCOL = 4103
    MOVED = 4104

    @property
    def final(self) -> bool:
        """The client must not reconnect on its own after this close."""
        return self >= 4100


class ErrorCode(enum.StrEnum):
    """Every error code a node answers with (websocket replies and HTTP bodies)."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    UNAUTHENTICATED = "unauthenticated"
    BAD_CREDENTIALS = "bad_credentials"
    UNKNOWN_USER = "unknown_user"
    NAME_TAKEN = "name_taken"
    WEAK_PASSWORD = "weak_password"
    NOT_FOUND = "not_found"
    BUSY = "busy"
    OFFLINE = "offline"
    NOT_PLAYER = "not_player"
    NOT_YOUR_TURN = "not_your_turn"
    ILLEGAL_MOVE = "illegal_move"
    GAME_OVER = "game_over"
    TIME_OUT = "time_out"  # the mover's time ran out (games with a time control)
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"  # also: a write to a document quarantined after store damage
    NOT_HOME = "not_home"  # password and home change only in the account's home region
    DRAINING = "draining"  # the node is shutting down (node.drain)
    INTERNAL = "internal"
    NOT_REPLICATED = "not_replicated"
    UNAUTHORIZED = "unauthorized"  # admin routes: no or wrong admin token
    BAD_DOCUMENT = "bad_document"
    BAD_KEY = "bad_key"
    BAD_VALUE = "bad_value"
    BAD_ITEMS = "bad_items"
    BAD_JSON = "bad_json"
    BAD_BACKUP = "bad_backup"
    NOT_EMPTY = "not_empty"
    NOT_DEMO = "not_demo"  # dashboard: the node does not run under `meridian demo`
    DOWN = "down"  # dashboard: the region is down already
    BAD_RECORD = "bad_record"  # dashboard: an archived game that does not replay


class NoticeCode(enum.StrEnum):
    """The ``code`` of a ``notice`` push (docs/protocol.md, Server pushes)."""

    MUST_RENAME = "must_rename"
    GAME_PARKED = "game_parked"


HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.BAD_CREDENTIALS: 401,
    ErrorCode.UNKNOWN_USER: 404,
    ErrorCode.NAME_TAKEN: 409,
    ErrorCode.WEAK_PASSWORD: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.BUSY: 409,
    ErrorCode.OFFLINE: 409,
    ErrorCode.NOT_PLAYER: 403,
    ErrorCode.NOT_YOUR_TURN: 409,
    ErrorCode.ILLEGAL_MOVE: 400,
    ErrorCode.GAME_OVER: 409,
    ErrorCode.TIME_OUT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.NOT_HOME: 409,
    ErrorCode.DRAINING: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.NOT_REPLICATED: 504,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.BAD_DOCUMENT: 400,
    ErrorCode.BAD_KEY: 400,
    ErrorCode.BAD_VALUE: 400,
    ErrorCode.BAD_ITEMS: 400,
    ErrorCode.BAD_JSON: 400,
    ErrorCode.BAD_BACKUP: 400,
    ErrorCode.NOT_EMPTY: 409,
    ErrorCode.NOT_DEMO: 404,
    ErrorCode.DOWN: 409,
    ErrorCode.BAD_RECORD: 422,
}


class Refused(Exception):
    """A refused request: `code` is one of `ErrorCode`, `message` is for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.code]

    def body(self) -> dict[str, Any]:
        return {"error": {"code": str(self.code), "message": self.message}}


def move_refusal(code: str) -> ErrorCode:
    """The error code for a rules engine's refusal (``games.base.IllegalMove.code``)."""
    if code == "malformed":
        return ErrorCode.BAD_REQUEST
    known = {
        ErrorCode.NOT_YOUR_TURN,
        ErrorCode.GAME_OVER,
        ErrorCode.ILLEGAL_MOVE,
        ErrorCode.TIME_OUT,
    }
    return next((c for c in known if c.value == code), ErrorCode.ILLEGAL_MOVE)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise Refused(
            ErrorCode.WEAK_PASSWORD, f"passwords have at least {MIN_PASSWORD_CHARS} characters"
        )
    return password


def check_name(name: str, reserved: frozenset[str] = frozenset()) -> str:
    """A name a player may take: the whole of it matches the rule, and it is not reserved."""
    if NAME_PATTERN.fullmatch(name) is None:
        raise Refused(ErrorCode.BAD_REQUEST, "names are 3 to 20 letters, digits, '_' or '-'")
    if name.lower() in RESERVED_NAMES or name.lower() in reserved:
        raise Refused(ErrorCode.NAME_TAKEN, f"the name {name!r} is reserved")
    return name
