"""Sync tunables shared by the engine, the node config and the simulator (one definition)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncSettings:
    """Limits and timings of the peer protocol; every field is a documented config key."""

    coalesce_ms: float = 5.0  # window to merge updates per document before sending
    # the same for links to other processes of this node's own region (same machine or LAN):
    # their players see each other's moves through it (docs/performance.md, *Processes*)
    coalesce_region_ms: float = 0.0
    anti_entropy_s: float = 10.0  # periodic digest exchange on every link
    heartbeat_s: float = 1.0  # ping interval on an idle peer link
    peer_timeout_s: float = 5.0  # link declared dead after this long without any frame
    max_frame_bytes: int = 16 * 1024 * 1024  # larger frames are refused (error + disconnect)
    max_queue_bytes: int = 64 * 1024 * 1024  # queued outgoing bytes per link before it is cut
    max_update_bytes: int = 1024 * 1024  # a pushed update (UPDATE) larger than this is refused
    new_docs_burst: int = 2000  # documents one peer may create here at once ...
    new_docs_per_s: float = 50.0  # ... and then per second (a token bucket per peer)
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0
    connect_timeout_s: float = 5.0  # a dial that gets no answer (e.g. across a partition) gives up
    relay: bool = True  # forward updates to peers their origin cannot reach
