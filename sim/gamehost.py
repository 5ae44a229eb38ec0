"""What a simulated node needs to run the production ``GameService`` on its engine.

``node.server`` wires the service to the replicator; this module is the same wiring for a
:class:`sim.node.SimNode`: a ``Documents`` adapter over the engine, the node's wall clock in
milliseconds (for the hybrid logical clock), tokens from the node's seeded random stream, and a
``Merges`` counter that also writes every merge into the run's history.

Passwords: production hashes them with argon2id (about 50 ms each, on purpose). A simulated
login must cost nothing and be reproducible, so the simulator stores ``sim-sha256:`` plus the
SHA-256 of a fixed prefix and the password instead. It is only ever used inside a simulation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pycrdt import Doc

from meridian.node.service import Merges

if TYPE_CHECKING:
    from meridian.sim.node import SimNode

# The simulated wall clocks read seconds since the start of the run; stamps add this epoch
# (2026-01-01T00:00:00Z) so that a clock set hours back still gives a valid HLC wall time.
EPOCH_MS = 1_767_225_600_000
HASH_PREFIX = "sim-sha256:"
TOKEN_BYTES = 18  # 24 URL-safe characters: enough for the uid (22) and sid (16) prefixes


def password_hash(password: str) -> str:
    """The simulator's stand-in for argon2id (see module docstring)."""
    digest = hashlib.sha256(f"meridian-sim:{password}".encode()).hexdigest()
    return HASH_PREFIX + digest


def password_matches(stored: str, password: str) -> bool:
    return hmac.compare_digest(stored, password_hash(password))


STAND_IN_HASH = HASH_PREFIX + "0" * 64  # no password hashes to it (``node.account_flow``)


def token_source(rng: random.Random) -> Callable[[], str]:
    """URL-safe tokens drawn from a seeded stream (production uses ``secrets``)."""

    def new_token() -> str:
        raw = rng.getrandbits(8 * TOKEN_BYTES).to_bytes(TOKEN_BYTES, "big")
        return base64.urlsafe_b64encode(raw).decode()

    return new_token


class EngineDocuments:
    """The service's view of a simulated node's documents (``node.service.Documents``)."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    def get(self, doc_id: str) -> Doc[Any] | None:
        return self.node.engine.docs.get(doc_id)

    def ids(self) -> list[str]:
        return list(self.node.engine.docs)

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        return self.node.write(doc_id, change)

    def ask_peers(self, doc_id: str) -> bool:
        self.node.request_sync(doc_id)
        return self.node.engine.asking(doc_id)


class RecordingMerges(Merges):
    """Counts merges like production and reports each to ``record(kind, detail)``."""

    def __init__(self, record: Callable[[str, str], None]) -> None:
        super().__init__()
        self.record = record

    def count(self, kind: str, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.record(kind, detail)  # instead of a log line: the history is the simulator's log
