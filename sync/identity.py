"""Per-node identity: an Ed25519 key per node and the cluster keyring that binds ids to keys.

Every node holds one private key; the **keyring**, the same on every node, lists each node id
with its region and public key. The peer handshake (protocol 2, ``sync.engine``) has each side
sign the link's two nonces and both node ids with its key, and checks the peer's signature
against the keyring, so a node id is bound to its key: holding some other node's secret, or
the old shared cluster secret, is not enough to speak as a node. A node that is not in the
keyring, or is marked removed, is refused by name. The same keys sign replicated records whose
authority depends on their writer (``crdt_models.records``).

A removed node stays in the keyring with ``removed_at``: its links are refused from then on,
but records it signed before that time still verify (a node refilling its documents from peers
would otherwise refuse every account that node ever wrote).

All cryptography is the ``cryptography`` package's Ed25519; this module only moves keys between
bytes, text and the keyring table. No file or clock access: ``node.config`` reads the files.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NODE_ID_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
KEYRING_NODE_KEYS = ("region", "public_key", "removed_at")


class KeyMaterialError(ValueError):
    """Key material that cannot be used; `where` names the keyring entry or field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class NodeIdentity:
    """This node's id, region and private key. Never printed: repr shows the public key only."""

    def __init__(self, node_id: str, region: str, private_key: Ed25519PrivateKey) -> None:
        self._node_id = node_id
        self.region = region
        self._private_key = private_key
        self.public_key = private_key.public_key()

    @property
    def node_id(self) -> str:
        return self._node_id

    @classmethod
    def generate(cls, node_id: str, region: str) -> NodeIdentity:
        return cls(node_id, region, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, node_id: str, region: str, seed: bytes) -> NodeIdentity:
        """A deterministic key from 32 seed bytes (the simulator's seeded runs; never a node)."""
        return cls(node_id, region, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, node_id: str, region: str, pem: bytes) -> NodeIdentity:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyMaterialError("key", f"not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyMaterialError("key", f"expected an Ed25519 key, got {type(key).__name__}")
        return cls(node_id, region, key)

    def private_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    @property
    def public_text(self) -> str:
        return public_key_text(self.public_key)

    def entry(self) -> KeyringEntry:
        return KeyringEntry(self.node_id, self.region, self.public_key)

    def __repr__(self) -> str:
        return f"NodeIdentity({self.node_id!r}, region {self.region!r}, key {self.public_text})"


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_text(where: str, text: object) -> Ed25519PublicKey:
    if not isinstance(text, str):
        raise KeyMaterialError(where, "public_key must be base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise KeyMaterialError(where, "public_key is not base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise KeyMaterialError(where, f"public_key is {len(raw)} bytes, an Ed25519 key is 32")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class KeyringEntry:
    node_id: str
    region: str
    public_key: Ed25519PublicKey
    removed_at_ms: int | None = None  # links refused from then on; older signatures still valid

    @property
    def removed(self) -> bool:
        return self.removed_at_ms is not None

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Keyring:
    """The cluster's nodes: id -> region and public key (see module docstring)."""

    def __init__(self, entries: list[KeyringEntry]) -> None:
        self.entries = {entry.node_id: entry for entry in entries}
        self.regions = frozenset(entry.region for entry in entries)

    def get(self, node_id: str) -> KeyringEntry | None:
        return self.entries.get(node_id)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> Keyring:
        """From the keyring TOML, already parsed: ``[nodes.<id>]`` tables."""
        nodes = table.get("nodes")
        unknown = sorted(set(table) - {"nodes"})
        if unknown:
            raise KeyMaterialError(unknown[0], "unknown table; a keyring holds only [nodes.<id>]")
        if not isinstance(nodes, dict) or not nodes:
            raise KeyMaterialError("nodes", "missing or empty; expected [nodes.<id>] tables")
        return cls([_parse_entry(node_id, value) for node_id, value in nodes.items()])

    def to_toml(self) -> str:
        lines = [
            "# Meridian cluster keyring: every node that may join the cluster, with its region",
            "# and Ed25519 public key. The same file on every node. To remove a node, add",
            "# removed_at = <RFC 3339 time> to its entry rather than deleting it.",
        ]
        for node_id in sorted(self.entries):
            entry = self.entries[node_id]
            lines += ["", f"[nodes.{node_id}]", f'region = "{entry.region}"']
            lines.append(f'public_key = "{public_key_text(entry.public_key)}"')
            if entry.removed_at_ms is not None:
                when = dt.datetime.fromtimestamp(entry.removed_at_ms / 1000, tz=dt.UTC)
                lines.append(f"removed_at = {when.isoformat().replace('+00:00', 'Z')}")
        return "\n".join(lines) + "\n"


def _parse_entry(node_id: str, value: Any) -> KeyringEntry:
    where = f"nodes.{node_id}"
    if not NODE_ID_PATTERN.fullmatch(node_id):
        raise KeyMaterialError(where, "node ids are 1-32 characters from a-z, 0-9 and '-'")
    if not isinstance(value, dict):
        raise KeyMaterialError(where, "expected a table with region and public_key")
    unknown = sorted(set(value) - set(KEYRING_NODE_KEYS))
    if unknown:
        allowed = ", ".join(KEYRING_NODE_KEYS)
        raise KeyMaterialError(f"{where}.{unknown[0]}", f"unknown key; expected {allowed}")
    region = value.get("region")
    if not isinstance(region, str) or not NODE_ID_PATTERN.fullmatch(region):
        raise KeyMaterialError(f"{where}.region", "expected 1-32 characters from a-z, 0-9 and '-'")
    key = public_key_from_text(f"{where}.public_key", value.get("public_key"))
    removed = value.get("removed_at")
    removed_ms = None
    if removed is not None:
        if not isinstance(removed, dt.datetime) or removed.tzinfo is None:
            expected = "expected a TOML date-time with a time zone"
            raise KeyMaterialError(f"{where}.removed_at", expected)
        removed_ms = int(removed.timestamp() * 1000)
    return KeyringEntry(node_id, region, key, removed_ms)
