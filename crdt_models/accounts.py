"""Accounts and unique names in the ``accounts`` document, with the authority and merge rules.

Layout (flat root maps, one writer per key):

* ``users``: key ``<uid>|<region>`` -> the account as last written *by that region* (JSON). An
  account is resolved from its versions (at most one per region):

  - version V *supersedes* W when V was written after its writer had seen W (``V.base >=
    W.stamp``: ``base`` is the stamp of the resolved account the write started from);
  - of the versions nobody supersedes (concurrent ones), the one written by the account's home
    region (as it was at the write's base) wins; between equals, the later stamp.

  So the home region is authoritative, a write elsewhere wins only if causally newer, and every
  replica resolves the same account whatever order the versions arrived in.
* ``names``: key ``<lowercased name>|<uid>`` -> a claim ``{uid, name, stamp, region}``. The claim
  with the smallest stamp owns the name; every other account claiming it *must rename* (it keeps
  its id, password and games). A rename deletes the account's old claim and files a new one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.records import (
    RecordError,
    decode_record,
    encode_record,
    map_items,
    root_map,
)

ACCOUNTS_DOC = "accounts"
USERS = "users"
NAMES = "names"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,20}$")
ACTIVE = "active"
DISABLED = "disabled"


def check_name(name: str) -> str:
    """Return the name if acceptable, else raise ValueError saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError("names are 3 to 20 letters, digits, '_' or '-'")
    return name


def name_key(name: str) -> str:
    return name.lower()


@dataclass(frozen=True)
class AccountVersion:
    uid: str
    name: str
    home: str
    password_hash: str
    status: str
    created: str  # HLC stamp of the registration
    stamp: str  # HLC stamp of this version
    base: str  # stamp of the resolved account this version was written from ("" at creation)
    base_home: str  # that account's home region (the creator's region at creation)
    writer: str  # region that wrote this version

    @classmethod
    def from_text(cls, text: Any) -> AccountVersion:
        record = decode_record(text, tuple(cls.__dataclass_fields__))
        return cls(**{name: str(record[name]) for name in cls.__dataclass_fields__})

    def to_text(self) -> str:
        return encode_record(asdict(self))

    @property
    def authoritative(self) -> bool:
        return self.writer == self.base_home


@dataclass(frozen=True)
class NameClaim:
    lower: str
    name: str
    uid: str
    stamp: str
    region: str


@dataclass(frozen=True)
class Account:
    uid: str
    name: str
    home: str
    password_hash: str
    status: str
    created: str
    stamp: str
    must_rename: bool


def resolve(versions: list[AccountVersion]) -> AccountVersion:
    """The winning version (see module docstring); `versions` must not be empty."""
    candidates = [
        v for v in versions if not any(o is not v and o.base >= v.stamp for o in versions)
    ]
    return max(candidates or versions, key=lambda v: (v.authoritative, v.stamp))


class AccountsIndex:
    """A read-only snapshot of the accounts document, indexed for lookups."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.versions: dict[str, list[AccountVersion]] = {}
        self.claims: dict[str, list[NameClaim]] = {}
        self.bad_records: list[str] = []
        for key, text in map_items(doc, USERS):
            try:
                version = AccountVersion.from_text(text)
            except RecordError as exc:
                self.bad_records.append(f"users/{key}: {exc}")
                continue
            self.versions.setdefault(version.uid, []).append(version)
        for key, text in map_items(doc, NAMES):
            try:
                record = decode_record(text, ("uid", "name", "stamp", "region"))
            except RecordError as exc:
                self.bad_records.append(f"names/{key}: {exc}")
                continue
            lower = key.split("|", 1)[0]
            claim = NameClaim(
                lower, record["name"], record["uid"], record["stamp"], record["region"]
            )
            self.claims.setdefault(lower, []).append(claim)
        for claims in self.claims.values():
            claims.sort(key=lambda c: (c.stamp, c.uid))

    def version(self, uid: str) -> AccountVersion | None:
        versions = self.versions.get(uid)
        return resolve(versions) if versions else None

    def account(self, uid: str) -> Account | None:
        version = self.version(uid)
        if version is None:
            return None
        return Account(
            uid=version.uid,
            name=version.name,
            home=version.home,
            password_hash=version.password_hash,
            status=version.status,
            created=version.created,
            stamp=version.stamp,
            must_rename=self.name_owner(version.name) != uid,
        )

    def name_owner(self, name: str) -> str | None:
        claims = self.claims.get(name_key(name))
        return claims[0].uid if claims else None

    def claimants(self, name: str) -> list[Account]:
        """Every account claiming the name, the owner first."""
        accounts = (self.account(c.uid) for c in self.claims.get(name_key(name), []))
        return [a for a in accounts if a is not None and name_key(a.name) == name_key(name)]

    def contested_names(self) -> dict[str, list[str]]:
        """name -> uids that lost it (the merges of concurrent registrations)."""
        return {
            lower: [c.uid for c in claims[1:]]
            for lower, claims in self.claims.items()
            if len(claims) > 1
        }

    def all_accounts(self) -> list[Account]:
        accounts = (self.account(uid) for uid in sorted(self.versions))
        return [a for a in accounts if a is not None]


class AccountsWriter:
    """Writes to the accounts document; call inside one transaction (engine.writing)."""

    def __init__(self, doc: Doc[Any], region: str) -> None:
        self.doc = doc
        self.region = region

    def register(self, uid: str, name: str, password_hash: str, home: str, stamp: str) -> None:
        version = AccountVersion(
            uid=uid,
            name=check_name(name),
            home=home,
            password_hash=password_hash,
            status=ACTIVE,
            created=stamp,
            stamp=stamp,
            base="",
            base_home=self.region,
            writer=self.region,
        )
        root_map(self.doc, USERS)[f"{uid}|{self.region}"] = version.to_text()
        self._claim(uid, name, stamp)

    def update(self, current: AccountVersion, stamp: str, **changes: str) -> AccountVersion:
        """Write a new version of the account derived from the resolved `current` one."""
        fields = asdict(current) | changes
        fields.update(stamp=stamp, base=current.stamp, base_home=current.home, writer=self.region)
        version = AccountVersion(**fields)
        root_map(self.doc, USERS)[f"{current.uid}|{self.region}"] = version.to_text()
        return version

    def rename(self, current: AccountVersion, new_name: str, stamp: str) -> AccountVersion:
        names = root_map(self.doc, NAMES)
        old_key = f"{name_key(current.name)}|{current.uid}"
        if old_key in names:
            del names[old_key]
        self._claim(current.uid, check_name(new_name), stamp)
        return self.update(current, stamp, name=new_name)

    def _claim(self, uid: str, name: str, stamp: str) -> None:
        claim = {"uid": uid, "name": name, "stamp": stamp, "region": self.region}
        root_map(self.doc, NAMES)[f"{name_key(name)}|{uid}"] = encode_record(claim)
