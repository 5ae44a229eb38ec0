"""The kinds of replicated document: the one document-id rule, and what a peer may write.

Every replicated document belongs to one kind, named by its id's namespace: ``accounts``,
``presence:<node>``, ``game:<gid>``, ``saved``, ``log:<YYYY-MM>``, and the key-value documents
``test:<name>`` and ``bench:<name>`` that the admin document API, the benchmarks and the
simulator's workloads write. `check_doc_id` is the only document-id rule in the code base: the
peer codec, the engine and the HTTP APIs call it, and the store (which knows no kinds) calls its
syntax half, `check_doc_id_syntax`; so an id one of them accepts is accepted by all.

Each kind lists its root maps and how their values must look; `check_changes` is what a node
runs on the changes a peer's update would make (``sync.checks`` finds them on a scratch copy of
the document) before anything is applied. It refuses, with a named rule:

* a root map the kind does not have, or content that is not a map entry (``bad_layout``);
* a key or value of the wrong type or size, a record that does not parse, a field the merge
  rules compare as an HLC stamp that is not one (``bad_record``);
* any HLC stamp, in a key or anywhere in a record, more than ``max_ahead_ms`` ahead of this
  node's clock (``future_stamp``): the bound `HybridLogicalClock.observe` applies, enforced
  where replicated data enters a node;
* a ``load.`` key of presence ``meta`` that ``crdt_models.load`` does not name, or a value out
  of its bound (``bad_record``);
* what the kind's own rules refuse (accounts: ``crdt_models.accounts.check_change``; game
  records: ``crdt_models.move_rules``, moves that are illegal where they hang, whose parent is
  missing, or that rewrite a record).

A root map added to a document kind must be added here too, or peers refuse the writes.

**Schema versions.** Every kind has a layout version: `DocKind.reads` is the newest this code
understands, `DocKind.writes` the one it writes (both 1 today, the layout of release-0.2). A
JSON record carries its version in a ``schema`` field; a record without one is version 1, so
everything written so far needs no rewrite. A peer's record with a ``schema`` above `reads`
(or not a positive integer) is refused (``schema_too_new``) rather than misread. Plain values
(the ``kv`` map, presence ``meta``, ``spent``, ``declines``, ``revoked``) have the version of
their kind. The rule for a change of layout (docs/architecture.md *Document schema versions*):
release N learns to read version k+1 while still writing k; only a release after every node
runs N or later may write k+1. `OLDEST_SUPPORTED_READS` is what the oldest release a cluster
may still run alongside this one reads; `writes` never exceeds it (tests/test_schema.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from meridian.crdt_models import accounts, load, move_rules
from meridian.crdt_models.archive import GAMES, LOG_PREFIX, SAVED_DOC, ArchivedGame
from meridian.crdt_models.game import INFO, MARKS, MOVES, GameInfo, MoveRecord
from meridian.crdt_models.hlc import Stamp, stamp_walls_in
from meridian.crdt_models.presence import (
    INVITES,
    META,
    PRESENCE_PREFIX,
    SESSIONS,
    Invite,
    Session,
)
from meridian.crdt_models.records import (
    Change,
    CheckContext,
    RecordError,
    RecordRefused,
    decode_record,
    strings_in,
)

MAX_DOC_ID_CHARS = 200
DOC_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]*")
NODE_ID_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
MONTH_PATTERN = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
MAX_KEY_CHARS = 256
MAX_RECORD_CHARS = 256 * 1024  # a finished game's record holds every move; ~10 KB in practice
MAX_KV_STRING_CHARS = 1024 * 1024  # the admin document API takes bodies up to 1 MiB
MAX_SAFE_INT = 2**53 - 1
KV_ROOT = "kv"
KV_NAMESPACES = ("test:", "bench:")
# Presence maps the game service keeps beside sessions and invitations (node/topics/): the
# invitations declined, chat messages, the resume tokens spent on this node's sessions (token
# hash -> sid) and the sessions revoked for a replayed token (sid -> HLC wall ms).
DECLINES, CHATS, SPENT, REVOKED = "declines", "chats", "spent", "revoked"
MAX_SID_CHARS = 64
SCHEMA_FIELD = "schema"  # a record's layout version; absent: 1


class DocIdError(ValueError):
    """A document id outside the rule; the message says what is wrong."""


Checker = Callable[[Change, Doc[Any], CheckContext], None]


@dataclass(frozen=True)
class DocKind:
    """One kind of document: its namespace, its root maps and the check of each changed key."""

    name: str
    roots: frozenset[str]
    check: Checker
    reads: int = 1  # newest layout version this code reads
    writes: int = 1  # layout version this code writes (<= what every supported node reads)


# Ids that passed, with their kinds: a node checks the same few ids again at every frame, store
# write and peer check (40,000 times in a 3-seed simulated run). Only valid ids are kept, and the
# memo is emptied when full, so a peer sending new ids costs a recheck, never memory.
_known_kinds: dict[str, DocKind] = {}
KNOWN_DOC_IDS_KEPT = 4096


def check_doc_id(doc_id: object) -> DocKind:
    """The kind of document `doc_id` names, or DocIdError saying why it names none."""
    if isinstance(doc_id, str):
        known = _known_kinds.get(doc_id)
        if known is not None:
            return known
    check_doc_id_syntax(doc_id)
    assert isinstance(doc_id, str)
    kind = _kind_of(doc_id)
    if kind is None:
        raise DocIdError(
            f"document id {doc_id[:60]!r} is outside the known namespaces: accounts, saved, "
            "presence:<node>, game:<id>, log:<YYYY-MM>, test:<name>, bench:<name>"
        )
    if len(_known_kinds) >= KNOWN_DOC_IDS_KEPT:
        _known_kinds.clear()
    _known_kinds[doc_id] = kind
    return kind


def check_doc_id_syntax(doc_id: object) -> None:
    """The characters and length part of the rule (what the store, which knows no kinds,
    enforces); DocIdError saying what is wrong."""
    if isinstance(doc_id, str) and doc_id in _known_kinds:
        return
    if not isinstance(doc_id, str):
        raise DocIdError(f"document id must be a string, got {type(doc_id).__name__}")
    if not doc_id:
        raise DocIdError("document id must not be empty")
    if len(doc_id) > MAX_DOC_ID_CHARS:
        raise DocIdError(
            f"document id is {len(doc_id)} characters, at most {MAX_DOC_ID_CHARS} allowed: "
            f"{doc_id[:40]!r}..."
        )
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError:
        raise DocIdError(f"document id {doc_id[:40]!r} is not valid Unicode text") from None
    if not DOC_ID_PATTERN.fullmatch(doc_id):
        raise DocIdError(
            f"invalid document id {doc_id[:60]!r}: characters from A-Z a-z 0-9 _ . : @ / -, "
            "starting with a letter or digit"
        )


def is_kv_document(doc_id: str) -> bool:
    """Whether the admin document API (a ``kv`` map of plain values) may write `doc_id`."""
    try:
        return check_doc_id(doc_id) is KEY_VALUE
    except DocIdError:
        return False


def _kind_of(doc_id: str) -> DocKind | None:
    if doc_id == accounts.ACCOUNTS_DOC:
        return ACCOUNTS
    if doc_id == SAVED_DOC:
        return ARCHIVE
    namespace, _, rest = doc_id.partition(":")
    if not rest:
        return None
    if f"{namespace}:" == PRESENCE_PREFIX:
        return PRESENCE if NODE_ID_PATTERN.fullmatch(rest) else None
    if f"{namespace}:" == LOG_PREFIX:
        return ARCHIVE if MONTH_PATTERN.fullmatch(rest) else None
    if namespace == "game":
        return GAME
    if f"{namespace}:" in KV_NAMESPACES:
        return KEY_VALUE
    return None


def check_changes(doc_id: str, changes: list[Change], doc: Doc[Any], context: CheckContext) -> None:
    """Refuse (RecordRefused) or defer (MissingReference) a peer's changes to one document."""
    kind = check_doc_id(doc_id)
    for change in changes:
        if change.root not in kind.roots:
            raise RecordRefused("bad_layout", f"{doc_id} has no map {change.root[:60]!r}")
        try:
            _check_key(change)
            _check_not_ahead(change, context)
            _check_schema(kind, change)
            kind.check(change, doc, context)
        except RecordError as exc:
            raise RecordRefused("bad_record", f"{doc_id} {change.where}: {exc}") from None
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            # (1e400 reads as an infinite float, which int() refuses with OverflowError)
            if isinstance(exc, RecordRefused):
                raise
            raise RecordRefused("bad_record", f"{doc_id} {change.where}: {exc}") from None


def _check_key(change: Change) -> None:
    if not isinstance(change.key, str) or not 0 < len(change.key) <= MAX_KEY_CHARS:
        raise RecordError(f"keys are 1-{MAX_KEY_CHARS} characters")


def _check_not_ahead(change: Change, context: CheckContext) -> None:
    limit = context.now_wall_ms + context.max_ahead_ms
    if _stamps_in_text_within(change, limit):
        return
    texts = [change.key, *strings_in(_decoded(change.new))]
    for text in texts:
        for wall_ms in stamp_walls_in(text):
            if wall_ms > limit:
                raise RecordRefused(
                    "future_stamp",
                    f"{change.where} carries a stamp {wall_ms - context.now_wall_ms} ms ahead "
                    f"of this node's clock; the limit is {context.max_ahead_ms} ms",
                )


def _stamps_in_text_within(change: Change, limit: int) -> bool:
    """Whether a text value's stamps, read from the text itself, are all within `limit`
    (the quick answer; False sends the caller to the exact one, which decodes the record).
    Without a backslash, every string of a JSON record stands verbatim in its text, so one
    scan of the text finds every stamp of the record (and maybe digits that only look like
    one, which can only make this answer False)."""
    value = change.new
    if not isinstance(value, str) or (value[:1] == "{" and "\\" in value):
        return False
    walls = stamp_walls_in(value)
    walls += stamp_walls_in(change.key)
    return not walls or max(walls) <= limit


def record_schema(record: dict[str, Any]) -> int:
    """The layout version a decoded record declares (1 when it has no ``schema`` field);
    RecordError for a value that is not a positive integer."""
    version = record.get(SCHEMA_FIELD, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordError(f"{SCHEMA_FIELD} is {version!r}, not a positive integer")
    return version


def _check_schema(kind: DocKind, change: Change) -> None:
    """A record of a layout newer than this code reads is refused, never misread. (Key-value
    documents hold any text, not records: a string there that looks like JSON is just text.)"""
    if kind is KEY_VALUE:
        return
    record = _decoded(change.new)
    if not isinstance(record, dict):
        return
    version = record_schema(record)
    if version > kind.reads:
        raise RecordRefused(
            "schema_too_new",
            f"{change.where} is a {kind.name} record of schema {version}; this node reads "
            f"schema {kind.reads} and older (upgrade it before nodes write the new layout)",
        )


def _decoded(value: Any) -> Any:
    """A record's JSON decoded (to see every string in it), else the value itself."""
    if isinstance(value, str) and value[:1] == "{":
        try:
            return decode_record(value, ())
        except RecordError:
            return value
    return value


# --- the value rules of each kind ----------------------------------------------------------


def _record_text(change: Change) -> str:
    if not isinstance(change.new, str):
        raise RecordError(f"value is {type(change.new).__name__}, not JSON text")
    if len(change.new) > MAX_RECORD_CHARS:
        raise RecordError(f"record of {len(change.new)} characters exceeds {MAX_RECORD_CHARS}")
    return change.new


def _records(parse: Callable[[str], Any], stamps: tuple[str, ...] = ()) -> Checker:
    """Values must be JSON records that `parse` accepts, whose `stamps` fields are HLC stamps
    (merge rules compare them as text: "" or "zzz" would win any comparison); deleting a key
    is allowed."""

    def check(change: Change, doc: Doc[Any], context: CheckContext) -> None:
        if change.deleted:
            return
        text = _record_text(change)
        parse(text)
        record = decode_record(text, stamps)
        for name in stamps:
            _stamp(record[name])

    return check


def _stamp(value: Any) -> None:
    try:
        Stamp.decode(value)
    except ValueError as exc:
        raise RecordError(str(exc)) from None


def _required(*fields: str) -> Callable[[str], Any]:
    return lambda text: decode_record(text, fields)


def _then(*checks: Checker) -> Checker:
    """The checks in turn (the shape first, then the rules that read the record)."""

    def check(change: Change, doc: Doc[Any], context: CheckContext) -> None:
        for one in checks:
            one(change, doc, context)

    return check


def _by_root(checks: dict[str, Checker]) -> Checker:
    def check(change: Change, doc: Doc[Any], context: CheckContext) -> None:
        checks[change.root](change, doc, context)

    return check


def _accounts(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    if not change.deleted:
        _record_text(change)
    accounts.check_change(change, doc, context)


def _presence_meta(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    if change.deleted:
        return
    if isinstance(change.new, bool) or not isinstance(change.new, int | float):
        raise RecordError("presence meta values are numbers")
    if not 0 <= change.new <= MAX_SAFE_INT:
        raise RecordError("presence meta values are milliseconds since the epoch")


def _load_meta(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    load.check_meta_change(change)  # a ``load.`` figure (crdt_models.load): known key, bounded


def _wall_ms(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    if change.deleted:
        return
    if isinstance(change.new, bool) or not isinstance(change.new, int | float):
        raise RecordError("values are numbers")
    if not 0 <= change.new <= MAX_SAFE_INT:
        raise RecordError("values are milliseconds since the epoch")


def _sid_value(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    if change.deleted:
        return
    if not isinstance(change.new, str) or not 0 < len(change.new) <= MAX_SID_CHARS:
        raise RecordError(f"values are session ids of 1-{MAX_SID_CHARS} characters")


def _stamp_value(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    if not change.deleted:
        _stamp(change.new)


def _kv_value(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    value = change.new
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_KV_STRING_CHARS:
            raise RecordError(f"string of {len(value)} characters exceeds {MAX_KV_STRING_CHARS}")
        return
    if isinstance(value, int | float) and abs(value) <= MAX_SAFE_INT:
        return
    kind = type(value).__name__
    raise RecordError(f"kv values are strings, numbers, booleans or null, not {kind}")


ACCOUNTS = DocKind("accounts", accounts.ROOTS, _accounts)
PRESENCE = DocKind(
    "presence",
    frozenset({SESSIONS, INVITES, META, DECLINES, CHATS, SPENT, REVOKED}),
    _by_root(
        {
            SESSIONS: _records(Session.from_text, ("started",)),
            INVITES: _records(Invite.from_text, ("stamp",)),
            META: _then(_presence_meta, _load_meta),
            DECLINES: _stamp_value,
            CHATS: _records(_required("from", "from_uid", "text", "stamp"), ("stamp",)),
            SPENT: _sid_value,
            REVOKED: _wall_ms,
        }
    ),
)
GAME = DocKind(
    "game",
    frozenset({INFO, MOVES, MARKS}),
    _by_root(
        {
            INFO: _then(_records(GameInfo.from_text, ("created",)), move_rules.check_info_change),
            MOVES: _then(_records(MoveRecord.from_text, ("stamp",)), move_rules.check_move_change),
            MARKS: _records(_required("kind", "uid", "stamp", "ply"), ("stamp",)),
        }
    ),
)
ARCHIVE = DocKind("archive", frozenset({GAMES}), _records(ArchivedGame.from_text, ("created",)))
KEY_VALUE = DocKind("key-value", frozenset({KV_ROOT}), _kv_value)
KINDS = (ACCOUNTS, PRESENCE, GAME, ARCHIVE, KEY_VALUE)
# What release-0.2 (the oldest release that may run beside this one) reads of each kind.
OLDEST_SUPPORTED_READS = {kind.name: 1 for kind in KINDS}
