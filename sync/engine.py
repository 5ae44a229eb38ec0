"""The peer protocol as a sans-IO state machine: bytes and `now` in, bytes and events out.

One :class:`SyncEngine` per node holds every replicated pycrdt document and any number of peer
links. It never opens a socket, reads a clock, sleeps or draws unseeded randomness: the adapter
(``sync.transport`` for real websockets, ``sim`` for the virtual network) feeds it received
frames and the current monotonic time, sends what :meth:`SyncEngine.take_outgoing` returns, and
reacts to the events :meth:`SyncEngine.take_events` returns (persist a change, log a refusal,
close a socket).

What it does (details in docs/sync-protocol.md):

* handshake (protocols 2 and 3): HELLO (node id, region, software, protocol range, nonce) both ways,
  then AUTH_SIG, an Ed25519 signature with the node's own key over both nonces and node ids. The
  peer's id must be in the cluster keyring (not removed, same region) and its signature must
  verify with the key listed there; nothing else is accepted or sent before both check out. An
  unknown or removed node, a bad signature or an incompatible version is refused with a reason.
  Both sides use the highest version both speak; on a protocol 3 link data frames of at least
  ``codec.COMPRESS_MIN_BYTES`` travel deflated when that is smaller (COMPRESSED frames);
* local changes are captured by a document observer, coalesced per document for
  ``coalesce_ms`` (``coalesce_region_ms`` on links to processes of this node's own region) and
  sent as one UPDATE per document to every link;
* updates received from peer P are relayed to linked peers that P says it cannot reach (partial
  partitions heal through a third region) - only what was new to this node, because Yjs emits
  no change for content it already held, which also stops relay storms;
* ACKs (cumulative sequence numbers, sent once the content is durable) give replication lag per
  link and per document and the ``ack_regions`` wait;
* anti-entropy: on link-up and periodically each side sends a digest of every document (state
  vector *and* delete set); the other pulls what differs with a Yjs sync step 1 / step 2;
* every update from a peer is checked before it is applied (``sync.checks``: on a scratch copy
  of the document, against the rules of its kind, with a size cap and a per-peer quota of new
  documents); a refused update is counted by rule (`refusals`), reported as `UpdateRefused`,
  answered with an ERROR frame and never acknowledged. An update that builds on content this
  node lacks is not applied either: the document is pulled from the sender (STEP1) and the
  update's acknowledgement waits for that answer;
* placement (optional): given a predicate ``wants(doc_id, region)``, a change is pushed and
  relayed only to links whose peer's region wants the document, DIGESTS list only such
  documents, and a document this node's region does not want is not pulled on its own. A peer
  that asks for such a document (STEP1) is *subscribed* to it on that link: it gets its changes,
  local or relayed, from then on (a region fetching a game it is not a replica of). A document
  this node *follows* (`follow`) is asked for (STEP1) from every wanting peer at link-up and
  with each anti-entropy round, so it stays current here. Without a predicate every region
  wants every document (full replication). The engine knows nothing of what the documents are;
* limits: frame size, update size, new documents per peer, queued bytes per link, handshake and
  idle timeouts. A malformed, oversized, unknown or unauthenticated frame gets an ERROR frame and
  the link is closed; nothing of it is applied.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pycrdt import Doc, Subscription, TransactionEvent, merge_updates

from meridian.crdt_models.kinds import DocIdError, check_doc_id
from meridian.crdt_models.records import attach_signer
from meridian.sync import codec
from meridian.sync.checks import (
    KeyringContext,
    NeedsPull,
    UpdateChecker,
    UpdateRefused,
)
from meridian.sync.codec import ErrorCode, FrameError
from meridian.sync.digest import EMPTY_DIGEST, is_decode_failure, state_digest
from meridian.sync.identity import Keyring, NodeIdentity, public_key_text
from meridian.sync.settings import SyncSettings

# Protocol 3 adds COMPRESSED data frames; 2 is kept so a node of the previous release (which
# speaks only 2) and this one interoperate during a rolling upgrade. Protocol 1 (a shared
# secret) stays retired: anyone holding the secret could speak as any node.
PROTOCOL_VERSION = 3
SUPPORTED_VERSIONS = (2, 3)
EMPTY_UPDATE = b"\x00\x00"
EMPTY_STATE_VECTOR = b"\x00"
HANDSHAKE_TIMEOUT_S = 10.0
# Updates held back on one link while the document they build on is pulled from the sender
# (each is checked again against the answer); past this the link is refused (`too_large`).
HELD_BYTES_PER_LINK = 64 * 1024 * 1024
DIGESTS_PER_FRAME = 20_000
LAG_SAMPLES_KEPT = 2048
# Documents followed outside the placement at once (a region fetching games for its players;
# the ids come from players' hellos, so they are bounded).
MAX_FOLLOWED = 10_000
AUTH_LABEL = b"meridian-peer-auth-v2"


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkUp:
    """A link finished its handshake: the peer proved the cluster secret."""

    link_id: int
    node_id: str
    region: str
    software: str
    version: int


@dataclass(frozen=True)
class LinkClosed:
    """The link is over; the adapter sends what is left in the outbox, then closes the socket."""

    link_id: int
    node_id: str | None
    reason: str
    refused: bool  # True when the handshake failed (wrong secret, version, self-connection)


@dataclass(frozen=True)
class DocChanged:
    """New content entered a document (local write or from a peer): persist it."""

    doc_id: str
    update: bytes
    origin: str | None  # peer node id, or None for a local write
    event_no: int  # position in this node's change sequence; see durable_through()


@dataclass(frozen=True)
class PeerRefused:
    """This node refused a peer's frame after the link was up; the link is then closed."""

    link_id: int
    node_id: str
    rule: str  # what was broken, e.g. "future_stamp", "not_home", "too_large"
    reason: str


Event = LinkUp | LinkClosed | DocChanged | PeerRefused


# --- state ---------------------------------------------------------------------------------


class LinkState(Enum):
    HANDSHAKE = "handshake"
    UP = "up"
    CLOSED = "closed"


@dataclass
class SentBatch:
    sent_at: float
    doc_id: str
    local_event_no: int  # highest local change this frame carries (0: none)
    is_step2: bool


@dataclass
class Link:
    """One transport connection to a peer, from open to close."""

    link_id: int
    initiator: bool
    opened_at: float
    nonce: bytes
    state: LinkState = LinkState.HANDSHAKE
    peer: codec.Hello | None = None
    version: int = 0
    outbox: deque[bytes] = field(default_factory=deque)
    outbox_bytes: int = 0
    next_seq: int = 1
    unacked: dict[int, SentBatch] = field(default_factory=dict)
    pending_acks: deque[PendingAck] = field(default_factory=deque)
    last_received: float = 0.0
    last_sent: float = 0.0
    # per document, the last local change made before the link came up: those reach the peer
    # only through anti-entropy (STEP2), the ones after through this link's UPDATE frames
    base_events: dict[str, int] = field(default_factory=dict)
    update_acked: dict[str, int] = field(default_factory=dict)
    step2_acked: dict[str, int] = field(default_factory=dict)
    ping_sent: dict[int, float] = field(default_factory=dict)
    # documents the peer asked for (STEP1) that the placement does not give its region
    subscribed: set[str] = field(default_factory=set)
    # STEP1 frames sent and not answered yet, per document: a STEP2 answering one is solicited
    step1_out: dict[str, int] = field(default_factory=dict)
    held_bytes: int = 0  # of the updates in pending_acks held back for a pull

    @property
    def peer_id(self) -> str | None:
        return self.peer.node_id if self.peer else None


@dataclass
class PendingAck:
    """A received data frame waiting for its acknowledgement.

    It is acknowledged once change `event_no` is durable. `event_no` is None while the frame's
    update waits for a pull of `doc_id` from the peer (it built on content this node lacked);
    `held` is that update, checked again once the STEP2 answering the pull is in: it passes and
    is applied (if the answer did not bring it already), and the change number after it is
    used, or it is refused, the sender's whole document not explaining it either.
    """

    seq: int
    event_no: int | None
    doc_id: str = ""
    held: bytes | None = None


@dataclass
class PeerState:
    """What this node knows of one peer node, kept across its links."""

    node_id: str
    region: str
    url: str = ""
    link_id: int | None = None
    links: frozenset[str] = frozenset()  # the peers it reports being linked with
    held_through: dict[str, int] = field(
        default_factory=dict
    )  # doc -> contiguous local changes held
    lag_samples: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES_KEPT))
    # Every lag ever measured, not only the kept samples (a summary's _count and _sum).
    lag_count: int = 0
    lag_seconds_total: float = 0.0
    doc_lag: dict[str, float] = field(default_factory=dict)
    rtt: float | None = None
    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    updates_sent: int = 0
    updates_received: int = 0
    new_doc_tokens: float = 0.0  # documents it may still create here (a token bucket)
    tokens_at: float | None = None


@dataclass
class PendingUpdate:
    update: bytes
    origin: str | None
    event_no: int


@dataclass
class Outbox:
    """Changes waiting out their coalescing window before they go to one class of links: to
    peers of this node's region (`near` True: ``coalesce_region_ms``), of other regions (False:
    ``coalesce_ms``), or to all (None, when the two windows are equal)."""

    window_s: float
    near: bool | None
    pending: dict[str, list[PendingUpdate]] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)

    def add(self, doc_id: str, update: PendingUpdate, now: float) -> None:
        self.pending.setdefault(doc_id, []).append(update)
        self.since.setdefault(doc_id, now)

    def forget(self, doc_id: str) -> None:
        self.pending.pop(doc_id, None)
        self.since.pop(doc_id, None)

    def deadline_of_pending(self) -> float:
        """When the oldest waiting change is due (only while one waits: `since` not empty)."""
        return min(self.since.values()) + self.window_s


class ImportRefused(ValueError):
    """An imported update that peers would refuse; `rule` names the broken rule."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} [{rule}]")
        self.rule = rule


def _outboxes(settings: SyncSettings) -> list[Outbox]:
    """One outbox for every link, or one per class when the region's window differs."""
    near, far = settings.coalesce_region_ms / 1000, settings.coalesce_ms / 1000
    if near == far:
        return [Outbox(far, None)]
    return [Outbox(near, True), Outbox(far, False)]


# --- the engine ----------------------------------------------------------------------------


Wants = Callable[[str, str], bool]  # (doc_id, region) -> whether that region keeps the document


class SyncEngine:
    """Replicated documents plus the peer protocol of one node (no I/O; see module docstring)."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        keyring: Keyring,
        settings: SyncSettings,
        rng: random.Random,
        wall_ms: Callable[[], int],
        max_ahead_ms: int = 60_000,
        software: str = "meridian",
        versions: tuple[int, int] = SUPPORTED_VERSIONS,
        auto_durable: bool = False,
        url: str = "",
        wants: Wants | None = None,
    ) -> None:
        """`wall_ms` is this node's wall clock in ms since the epoch (the injected clock the
        stamp rule compares to); `max_ahead_ms` how far ahead of it a peer's stamps may be;
        `wants` the placement predicate (None: every region keeps every document)."""
        own = keyring.get(identity.node_id)
        if own is None or public_key_text(own.public_key) != identity.public_text:
            raise ValueError(f"node {identity.node_id} is not in the keyring with its own key")
        self.node_id = identity.node_id
        self.url = url
        self.region = identity.region
        self.settings = settings
        self.software = software
        self.versions = versions
        self.identity = identity
        self.keyring = keyring
        self.checker = UpdateChecker(KeyringContext(keyring, wall_ms, max_ahead_ms))
        self.refusals: dict[tuple[str, str], int] = {}  # (peer, rule) -> refused frames
        self._rng = rng
        self._auto_durable = auto_durable
        self.docs: dict[str, Doc[Any]] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._digests: dict[str, bytes] = {}
        self._captured: list[tuple[str, bytes, str | None]] = []
        self._origin: str | None = None
        self._outboxes = _outboxes(settings)
        self._links: dict[int, Link] = {}
        self.peers: dict[str, PeerState] = {}
        self._events: list[Event] = []
        self._next_link_id = 1
        self._event_no = 0
        self._last_local_event: dict[str, int] = {}
        self._durable_through = 0
        self._next_anti_entropy: float | None = None
        self._announced_peers: tuple[str, ...] = ()  # the up peers last told to every link
        self._wants = wants
        self._followed: set[str] = set()

    # --- documents ---------------------------------------------------------------------

    def document(self, doc_id: str) -> Doc[Any]:
        """The document with this id, created empty (and observed) if this node lacks it.

        Raises FrameError (MALFORMED) for an id outside the document-id rule."""
        doc = self.docs.get(doc_id)
        if doc is None:
            codec.check_doc_id(doc_id)
            doc = Doc(client_id=self._fresh_client_id())
            attach_signer(doc, self.identity)  # records written here are signed by this node
            self.docs[doc_id] = doc
            self._subscriptions[doc_id] = doc.observe(self._observer(doc_id))
        return doc

    def load(self, doc_id: str, updates: list[bytes]) -> bool:
        """Restore a document from the local store at start-up: no event, nothing sent.

        Returns False (and loads nothing) for an id outside the document-id rule: such a
        document could not be exchanged with any peer."""
        try:
            check_doc_id(doc_id)
        except DocIdError:
            return False
        doc = self.document(doc_id)
        if updates:
            # One merged update: Yrs may drop some of several updates applied one by one when
            # their dependencies come later (tests/test_models.py pins this).
            doc.apply_update(updates[0] if len(updates) == 1 else merge_updates(*updates))
        self._captured = [c for c in self._captured if c[0] != doc_id]
        self._digests.pop(doc_id, None)
        self.checker.forget(doc_id)
        return True

    def import_update(self, doc_id: str, update: bytes, now: float) -> int:
        """Apply an update as if written here (restore from a backup): persisted and sent.

        A backup is the administrator's input, trusted like a local write: it is not held to
        the record rules (its records may be signed by nodes since removed, or by another
        cluster's keys; peers check them when they replicate). An update the Yjs decoder
        refuses raises ImportRefused and leaves nothing behind."""
        codec.check_doc_id(doc_id)
        try:
            Doc(client_id=1).apply_update(update)  # decode on a throwaway document first
        except BaseException as exc:
            if not is_decode_failure(exc):
                raise
            raise ImportRefused("bad_update", f"update for {doc_id} rejected: {exc}") from None
        before = self._event_no
        self.document(doc_id).apply_update(update)
        self._collect(now)
        return self._event_no if self._event_no > before else 0

    def retire(self, doc_id: str) -> None:
        """Forget a document; its observer is removed so the Doc can be freed."""
        subscription = self._subscriptions.pop(doc_id, None)
        doc = self.docs.pop(doc_id, None)
        if doc is not None and subscription is not None:
            doc.unobserve(subscription)
        self._digests.pop(doc_id, None)
        for outbox in self._outboxes:
            outbox.forget(doc_id)
        self._last_local_event.pop(doc_id, None)
        self._followed.discard(doc_id)
        self.checker.forget(doc_id)

    @contextmanager
    def writing(self, doc_id: str, now: float) -> Iterator[Doc[Any]]:
        """Change a document in one transaction: ``with engine.writing(id, now) as doc: ...``."""
        doc = self.document(doc_id)
        with doc.transaction():
            yield doc
        self._collect(now)

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any], now: float) -> int:
        """Apply `change` in one transaction; returns the change number (0 if nothing changed)."""
        before = self._event_no
        with self.writing(doc_id, now) as doc:
            change(doc)
        return self._event_no if self._event_no > before else 0

    def digest(self, doc_id: str) -> bytes:
        cached = self._digests.get(doc_id)
        if cached is None:
            cached = self._digests[doc_id] = state_digest(self.docs[doc_id])
        return cached

    def durable_through(self, event_no: int, now: float) -> None:
        """The adapter's store committed every change up to `event_no`: acks may go out."""
        self._durable_through = max(self._durable_through, event_no)
        self._send_acks(now)

    def request_sync(self, doc_id: str, now: float) -> None:
        """Ask every linked peer for what this node lacks of a document (a STEP1 to each)."""
        for link in self._up_links():
            self._ask(link, doc_id, now)

    def asking(self, doc_id: str) -> bool:
        """Whether a STEP1 for the document is unanswered on a link that is up (a link that
        closes stops counting: its peer will not answer)."""
        return any(link.step1_out.get(doc_id, 0) > 0 for link in self._up_links())

    def _ask(self, link: Link, doc_id: str, now: float) -> None:
        doc = self.docs.get(doc_id)
        state_vector = doc.get_state() if doc is not None else EMPTY_STATE_VECTOR
        self._send_step1(link, doc_id, state_vector, now)

    def follow(self, doc_id: str, now: float) -> bool:
        """Keep a document current here although the placement does not give it to this node's
        region (see module docstring): it is asked for from every linked peer now, and, once
        held, from the peers that want it at each link-up and anti-entropy round until
        `unfollow`. False (nothing asked) for an id outside the document-id rule, or when
        MAX_FOLLOWED documents are followed already (ids never answered are dropped first)."""
        try:
            check_doc_id(doc_id)
        except DocIdError:
            return False
        if doc_id not in self._followed and len(self._followed) >= MAX_FOLLOWED:
            self._followed = {d for d in self._followed if d in self.docs}
            if len(self._followed) >= MAX_FOLLOWED:
                return False
        self._followed.add(doc_id)
        self.request_sync(doc_id, now)
        return True

    def unfollow(self, doc_id: str) -> None:
        """Stop keeping the document current here (it stays held; peers that subscribed this
        node on a link go on pushing its rare later changes until that link closes)."""
        self._followed.discard(doc_id)

    @property
    def followed(self) -> frozenset[str]:
        return frozenset(self._followed)

    def wants_here(self, doc_id: str) -> bool:
        """Whether this node keeps the document current: its region wants it, or it follows it."""
        return self._wants is None or doc_id in self._followed or self._wants(doc_id, self.region)

    def _peer_wants(self, link: Link, doc_id: str) -> bool:
        """Whether the link's peer gets the document's changes and digest: its region wants the
        document, or it subscribed to it on this link."""
        if self._wants is None or link.peer is None:
            return True
        return doc_id in link.subscribed or self._wants(doc_id, link.peer.region)

    def _ask_followed(self, link: Link, now: float) -> None:
        """Ask the peer for the followed documents its region keeps (and so subscribe to them)."""
        for doc_id in sorted(self._followed):
            if doc_id not in self.docs:
                continue  # no peer had it when asked: not asked again on every round
            if self._peer_wants(link, doc_id) and link.step1_out.get(doc_id, 0) == 0:
                self._ask(link, doc_id, now)

    @property
    def last_event_no(self) -> int:
        return self._event_no

    @property
    def durable_event_no(self) -> int:
        """Every change numbered up to this one is committed to the local store."""
        return self._durable_through

    def regions_holding(self, doc_id: str, event_no: int) -> int:
        """How many regions other than this node's hold local change `event_no` of the doc
        (acknowledged by at least one of their nodes): another process of this node's own
        region is no second region (``replication.ack_regions`` counts regions)."""
        return len(
            {
                peer.region
                for peer in self.peers.values()
                if peer.region != self.region and self.peer_holds(peer.node_id, doc_id, event_no)
            }
        )

    def peer_holds(self, node_id: str, doc_id: str, event_no: int) -> bool:
        """Whether the peer acknowledged holding (durably) local change `event_no` of the doc."""
        peer = self.peers.get(node_id)
        if peer is None:
            return False
        link = self._links.get(peer.link_id) if peer.link_id else None
        return event_no <= self._held_prefix(peer, link, doc_id)

    def _fresh_client_id(self) -> int:
        # Yjs client ids are 53-bit safe integers; a fresh one per Doc per process start, so two
        # replicas never write under the same id (they would silently diverge).
        return self._rng.randrange(1, 2**53)

    def _observer(self, doc_id: str) -> Callable[[TransactionEvent], None]:
        def capture(event: TransactionEvent) -> None:
            # Runs inside the commit: record the bytes only, never touch the document here.
            self._captured.append((doc_id, bytes(event.update), self._origin))

        return capture

    def _collect(self, now: float) -> None:
        """Turn captured document changes into events, digest invalidations and pending sends."""
        captured = self._captured
        if captured:
            self._captured = []
        for doc_id, update, origin in captured:
            if update == EMPTY_UPDATE:
                continue
            self._event_no += 1
            self._digests.pop(doc_id, None)
            self._events.append(DocChanged(doc_id, update, origin, self._event_no))
            pending = PendingUpdate(update, origin, self._event_no)
            for outbox in self._outboxes:
                outbox.add(doc_id, pending, now)
            if origin is None:
                self._last_local_event[doc_id] = self._event_no
                self.checker.local_change(doc_id, update)  # peers' changes are in it already
        if self._auto_durable:
            self._durable_through = self._event_no
        for outbox in self._outboxes:
            if outbox.window_s <= 0 and outbox.since:
                self._flush_outbox(outbox, now, force=True)

    # --- links -------------------------------------------------------------------------

    def open_link(self, now: float, *, initiator: bool) -> int:
        """A transport connected (we dialed: initiator). Our HELLO is queued at once."""
        link = Link(self._next_link_id, initiator, now, self._rng.randbytes(codec.NONCE_BYTES))
        link.last_received = link.last_sent = now
        self._next_link_id += 1
        self._links[link.link_id] = link
        lo, hi = self.versions
        hello = codec.Hello(self.node_id, self.region, self.software, lo, hi, link.nonce, self.url)
        self._send(link, hello, now)
        return link.link_id

    def receive(self, link_id: int, data: bytes, now: float) -> None:
        """One frame arrived on the link."""
        link = self._links.get(link_id)
        if link is None or link.state is LinkState.CLOSED:
            return
        link.last_received = now
        peer = self.peers.get(link.peer_id) if link.state is LinkState.UP and link.peer_id else None
        if peer:
            peer.frames_received += 1
            peer.bytes_received += len(data)
        try:
            frame = codec.decode(data, self.settings.max_frame_bytes, compressed=_compresses(link))
            if link.state is LinkState.HANDSHAKE:
                self._handshake(link, frame, now)
            else:
                self._dispatch(link, frame, now)
        except FrameError as error:
            if peer is not None:
                self._count_refusal(link, peer.node_id, error)
            self._fail(link, error.code, error.reason, now)
        finally:
            self._origin = None
        self._collect(now)

    def _count_refusal(self, link: Link, peer_id: str, error: FrameError) -> None:
        """A frame from an authenticated peer refused: counted by rule and reported."""
        key = (peer_id, error.rule)
        self.refusals[key] = self.refusals.get(key, 0) + 1
        self._events.append(PeerRefused(link.link_id, peer_id, error.rule, error.reason))

    def close_link(self, link_id: int, now: float, reason: str) -> None:
        """The transport went away: forget the link."""
        link = self._links.get(link_id)
        if link is not None and link.state is not LinkState.CLOSED:
            self._close(link, reason, refused=False, now=now)
        self._links.pop(link_id, None)

    def shutdown(self, now: float) -> None:
        """Tell every peer this node is stopping (an ERROR frame), then close all links."""
        for link in list(self._links.values()):
            if link.state is not LinkState.CLOSED:
                self._fail(link, ErrorCode.SHUTDOWN, f"{self.node_id} is shutting down", now)

    def take_outgoing(self, link_id: int) -> list[bytes]:
        """Frames to send on the link, in order. A closed link is forgotten once drained."""
        link = self._links.get(link_id)
        if link is None:
            return []
        frames = list(link.outbox)
        link.outbox.clear()
        link.outbox_bytes = 0
        if link.state is LinkState.CLOSED:
            del self._links[link_id]
        return frames

    def links_with_output(self) -> list[int]:
        return [link.link_id for link in self._links.values() if link.outbox]

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def link_state(self, link_id: int) -> LinkState | None:
        link = self._links.get(link_id)
        return link.state if link else None

    def link_peer(self, link_id: int) -> str | None:
        link = self._links.get(link_id)
        return link.peer_id if link else None

    def up_peers(self) -> list[str]:
        return sorted(
            link.peer_id
            for link in self._links.values()
            if link.state is LinkState.UP and link.peer_id
        )

    def replication_backlog(self) -> int:
        """Data frames sent and not yet acknowledged, plus frames queued to send, over all
        links (the load observer's replication backlog)."""
        return sum(len(link.unacked) + len(link.outbox) for link in self._links.values())

    def oldest_link_version(self) -> int | None:
        """The lowest protocol version of the links that are up (None: no link is up)."""
        versions = [link.version for link in self._links.values() if link.state is LinkState.UP]
        return min(versions, default=None)

    # --- time ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Run what is due: coalesced flushes, acks, heartbeats, timeouts, anti-entropy."""
        self._collect(now)
        self._flush(now, force=False)
        self._send_acks(now)
        for link in list(self._links.values()):
            self._check_liveness(link, now)
        if self._next_anti_entropy is None:
            self._next_anti_entropy = now + self._jittered(self.settings.anti_entropy_s)
        elif now >= self._next_anti_entropy:
            self._next_anti_entropy = now + self._jittered(self.settings.anti_entropy_s)
            for link in self._up_links():
                self._send_digests(link, now)
                self._ask_followed(link, now)

    def next_deadline(self, now: float) -> float:
        """The latest time by which tick() must run again (the adapter may call it earlier)."""
        # Called after every input the adapter hands over: no lists built.
        deadline = now + self.settings.heartbeat_s
        for outbox in self._outboxes:
            if outbox.since:
                deadline = min(deadline, outbox.deadline_of_pending())
        if self._next_anti_entropy is not None:
            deadline = min(deadline, self._next_anti_entropy)
        return max(now, deadline)

    def _jittered(self, seconds: float) -> float:
        return seconds * self._rng.uniform(0.9, 1.1)

    def _check_liveness(self, link: Link, now: float) -> None:
        if link.state is LinkState.HANDSHAKE and now - link.opened_at > HANDSHAKE_TIMEOUT_S:
            self._fail(link, ErrorCode.TIMEOUT, "handshake not finished in time", now)
        elif link.state is LinkState.UP:
            silent = now - link.last_received
            if silent > self.settings.peer_timeout_s:
                self._fail(link, ErrorCode.TIMEOUT, f"no frame from peer for {silent:.1f} s", now)
            elif now - link.last_sent >= self.settings.heartbeat_s:
                token = self._rng.randrange(1, 2**31)
                link.ping_sent = {token: now}
                self._send(link, codec.Ping(token), now)

    # --- handshake ----------------------------------------------------------------------

    def _handshake(self, link: Link, frame: codec.Frame, now: float) -> None:
        match frame:
            case codec.Hello():
                self._on_hello(link, frame, now)
            case codec.AuthSig():
                self._on_auth(link, frame, now)
            case codec.Auth():
                raise FrameError(
                    ErrorCode.VERSION_MISMATCH,
                    "protocol 1 authentication (a shared-secret proof) is not accepted; "
                    f"this node speaks protocols {self.versions[0]}..{self.versions[1]} "
                    "(node keys)",
                )
            case codec.Error():
                # A duplicate closed before it came up here (both nodes dialed): no refusal.
                duplicate = frame.code == ErrorCode.DUPLICATE_LINK
                reason = f"refused by peer: {frame.reason}"
                self._close(link, reason, refused=not duplicate, now=now, replaced=duplicate)
            case _:
                raise FrameError(ErrorCode.UNAUTHENTICATED, "frame before authentication")

    def _on_hello(self, link: Link, hello: codec.Hello, now: float) -> None:
        if link.peer is not None:
            raise FrameError(ErrorCode.MALFORMED, "second hello")
        if hello.node_id == self.node_id:
            raise FrameError(ErrorCode.SELF_CONNECTION, f"connected to itself ({self.node_id})")
        lo, hi = max(self.versions[0], hello.proto_min), min(self.versions[1], hello.proto_max)
        if lo > hi:
            raise FrameError(
                ErrorCode.VERSION_MISMATCH,
                f"incompatible protocol: peer {hello.node_id} speaks "
                f"{hello.proto_min}..{hello.proto_max}, "
                f"this node {self.versions[0]}..{self.versions[1]}",
            )
        self._check_known(hello)
        link.peer = hello
        link.version = hi
        signature = self.identity.sign(
            _transcript(self.node_id, hello.node_id, hello.nonce, link.nonce, hi)
        )
        self._send(link, codec.AuthSig(signature, hi), now)

    def _check_known(self, hello: codec.Hello) -> None:
        """The peer's id must be an active keyring entry of the region it claims."""
        entry = self.keyring.get(hello.node_id)
        prefix = f"peer {hello.node_id[:40]} failed authentication"
        if entry is None:
            raise FrameError(
                ErrorCode.UNKNOWN_NODE, f"{prefix}: not in the cluster keyring", "unknown_node"
            )
        if entry.removed:
            raise FrameError(
                ErrorCode.UNKNOWN_NODE,
                f"{prefix}: removed from the cluster keyring",
                "removed_node",
            )
        if entry.region != hello.region:
            raise FrameError(
                ErrorCode.UNKNOWN_NODE,
                f"{prefix}: it says region {hello.region[:40]!r}, the keyring {entry.region!r}",
                "wrong_region",
            )

    def _on_auth(self, link: Link, auth: codec.AuthSig, now: float) -> None:
        hello = link.peer
        if hello is None:
            raise FrameError(ErrorCode.MALFORMED, "auth before hello")
        if auth.version != link.version:
            raise FrameError(ErrorCode.VERSION_MISMATCH, f"peer chose version {auth.version}")
        entry = self.keyring.get(hello.node_id)
        message = _transcript(hello.node_id, self.node_id, link.nonce, hello.nonce, link.version)
        if entry is None or not entry.verify(message, auth.signature):
            raise FrameError(
                ErrorCode.AUTH_FAILED,
                f"peer {hello.node_id} failed authentication "
                "(its signature does not match its key in the cluster keyring)",
            )
        self._link_up(link, now)

    def _link_up(self, link: Link, now: float) -> None:
        assert link.peer is not None
        peer_id = link.peer.node_id
        peer = self.peers.setdefault(peer_id, PeerState(peer_id, link.peer.region))
        peer.region = link.peer.region
        peer.url = link.peer.url or peer.url
        existing = self._links.get(peer.link_id) if peer.link_id else None
        if existing is not None and existing.state is LinkState.UP:
            loser = self._duplicate_loser(existing, link)
            # Both nodes dialed: the pair stays linked. A reconnect from the same side instead
            # replaces a link that may be stale (the peer may have restarted): as if lost.
            both_dialed = existing.initiator != link.initiator
            reason = f"duplicate link to {peer_id}"
            self._fail(loser, ErrorCode.DUPLICATE_LINK, reason, now, replaced=both_dialed)
            if loser is link:
                return
        link.state = LinkState.UP
        link.base_events = dict(self._last_local_event)
        peer.link_id = link.link_id
        self._events.append(
            LinkUp(link.link_id, peer_id, link.peer.region, link.peer.software, link.version)
        )
        self._announce_links(now, link)
        self._send_digests(link, now)
        self._ask_followed(link, now)

    def _duplicate_loser(self, old: Link, new: Link) -> Link:
        """Both ends pick the same survivor: the link dialed by the smaller node id."""
        peer_id = new.peer_id or ""
        preferred_dialer = min(self.node_id, peer_id)

        def dialer(link: Link) -> str:
            return self.node_id if link.initiator else peer_id

        if dialer(old) == dialer(new):
            return old  # a reconnect from the same side replaces the stale link
        return new if dialer(old) == preferred_dialer else old

    # --- dispatch of authenticated frames -------------------------------------------------

    def _dispatch(self, link: Link, frame: codec.Frame, now: float) -> None:
        peer = self.peers[link.peer_id or ""]
        match frame:
            case codec.Update() | codec.Step2():
                self._apply_remote(link, peer, frame, now)
            case codec.Step1():
                self._answer_step1(link, frame, now)
            case codec.Ack():
                self._on_ack(link, peer, frame.seq, now)
            case codec.Digests():
                self._on_digests(link, frame, now)
            case codec.Links():
                self._on_links(peer, frozenset(frame.node_ids), now)
            case codec.Ping():
                self._send(link, codec.Pong(frame.token), now)
            case codec.Pong():
                sent = link.ping_sent.pop(frame.token, None)
                if sent is not None:
                    peer.rtt = now - sent
            case codec.Error():
                # The peer keeps another link to this node when it closes a duplicate.
                replaced = frame.code == ErrorCode.DUPLICATE_LINK
                reason = f"peer error {frame.code}: {frame.reason}"
                self._close(link, reason, refused=False, now=now, replaced=replaced)
            case codec.Hello() | codec.Auth() | codec.AuthSig():
                raise FrameError(ErrorCode.MALFORMED, "handshake frame after authentication")

    def _on_links(self, peer: PeerState, links: frozenset[str], now: float) -> None:
        """A peer lost a link: changes it sent just before may not have reached that node (it
        was not relayed to, the link looked up). Offer that node our digests so it pulls them."""
        lost = peer.links - links
        peer.links = links
        for link in self._up_links():
            if link.peer_id in lost:
                self._send_digests(link, now)

    def _apply_remote(
        self, link: Link, peer: PeerState, frame: codec.Update | codec.Step2, now: float
    ) -> None:
        """Check a peer's update and apply it, or refuse it, or pull the document first."""
        solicited = isinstance(frame, codec.Step2) and link.step1_out.get(frame.doc_id, 0) > 0
        if solicited:
            link.step1_out[frame.doc_id] -= 1
        self._check_size(frame, solicited)
        doc = self.docs.get(frame.doc_id)
        if doc is None and frame.update == EMPTY_UPDATE:
            self._ack_now(link, frame, now)  # nothing to create: never an empty document
            return
        try:
            self.checker.check(frame.doc_id, doc, frame.update)
        except NeedsPull as pull:
            if solicited:  # the sender's whole document does not explain it either
                raise _refusal(frame.doc_id, pull) from None
            if doc is None:  # the pull will create the document: it counts against the quota
                self._take_new_doc_token(peer, frame.doc_id, False, now)
            self._pull(link, frame, now)
            return
        except UpdateRefused as refused:
            raise _refusal(frame.doc_id, refused) from None
        if doc is None:
            self._take_new_doc_token(peer, frame.doc_id, solicited, now)
        self._apply_checked(peer, frame.doc_id, frame.update, now)
        self._ack_now(link, frame, now)

    def _apply_checked(self, peer: PeerState, doc_id: str, update: bytes, now: float) -> None:
        """Apply a peer's update that passed the checks (creating its document if need be)."""
        doc = self.document(doc_id)
        self._origin = peer.node_id
        try:
            doc.apply_update(update)
        finally:
            self._origin = None
        self.checker.applied(doc_id, doc)
        peer.updates_received += 1
        self._collect(now)

    def _check_size(self, frame: codec.Update | codec.Step2, solicited: bool) -> None:
        """An answer to our STEP1 may be as large as a frame; anything pushed is capped."""
        cap = self.settings.max_update_bytes
        if not solicited and len(frame.update) > cap:
            raise FrameError(
                ErrorCode.TOO_LARGE,
                f"update for {frame.doc_id} of {len(frame.update)} bytes exceeds {cap}",
                "too_large",
            )

    def _pull(self, link: Link, frame: codec.Update | codec.Step2, now: float) -> None:
        """The update builds on content we lack: ask the sender for the document; the update's
        acknowledgement waits for the answer, which carries the update's content too."""
        link.held_bytes += len(frame.update)
        if link.held_bytes > HELD_BYTES_PER_LINK:
            raise FrameError(
                ErrorCode.TOO_LARGE,
                f"updates held back for pulls on this link exceed {HELD_BYTES_PER_LINK} bytes",
                "too_large",
            )
        link.pending_acks.append(PendingAck(frame.seq, None, frame.doc_id, frame.update))
        if link.step1_out.get(frame.doc_id, 0) == 0:
            doc = self.docs.get(frame.doc_id)
            state_vector = doc.get_state() if doc is not None else EMPTY_STATE_VECTOR
            self._send_step1(link, frame.doc_id, state_vector, now)

    def _answer_pulls(self, link: Link, doc_id: str, now: float) -> None:
        """The sender answered a pull of `doc_id`: check the updates held back for it again."""
        for pending in list(link.pending_acks):
            if pending.event_no is None and pending.doc_id == doc_id:
                self._recheck_held(link, pending, now)
                pending.event_no = self._event_no

    def _recheck_held(self, link: Link, pending: PendingAck, now: float) -> None:
        """A held-back update against the document with the sender's answer in it: refused
        (NeedsPull included: the sender's whole document does not explain it), or applied."""
        update, pending.held = pending.held, None
        peer = self.peers.get(link.peer_id) if link.peer_id else None
        if update is None or peer is None:
            return
        link.held_bytes -= len(update)
        try:
            self.checker.check(pending.doc_id, self.docs.get(pending.doc_id), update)
        except UpdateRefused as refused:
            raise _refusal(pending.doc_id, refused) from None
        self._apply_checked(peer, pending.doc_id, update, now)  # (its quota token was taken)

    def _ack_now(self, link: Link, frame: codec.Update | codec.Step2, now: float) -> None:
        """Queue the frame's acknowledgement and send what is durable at once: an update that
        brought nothing new (a duplicate, a relay we had) is acknowledged without waiting."""
        if isinstance(frame, codec.Step2):
            self._answer_pulls(link, frame.doc_id, now)
        link.pending_acks.append(PendingAck(frame.seq, self._event_no))
        self._send_link_acks(link, now)

    def _take_new_doc_token(
        self, peer: PeerState, doc_id: str, solicited: bool, now: float
    ) -> None:
        """A peer creates documents here within its quota; documents we asked for in answer to
        its DIGESTS paid when we asked (see _on_digests)."""
        if solicited:
            return
        if not self._spend_new_doc_token(peer, now):
            raise FrameError(
                ErrorCode.REFUSED_UPDATE,
                f"refused update for {doc_id}: peer {peer.node_id} created more new documents "
                f"than its quota ({self.settings.new_docs_burst}, then "
                f"{self.settings.new_docs_per_s:g}/s)",
                "doc_quota",
            )

    def _spend_new_doc_token(self, peer: PeerState, now: float) -> bool:
        burst = float(self.settings.new_docs_burst)
        if peer.tokens_at is None:
            peer.new_doc_tokens = burst
        else:
            refill = (now - peer.tokens_at) * self.settings.new_docs_per_s
            peer.new_doc_tokens = min(burst, peer.new_doc_tokens + max(0.0, refill))
        peer.tokens_at = now
        if peer.new_doc_tokens < 1:
            return False
        peer.new_doc_tokens -= 1
        return True

    def _answer_step1(self, link: Link, step1: codec.Step1, now: float) -> None:
        doc = self.docs.get(step1.doc_id)
        if doc is not None and not self._peer_wants(link, step1.doc_id):
            link.subscribed.add(step1.doc_id)  # it fetches a document it is no replica of
        try:
            update = doc.get_update(step1.state_vector) if doc is not None else EMPTY_UPDATE
        except BaseException as exc:
            if not is_decode_failure(exc):
                raise
            raise FrameError(ErrorCode.BAD_UPDATE, f"bad state vector for {step1.doc_id}") from None
        self._send_data(link, codec.Step2(link.next_seq, step1.doc_id, update), self._event_no, now)

    def _on_ack(self, link: Link, peer: PeerState, seq: int, now: float) -> None:
        for sent_seq in sorted(s for s in link.unacked if s <= seq):
            batch = link.unacked.pop(sent_seq)
            lag = now - batch.sent_at
            peer.lag_samples.append(lag)
            peer.lag_count += 1
            peer.lag_seconds_total += lag
            peer.doc_lag[batch.doc_id] = lag
            acked = link.step2_acked if batch.is_step2 else link.update_acked
            acked[batch.doc_id] = max(acked.get(batch.doc_id, 0), batch.local_event_no)

    def _on_digests(self, link: Link, frame: codec.Digests, now: float) -> None:
        peer = self.peers[link.peer_id or ""]
        for doc_id, remote_digest in frame.items:
            if not self.wants_here(doc_id):
                continue  # the placement keeps it elsewhere: not pulled on its own
            if doc_id in self.docs:
                if self.digest(doc_id) == remote_digest:
                    continue
                state_vector = self.docs[doc_id].get_state()
            elif remote_digest == EMPTY_DIGEST or link.step1_out.get(doc_id, 0):
                continue
            elif not self._spend_new_doc_token(peer, now):
                continue  # over this peer's quota of new documents: the next round asks again
            else:
                state_vector = EMPTY_STATE_VECTOR
            self._send_step1(link, doc_id, state_vector, now)

    def _send_step1(self, link: Link, doc_id: str, state_vector: bytes, now: float) -> None:
        link.step1_out[doc_id] = link.step1_out.get(doc_id, 0) + 1
        self._send(link, codec.Step1(doc_id, state_vector), now)

    # --- sending ------------------------------------------------------------------------

    def _up_links(self) -> list[Link]:
        return [link for link in self._links.values() if link.state is LinkState.UP]

    def _send(self, link: Link, frame: codec.Frame, now: float) -> None:
        data = codec.encode(frame)
        # Not to another process of this region: on loopback or a LAN the bytes cost less than
        # deflating and inflating them (docs/performance.md, *Several processes per region*).
        if _compresses(link) and not self._same_region(link):
            data = codec.compress_frame(data)
        link.outbox.append(data)
        link.outbox_bytes += len(data)
        link.last_sent = now
        if link.state is LinkState.UP and link.peer_id:
            peer = self.peers[link.peer_id]
            peer.frames_sent += 1
            peer.bytes_sent += len(data)
        if link.outbox_bytes > self.settings.max_queue_bytes and link.state is not LinkState.CLOSED:
            # A peer that cannot drain its queue is cut; it resyncs by anti-entropy on reconnect.
            link.outbox.clear()
            link.outbox_bytes = 0
            self._fail(link, ErrorCode.QUEUE_OVERFLOW, "send queue limit exceeded", now)

    def _send_data(
        self,
        link: Link,
        frame: codec.Update | codec.Step2,
        local_event_no: int,
        now: float,
        *,
        written_at: float | None = None,
    ) -> None:
        # Lag is measured from when the oldest change in the frame was made, so the coalescing
        # wait counts too; a STEP2 answer counts from now.
        is_step2 = isinstance(frame, codec.Step2)
        sent_at = now if written_at is None else written_at
        link.unacked[link.next_seq] = SentBatch(sent_at, frame.doc_id, local_event_no, is_step2)
        link.next_seq += 1
        if link.peer_id:
            self.peers[link.peer_id].updates_sent += 1
        self._send(link, frame, now)

    def _flush(self, now: float, *, force: bool) -> None:
        for outbox in self._outboxes:
            self._flush_outbox(outbox, now, force=force)

    def _flush_outbox(self, outbox: Outbox, now: float, *, force: bool) -> None:
        if not outbox.since:
            return  # nothing waits (most calls: after every input)
        window = outbox.window_s
        due = [d for d, since in outbox.since.items() if force or now >= since + window]
        if not due:
            return
        links = [link for link in self._up_links() if self._in_class(link, outbox.near)]
        for doc_id in due:
            pending = outbox.pending.pop(doc_id)
            since = outbox.since.pop(doc_id)
            for link in links:
                self._send_pending(link, doc_id, pending, since, now)

    def _in_class(self, link: Link, near: bool | None) -> bool:
        """Whether `link` takes the changes of an outbox for `near` (see Outbox)."""
        return near is None or self._same_region(link) == near

    def _same_region(self, link: Link) -> bool:
        """Whether the link's peer is another process of this node's region."""
        return link.peer is not None and link.peer.region == self.region

    def _send_pending(
        self, link: Link, doc_id: str, pending: list[PendingUpdate], since: float, now: float
    ) -> None:
        if not self._peer_wants(link, doc_id):
            return  # the placement keeps it elsewhere: neither pushed nor relayed there
        target = link.peer_id or ""
        # A subscriber gets a peer's changes too: their writer goes by the placement alone,
        # which does not name the subscriber's region (and Yjs drops what it already holds).
        subscribed = doc_id in link.subscribed
        chosen = [
            p
            for p in pending
            if self._should_send(p.origin, target) or (subscribed and p.origin != target)
        ]
        if not chosen:
            return
        update = (
            chosen[0].update if len(chosen) == 1 else merge_updates(*[p.update for p in chosen])
        )
        if len(update) > self.settings.max_update_bytes:
            # Peers refuse pushed updates over the cap (an import, a long partition's relay):
            # offer the document's digest instead, so the peer pulls it with STEP1/STEP2.
            self._send(link, codec.Digests(((doc_id, self.digest(doc_id)),)), now)
            return
        local_event_no = max((p.event_no for p in chosen if p.origin is None), default=0)
        frame = codec.Update(link.next_seq, doc_id, bytes(update))
        self._send_data(link, frame, local_event_no, now, written_at=since)

    def _should_send(self, origin: str | None, target: str) -> bool:
        """Local changes go everywhere; a peer's changes go to peers it says it cannot reach."""
        if origin is None:
            return True
        if origin == target or not self.settings.relay:
            return False
        origin_peer = self.peers.get(origin)
        return origin_peer is None or target not in origin_peer.links

    def _send_acks(self, now: float) -> None:
        for link in self._up_links():
            self._send_link_acks(link, now)

    def _send_link_acks(self, link: Link, now: float) -> None:
        """ACK the longest run of received frames whose content is durable (cumulative)."""
        acked = 0
        while link.pending_acks:
            head = link.pending_acks[0]
            if head.event_no is None or head.event_no > self._durable_through:
                break
            acked = link.pending_acks.popleft().seq
        if acked:
            self._send(link, codec.Ack(acked), now)

    def _send_digests(self, link: Link, now: float) -> None:
        # Only what the peer keeps: the digest (state vector and delete set) of each, compared
        # whole on the other side, so a pure delete is seen as with full replication.
        items = [
            (doc_id, self.digest(doc_id))
            for doc_id in sorted(self.docs)
            if self._peer_wants(link, doc_id)
        ]
        for start in range(0, max(len(items), 1), DIGESTS_PER_FRAME):
            self._send(link, codec.Digests(tuple(items[start : start + DIGESTS_PER_FRAME])), now)

    def _announce_links(self, now: float, new_link: Link | None = None) -> None:
        """Tell every linked peer which peers this node reaches, when that changed; a link
        just up is told in any case (a duplicate link that replaces one changes nothing)."""
        peers = tuple(self.up_peers())
        changed = peers != self._announced_peers
        self._announced_peers = peers
        frame = codec.Links(peers)
        for link in self._up_links():
            if changed or link is new_link:
                self._send(link, frame, now)

    # --- closing ------------------------------------------------------------------------

    def _fail(
        self, link: Link, code: ErrorCode, reason: str, now: float, *, replaced: bool = False
    ) -> None:
        """Tell the peer why, then close: nothing more is read from or sent on this link
        (`replaced`: by another link to the same peer, see `_close`; a duplicate closed in its
        handshake is no refusal)."""
        refused = link.state is LinkState.HANDSHAKE and not replaced
        self._send(link, codec.Error(code, reason), now)
        self._close(link, reason, refused=refused, now=now, replaced=replaced)

    def _close(
        self, link: Link, reason: str, *, refused: bool, now: float, replaced: bool = False
    ) -> None:
        """Forget the link. One that was up and is not `replaced` by another link to the same
        peer (a duplicate closed when both nodes dialed each other, as at start-up) changes the
        peers this node reaches: it tells its peers so, and offers them its digests."""
        was_up = link.state is LinkState.UP
        link.state = LinkState.CLOSED
        peer = self.peers.get(link.peer_id or "")
        if peer is not None and peer.link_id == link.link_id:
            for doc_id in set(link.update_acked) | set(link.step2_acked):
                peer.held_through[doc_id] = self._held_prefix(peer, link, doc_id)
            peer.link_id = None
        self._events.append(LinkClosed(link.link_id, link.peer_id, reason, refused))
        if was_up and not replaced:
            self._announce_links(now)
            self._offer_what_the_peer_sent(now)

    def _offer_what_the_peer_sent(self, now: float) -> None:
        """A peer's link went down: its last changes may have reached this node and not the
        others (its changes are not relayed to nodes it said it reached, and it may have died
        before it sent them there). Offer every linked peer our digests, so each pulls what it
        lacks now rather than at the next anti-entropy round (a failover: players resuming on
        another region must find there the moves the lost node replicated to this one)."""
        for other in self._up_links():
            self._send_digests(other, now)

    def _held_prefix(self, peer: PeerState, link: Link | None, doc_id: str) -> int:
        """Largest n such that the peer holds every local change <= n of the document."""
        prefix = peer.held_through.get(doc_id, 0)
        if link is None:
            return prefix
        prefix = max(prefix, link.step2_acked.get(doc_id, 0))
        if prefix >= link.base_events.get(doc_id, 0):
            # Every local change after link-up was sent on this link, in order.
            prefix = max(prefix, link.update_acked.get(doc_id, 0))
        return prefix


def _compresses(link: Link) -> bool:
    """COMPRESSED frames go both ways only on an authenticated link of protocol 3 or later."""
    return link.state is LinkState.UP and link.version >= codec.COMPRESSION_VERSION


def _refusal(doc_id: str, refused: UpdateRefused) -> FrameError:
    if refused.rule == "bad_update":
        reason = f"update for {doc_id} rejected: {refused.message}"
        return FrameError(ErrorCode.BAD_UPDATE, reason, refused.rule)
    reason = f"refused update for {doc_id}: {refused.message}"
    return FrameError(ErrorCode.REFUSED_UPDATE, reason, refused.rule)


def _transcript(
    sender: str, receiver: str, receiver_nonce: bytes, sender_nonce: bytes, version: int
) -> bytes:
    """What a node signs in its AUTH_SIG: both ids and both fresh nonces bind the signature to
    this link (no replay on another link, no relay to another node)."""
    parts = [
        AUTH_LABEL,
        sender.encode(),
        receiver.encode(),
        receiver_nonce,
        sender_nonce,
        str(version).encode(),
    ]
    return b"|".join(parts)
