"""Real-browser test of the page: `sparsect app` on a free local port, driven by Playwright in headless Chromium.

Skips when playwright or Chromium (SPARSECT_CHROMIUM, default /usr/bin/chromium) is absent. With
SPARSECT_UPDATE_SCREENSHOT=1 the screenshot is also copied to docs/screenshot.png.

Every wait is on page state (a checkbox unticked, the script idle, the table and images drawn), never a fixed
pause, so the test passes on a loaded 2-core machine; the one bound, STATE_TIMEOUT, only ends a hung page.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SPARSECT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STATE_TIMEOUT = 600  # seconds; an upper bound for a hung page, not a pause
#: True once Streamlit has finished running the script (the state it exposes on its root element).
SCRIPT_IDLE = ("() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
               " === 'notRunning'")
IMAGES_DRAWN = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the server did not answer on {url} within {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the group this test started (cli + streamlit)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def _settle(page) -> None:
    """Wait until the script has finished its run and every image on the page has loaded."""
    page.wait_for_function(SCRIPT_IDLE, timeout=STATE_TIMEOUT * 1000)
    page.wait_for_function(IMAGES_DRAWN, timeout=STATE_TIMEOUT * 1000)


def test_page_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (set SPARSECT_CHROMIUM)")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen([sys.executable, "-m", "sparsect.app.cli", "app", "--port", str(port),
                                "--host", "127.0.0.1"],
                               cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    shot = tmp_path / "screenshot.png"
    try:
        _wait_healthy(url, process, STATE_TIMEOUT)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                        timeout=STATE_TIMEOUT * 1000)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1450})
                page.set_default_timeout(STATE_TIMEOUT * 1000)
                page.goto(url)
                run = page.get_by_role("button", name="Run")
                run.wait_for()
                _settle(page)
                # Only the fast methods: FBP and TV (a second picture for the screenshot). A checkbox's name is
                # the method's label, then its estimated time ("LRNN ~1 min 40 s").
                for name in ("SIRT", "CGLS", "SIREN", "WIRE", "LRNN"):
                    box = page.get_by_role("checkbox", name=re.compile(rf"^{name}( |$)"))
                    if box.count() and box.is_checked() and box.is_enabled():
                        page.locator("label").filter(has=box).click()
                        sync_api.expect(box).not_to_be_checked(timeout=STATE_TIMEOUT * 1000)
                        _settle(page)
                run.click()
                page.get_by_role("heading", name="Metrics").wait_for()
                page.locator('[data-testid="stDataFrame"]').last.wait_for()
                images = page.locator('[data-testid="stImage"] img')
                images.nth(2).wait_for()
                _settle(page)
                assert images.count() >= 3  # ground truth, FBP, TV
                assert page.get_by_text("FBP", exact=True).count() >= 1
                assert page.get_by_text("Traceback").count() == 0
                page.evaluate("document.querySelector('[data-testid=stSidebarContent]')?.scrollTo(0, 0)")
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    finally:
        _stop(process)
        log.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("SPARSECT_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")
