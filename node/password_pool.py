"""The bounded pool that runs argon2id for the player routes (hashing and checking passwords).

argon2id is deliberately slow (about 25-50 ms and 19 MiB per check at the ``owasp`` cost): it must
not run on the event loop, and it must not pile up either. At most PASSWORD_THREADS checks run at
once, in threads of their own (not asyncio's default pool, which the rest of the node shares);
at most PASSWORD_WAITING more wait for a thread. One over that is refused at once with
``unavailable`` (HTTP 503, "try again shortly") and counted, instead of making every login wait
longer: a thousand logins in one second would otherwise hold their requests for many seconds
and the memory of every waiting request (docs/configuration.md, "Limits").

The cost of new hashes is chosen per node process by PASSWORD_COST_ENV (read with the config):
``owasp`` unless that variable says ``test``, which test clusters set because their hundreds of
signups and logins otherwise spent about 30 s of the suite's CPU in argon2id. A hash records its
own cost, so any node checks any hash at the cost it was made with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher

from meridian.node.protocol import ErrorCode, Refused

log = logging.getLogger("meridian.players")

PASSWORD_COST_ENV = "MERIDIAN_PASSWORD_COST"
PASSWORD_COSTS = {
    # OWASP's minimum for argon2id (19 MiB, two passes): every node unless told otherwise
    "owasp": PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1),
    # argon2id's smallest cost (64 KiB, one pass; about 0.1 ms): test clusters only, never real
    # players (a node started with it says so in its log)
    "test": PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
}
DEFAULT_PASSWORD_COST = "owasp"

PASSWORD_THREADS = 2  # one per core of the machine a node is sized for
PASSWORD_WAITING = 254  # checks queued behind those (about 6 s of work at 50 ms on 2 threads)

_T = TypeVar("_T")


class PasswordPool:
    """See module docstring."""

    def __init__(
        self,
        threads: int = PASSWORD_THREADS,
        waiting: int = PASSWORD_WAITING,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.capacity = threads + waiting
        self.on_refused = on_refused  # counts the refusal (meridian_rate_limited_total)
        self.admitted = 0  # running or waiting now
        self.refused = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="argon2")

    async def run(self, check: Callable[..., _T], *args: str) -> _T:
        """`check(*args)` in a pool thread; `Refused` (unavailable) when the pool is full."""
        if self.admitted >= self.capacity:
            self.refused += 1
            self.on_refused()
            log.info("password check refused: %d already running or waiting", self.admitted)
            raise Refused(
                ErrorCode.UNAVAILABLE, "too many logins are being checked; try again shortly"
            )
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, check, *args)
        finally:
            self.admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
