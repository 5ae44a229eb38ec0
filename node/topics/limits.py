"""Rate limits on what players send: a token bucket per connection, and a flood cut-off."""

from __future__ import annotations

from meridian.node.protocol import CloseCode, ErrorCode
from meridian.node.service_state import RATE_BURST, Conn, ServiceState

RATE_PER_S = 20.0
FLOOD_PER_S = 200


class LimitsTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def admit(self, conn: Conn, request_id: str | None, now: float) -> bool:
        """Token bucket per connection; a flood closes the connection."""
        second = int(now)
        conn.in_second = conn.in_second + 1 if second == conn.second else 1
        conn.second = second
        if conn.in_second > FLOOD_PER_S:
            reason = f"more than {FLOOD_PER_S} messages in a second"
            self.state.close(conn.conn_id, CloseCode.FLOOD, reason)
            return False
        conn.tokens = min(RATE_BURST, conn.tokens + (now - conn.refilled) * RATE_PER_S)
        conn.refilled = now
        if conn.tokens < 1:
            error = {
                "code": ErrorCode.RATE_LIMITED,
                "message": f"more than {RATE_PER_S:g} messages/s",
            }
            self.state.send(conn.conn_id, {"re": request_id, "ok": False, "error": error})
            return False
        conn.tokens -= 1
        return True
