"""The bounded argon2id pool of the player routes (node.password_pool) and how a login answers
when it is full: 503 ``unavailable``, counted, never a 500, and the login's own bookkeeping
(logins in flight per address) released."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc

from meridian.crdt_models.accounts import ACCOUNTS_DOC, AccountsIndex
from meridian.node.account_flow import (
    AccountFlow,
    CheckPassword,
    Effect,
    HashPassword,
    run_async,
)
from meridian.node.config import load_config
from meridian.node.localcluster import (
    TOKEN_ENV,
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from meridian.node.password_pool import PASSWORD_COST_ENV, PasswordPool
from meridian.node.protocol import ErrorCode, LoginBody, Refused, decode_body
from meridian.tomlschema import ConfigError
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


# --- the cost of new hashes (MERIDIAN_PASSWORD_COST) -----------------------------------------


def test_the_password_cost_comes_from_the_environment_and_a_wrong_one_is_refused(
    tmp_path: Path,
) -> None:
    path = write_configs(tmp_path, ["eu"])[0]
    env = {k: v for k, v in cluster_env().items() if k != PASSWORD_COST_ENV}
    assert load_config(path, env).password_cost == "owasp"
    assert load_config(path, {**env, PASSWORD_COST_ENV: "test"}).password_cost == "test"
    with pytest.raises(ConfigError) as refused:
        load_config(path, {**env, PASSWORD_COST_ENV: "cheap"})
    assert refused.value.key == PASSWORD_COST_ENV
    assert "expected one of 'owasp', 'test', got 'cheap'" in refused.value.message


@pytest.mark.integration
@pytest.mark.parametrize(
    ("cost", "parameters"), [("owasp", "m=19456,t=2,p=1"), ("test", "m=64,t=1,p=1")]
)
def test_a_node_hashes_new_passwords_at_its_cost_and_says_when_it_is_the_test_one(
    tmp_path: Path, cost: str, parameters: str
) -> None:
    env = {**cluster_env(), PASSWORD_COST_ENV: cost}
    config = load_config(write_configs(tmp_path, ["eu"])[0], env)
    node = start_node(config, env)
    try:
        url = config.public_url
        assert wait_for_mesh([node])
        assert _post(f"{url}/api/register", {"name": "someone", "password": PASSWORD}) == 201
        assert _post(f"{url}/api/login", {"name": "someone", "password": PASSWORD}) == 200
        stored = _password_hashes(url, env[TOKEN_ENV])
    finally:
        stop_nodes([node])
    assert [h.split("$")[2:4] for h in stored] == [["v=19", parameters]]
    warned = "new passwords are hashed at the 'test' cost" in node.log_path.read_text()
    assert warned == (cost == "test")


def _post(url: str, body: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def _password_hashes(url: str, admin_token: str) -> list[str]:
    """The password hashes in the node's accounts document (from the admin export)."""
    request = urllib.request.Request(f"{url}/api/admin/export")
    request.add_header("Authorization", f"Bearer {admin_token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        documents = json.loads(response.read())["documents"]
    doc: Doc[Any] = Doc()
    doc.apply_update(base64.b64decode(documents[ACCOUNTS_DOC]))
    return [account.password_hash for account in AccountsIndex(doc).all_accounts()]
