"""The browser of the browser tests: Debian's Chromium driven by Playwright (Playwright
cannot download a browser here). Registered once in conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and quiet: without the background-networking flags Chromium keeps
# trying hosts this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium():
    """Playwright's sync API, or skip the calling test module when Chromium is missing (a
    failure instead in CI, where APP_INVENTORY_REQUIRE_BROWSER=1)."""
    if not CHROMIUM.exists():
        if os.environ.get("APP_INVENTORY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and APP_INVENTORY_REQUIRE_BROWSER=1: install Debian's chromium "
                        "package (.ci/run does)", pytrace=False)
        pytest.skip(f"browser tests need {CHROMIUM} (Debian's chromium package; .ci/run installs it)",
                    allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a test module."""
    sync_api = require_chromium()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
