"""Document schema versions: old records are read, nothing is written that an older node
cannot read, and a record of a newer layout is refused by name instead of misread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Map

import meridian.games.battleline as battleline
from meridian.crdt_models import kinds
from meridian.crdt_models.game import INFO, MOVES, GameInfo, GameWriter
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.kinds import (
    KINDS,
    OLDEST_SUPPORTED_READS,
    check_doc_id,
    record_schema,
)
from meridian.crdt_models.records import Change, RecordError, decode_record, encode_record
from meridian.node.localcluster import ReleaseMissing, extract_release
from tests.sync_harness import EPOCH_MS, MemoryCluster

ROUNDTRIP = Path(__file__).parent / "helpers" / "schema_roundtrip.py"


def test_every_kind_has_a_schema_and_writes_what_the_oldest_supported_release_reads() -> None:
    assert {kind.name for kind in KINDS} == set(OLDEST_SUPPORTED_READS)
    for kind in KINDS:
        assert 1 <= kind.writes <= kind.reads, kind
        assert kind.writes <= OLDEST_SUPPORTED_READS[kind.name], (
            f"{kind.name} writes schema {kind.writes}, which release-0.2 cannot read: write "
            "the new layout only in a release after every node reads it"
        )
    for doc_id in ("accounts", "saved", "log:2026-01", "game:x", "presence:eu-1", "test:x"):
        assert check_doc_id(doc_id) in KINDS


def test_a_record_without_a_schema_field_is_version_1() -> None:
    assert record_schema({"gid": "g"}) == 1
    assert record_schema({"schema": 3}) == 3
    for bad in (0, -1, "2", 1.5, True, None):
        with pytest.raises(RecordError):
            record_schema({"schema": bad})


def _stamp(ms: int) -> str:
    return Stamp(EPOCH_MS + ms, 0, "eu").encode()


def _send_move(schema: object) -> MemoryCluster:
    """eu writes a game whose move record declares `schema`; us checks it as a peer."""
    cluster = MemoryCluster(["eu", "us"])
    cluster.connect("eu", "us")
    info = GameInfo("g1", "battleline", ["u1", "u2"], ["a", "b"], 1, 0, _stamp(0), "eu")
    opening = battleline.legal_moves(battleline.new_game(info.seed, info.first))[0]
    move = {"ply": 0, "parent": "", "player": 0, "move": opening, "stamp": _stamp(1)}
    move |= {"node": "eu", "schema": schema}

    def change(doc: object) -> None:
        GameWriter(doc, "eu").create(info)  # type: ignore[arg-type]
        doc.get(MOVES, type=Map)[f"00000|{_stamp(1)}"] = encode_record(move)  # type: ignore[attr-defined]

    cluster.engines["eu"].write("game:g1", change, cluster.now)
    cluster.advance(0.05)
    return cluster


def test_a_record_of_a_known_schema_is_taken() -> None:
    cluster = _send_move(1)
    assert not cluster.refused("us")
    doc = cluster.engines["us"].docs["game:g1"]
    assert GameInfo.from_text(doc.get(INFO, type=Map)["game"]).gid == "g1"


@pytest.mark.parametrize(("schema", "rule"), [(2, "schema_too_new"), ("two", "bad_record")])
def test_a_record_of_a_newer_or_bad_schema_is_refused_not_misread(
    schema: object, rule: str
) -> None:
    cluster = _send_move(schema)
    assert [e.rule for e in cluster.refused("us")] == [rule]
    assert "game:g1" not in cluster.engines["us"].docs or not cluster.engines["us"].docs[
        "game:g1"
    ].get(MOVES, type=Map)


def test_key_value_text_that_looks_like_a_newer_record_is_just_text() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.connect("eu", "us")
    cluster.put("eu", "test:kv", "k", '{"schema": 99}')
    cluster.advance(0.05)
    assert cluster.values("us", "test:kv") == {"k": '{"schema": 99}'}


def test_records_this_code_writes_declare_no_schema_above_1() -> None:
    written = json.loads(
        subprocess.run(
            [sys.executable, str(ROUNDTRIP), "write"], capture_output=True, check=True
        ).stdout
    )
    assert set(written) == {"game:g1", "presence:eu-1", "log:2026-06", "test:kv"}
    info = GameInfo("g", "battleline", [], [], 0, 0, _stamp(0), "eu")
    assert "schema" not in decode_record(info.to_text(), ())


def _roundtrip(writer_path: str, checker_path: str) -> subprocess.CompletedProcess[str]:
    def env(path: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)

    written = subprocess.run(
        [sys.executable, str(ROUNDTRIP), "write"],
        env=env(writer_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return subprocess.run(
        [sys.executable, str(ROUNDTRIP), "check"],
        env=env(checker_path),
        input=written,
        capture_output=True,
        text=True,
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "direction", ["release-0.2 writes, this code reads", "this code writes, release-0.2 reads"]
)
def test_records_cross_between_this_code_and_the_previous_release(
    tmp_path: Path, direction: str
) -> None:
    try:
        release = str(extract_release(tmp_path / "release"))
    except ReleaseMissing as missing:
        pytest.fail(str(missing))
    old_writes = direction.startswith("release")
    result = _roundtrip(release if old_writes else "", "" if old_writes else release)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


# --- stamps ahead of the clock, read from a record's text -----------------------------------

LIMIT_MS = 2_000_000_000_000  # a stamp's wall above this is "ahead"


def _stamp_text(wall_ms: int) -> str:
    return f"{wall_ms:016d}.00000.n"


def _escaped(text: str) -> str:
    """`text` as a JSON string literal whose digits are written as \\u escapes."""
    return '"' + "".join(f"\\u{ord(c):04x}" if c.isdigit() else c for c in text) + '"'


@given(
    walls=st.lists(st.integers(0, 10**17), max_size=4),
    escape=st.lists(st.booleans(), min_size=4, max_size=4),
    key_wall=st.one_of(st.none(), st.integers(0, 10**17)),
)
def test_the_quick_stamp_scan_never_passes_a_record_the_decoded_one_refuses(
    walls: list[int], escape: list[bool], key_wall: int | None
) -> None:
    """The check of stamps ahead of the clock first scans a record's text (kinds, without
    decoding it); a stamp it cannot see there (one written with escapes) must still count."""
    fields = [
        _escaped(_stamp_text(wall)) if hidden else json.dumps(_stamp_text(wall))
        for wall, hidden in zip(walls, escape, strict=False)
    ]
    text = "{" + ",".join(f'"f{i}": {field}' for i, field in enumerate(fields)) + "}"
    key = "k" if key_wall is None else _stamp_text(key_wall)
    exact_ok = all(wall <= LIMIT_MS for wall in [*walls, *([key_wall] if key_wall else [])])
    quick_ok = kinds._stamps_in_text_within(Change("r", key, None, text), LIMIT_MS)
    assert not quick_ok or exact_ok
    if not any(escape[: len(walls)]):  # nothing hidden: the quick answer is the exact one
        assert quick_ok == exact_ok
