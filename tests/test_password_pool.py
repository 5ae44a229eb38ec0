"""The bounded argon2id pool of the player routes (node.password_pool) and how a login answers
when it is full: 503 ``unavailable``, counted, never a 500, and the login's own bookkeeping
(logins in flight per address) released."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from meridian.node.account_flow import (
    AccountFlow,
    CheckPassword,
    Effect,
    HashPassword,
    run_async,
)
from meridian.node.password_pool import PasswordPool
from meridian.node.protocol import ErrorCode, LoginBody, Refused, decode_body
from tests.service_harness import PASSWORD, ServiceHarness, cheap_hash


def test_checks_beyond_threads_and_waiting_are_refused_at_once_and_counted() -> None:
    refusals: list[int] = []
    pool = PasswordPool(threads=1, waiting=1, on_refused=lambda: refusals.append(1))
    release = threading.Event()

    def slow(password: str) -> str:
        release.wait(5)
        return password

    async def scenario() -> list[Any]:
        running = [asyncio.ensure_future(pool.run(slow, str(i))) for i in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Refused) as refused:
            await pool.run(slow, "third")
        assert refused.value.code == ErrorCode.UNAVAILABLE and refused.value.status == 503
        release.set()
        return await asyncio.gather(*running)

    try:
        assert asyncio.run(scenario()) == ["0", "1"]  # the admitted ones still complete
    finally:
        pool.close()
    assert pool.refused == 1 and refusals == [1] and pool.admitted == 0


def test_a_login_refused_by_a_full_pool_answers_unavailable_and_ends_its_flow() -> None:
    harness = ServiceHarness()
    harness.http("/api/register", {"name": "alice", "password": PASSWORD})
    flows = AccountFlow(harness.service, lambda: {"eu"}, cheap_hash("stand-in"))
    body = decode_body(json.dumps({"name": "alice", "password": PASSWORD}).encode(), LoginBody)

    async def full_pool(effect: Effect) -> Any:
        assert isinstance(effect, CheckPassword | HashPassword)
        raise Refused(ErrorCode.UNAVAILABLE, "too many logins are being checked")

    answer = asyncio.run(run_async(flows.login(body, "10.0.0.9", harness.now), full_pool))
    assert answer.status == 503 and answer.body["error"]["code"] == "unavailable"
    assert harness.service.limits._in_flight == {}  # the flow's finally ran
    status, _ = harness.http("/api/login", {"name": "alice", "password": PASSWORD})
    assert status == 200  # nothing was left half done
