"""The asyncio adapter around SyncEngine: real time, the durable store and the link sockets.

The engine is a pure state machine; this module is the thin layer that makes it run in a node:
it calls the engine with the monotonic clock, wakes it at its next deadline, hands every change
to the group-commit store and tells the engine when changes are durable (which releases acks),
pushes outgoing frames to each link's socket and closes sockets the engine is done with.
Everything runs on one event loop, so the engine is never entered concurrently.

Quarantine: a document whose stored rows were corrupt at start-up (see ``sync.store``) is held
read-only from its intact rows. A local write to it raises :class:`DocumentQuarantined`; updates
from peers are appended to its log like any other. It is refilled once a peer that holds the
document (its DIGESTS entry is not the empty digest) has answered this node's anti-entropy pull
with a STEP2, or announces the same digest as this node's: this node then holds everything that
peer holds. Only then is the document rewritten whole in the store (merged with its intact rows,
see ``DocumentStore.replace_document``), and once that is durable the quarantine is lifted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc

from meridian.sync import codec
from meridian.sync.codec import FrameError
from meridian.sync.digest import EMPTY_DIGEST
from meridian.sync.engine import DocChanged, Event, LinkClosed, LinkUp, PeerRefused, SyncEngine
from meridian.sync.store import GroupCommitStore, LoadedState

log = logging.getLogger("meridian.sync")

ChangeListener = Callable[[DocChanged], None]
ProgressListener = Callable[[], None]
SHUTDOWN_GRACE_S = 2.0


def load_stored(engine: SyncEngine, loaded: LoadedState) -> None:
    """Restore what a store load returned into a fresh engine (a node's start-up, real or
    simulated): every intact document, and each quarantined document's intact rows.

    A quarantined document's rows include the successors of its corrupt row: whatever depends
    on the missing row waits inside the Doc (not shown) until a peer's refill brings it. Ids
    outside the document-id rule are logged and skipped: no peer could ever exchange them.
    """
    for doc_id, updates in loaded.updates.items():
        if not engine.load(doc_id, updates):
            log.error("store: document %r is outside the document-id rule; not loaded", doc_id)
    for doc_id, salvaged in loaded.salvaged.items():
        try:
            engine.load(doc_id, salvaged)
        except FrameError:  # damage to the id itself: no peer will ever hold this one
            log.error("store: quarantined document id %r is not a valid id", doc_id)


class DocumentQuarantined(Exception):
    """A local write to a quarantined document: refused until a peer has refilled it."""

    def __init__(self, doc_id: str, reason: str) -> None:
        super().__init__(
            f"document {doc_id!r} is quarantined ({reason}); local writes are refused until a "
            "peer has refilled it"
        )
        self.doc_id = doc_id
        self.reason = reason


class LinkSocket(Protocol):
    """What the replicator needs of one transport connection."""

    def send_frames(self, frames: list[bytes]) -> None: ...

    def close_soon(self, reason: str) -> None: ...

    async def finish(self) -> None: ...


@dataclass
class ReplicatorCounters:
    links_up: int = 0
    links_closed: int = 0
    links_refused: int = 0
    changes_local: int = 0
    changes_remote: int = 0
    local_update_bytes: int = 0
    store_failures: int = 0
    refusal_reasons: dict[str, int] = field(default_factory=dict)
    quarantines: int = 0  # documents quarantined since start
    refills: int = 0  # quarantined documents refilled from a peer and rewritten
    writes_refused: int = 0  # local writes refused because their document was quarantined


class Replicator:
    """Runs one node's SyncEngine on the event loop, with its store and sockets."""

    def __init__(
        self,
        engine: SyncEngine,
        store: GroupCommitStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.sockets: dict[int, LinkSocket] = {}
        self.listeners: list[ChangeListener] = []
        # Called (synchronously) when changes became durable or a peer's frames were taken in
        # (acks among them): whatever waits for durability or replication may now go.
        self.progress_listeners: list[ProgressListener] = []
        self.counters = ReplicatorCounters()
        # document id -> why it is quarantined (its corrupt row); see the module docstring
        self.quarantined: dict[str, str] = {}
        self._refill_sources: dict[int, set[str]] = {}  # link -> quarantined docs its peer holds
        self._refilling: set[str] = set()  # rewrite submitted to the store, not durable yet
        self._link_peers: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.durable_event_no = 0
        self.store_failed = False
        store.listen_for_durability(self._on_durable)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._timer = asyncio.create_task(self._run_timer(), name="sync-timer")

    async def stop(self) -> None:
        closing = list(self.sockets.values())
        self.engine.shutdown(self.clock())
        self.pump()
        # Let the writers put the SHUTDOWN frames on the wire before the server goes away.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.finish() for s in closing)), SHUTDOWN_GRACE_S)
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        await self.store.flush()

    async def _run_timer(self) -> None:
        while True:
            now = self.clock()
            delay = max(0.0, self.engine.next_deadline(now) - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self.engine.tick(self.clock())
            self.pump()

    # --- calls into the engine ------------------------------------------------------------

    def open_link(self, socket: LinkSocket, *, initiator: bool) -> int:
        link_id = self.engine.open_link(self.clock(), initiator=initiator)
        self.sockets[link_id] = socket
        self.pump()
        return link_id

    def receive(self, link_id: int, data: bytes) -> None:
        # Only while a document is quarantined is a frame decoded here too (to see refills).
        watched = self._refill_frame(data) if self.quarantined else None
        self.engine.receive(link_id, data, self.clock())
        self.pump()
        if watched is not None and link_id in self.sockets:  # still open: the frame was applied
            self._note_refill_frame(link_id, watched)
        self._progressed()

    def _progressed(self) -> None:
        for listener in self.progress_listeners:
            listener()

    def link_lost(self, link_id: int, reason: str) -> None:
        self.engine.close_link(link_id, self.clock(), reason)
        self.sockets.pop(link_id, None)
        self.pump()

    def ask_peers(self, doc_id: str) -> bool:
        """Ask every linked peer for what this node lacks of a document; whether any was."""
        self.engine.request_sync(doc_id, self.clock())
        self.pump()
        return self.engine.asking(doc_id)

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        """A local change; returns its change number (0 if it changed nothing).

        Raises :class:`DocumentQuarantined` (and changes nothing) if the document is quarantined.
        """
        reason = self.quarantined.get(doc_id)
        if reason is not None:
            self.counters.writes_refused += 1
            raise DocumentQuarantined(doc_id, reason)
        event_no = self.engine.write(doc_id, change, self.clock())
        self.pump()
        self._wake.set()  # the coalescing window starts now
        return event_no

    async def wait_durable(self, event_no: int) -> None:
        """Wait until the local store has committed change `event_no`."""
        if event_no <= self.durable_event_no:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable_waiters.append((event_no, future))
        await future

    # A timeout parameter, not a caller's asyncio.timeout: at the deadline the answer is how many
    # regions held the change so far (the HTTP reply reports it), which a cancellation would lose.
    async def wait_replicated(
        self,
        doc_id: str,
        event_no: int,
        regions: int,
        timeout: float,  # noqa: ASYNC109
    ) -> int:
        """Wait until `regions` other regions hold the change (a node of each acknowledged
        it); returns how many do."""
        deadline = self.clock() + timeout
        while True:
            holders = self.engine.regions_holding(doc_id, event_no)
            if holders >= regions or self.clock() >= deadline:
                return holders
            await asyncio.sleep(0.002)

    # --- after every call: move frames out and handle events -------------------------------

    def pump(self) -> None:
        for link_id in self.engine.links_with_output():
            frames = self.engine.take_outgoing(link_id)
            socket = self.sockets.get(link_id)
            if socket is not None:
                socket.send_frames(frames)
        for event in self.engine.take_events():
            self._handle(event)

    def _handle(self, event: Event) -> None:
        match event:
            case DocChanged():
                self._persist(event)
                for listener in self.listeners:
                    listener(event)
            case LinkUp():
                self.counters.links_up += 1
                self._link_peers[event.link_id] = event.node_id
                log.info(
                    "link up: %s (region %s, %s, protocol %d)",
                    event.node_id,
                    event.region,
                    event.software,
                    event.version,
                )
            case LinkClosed():
                self._on_closed(event)
            case PeerRefused():
                # Counted by the engine (SyncEngine.refusals, in /metrics); the link closes next.
                log.warning("refused from %s [%s]: %s", event.node_id, event.rule, event.reason)

    def _on_closed(self, event: LinkClosed) -> None:
        peer = event.node_id or "unauthenticated peer"
        if event.refused:
            self.counters.links_refused += 1
            key = event.reason.split(":")[0][:60]
            self.counters.refusal_reasons[key] = self.counters.refusal_reasons.get(key, 0) + 1
            log.warning("link refused: %s: %s", peer, event.reason)
        else:
            self.counters.links_closed += 1
            log.info("link closed: %s: %s", peer, event.reason)
        self._refill_sources.pop(event.link_id, None)
        self._link_peers.pop(event.link_id, None)
        socket = self.sockets.pop(event.link_id, None)
        if socket is not None:
            socket.send_frames(self.engine.take_outgoing(event.link_id))
            socket.close_soon(event.reason)

    def _persist(self, event: DocChanged) -> None:
        if event.origin is None:
            self.counters.changes_local += 1
            self.counters.local_update_bytes += len(event.update)
        else:
            self.counters.changes_remote += 1
        # A quarantined document's updates are appended too: its rows are only ever replaced
        # once a peer has refilled it (_refill).
        self.store.submit_numbered(event.doc_id, event.update, event.event_no)

    def _on_durable(self, event_no: int, error: BaseException | None) -> None:
        """The store's commit of every change through `event_no` finished (or failed): called
        once per group commit, in the loop turn the writer thread's news arrives, so acks,
        replies and pushes waiting on it go out without a further turn of the loop."""
        if error is not None:
            # Durability is "every change up to n": after a failed commit it stops advancing,
            # so no ack or reply ever claims a change the disk refused.
            self.counters.store_failures += 1
            self.store_failed = True
            log.error("change %d was not committed: %s", event_no, error)
            return
        if self.store_failed or event_no <= self.durable_event_no:
            return
        self.durable_event_no = event_no
        self.engine.durable_through(self.durable_event_no, self.clock())
        still_waiting = []
        for wanted, waiter in self._durable_waiters:
            if wanted <= self.durable_event_no:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still_waiting.append((wanted, waiter))
        self._durable_waiters = still_waiting
        self.pump()
        self._progressed()

    # --- quarantined documents --------------------------------------------------------------

    def quarantine(self, doc_id: str, reason: str) -> None:
        """Hold a document read-only until a peer refills it (called at start-up)."""
        if doc_id not in self.quarantined:
            self.counters.quarantines += 1
        self.quarantined.setdefault(doc_id, reason)

    def _refill_frame(self, data: bytes) -> codec.Digests | codec.Step2 | None:
        """The frame, if it is one that can refill a quarantined document (else None)."""
        try:
            # compressed=True: on a protocol 3 link STEP2 and DIGESTS frames over
            # COMPRESS_MIN_BYTES arrive deflated (a COMPRESSED frame on an older link is the
            # engine's to refuse, and it closes that link before this frame is noted).
            frame = codec.decode(data, self.engine.settings.max_frame_bytes, compressed=True)
        except FrameError:
            return None  # the engine refuses it and closes the link
        return frame if isinstance(frame, codec.Digests | codec.Step2) else None

    def _note_refill_frame(self, link_id: int, frame: codec.Digests | codec.Step2) -> None:
        sources = self._refill_sources.setdefault(link_id, set())
        if isinstance(frame, codec.Step2):
            if frame.doc_id in sources and frame.doc_id in self.quarantined:
                self._refill(frame.doc_id, link_id)
            return
        for doc_id, digest in frame.items:
            if doc_id not in self.quarantined or doc_id not in self.engine.docs:
                continue
            if digest == EMPTY_DIGEST:
                continue  # a peer without the document cannot refill it
            sources.add(doc_id)
            if digest == self.engine.digest(doc_id):
                self._refill(doc_id, link_id)  # the engine pulls nothing: nothing is missing

    def _refill(self, doc_id: str, link_id: int) -> None:
        """This node now holds all a peer holds of the document: rewrite it whole in the store."""
        if doc_id in self._refilling:
            return
        self._refilling.add(doc_id)
        peer = self._link_peers.get(link_id, "a peer")
        full_state = self.engine.docs[doc_id].get_update()
        # Queued after every update submitted so far, so they are folded into the rewrite.
        future = asyncio.ensure_future(self.store.replace_document(doc_id, full_state))
        future.add_done_callback(lambda done: self._on_refilled(done, doc_id, peer))

    def _on_refilled(self, future: asyncio.Future[None], doc_id: str, peer: str) -> None:
        self._refilling.discard(doc_id)
        failure = "cancelled" if future.cancelled() else future.exception()
        if failure is not None:
            # Still quarantined: the next anti-entropy round from a holder tries again.
            log.error("rewriting refilled document %r failed: %s", doc_id, failure)
            return
        self.quarantined.pop(doc_id, None)
        self.counters.refills += 1
        log.warning(
            "document %r refilled from %s and rewritten whole; quarantine lifted", doc_id, peer
        )
