"""Sign-in in a real browser: `sparsect app` on a free local port, driven by Playwright in headless Chromium.

- the shared password (SPARSECT_PAGE_PASSWORD), then "Load from PACS" against the real Orthanc with
  authentication on (fixture in conftest.py);
- OpenID Connect through Streamlit's own ``st.login``, against a small provider on loopback
  (tests/oidc_provider.py), the whole round trip: Sign in, the provider, /oauth2callback, back to the page.

Every wait is on page state, never a fixed pause (see tests/test_browser.py, whose helpers this reuses).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, SCRIPT_IDLE, STATE_TIMEOUT, _free_port, _stop, _wait_healthy

from sparsect import data

PASSWORD = "correct horse battery"
_VARIABLES = ("SPARSECT_DICOMWEB_USER", "SPARSECT_DICOMWEB_PASSWORD", "SPARSECT_DICOMWEB_TOKEN", "SPARSECT_PACS_URL",
              "SPARSECT_PACS_CONFIG", "SPARSECT_PAGE_PASSWORD", "SPARSECT_PAGE_PASSWORD_HASH")


@contextlib.contextmanager
def _page(tmp_path: Path, env: dict[str, str], port: int) -> Iterator[tuple[object, object]]:
    """`sparsect app` (cwd ``tmp_path``) and a Chromium page; yields (playwright sync_api, page)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (set SPARSECT_CHROMIUM)")
    full_env = {k: v for k, v in os.environ.items() if k not in _VARIABLES} | env
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen([sys.executable, "-m", "sparsect.app.cli", "app", "--port", str(port),
                                "--host", "127.0.0.1"], cwd=tmp_path, env=full_env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process, STATE_TIMEOUT)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                        timeout=STATE_TIMEOUT * 1000)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(STATE_TIMEOUT * 1000)
                yield sync_api, page
            finally:
                browser.close()
    finally:
        _stop(process)
        log.close()


def _idle(page) -> None:
    page.wait_for_function(SCRIPT_IDLE, timeout=STATE_TIMEOUT * 1000)


def test_shared_password_in_chromium_then_pacs(tmp_path, orthanc, make_ct_series):
    source = make_ct_series(1)
    data.DicomWeb(orthanc.dicomweb, data.Credentials(orthanc.user, orthanc.password)).store(source)
    env = {"SPARSECT_PAGE_PASSWORD": PASSWORD, "SPARSECT_PACS_URL": orthanc.dicomweb, "SPARSECT_PACS_NAME": "Orthanc",
           "SPARSECT_DICOMWEB_USER": orthanc.user, "SPARSECT_DICOMWEB_PASSWORD": orthanc.password}
    port = _free_port()
    with _page(tmp_path, env, port) as (sync_api, page):
        page.goto(f"http://127.0.0.1:{port}")
        password = page.get_by_label("Page password")
        password.wait_for()
        _idle(page)
        assert page.get_by_text("Load from PACS").count() == 0 and page.get_by_text("Working size").count() == 0
        page.get_by_label("Your name (recorded in the audit log)").fill("Dr Ana")
        password.fill("wrong password!")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong password.").wait_for()
        assert page.get_by_text("Load from PACS").count() == 0
        password.fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        pacs = page.get_by_text("Load from PACS", exact=True)
        pacs.wait_for()
        _idle(page)
        pacs.click()
        page.get_by_label("Patient ID").wait_for()
        _idle(page)
        page.get_by_label("Patient ID").fill(source[0].PatientID)
        page.get_by_label("Patient ID").press("Enter")
        _idle(page)
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name="Load").wait_for()  # a study was found and its CT series listed
        _idle(page)
        assert page.get_by_text("No study found.").count() == 0
        assert page.get_by_text("Traceback").count() == 0 and page.get_by_text("HTTP 401").count() == 0
    server_log = (tmp_path / "server.log").read_text()
    assert 'event=signin.failed user="Dr Ana"' in server_log and 'event=pacs.search user="Dr Ana"' in server_log
    assert PASSWORD not in server_log and "wrong password" not in server_log and orthanc.password not in server_log
    assert source[0].PatientID not in server_log


def test_openid_connect_round_trip_in_chromium(tmp_path):
    pytest.importorskip("authlib", reason="Authlib is not installed")
    pytest.importorskip("joserfc", reason="joserfc (Authlib's JOSE library) is not installed")
    from oidc_provider import oidc_provider

    port = _free_port()
    with oidc_provider() as provider:
        (tmp_path / ".streamlit").mkdir()
        (tmp_path / ".streamlit" / "secrets.toml").write_text(
            f'[auth]\nredirect_uri = "http://localhost:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(16)}"\nclient_id = "{provider.client_id}"\n'
            f'client_secret = "{provider.client_secret}"\n'
            f'server_metadata_url = "{provider.issuer}/.well-known/openid-configuration"\n')
        env = {"SPARSECT_PACS_URL": "http://127.0.0.1:9/dicom-web"}  # offered only once signed in
        with _page(tmp_path, env, port) as (_, page):
            page.goto(f"http://localhost:{port}")
            sign_in = page.get_by_role("button", name="Sign in")
            sign_in.wait_for()
            _idle(page)
            assert page.get_by_text("Load from PACS").count() == 0 and page.get_by_text("Working size").count() == 0
            sign_in.click()
            page.get_by_text("Load from PACS", exact=True).wait_for()
            _idle(page)
            assert provider.tokens_issued == 1
            assert page.get_by_role("button", name="Sign out").count() == 1
    server_log = (tmp_path / "server.log").read_text()
    assert f"event=signin.ok user={provider.email} via=oidc" in server_log
    assert provider.client_secret not in server_log
