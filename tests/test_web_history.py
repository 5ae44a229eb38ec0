"""The web client's move log, run in Node: how each turn of a game reads (history.js).

Node is the one `make jscheck` installs TypeScript with; without it the test is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE = shutil.which("node")
SCRIPT = Path(__file__).parent / "js" / "claim_log.mjs"


@pytest.mark.skipif(NODE is None, reason="needs Node.js (make jscheck installs TypeScript with it)")
def test_an_earlier_claim_is_not_described_with_the_latest_claims_outcome() -> None:
    # The view's last_claim is the outcome of the game's latest claim (alice's failed flag 5);
    # her earlier claim of flag 3, which she holds, must still read as won.
    result = subprocess.run(
        [str(NODE), str(SCRIPT)], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.splitlines() == [
        "alice claimed flag 3 and won it, played green 7 on flag 1 and drew from the troop deck",
        "bob played red 7 on flag 2 and drew from the troop deck",
        "alice claimed flag 5 but could not prove it",
    ]
