"""A longer hostile-input run: millions of seeded hostile frames and bodies, counts printed.

The same generators and checks as tests/test_hostile_input.py (tests/hostile_inputs.py,
tests/hostile_peers.py), in memory: every input is refused with a named code or carried out,
none gets "internal" or a 500, and a refused one changes no document; the nodes that got the
peer frames end with the same documents. Run from the repository root:

    .venv/bin/python bench/hostile.py --frames 1000000 --bodies 500000 --peer-frames 50000 --seed 7
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.hostile_inputs

from tests.hostile_inputs import FuzzedNode, fuzz_bodies
from tests.hostile_peers import PeerFuzz


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=500_000)
    parser.add_argument("--bodies", type=int, default=300_000)
    parser.add_argument("--peer-frames", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    errors = _Errors()
    logging.getLogger("meridian").addHandler(errors)
    logging.getLogger("meridian").setLevel(logging.WARNING)
    logging.getLogger("meridian").propagate = False
    started = time.perf_counter()
    node = FuzzedNode(args.seed)
    node.run(args.frames)
    frames_s = time.perf_counter() - started
    print(f"websocket frames: {args.frames:,} in {frames_s:.1f} s")
    for outcome, count in node.counts.most_common():
        print(f"  {outcome:<24} {count:>10,}")
    started = time.perf_counter()
    kinds: Counter[str] = Counter()
    statuses = fuzz_bodies(args.bodies, args.seed + 1, kinds)
    bodies_s = time.perf_counter() - started
    print(
        f"player and admin bodies: {args.bodies:,} in {bodies_s:.1f} s "
        f"({kinds['player']:,} player, {kinds['admin']:,} admin)"
    )
    for status, count in sorted(statuses.items()):
        print(f"  HTTP {status:<19} {count:>10,}")
    started = time.perf_counter()
    peers = PeerFuzz(args.seed + 2)
    peers.run(args.peer_frames)  # raises on an internal error or a refusal that changed state
    peers.finish()  # raises unless the three nodes hold the same documents
    peers_s = time.perf_counter() - started
    print(f"peer frames from an insider: {args.peer_frames:,} in {peers_s:.1f} s, converged")
    for outcome, count in peers.counts.most_common():
        print(f"  {outcome:<24} {count:>10,}")
    internal = node.counts["internal"] + statuses[500]
    print(f"internal errors: {internal}, errors logged: {len(errors.records)}")
    return 1 if internal or errors.records else 0


if __name__ == "__main__":
    raise SystemExit(main())
