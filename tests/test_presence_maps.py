"""Peers accept the presence maps the session topic writes (spent resume tokens, revoked
sessions) and refuse malformed values in them (crdt_models.kinds)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pycrdt import Doc

from meridian.crdt_models.kinds import REVOKED, SPENT, check_changes
from meridian.crdt_models.records import Change, RecordRefused


@dataclass(frozen=True)
class Context:
    now_wall_ms: int = 1_767_225_600_000
    max_ahead_ms: int = 60_000
    regions: frozenset[str] = frozenset({"eu"})

    def signer_region(self, signer: str, message: bytes, signature: bytes, wall_ms: int) -> str:
        return "eu"

    def node_region(self, node_id: str) -> str | None:
        return "eu"


def test_spent_tokens_and_revocations_pass_the_peer_check() -> None:
    changes = [
        Change(SPENT, "a" * 64, None, "sid-0123456789ab"),
        Change(REVOKED, "sid-0123456789ab", None, 1_767_225_600_000),
        Change(SPENT, "b" * 64, "sid-x", None, deleted=True),
    ]
    check_changes("presence:eu-1", changes, Doc(), Context())


@pytest.mark.parametrize(
    "change",
    [
        Change(SPENT, "a" * 64, None, 7),
        Change(REVOKED, "sid", None, "soon"),
        Change(REVOKED, "s", None, -1),
    ],
)
def test_malformed_spent_or_revoked_values_are_a_bad_record(change: Change) -> None:
    with pytest.raises(RecordRefused) as refused:
        check_changes("presence:eu-1", [change], Doc(), Context())
    assert refused.value.rule == "bad_record"
