"""What the update checker remembers to go faster never changes a verdict.

`sync.checks` remembers signatures that verified (per process) and the scratch copy's state
vector between a check and `applied`; these tests pin that a remembered success is never
lent to another key, message or signature, and that a copy is still dropped when it drifts.
"""

from __future__ import annotations

import pytest
from pycrdt import Doc, Map

from meridian.crdt_models.records import RecordRefused
from meridian.sync import checks
from meridian.sync.checks import KeyringContext, UpdateChecker
from meridian.sync.identity import Keyring, NodeIdentity
from tests.sync_harness import identity_for

WALL_MS = 1_700_000_000_000


def _context(*identities: NodeIdentity) -> KeyringContext:
    return KeyringContext(Keyring([i.entry() for i in identities]), lambda: WALL_MS, 60_000)


def test_a_remembered_signature_verifies_only_that_key_message_and_signature() -> None:
    eu = identity_for("eu")
    message = b"accounts|records|alice|{...}"
    signature = eu.sign(message)
    context = _context(eu)
    for _ in range(2):  # the second time from memory
        assert context.signer_region(eu.node_id, message, signature, WALL_MS) == eu.region
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(RecordRefused, match="does not verify"):
        context.signer_region(eu.node_id, message, forged, WALL_MS)
    with pytest.raises(RecordRefused, match="does not verify"):
        context.signer_region(eu.node_id, message + b"!", signature, WALL_MS)
    # Another keyring lists another key under the same node id: the remembered success is
    # of the old key, so the signature is checked against the listed key and refused.
    other = identity_for("eu", seed=2)
    assert other.public_text != eu.public_text
    with pytest.raises(RecordRefused, match="does not verify"):
        _context(other).signer_region(eu.node_id, message, signature, WALL_MS)


def test_remembered_signatures_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "VERIFIED_SIGNATURES_KEPT", 3)
    monkeypatch.setattr(checks, "_verified_signatures", type(checks._verified_signatures)())
    eu = identity_for("eu")
    context = _context(eu)
    for n in range(5):
        message = f"record {n}".encode()
        context.signer_region(eu.node_id, message, eu.sign(message), WALL_MS)
    assert len(checks._verified_signatures) == 3


def _kv_update(doc: Doc[Map[str]], key: str, value: str) -> bytes:
    before = doc.get_state()
    doc.get("kv", type=Map)[key] = value
    return doc.get_update(before)


def test_a_copy_that_drifted_from_its_document_is_dropped_after_applied() -> None:
    """`applied` compares the copy's state as the check left it with the document's: a
    document that got something the copy did not (here, a write never passed to
    `local_change`) loses its copy, so the next check copies it anew."""
    checker = UpdateChecker(_context(identity_for("eu")))
    writer: Doc[Map[str]] = Doc(client_id=7)
    node: Doc[Map[str]] = Doc(client_id=8)
    first = _kv_update(writer, "a", "1")
    checker.check("test:one", None, first)
    node.apply_update(first)
    checker.applied("test:one", node)
    assert "test:one" in checker._copies  # the same state: kept
    second = _kv_update(writer, "b", "2")
    checker.check("test:one", node, second)
    node.apply_update(second)
    node.get("kv", type=Map)["c"] = "3"  # behind the checker's back
    checker.applied("test:one", node)
    assert "test:one" not in checker._copies
