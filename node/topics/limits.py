"""Rate limits on what players and guessers send (docs/configuration.md, "Limits").

* Messages: a token bucket per connection and one per account (all of the account's connections
  on this node share it, and it is kept after the last one closes until it has refilled, so
  reconnecting, at once or one socket after another, does not raise the allowance); above
  FLOOD_PER_S within a second (a sliding window) a connection is closed (4002). Per node: an
  account connected to several regions has the allowance on each.
* Connections: at most ``connections_per_address`` per address and ``connections_per_account``
  per account on this node (``[limits]``); the one over is closed with 4002.
* Registrations: a bucket per address of ``registrations_per_address_per_hour``.
* Failed logins, per account and per address: after LOGIN_FREE_FAILURES failures every login
  of that account or from that address waits LOGIN_DELAY_BASE_S, doubling with each further
  failure up to LOGIN_DELAY_MAX_S; the right password still works after the wait (no lockout),
  and resets the account's count. An address with failures may have at most
  LOGINS_IN_FLIGHT_PER_ADDRESS logins waiting at once. Failures are forgotten after
  LOGIN_FAILURE_WINDOW_S without another.

Every refusal is counted by limit in `counts` (``meridian_rate_limited_total{limit}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from meridian.node.protocol import CloseCode, ErrorCode, Refused
from meridian.node.service_state import RATE_BURST, Conn, ServiceState

RATE_PER_S = 20.0  # messages per second, per connection and per account
FLOOD_PER_S = 200
LOGIN_FREE_FAILURES = 3
LOGIN_DELAY_BASE_S = 1.0
LOGIN_DELAY_MAX_S = 10.0
LOGIN_FAILURE_WINDOW_S = 900.0
LOGINS_IN_FLIGHT_PER_ADDRESS = 4
MAX_TRACKED = 100_000  # addresses or names followed at once; the oldest are forgotten first

LIMITS = (
    "connection_messages",
    "account_messages",
    "flood",
    "connections_per_address",
    "connections_per_account",
    "registrations_per_address",
    "logins_in_flight",
    "login_delayed",
    "password_checks",  # counted by node.password_pool (the aiohttp adapter's argon2id pool)
)


@dataclass
class Bucket:
    tokens: float
    refilled: float

    def take(self, now: float, per_s: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.refilled) * per_s)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Failures:
    count: int
    last: float


class LimitsTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.counts: dict[str, int] = dict.fromkeys(LIMITS, 0)
        self.failed_logins = 0
        self._account_buckets: dict[str, Bucket] = {}
        self._registrations: dict[str, Bucket] = {}
        self._failures: dict[str, Failures] = {}  # "name:<lower>" or "addr:<address>"
        self._in_flight: dict[str, int] = {}

    def _refuse(self, limit: str) -> None:
        self.counts[limit] += 1

    # --- messages ------------------------------------------------------------------------------

    def admit(self, conn: Conn, request_id: str | None, now: float) -> bool:
        """Token buckets per connection and per account; a flood closes the connection."""
        if self._recent_messages(conn, now) > FLOOD_PER_S:
            self._refuse("flood")
            reason = f"more than {FLOOD_PER_S} messages in a second"
            self.state.close(conn.conn_id, CloseCode.FLOOD, reason)
            return False
        conn.tokens = min(RATE_BURST, conn.tokens + (now - conn.refilled) * RATE_PER_S)
        conn.refilled = now
        limit = "connection_messages" if conn.tokens < 1 else ""
        if not limit and conn.uid:
            bucket = self._account_buckets.setdefault(conn.uid, Bucket(RATE_BURST, now))
            limit = "" if bucket.take(now, RATE_PER_S, RATE_BURST) else "account_messages"
        if limit:
            self._refuse(limit)
            message = f"more than {RATE_PER_S:g} messages/s"
            error = {"code": ErrorCode.RATE_LIMITED, "message": message}
            self.state.send(conn.conn_id, {"re": request_id, "ok": False, "error": error})
            return False
        conn.tokens -= 1
        return True

    @staticmethod
    def _recent_messages(conn: Conn, now: float) -> float:
        """Messages in the last second, this one counted: this second's count plus the previous
        second's, weighted by how much of it the last second still covers (a sliding window).
        Counting whole seconds alone missed a burst split across a second boundary."""
        second = int(now)
        if second != conn.second:
            conn.in_previous = conn.in_second if second == conn.second + 1 else 0
            conn.in_second = 0
            conn.second = second
        conn.in_second += 1
        return conn.in_second + conn.in_previous * (1 - (now - second))

    # --- connections ---------------------------------------------------------------------------

    def admit_connection(self, conn: Conn) -> bool:
        """A new connection, if its address has room (else it is closed with 4002)."""
        state = self.state
        if not conn.address:
            return True
        same = sum(1 for c in state.conns.values() if c.address == conn.address)
        if same <= state.limits.connections_per_address:
            return True
        self._refuse("connections_per_address")
        state.close(conn.conn_id, CloseCode.FLOOD, "too many connections from your address")
        return False

    def admit_session(self, conn: Conn) -> bool:
        """After hello bound the connection: at most so many per account (else 4002)."""
        state = self.state
        if len(state.conns_of(conn.uid)) <= state.limits.connections_per_account:
            return True
        self._refuse("connections_per_account")
        state.close(conn.conn_id, CloseCode.FLOOD, "too many connections for your account")
        return False

    # --- registrations -------------------------------------------------------------------------

    def admit_registration(self, address: str, now: float) -> None:
        per_hour = self.state.limits.registrations_per_address_per_hour
        bucket = self._registrations.get(address)
        if bucket is None:
            self._forget_oldest(self._registrations)
            bucket = self._registrations[address] = Bucket(float(per_hour), now)
        if not bucket.take(now, per_hour / 3600.0, float(per_hour)):
            self._refuse("registrations_per_address")
            raise Refused(
                ErrorCode.RATE_LIMITED,
                f"more than {per_hour} registrations per hour from your address",
            )

    # --- logins --------------------------------------------------------------------------------

    def _failure_count(self, key: str, now: float) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        if now - failures.last > LOGIN_FAILURE_WINDOW_S:
            del self._failures[key]
            return 0
        return failures.count

    def login_delay(self, name: str, address: str, now: float) -> float:
        """How long a login (or password change) of `name` from `address` must wait."""
        count = max(
            self._failure_count(f"name:{name.lower()}", now),
            self._failure_count(f"addr:{address}", now) if address else 0,
        )
        if count < LOGIN_FREE_FAILURES:
            return 0.0
        self._refuse("login_delayed")
        doublings = min(count - LOGIN_FREE_FAILURES, 30)  # (the cap is reached long before)
        doubled = math.ldexp(LOGIN_DELAY_BASE_S, doublings)
        return min(LOGIN_DELAY_MAX_S, doubled)

    def start_login(self, name: str, address: str, now: float) -> None:
        """A login begins; an address with failures may have only so many waiting."""
        in_flight = self._in_flight.get(address, 0)
        failing = address and self._failure_count(f"addr:{address}", now) >= LOGIN_FREE_FAILURES
        if failing and in_flight >= LOGINS_IN_FLIGHT_PER_ADDRESS:
            self._refuse("logins_in_flight")
            raise Refused(ErrorCode.RATE_LIMITED, "too many logins at once from your address")
        self._in_flight[address] = in_flight + 1

    def end_login(self, address: str) -> None:
        left = self._in_flight.get(address, 1) - 1
        if left > 0:
            self._in_flight[address] = left
        else:
            self._in_flight.pop(address, None)

    def login_failed(self, name: str, address: str, now: float) -> None:
        self.failed_logins += 1
        keys = [f"name:{name.lower()}"] + ([f"addr:{address}"] if address else [])
        for key in keys:
            count = self._failure_count(key, now)
            if key not in self._failures:
                self._forget_oldest(self._failures)
            self._failures[key] = Failures(count + 1, now)

    def login_succeeded(self, name: str, address: str) -> None:
        self._failures.pop(f"name:{name.lower()}", None)

    @staticmethod
    def _forget_oldest(table: dict[str, Failures] | dict[str, Bucket]) -> None:
        if len(table) >= MAX_TRACKED:
            del table[next(iter(table))]  # dicts keep insertion order: the oldest first

    def prune(self, now: float) -> None:
        """Forget the message buckets of accounts with no connection here any more, once they
        have refilled: a bucket forgotten earlier would come back full, so closing the socket
        and reconnecting would bring a fresh allowance each time."""
        gone = [
            uid
            for uid, bucket in self._account_buckets.items()
            if not self.state.conns_of(uid)
            and bucket.tokens + (now - bucket.refilled) * RATE_PER_S >= RATE_BURST
        ]
        for uid in gone:
            del self._account_buckets[uid]
