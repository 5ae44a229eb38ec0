"""The browser tests' Chromium flags keep Playwright's own (tests/web_browser.py).

Chromium keeps only the last ``--disable-features`` it is given and Playwright passes its own
list first, so the browser tests repeat Playwright's list in theirs. This reads the list from the
installed Playwright's driver: after an upgrade that changed it, this test says what to add.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser_check import require_browser

require_browser()

from tests.web_browser import CHROMIUM_ARGS, PLAYWRIGHT_DISABLED_FEATURES  # noqa: E402

QUOTED_NAME = re.compile(r'^\s*"([A-Za-z0-9]+)",?\s*(//.*)?$')


def playwright_disabled_features() -> list[str]:
    """The features Playwright's Chromium launcher disables (its `disabledFeatures` list)."""
    import playwright

    lib = Path(playwright.__file__).parent / "driver" / "package" / "lib"
    for bundle in sorted(lib.rglob("*.js")):
        lines = bundle.read_text(encoding="utf-8", errors="replace").splitlines()
        starts = [i for i, line in enumerate(lines) if "disabledFeatures = [" in line]
        if starts:
            names: list[str] = []
            for line in lines[starts[0] + 1 :]:
                if line.strip().startswith("]"):
                    return names
                if found := QUOTED_NAME.match(line):
                    names.append(found.group(1))
    pytest.fail(f"no `disabledFeatures = [` list under {lib}: look for Playwright's own flags")


def test_the_browser_tests_disable_every_feature_playwright_disables() -> None:
    theirs = playwright_disabled_features()
    assert theirs, "Playwright's list was found empty"
    missing = [name for name in theirs if name not in PLAYWRIGHT_DISABLED_FEATURES]
    assert not missing, f"add to PLAYWRIGHT_DISABLED_FEATURES in tests/web_browser.py: {missing}"
    flags = [arg for arg in CHROMIUM_ARGS if arg.startswith("--disable-features=")]
    assert len(flags) == 1 and set(theirs) <= set(flags[0].split("=", 1)[1].split(","))
