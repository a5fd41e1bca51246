"""A scan's large answers go back to the system once freed (glibc's adjustable threshold fixed)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from scanner import App
from scanner import scan as scan_module
from scanner.memory import return_large_blocks

from .test_scan import NO_CONFIG

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the threshold is glibc's")

# A page-sized block freed once (glibc then raises its threshold), sixty more read and
# freed while the last stays: the megabytes still held after the frees.
HELD_AFTER_FREES = textwrap.dedent("""
    import sys
    from scanner.memory import return_large_blocks

    def rss_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    if sys.argv[1] == "fixed":
        assert return_large_blocks()
    first = bytearray(1 << 20)
    del first
    pages = [bytes(bytearray(1 << 20)) for _ in range(60)]
    before = rss_kb()
    del pages[:-1]
    print((rss_kb() - (before - 60 * 1024)) // 1024)
""")


def held_megabytes(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", HELD_AFTER_FREES, mode], capture_output=True, text=True, check=True)
    return int(result.stdout)


def test_freed_pages_go_back_to_the_system_once_the_threshold_is_fixed():
    assert held_megabytes("fixed") < 10
    assert held_megabytes("glibc's own") > 50  # what a scan's heap did before: the test can tell


def test_every_scan_fixes_the_threshold_first(fake_tenant, db_path, monkeypatch):
    fake_tenant.apps = [App(id="a1", name="App")]
    calls = []
    monkeypatch.setattr(scan_module, "return_large_blocks", lambda: calls.append(1) or True)
    outcome = scan_module.run_scans(db_path, NO_CONFIG, show_progress=False)
    assert outcome.scans[0]["status"] == "succeeded" and calls == [1]


def test_it_reports_whether_it_could():
    assert return_large_blocks() is True
