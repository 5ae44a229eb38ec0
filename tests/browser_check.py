"""Whether the browser tests can run on this machine, asked once for all their modules.

A browser test module calls `require_browser()` before it imports `tests.web_browser` (which
imports Playwright): the module is skipped, with the reason, when the test dependency
playwright or Debian's chromium is missing (the Playwright browser download is not used; see
docs/web.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def require_browser() -> None:
    pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need the test dependency playwright"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "the browser tests need Debian's chromium (apt-get install chromium)",
            allow_module_level=True,
        )
