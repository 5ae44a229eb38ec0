"""Hybrid logical clock (Kulkarni et al., 2014): the stamp every shared write carries.

A stamp is ``(wall_ms, counter, node_id)``. ``wall_ms`` follows the physical clock when it
moves forward and holds still when it jumps back, the counter orders events within one
millisecond, and the node id breaks ties, so stamps from different nodes are totally ordered.

Rules this module guarantees:

* ``now()`` and ``observe()`` return strictly increasing stamps, whatever the physical clock does.
* ``observe(remote)`` returns a stamp greater than ``remote`` and greater than anything issued
  before (causality).
* A remote stamp more than ``max_ahead_ms`` ahead of our physical clock is refused with
  ``ClockAheadError`` and leaves the clock untouched, so one node with a runaway wall clock
  cannot drag the whole cluster into the future.
* ``stamp_walls_in(text)`` finds the stamps embedded in any text (a record, a map key), so a
  receiver can refuse a peer's record stamped beyond ``max_ahead_ms`` before it is stored: the
  same bound ``observe`` applies, enforced where replicated data enters a node.
* Every number stays below 2**53 (JSON- and pycrdt-safe). The counter is capped at
  ``MAX_COUNTER``; on overflow ``wall_ms`` advances by one millisecond instead.

No I/O: the physical clock is a callable passed in, which lets the simulator drive it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_WALL_MS = 2**53 - 1  # 16 decimal digits, so the encoded wall field is fixed-width
MAX_COUNTER = 99_999  # 5 decimal digits
WALL_DIGITS = 16
COUNTER_DIGITS = 5
NODE_ID_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
_ENCODED_PATTERN = re.compile(r"(\d{16})\.(\d{5})\.([a-z0-9-]{1,32})")
# A stamp inside longer text: 16 or more digits not preceded by a digit, a dot, 5 digits, a
# dot (looser than a valid stamp on purpose: an oversized wall is what an attacker would write).
_EMBEDDED_PATTERN = re.compile(r"(?<!\d)(\d{16,})\.\d{5}\.")


@dataclass(frozen=True, order=True)
class Stamp:
    """One HLC timestamp. Field order is comparison order: wall_ms, then counter, then node_id."""

    wall_ms: int
    counter: int
    node_id: str

    def __post_init__(self) -> None:
        _check_int("wall_ms", self.wall_ms, MAX_WALL_MS)
        _check_int("counter", self.counter, MAX_COUNTER)
        if not isinstance(self.node_id, str) or not NODE_ID_PATTERN.fullmatch(self.node_id):
            raise ValueError(f"Stamp.node_id must match [a-z0-9-]{{1,32}}, got {self.node_id!r}")

    def encode(self) -> str:
        """Fixed-width text whose lexicographic order equals the Stamp order.

        Example: ``"0001732000000000.00000.eu-1"``.
        """
        return f"{self.wall_ms:0{WALL_DIGITS}d}.{self.counter:0{COUNTER_DIGITS}d}.{self.node_id}"

    @classmethod
    def decode(cls, text: str) -> Stamp:
        """Parse the output of ``encode``; ValueError naming the problem on anything else."""
        if not isinstance(text, str):
            raise ValueError(f"HLC stamp must be a string, got {type(text).__name__}")
        match = _ENCODED_PATTERN.fullmatch(text)
        if match is None:
            raise ValueError(
                f"malformed HLC stamp {text[:80]!r}: expected "
                "'<16-digit wall_ms>.<5-digit counter>.<node id [a-z0-9-]{1,32}>'"
            )
        wall, counter, node_id = match.groups()
        return cls(int(wall), int(counter), node_id)


def stamp_walls_in(text: str) -> list[int]:
    """The ``wall_ms`` of every encoded stamp that appears in `text` (possibly beyond 2**53;
    an absurdly long digit run counts as 10**20, past any limit)."""
    walls = (match.group(1) for match in _EMBEDDED_PATTERN.finditer(text))
    return [int(wall) if len(wall) <= 20 else 10**20 for wall in walls]


def _check_int(name: str, value: object, maximum: int) -> None:
    # bool is an int subclass; a True counter is a bug, not a value.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"Stamp.{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"Stamp.{name} must be in 0..{maximum}, got {value}")


class ClockAheadError(Exception):
    """A remote stamp is more than ``max_ahead_ms`` ahead of our physical clock."""

    def __init__(self, remote: Stamp, physical_ms: int, max_ahead_ms: int) -> None:
        self.remote = remote
        self.physical_ms = physical_ms
        self.max_ahead_ms = max_ahead_ms
        ahead = remote.wall_ms - physical_ms
        super().__init__(
            f"remote stamp {remote.encode()} from {remote.node_id} is {ahead} ms ahead of the "
            f"local physical clock ({physical_ms}); the limit is {max_ahead_ms} ms"
        )


class HybridLogicalClock:
    """The HLC of one node. Not thread-safe; owned by one event loop or one simulated node."""

    def __init__(
        self,
        node_id: str,
        physical_ms: Callable[[], int],
        *,
        max_ahead_ms: int = 60_000,
        last: Stamp | None = None,
    ) -> None:
        if max_ahead_ms < 0:
            raise ValueError(f"max_ahead_ms must be >= 0, got {max_ahead_ms}")
        self._physical_ms = physical_ms
        self._max_ahead_ms = max_ahead_ms
        # Only wall_ms and counter of a persisted stamp matter: resuming keeps them as the floor.
        start = last if last is not None else Stamp(0, 0, node_id)
        self._last = Stamp(start.wall_ms, start.counter, node_id)

    @property
    def node_id(self) -> str:
        return self._last.node_id

    @property
    def max_ahead_ms(self) -> int:
        return self._max_ahead_ms

    @property
    def last(self) -> Stamp:
        """The latest stamp issued or merged: persist it, pass it back as ``last=`` on restart."""
        return self._last

    def now(self) -> Stamp:
        """Stamp a local event or an outgoing message."""
        physical = self._read_physical()
        if physical > self._last.wall_ms:
            return self._advance(physical, 0)
        return self._advance(self._last.wall_ms, self._last.counter + 1)

    def now_after(self, earlier: str) -> Stamp:
        """A local stamp above `earlier` (an encoded stamp of a record the new one supersedes,
        perhaps written where the clock runs ahead) and above anything issued here; a stamp
        that cannot be read, or is beyond ``max_ahead_ms``, gives plain `now`."""
        try:
            return self.observe(Stamp.decode(earlier))
        except (ValueError, ClockAheadError):
            return self.now()

    def observe(self, remote: Stamp) -> Stamp:
        """Merge a received stamp; the result is greater than both ``remote`` and ``last``."""
        physical = self._read_physical()
        if remote.wall_ms - physical > self._max_ahead_ms:
            raise ClockAheadError(remote, physical, self._max_ahead_ms)
        local = self._last
        wall = max(local.wall_ms, remote.wall_ms, physical)
        if wall == local.wall_ms == remote.wall_ms:
            counter = max(local.counter, remote.counter) + 1
        elif wall == local.wall_ms:
            counter = local.counter + 1
        elif wall == remote.wall_ms:
            counter = remote.counter + 1
        else:
            counter = 0
        return self._advance(wall, counter)

    def _advance(self, wall_ms: int, counter: int) -> Stamp:
        if counter > MAX_COUNTER:
            # Too many events in one millisecond: borrow the next millisecond.
            wall_ms, counter = wall_ms + 1, 0
        if wall_ms > MAX_WALL_MS:
            raise OverflowError(f"HLC exhausted: wall_ms would exceed {MAX_WALL_MS}")
        self._last = Stamp(wall_ms, counter, self._last.node_id)
        return self._last

    def _read_physical(self) -> int:
        physical = self._physical_ms()
        if isinstance(physical, bool) or not isinstance(physical, int):
            raise TypeError(f"physical clock must return int ms, got {type(physical).__name__}")
        if not 0 <= physical <= MAX_WALL_MS:
            raise ValueError(f"physical clock returned {physical}, outside 0..{MAX_WALL_MS}")
        return physical
