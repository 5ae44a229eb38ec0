"""The shared account flow (node.account_flow), in memory: the same code aiohttp and the
simulator run. Registration checks, login that does not tell unknown names apart, password and
home changes, and the limits on guessing and registering."""

from __future__ import annotations

from meridian.node.topics.limits import LOGIN_DELAY_MAX_S, LOGIN_FREE_FAILURES
from tests.service_harness import PASSWORD, ServiceHarness

GOOD = {"name": "alice", "password": PASSWORD}


def test_register_then_login_gives_a_token_that_opens_a_websocket() -> None:
    harness = ServiceHarness()
    status, body = harness.http("/api/register", GOOD)
    assert status == 201 and body["name"] == "alice" and body["home"] == "eu"
    status, body = harness.http("/api/login", GOOD)
    assert status == 200 and body["must_rename"] is False
    conn = harness.open()
    assert harness.request(conn, "hello", token=body["token"])["ok"]


def test_registration_refuses_an_unknown_home_region_a_weak_password_and_a_bad_name() -> None:
    harness = ServiceHarness()
    harness.regions = {"eu", "us"}
    assert harness.http("/api/register", {**GOOD, "home": "mars"})[0] == 400
    assert harness.http("/api/register", {**GOOD, "password": "short"})[1]["error"]["code"] == (
        "weak_password"
    )
    assert harness.http("/api/register", {**GOOD, "name": "alice\n"})[0] == 400
    assert harness.http("/api/register", {**GOOD, "name": "admin"})[0] == 409
    assert harness.service.accounts.all_accounts() == []
    assert harness.http("/api/register", {**GOOD, "home": "us"})[1]["home"] == "us"


def test_an_unknown_name_and_a_wrong_password_get_the_same_answer() -> None:
    harness = ServiceHarness()
    harness.http("/api/register", GOOD)
    unknown = harness.http("/api/login", {"name": "nobody", "password": PASSWORD})
    wrong = harness.http("/api/login", {**GOOD, "password": "not the password"})
    assert (
        unknown
        == wrong
        == (
            401,
            {"error": {"code": "bad_credentials", "message": "wrong name or password"}},
        )
    )


def test_failed_logins_slow_down_guessing_and_the_owner_still_gets_in_after_the_wait() -> None:
    harness = ServiceHarness()
    harness.http("/api/register", GOOD)
    for _ in range(LOGIN_FREE_FAILURES + 5):
        assert harness.http("/api/login", {**GOOD, "password": "guess-guess"}, "6.6.6.6")[0] == 401
    assert harness.waits == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert max(harness.waits) == LOGIN_DELAY_MAX_S
    harness.waits.clear()
    status, _ = harness.http("/api/login", GOOD, "1.2.3.4")  # the owner, elsewhere
    assert status == 200 and harness.waits == [LOGIN_DELAY_MAX_S]
    harness.waits.clear()
    assert harness.http("/api/login", GOOD, "1.2.3.4")[0] == 200
    assert harness.waits == [], "a success resets the account's count"
    limits = harness.service.limits
    assert limits.failed_logins == LOGIN_FREE_FAILURES + 5 and limits.counts["login_delayed"] == 6


def test_one_address_guessing_many_names_is_slowed_too() -> None:
    harness = ServiceHarness()
    for i in range(LOGIN_FREE_FAILURES + 2):
        harness.http("/api/login", {"name": f"name{i}", "password": "guess-guess"}, "6.6.6.6")
    assert harness.waits == [1.0, 2.0]


def test_registrations_per_address_are_limited() -> None:
    harness = ServiceHarness()
    per_hour = harness.service.state.limits.registrations_per_address_per_hour
    for i in range(per_hour):
        assert harness.http("/api/register", {**GOOD, "name": f"user{i}"}, "6.6.6.6")[0] == 201
    refused = harness.http("/api/register", {**GOOD, "name": "onemore"}, "6.6.6.6")
    assert refused[0] == 429 and refused[1]["error"]["code"] == "rate_limited"
    assert harness.http("/api/register", {**GOOD, "name": "onemore"}, "1.2.3.4")[0] == 201
    harness.advance(3600 / per_hour + 1)
    assert harness.http("/api/register", {**GOOD, "name": "later"}, "6.6.6.6")[0] == 201
    assert harness.service.limits.counts["registrations_per_address"] == 1


def test_password_change_needs_the_old_password_and_home_a_known_region() -> None:
    harness = ServiceHarness()
    harness.regions = {"eu", "us"}
    harness.http("/api/register", GOOD)
    token = harness.http("/api/login", GOOD)[1]["token"]
    change = {"old": "not the password", "new": "a new password"}
    assert harness.http("/api/password", change, token=token)[0] == 401
    assert harness.http("/api/password", {**change, "old": PASSWORD}, token=token)[0] == 200
    status, body = harness.http("/api/login", {**GOOD, "password": "a new password"})
    assert status == 200
    token = body["token"]  # (the newer login replaced the older session)
    assert harness.http("/api/home", {"region": "mars"}, token=token)[0] == 400
    assert harness.http("/api/home", {"region": "us"}, token=token) == (200, {"home": "us"})
    assert harness.http("/api/home", {"region": "us"}, token="forged")[0] == 401

    # Homed in us now: this eu node no longer writes the password or the home.
    again = {"old": "a new password", "new": "another password"}
    status, body = harness.http("/api/password", again, token=token)
    assert (status, body["error"]["code"]) == (409, "not_home")
    status, body = harness.http("/api/home", {"region": "eu"}, token=token)
    assert (status, body["error"]["code"]) == (409, "not_home")


def test_logout_ends_the_session() -> None:
    harness = ServiceHarness()
    harness.http("/api/register", GOOD)
    token = harness.http("/api/login", GOOD)[1]["token"]
    assert harness.http("/api/logout", {}, token=token) == (200, {})
    assert harness.http("/api/logout", {}, token=token)[0] == 401
