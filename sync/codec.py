"""Binary frame codec of the node-to-node sync protocol (see docs/sync-protocol.md).

Every frame is one websocket binary message: a one-byte frame type followed by a body made of
unsigned LEB128 varints, length-prefixed UTF-8 strings and length-prefixed byte strings. This
module only turns frames into bytes and back; it knows nothing of sessions or documents. A
malformed frame raises :class:`FrameError` with a reason that can be sent back to the peer.

Protocol 3 adds one frame, COMPRESSED: a data frame (UPDATE, STEP2, DIGESTS) deflated with zlib
when that makes it smaller (`compress_frame`). Its body declares the inner frame's length first,
so a receiver refuses a decompression bomb (declared length over its frame limit, or a stream
that inflates past what it declared: rule ``decompression_bomb``) before and while inflating,
never holding more than the declared length. `decode` unwraps it only when the caller says the
link negotiated protocol 3.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from meridian.crdt_models.kinds import DocIdError
from meridian.crdt_models.kinds import check_doc_id as document_kind

DIGEST_BYTES = 16
NONCE_BYTES = 32
PROOF_BYTES = 32
SIGNATURE_BYTES = 64
MAX_LIST_ITEMS = 1_000_000
COMPRESSION_VERSION = 3  # the first protocol version with COMPRESSED frames
COMPRESS_MIN_BYTES = 128  # smaller data frames are sent as they are (little to gain)
COMPRESS_LEVEL = 6  # zlib's default (levels 1-9 differ by under 1% on these frames)
# zlib's preset dictionary for COMPRESSED frames: text that the records of every document kind
# repeat (field names, map names, stamp prefixes, move types), so even one move's UPDATE of
# ~230 bytes deflates to about half. Part of protocol 3: changing it needs a new version.
COMPRESS_DICTIONARY = (
    b'{"by":"","created":"0001780000000000.00000.","extra":{},"first":0,"game":"battleline",'
    b'"gid":"","moves":[],"names":[],"players":[],"result":{"reason":"","winner":},"seed":,'
    b'"stamp":"","start_moves":[],"resumed_from":"","node":"","connected":true,'
    b'"from_name":"","from_uid":"","iid":"","opponent":"","region":"","resume_hash":"",'
    b'"sid":"","started":"","status":"playing","to_name":"","to_uid":"","token_hash":"",'
    b'"uid":"","kind":"","text":"","signer":"","sig":"","password_hash":"","home":"",'
    b"sessions invites meta info marks games kv accounts presence:game:log:saved"
    b'{"move":{"card":"","deck":"troop","flags":[],"to_flag":,"type":"claim"},"node":"",'
    b'"type":"scout","type":"redeploy","type":"traitor","type":"deserter","type":"pass",'
    b'"deck":"tactic","type":"draw"},"node":"","parent":"00000|0001780000000000.00000.",'
    b'"player":0,"ply":,"stamp":"0001780000000000.00000.'
)


class FrameType(IntEnum):
    """The one-byte tag that starts every frame."""

    HELLO = 0x01
    AUTH = 0x02  # protocol 1: HMAC over the shared secret (decoded only to refuse it by name)
    ERROR = 0x03
    AUTH_SIG = 0x04  # protocol 2: Ed25519 signature with the node's key
    STEP1 = 0x10
    STEP2 = 0x11
    UPDATE = 0x12
    ACK = 0x13
    DIGESTS = 0x14
    LINKS = 0x15
    PING = 0x20
    PONG = 0x21
    COMPRESSED = 0x30  # protocol 3: a deflated data frame


# The frames a COMPRESSED frame may carry: data, never a handshake frame or another COMPRESSED.
COMPRESSIBLE = frozenset({FrameType.STEP2, FrameType.UPDATE, FrameType.DIGESTS})


class ErrorCode(IntEnum):
    """Reasons carried by an ERROR frame; the sender closes the link right after it."""

    MALFORMED = 1
    UNKNOWN_FRAME = 2
    TOO_LARGE = 3
    UNAUTHENTICATED = 4
    AUTH_FAILED = 5
    VERSION_MISMATCH = 6
    BAD_UPDATE = 7
    DUPLICATE_LINK = 8
    SELF_CONNECTION = 9
    QUEUE_OVERFLOW = 10
    TIMEOUT = 11
    SHUTDOWN = 12
    REFUSED_UPDATE = 13
    UNKNOWN_NODE = 14
    BAD_COMPRESSION = 15  # protocol 3: a COMPRESSED frame that does not inflate as it declares


class FrameError(Exception):
    """A frame refused; `code` is what to tell the peer, `rule` names the refusal in metrics
    (the error code's name unless a finer rule is known, e.g. ``future_stamp``)."""

    def __init__(self, code: ErrorCode, reason: str, rule: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.rule = rule or code.name.lower()


@dataclass(frozen=True)
class Hello:
    node_id: str
    region: str
    software: str
    proto_min: int
    proto_max: int
    nonce: bytes
    url: str = ""  # the node's public URL (optional; used to list regions to players)


@dataclass(frozen=True)
class Auth:
    proof: bytes
    version: int


@dataclass(frozen=True)
class AuthSig:
    signature: bytes
    version: int


@dataclass(frozen=True)
class Error:
    code: int
    reason: str


@dataclass(frozen=True)
class Step1:
    doc_id: str
    state_vector: bytes


@dataclass(frozen=True)
class Step2:
    seq: int
    doc_id: str
    update: bytes


@dataclass(frozen=True)
class Update:
    seq: int
    doc_id: str
    update: bytes


@dataclass(frozen=True)
class Ack:
    seq: int


@dataclass(frozen=True)
class Digests:
    items: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Links:
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class Ping:
    token: int


@dataclass(frozen=True)
class Pong:
    token: int


Frame: TypeAlias = (
    Hello | Auth | AuthSig | Error | Step1 | Step2 | Update | Ack | Digests | Links | Ping | Pong
)


# --- primitive writers -------------------------------------------------------------------


def write_varuint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"varuint cannot encode a negative number: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def write_bytes(out: bytearray, data: bytes) -> None:
    write_varuint(out, len(data))
    out += data


def write_str(out: bytearray, text: str) -> None:
    write_bytes(out, text.encode("utf-8"))


# --- primitive reader --------------------------------------------------------------------


class Reader:
    """Reads primitives from a frame body; every overrun becomes a FrameError."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def varuint(self) -> int:
        pos = self.pos
        if pos < len(self.data) and self.data[pos] < 0x80:
            # Most varints (frame types, counts, sequence numbers) are one byte: no loop.
            self.pos = pos + 1
            return self.data[pos]
        result = 0
        shift = 0
        while True:
            if self.pos >= len(self.data):
                raise FrameError(ErrorCode.MALFORMED, "frame ends inside a varint")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise FrameError(ErrorCode.MALFORMED, "varint longer than 64 bits")

    def raw(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self.data):
            raise FrameError(ErrorCode.MALFORMED, "frame ends inside a byte string")
        chunk = bytes(self.data[self.pos : end])
        self.pos = end
        return chunk

    def bytes_(self) -> bytes:
        return self.raw(self.varuint())

    def str_(self) -> str:
        try:
            return self.bytes_().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(ErrorCode.MALFORMED, "string is not valid UTF-8") from exc

    def doc_id(self) -> str:
        doc_id = self.str_()
        check_doc_id(doc_id)
        return doc_id

    def count(self) -> int:
        count = self.varuint()
        if count > MAX_LIST_ITEMS:
            raise FrameError(ErrorCode.MALFORMED, f"list of {count} items exceeds {MAX_LIST_ITEMS}")
        return count

    def end(self) -> None:
        if self.pos != len(self.data):
            raise FrameError(ErrorCode.MALFORMED, f"{len(self.data) - self.pos} trailing bytes")


def check_doc_id(doc_id: str) -> None:
    """The document-id rule (``crdt_models.kinds.check_doc_id``) as a frame error."""
    try:
        document_kind(doc_id)
    except DocIdError as exc:
        raise FrameError(ErrorCode.MALFORMED, str(exc), rule="doc_id") from None


# --- encode ------------------------------------------------------------------------------


def encode(frame: Frame) -> bytes:
    """Serialize one frame."""
    out = bytearray()
    match frame:
        case Hello():
            out.append(FrameType.HELLO)
            body = {
                "node": frame.node_id,
                "region": frame.region,
                "software": frame.software,
                "proto_min": frame.proto_min,
                "proto_max": frame.proto_max,
            }
            if frame.url:
                body["url"] = frame.url
            write_str(out, json.dumps(body, separators=(",", ":"), sort_keys=True))
            out += frame.nonce
        case Auth():
            out.append(FrameType.AUTH)
            out += frame.proof
            write_varuint(out, frame.version)
        case AuthSig():
            out.append(FrameType.AUTH_SIG)
            out += frame.signature
            write_varuint(out, frame.version)
        case Error():
            out.append(FrameType.ERROR)
            write_varuint(out, frame.code)
            write_str(out, frame.reason)
        case Step1():
            out.append(FrameType.STEP1)
            write_str(out, frame.doc_id)
            write_bytes(out, frame.state_vector)
        case Step2() | Update():
            out.append(FrameType.STEP2 if isinstance(frame, Step2) else FrameType.UPDATE)
            write_varuint(out, frame.seq)
            write_str(out, frame.doc_id)
            write_bytes(out, frame.update)
        case Ack():
            out.append(FrameType.ACK)
            write_varuint(out, frame.seq)
        case Digests():
            out.append(FrameType.DIGESTS)
            write_varuint(out, len(frame.items))
            for doc_id, digest in frame.items:
                write_str(out, doc_id)
                out += digest
        case Links():
            out.append(FrameType.LINKS)
            write_varuint(out, len(frame.node_ids))
            for node_id in frame.node_ids:
                write_str(out, node_id)
        case Ping() | Pong():
            out.append(FrameType.PING if isinstance(frame, Ping) else FrameType.PONG)
            write_varuint(out, frame.token)
    return bytes(out)


# --- decode ------------------------------------------------------------------------------


def decode(data: bytes, max_frame_bytes: int, *, compressed: bool = False) -> Frame:
    """Parse one frame, refusing oversized, truncated, trailing or unknown input.

    `compressed`: the link negotiated protocol 3, so a COMPRESSED frame is unwrapped (its inner
    frame is held to the same `max_frame_bytes`); otherwise it is an unknown frame."""
    kind = _frame_type(data, max_frame_bytes)
    if kind is FrameType.COMPRESSED:
        if not compressed:
            raise FrameError(
                ErrorCode.UNKNOWN_FRAME,
                "compressed frame on a link that did not negotiate protocol 3",
                "compression_not_negotiated",
            )
        data = inflate_frame(data, max_frame_bytes)
        kind = _frame_type(data, max_frame_bytes)
        if kind not in COMPRESSIBLE:
            raise FrameError(
                ErrorCode.BAD_COMPRESSION,
                f"a compressed frame may carry only data frames, not {kind.name}",
                "bad_compression",
            )
    reader = Reader(data, 1)
    frame = _DECODERS[kind](reader)
    reader.end()
    return frame


def _frame_type(data: bytes, max_frame_bytes: int) -> FrameType:
    if len(data) > max_frame_bytes:
        raise FrameError(
            ErrorCode.TOO_LARGE, f"frame of {len(data)} bytes exceeds limit {max_frame_bytes}"
        )
    if not data:
        raise FrameError(ErrorCode.MALFORMED, "empty frame")
    try:
        return FrameType(data[0])
    except ValueError:
        raise FrameError(ErrorCode.UNKNOWN_FRAME, f"unknown frame type 0x{data[0]:02x}") from None


# --- compression (protocol 3) ------------------------------------------------------------


def compress_frame(data: bytes, level: int = COMPRESS_LEVEL) -> bytes:
    """The encoded data frame `data` as a COMPRESSED frame when that is smaller, else `data`.

    Only frames of at least COMPRESS_MIN_BYTES whose type is in COMPRESSIBLE are tried."""
    if len(data) < COMPRESS_MIN_BYTES or data[0] not in COMPRESSIBLE:
        return data
    out = bytearray([FrameType.COMPRESSED])
    write_varuint(out, len(data))
    deflater = zlib.compressobj(level, zdict=COMPRESS_DICTIONARY)
    out += deflater.compress(data) + deflater.flush()
    return bytes(out) if len(out) < len(data) else data


def inflate_frame(data: bytes, max_frame_bytes: int) -> bytes:
    """The inner frame of a COMPRESSED frame, inflating at most the length it declares.

    Refused: a declared length over `max_frame_bytes` or a stream that inflates to more than
    declared (TOO_LARGE, rule ``decompression_bomb``); a corrupt, truncated or short stream, or
    bytes after it (BAD_COMPRESSION, rule ``bad_compression``)."""
    reader = Reader(data, 1)
    declared = reader.varuint()
    if declared > max_frame_bytes:
        raise FrameError(
            ErrorCode.TOO_LARGE,
            f"compressed frame declares {declared} bytes, over the frame limit {max_frame_bytes}",
            "decompression_bomb",
        )
    if declared == 0:
        raise FrameError(
            ErrorCode.BAD_COMPRESSION, "compressed frame declares 0 bytes", "bad_compression"
        )
    inflater = zlib.decompressobj(zdict=COMPRESS_DICTIONARY)
    try:
        # One byte more than declared: a stream that fills it is a bomb, one that ends inside
        # is checked for its exact length (zlib's own limit of 0 would mean "no limit").
        inner = inflater.decompress(data[reader.pos :], declared + 1)
    except zlib.error as exc:
        raise FrameError(
            ErrorCode.BAD_COMPRESSION,
            f"compressed frame does not inflate: {exc}",
            "bad_compression",
        ) from None
    if len(inner) > declared:
        raise FrameError(
            ErrorCode.TOO_LARGE,
            f"compressed frame inflates past the {declared} bytes it declares",
            "decompression_bomb",
        )
    if not inflater.eof or inflater.unused_data or len(inner) != declared:
        raise FrameError(
            ErrorCode.BAD_COMPRESSION,
            f"compressed frame inflates to {len(inner)} bytes, declared {declared}, or is "
            "truncated or followed by other bytes",
            "bad_compression",
        )
    return inner


def _decode_hello(reader: Reader) -> Hello:
    try:
        body = json.loads(reader.str_())
    except json.JSONDecodeError as exc:
        raise FrameError(ErrorCode.MALFORMED, f"hello is not JSON: {exc.msg}") from exc
    nonce = reader.raw(NONCE_BYTES)
    if not isinstance(body, dict):
        raise FrameError(ErrorCode.MALFORMED, "hello body is not an object")
    fields = {"node": str, "region": str, "software": str, "proto_min": int, "proto_max": int}
    for name, kind in fields.items():
        if not isinstance(body.get(name), kind):
            raise FrameError(
                ErrorCode.MALFORMED, f"hello field {name!r} missing or not {kind.__name__}"
            )
    url = body.get("url", "")
    return Hello(
        body["node"],
        body["region"],
        body["software"],
        body["proto_min"],
        body["proto_max"],
        nonce,
        url if isinstance(url, str) else "",
    )


def _decode_auth(reader: Reader) -> Auth:
    proof = reader.raw(PROOF_BYTES)
    return Auth(proof, reader.varuint())


def _decode_auth_sig(reader: Reader) -> AuthSig:
    signature = reader.raw(SIGNATURE_BYTES)
    return AuthSig(signature, reader.varuint())


def _decode_error(reader: Reader) -> Error:
    code = reader.varuint()
    return Error(code, reader.str_())


def _decode_step1(reader: Reader) -> Step1:
    doc_id = reader.doc_id()
    return Step1(doc_id, reader.bytes_())


def _decode_step2(reader: Reader) -> Step2:
    seq = reader.varuint()
    doc_id = reader.doc_id()
    return Step2(seq, doc_id, reader.bytes_())


def _decode_update(reader: Reader) -> Update:
    seq = reader.varuint()
    doc_id = reader.doc_id()
    return Update(seq, doc_id, reader.bytes_())


def _decode_digests(reader: Reader) -> Digests:
    items = []
    for _ in range(reader.count()):
        doc_id = reader.doc_id()
        items.append((doc_id, reader.raw(DIGEST_BYTES)))
    return Digests(tuple(items))


def _decode_links(reader: Reader) -> Links:
    return Links(tuple(reader.str_() for _ in range(reader.count())))


_DECODERS: dict[FrameType, Callable[[Reader], Frame]] = {
    FrameType.HELLO: _decode_hello,
    FrameType.AUTH: _decode_auth,
    FrameType.AUTH_SIG: _decode_auth_sig,
    FrameType.ERROR: _decode_error,
    FrameType.STEP1: _decode_step1,
    FrameType.STEP2: _decode_step2,
    FrameType.UPDATE: _decode_update,
    FrameType.ACK: lambda reader: Ack(reader.varuint()),
    FrameType.DIGESTS: _decode_digests,
    FrameType.LINKS: _decode_links,
    FrameType.PING: lambda reader: Ping(reader.varuint()),
    FrameType.PONG: lambda reader: Pong(reader.varuint()),
}
