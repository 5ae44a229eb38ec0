"""Accounts and unique names in the ``accounts`` document, with the authority and merge rules.

Layout (flat root maps, one writer per key):

* ``users``: key ``<uid>|<region>`` -> the account as last written *by that region* (JSON). An
  account's name and status are resolved from its versions (at most one per region):

  - version V *supersedes* W when V was written after its writer had seen W (``V.base >=
    W.stamp``: ``base`` is the stamp of the resolved account the write started from);
  - of the versions nobody supersedes (concurrent ones), the one written by the account's home
    region (as it was at the write's base) wins; between equals, the later stamp.

* ``auth``: key ``<uid>|<region>`` -> the last version that region wrote *as the account's home*
  (the registering region counts as home for the creation). The account's **password hash and
  home** come from the newest of these records only, so a region that is not the home can
  change an account's name or status (a rename after a name merge, an administrator's disable)
  but never its password or its home. A home region that moves the account elsewhere keeps its
  last record here (the move itself), which is what lets the new home prove it is the home.
  A version in ``users`` written by another region carries no password hash at all.
* ``names``: key ``<lowercased name>|<uid>`` -> a claim ``{uid, name, stamp, region}``. The claim
  with the smallest stamp owns the name; every other account claiming it *must rename* (it keeps
  its id, password and games). A rename deletes the account's old claim and files a new one.

Every record here is signed by the node that wrote it (``crdt_models.records``), and
`check_change` is what a node runs on a peer's change before applying it: a record must be
signed by a node of the region its key names, stamped by that node, newer than the record it
replaces, and an ``auth`` record that would become an account's newest must come from the
region the previous newest one names as home. A region that is not the home therefore cannot
change a password, whatever stamp it writes and however its update travels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.records import (
    Change,
    CheckContext,
    MissingReference,
    RecordError,
    RecordRefused,
    decode_record,
    encode_record,
    encode_signed,
    map_get,
    map_items,
    root_map,
    verified_signer,
)

ACCOUNTS_DOC = "accounts"
USERS = "users"
AUTH = "auth"
NAMES = "names"
ROOTS = frozenset({USERS, AUTH, NAMES})
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{3,20}")  # matched whole (fullmatch): "name\n" is refused
ACTIVE = "active"
DISABLED = "disabled"
HOME_FIELDS = ("password_hash", "home")  # only the home region writes these
NON_HOME_PASSWORD = ""  # what a version by another region carries instead of the hash


class NotHomeError(ValueError):
    """A region that is not the account's home tried to change its password or home."""

    def __init__(self, uid: str, region: str, home: str, fields: list[str]) -> None:
        super().__init__(
            f"region {region} is not the home of account {uid} (home: {home}); "
            f"{', '.join(fields)} can only be changed there"
        )
        self.uid = uid
        self.region = region
        self.home = home


def check_name(name: str) -> str:
    """Return the name if acceptable, else raise ValueError saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
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
        return cls.from_record(decode_record(text, tuple(cls.__dataclass_fields__)))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AccountVersion:
        values = {name: record[name] for name in cls.__dataclass_fields__}
        if not all(isinstance(value, str) for value in values.values()):
            raise RecordError("account fields must be strings")
        return cls(**values)

    def to_text(self) -> str:
        return encode_record(asdict(self))

    @property
    def authoritative(self) -> bool:
        return self.writer == self.base_home

    @property
    def is_creation(self) -> bool:
        return self.base == ""


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


def _version_of(_key: str, text: Any) -> AccountVersion:
    return AccountVersion.from_text(text)


def _claim_of(key: str, text: Any) -> NameClaim:
    record = decode_record(text, ("uid", "name", "stamp", "region"))
    lower = key.split("|", 1)[0]
    return NameClaim(lower, record["name"], record["uid"], record["stamp"], record["region"])


def newest_home_record(records: list[AccountVersion]) -> AccountVersion | None:
    """The ``auth`` record that sets the account's password and home (the newest one)."""
    return max(records, key=lambda v: v.stamp, default=None)


# (root map, key, record text) -> the record parsed from it (an AccountVersion or a NameClaim)
ParsedRecords = dict[tuple[str, str, str], Any]


class AccountsIndex:
    """A read-only snapshot of the accounts document, indexed for lookups.

    `known`: the records an earlier index of the same document parsed (its `parsed`). A record
    whose text is unchanged is taken from there instead of parsed again: every change of the
    document (each registration, in every region) builds a new index, and parsing every record
    again made that cost O(accounts) record parses per change, on every node."""

    def __init__(self, doc: Doc[Any], known: ParsedRecords | None = None) -> None:
        self.versions: dict[str, list[AccountVersion]] = {}
        self.home_records: dict[str, list[AccountVersion]] = {}
        self.claims: dict[str, list[NameClaim]] = {}
        self.bad_records: list[str] = []
        self.parsed: ParsedRecords = {}
        for root, index in ((USERS, self.versions), (AUTH, self.home_records)):
            for key, text in map_items(doc, root):
                version = self._parse(root, key, text, known, _version_of)
                if version is not None:
                    index.setdefault(version.uid, []).append(version)
        for key, text in map_items(doc, NAMES):
            claim = self._parse(NAMES, key, text, known, _claim_of)
            if claim is not None:
                self.claims.setdefault(claim.lower, []).append(claim)
        for claims in self.claims.values():
            claims.sort(key=lambda c: (c.stamp, c.uid))

    def _parse(
        self,
        root: str,
        key: str,
        text: Any,
        known: ParsedRecords | None,
        parse: Callable[[str, Any], Any],
    ) -> Any:
        """The record at `key` of map `root` (None: malformed, noted in `bad_records`)."""
        cache_key = (root, key, text) if isinstance(text, str) else None
        record = known.get(cache_key) if known is not None and cache_key is not None else None
        if record is None:
            try:
                record = parse(key, text)
            except RecordError as exc:
                self.bad_records.append(f"{root}/{key}: {exc}")
                return None
        if cache_key is not None:
            self.parsed[cache_key] = record
        return record

    def version(self, uid: str) -> AccountVersion | None:
        """The resolved version, with the password and home of the newest home record."""
        versions = self.versions.get(uid)
        if not versions:
            return None
        resolved = resolve(versions)
        home_record = newest_home_record(self.home_records.get(uid, []))
        if home_record is None:
            return resolved  # a document written before home records existed
        return dataclasses.replace(
            resolved, password_hash=home_record.password_hash, home=home_record.home
        )

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
    """Writes to the accounts document; call inside one transaction (engine.writing).

    Records are signed when the document has a signer attached (every document of a sync
    engine does); a plain Doc gets unsigned records, which only local tests use.
    """

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
        self._put(version)
        self._claim(uid, name, stamp)

    def update(self, current: AccountVersion, stamp: str, **changes: str) -> AccountVersion:
        """Write a new version of the account derived from the resolved `current` one.

        Raises NotHomeError when this region is not the account's home and the change touches
        the password or the home (peers would refuse it).
        """
        changed = [f for f in HOME_FIELDS if f in changes and changes[f] != getattr(current, f)]
        if changed and self.region != current.home:
            raise NotHomeError(current.uid, self.region, current.home, changed)
        fields = asdict(current) | changes
        fields.update(stamp=stamp, base=current.stamp, base_home=current.home, writer=self.region)
        if self.region != current.home:
            fields["password_hash"] = NON_HOME_PASSWORD  # readers take it from home records
        version = AccountVersion(**fields)
        self._put(version)
        return version

    def rename(self, current: AccountVersion, new_name: str, stamp: str) -> AccountVersion:
        names = root_map(self.doc, NAMES)
        old_key = f"{name_key(current.name)}|{current.uid}"
        if old_key in names:
            del names[old_key]
        self._claim(current.uid, check_name(new_name), stamp)
        return self.update(current, stamp, name=new_name)

    def _put(self, version: AccountVersion) -> None:
        key = f"{version.uid}|{self.region}"
        record = asdict(version)
        root_map(self.doc, USERS)[key] = encode_signed(self.doc, ACCOUNTS_DOC, USERS, key, record)
        if version.authoritative:
            root_map(self.doc, AUTH)[key] = encode_signed(self.doc, ACCOUNTS_DOC, AUTH, key, record)

    def _claim(self, uid: str, name: str, stamp: str) -> None:
        key = f"{name_key(name)}|{uid}"
        claim = {"uid": uid, "name": name, "stamp": stamp, "region": self.region}
        root_map(self.doc, NAMES)[key] = encode_signed(self.doc, ACCOUNTS_DOC, NAMES, key, claim)


# --- checking a peer's change --------------------------------------------------------------


def check_change(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    """Refuse (RecordRefused) or defer (MissingReference) one changed key of the accounts
    document; `doc` is the document as it would be with the whole update applied."""
    if change.root == NAMES:
        _check_claim(change, doc, context)
        return
    if change.deleted:
        raise RecordRefused("deleted_account", f"{change.where}: account records are never deleted")
    uid, _, region = change.key.partition("|")
    record = decode_record(change.new, tuple(AccountVersion.__dataclass_fields__))
    version = AccountVersion.from_record(record)
    if version.uid != uid or version.writer != region:
        raise RecordError(f"{change.where} holds uid {version.uid!r} by {version.writer!r}")
    signer = _check_signed_by_region(change, record, version.stamp, region, context)
    if change.old is not None:
        _check_replaces(change, version)
    if change.root == AUTH:
        _check_home_record(change, version, doc, context, signer)
    else:
        _check_version_has_home_record(change, version, doc, context.regions)


def _check_version_has_home_record(
    change: Change, version: AccountVersion, doc: Doc[Any], regions: frozenset[str]
) -> None:
    """A version claiming home authority is the ``users`` copy of a home record (written in the
    same transaction); any other version needs the account's home records to exist, since
    they, not it, decide the password and home."""
    home_records = root_map(doc, AUTH)
    if version.authoritative:
        text = map_get(home_records, change.key)
        try:
            same = text is not None and AccountVersion.from_text(text).stamp == version.stamp
        except RecordError:
            same = False
        if not same:
            raise MissingReference(
                "not_home", f"{change.where} claims home authority without a home record"
            )
        return
    if version.password_hash != NON_HOME_PASSWORD or version.home != version.base_home:
        raise RecordRefused(
            "not_home",
            f"{change.where}: region {version.writer} is not the home of {version.uid} "
            f"({version.base_home}) and wrote its password or home",
        )
    if not any(f"{version.uid}|{region}" in home_records for region in regions):
        raise MissingReference(
            "unknown_account", f"{change.where}: account {version.uid} has no home record"
        )


def _check_signed_by_region(
    change: Change, record: dict[str, Any], stamp: str, region: str, context: CheckContext
) -> str:
    """The signer node, which must be of the record's region."""
    signer, signer_region = verified_signer(ACCOUNTS_DOC, change, record, stamp, context)
    if signer_region != region:
        raise RecordRefused(
            "not_home",
            f"{change.where} is written for region {region} but signed by {signer} "
            f"of region {signer_region}",
        )
    return signer


def _check_replaces(change: Change, version: AccountVersion) -> None:
    """A key's writer only moves forward: replaying an older record (an old password) is refused.

    Except a *sibling*: a region running several processes has them all write its one key, and
    two of them may write it at once from the same version (same ``base``); Yjs then keeps the
    write of the higher client id whatever the stamps, so a node that held the other first sees
    the kept one replace it. Refusing that would split the nodes for good. A sibling gains an
    attacker nothing: it is a record the region signed from the version the displaced record
    was written from, so it can only stand for the other of two concurrent changes."""
    try:
        old = AccountVersion.from_text(change.old)
    except RecordError:
        return  # replacing an unreadable record is always an improvement
    sibling = version.base == old.base
    if (version.stamp <= old.stamp and not sibling) or version.created != old.created:
        raise RecordRefused(
            "stale_record",
            f"{change.where}: stamp {version.stamp} does not follow {old.stamp} of the record "
            "it replaces",
        )


def _check_home_record(
    change: Change, version: AccountVersion, doc: Doc[Any], context: CheckContext, signer: str
) -> None:
    """An ``auth`` record sets the password and home only while it is the newest: then the
    record it displaces as newest must name its writer's region as home."""
    if not version.authoritative:
        raise RecordRefused(
            "not_home", f"{change.where}: a home record must be written by the home region"
        )
    others = _home_records(doc, version.uid, context.regions, skip=change.key)
    if change.old is not None:
        with contextlib.suppress(RecordError):
            others.append(AccountVersion.from_text(change.old))
    if any(o.created != version.created for o in others):
        raise RecordRefused(
            "duplicate_account", f"{change.where}: account {version.uid} exists already"
        )
    if any(o.stamp > version.stamp for o in others):
        return  # not the newest: it sets nothing
    previous = newest_home_record(others)
    if previous is None:
        if version.is_creation and version.created == version.stamp:
            return
        if _continues_own_home(version, signer, context):
            # The home's later version replaced its earlier one under the same key: a node
            # that never saw the earlier one (cut off when the account was made) can only get
            # this one, and no record here says another region is the home.
            return
        raise MissingReference(
            "unknown_account", f"{change.where}: no earlier home record of {version.uid}"
        )
    if previous.home != version.writer:
        raise MissingReference(
            "not_home",
            f"{change.where}: region {version.writer} is not the home of {version.uid} "
            f"(the newest home record says {previous.home})",
        )


def _continues_own_home(version: AccountVersion, signer: str, context: CheckContext) -> bool:
    """A later version written by the region it names as the account's home, from a version
    that named it home too (a rename, a password change made at home), signed by a node of the
    region of the node that created the account (the creator itself, or another process of its
    region). The last condition keeps an insider of another region from passing off a copy of
    someone else's account as its own on a node that never saw the account: it can sign only
    as itself, and the creation stamp names the creating node, whose region the keyring says."""
    if not version.writer == version.home == version.base_home:
        return False
    try:
        creator = Stamp.decode(version.created).node_id
    except ValueError:
        return False
    if creator == signer:
        return True
    region = context.node_region(creator)
    return region is not None and region == context.node_region(signer)


def _home_records(
    doc: Doc[Any], uid: str, regions: frozenset[str], skip: str
) -> list[AccountVersion]:
    records = root_map(doc, AUTH)
    found = []
    for region in sorted(regions):
        key = f"{uid}|{region}"
        text = map_get(records, key) if key != skip else None
        if text is None:
            continue
        try:
            found.append(AccountVersion.from_text(text))
        except RecordError:
            continue
    return found


def _check_claim(change: Change, doc: Doc[Any], context: CheckContext) -> None:
    lower, _, uid = change.key.partition("|")
    if change.deleted:
        # A rename deletes the old claim in the transaction that writes the renamed version.
        if not _renamed_away(doc, uid, lower, context.regions):
            raise MissingReference(
                "unexplained_delete", f"{change.where}: claim deleted without a rename"
            )
        return
    record = decode_record(change.new, ("uid", "name", "stamp", "region"))
    if record["uid"] != uid or not isinstance(record["name"], str):
        raise RecordError(f"{change.where} claims for another account")
    if name_key(record["name"]) != lower or not NAME_PATTERN.fullmatch(record["name"]):
        raise RecordError(f"{change.where} claims another name")
    if not isinstance(record["stamp"], str) or not isinstance(record["region"], str):
        raise RecordError(f"{change.where}: stamp and region must be strings")
    _check_signed_by_region(change, record, record["stamp"], record["region"], context)


def _renamed_away(doc: Doc[Any], uid: str, lower: str, regions: frozenset[str]) -> bool:
    users = root_map(doc, USERS)
    for region in sorted(regions):
        text = users.get(f"{uid}|{region}")
        if text is None:
            continue
        try:
            if name_key(AccountVersion.from_text(text).name) != lower:
                return True
        except RecordError:
            continue
    return False
