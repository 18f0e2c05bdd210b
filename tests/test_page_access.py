"""Who may use the page (app/access.py), the operator's PACS endpoints (app/pacs_endpoints.py) and the check
``sparsect app`` makes before serving (app/serve.py): sign-in driven through the real page with AppTest."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparsect.app import access, pacs_endpoints, serve
from sparsect.app.cli import cli

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "page" / "main.py")
PASSWORD = "correct horse battery"
_VARIABLES = ("SPARSECT_DICOMWEB_USER", "SPARSECT_DICOMWEB_PASSWORD", "SPARSECT_DICOMWEB_TOKEN", "SPARSECT_PACS_URL",
              "SPARSECT_PACS_NAME", "SPARSECT_PACS_ALLOW_SEND", "SPARSECT_PACS_CONFIG", access.PASSWORD_VARIABLE,
              access.HASH_VARIABLE)


@pytest.fixture
def clean_env(monkeypatch):
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _sign_in(at, name: str, password: str):
    at.text_input(key=access.NAME_KEY).set_value(name)
    at.text_input(key=access.PASSWORD_KEY).set_value(password)
    at.button[0].click().run()  # the form's submit button
    return at


def _sees_nothing(at) -> bool:
    return not at.sidebar.radio and not at.sidebar.selectbox and not at.dataframe and not at.image


def test_shared_password_gates_data_and_pacs(clean_env, caplog):
    from http_recorder import recorder
    from streamlit.testing.v1 import AppTest

    caplog.set_level(logging.INFO, logger="sparsect.audit")
    with recorder() as pacs:
        clean_env.setenv("SPARSECT_PACS_URL", f"{pacs.url}/dicom-web")
        clean_env.setenv(access.HASH_VARIABLE, access.hash_password(PASSWORD, iterations=1000))
        at = AppTest.from_file(PAGE, default_timeout=90)
        at.run()
        assert not at.exception and _sees_nothing(at)
        assert [t.label for t in at.text_input] == ["Your name (recorded in the audit log)", "Page password"]
        _sign_in(at, "Dr Ana", "wrong password!")
        assert _sees_nothing(at) and [e.value for e in at.error] == ["Wrong password."]
        _sign_in(at, "Dr Ana", PASSWORD)
        assert not at.exception and not at.error
        assert "Load from PACS" in at.sidebar.radio(key="source").options
        at.sidebar.radio(key="source").set_value("Load from PACS").run()
        at.sidebar.text_input(key="pacs_date").set_value("20240102")
        at.sidebar.button(key="pacs_search").click().run()
        assert not at.exception and "No study found." in [c.value for c in at.sidebar.caption]
        assert len(pacs.requests) == 1
        at.sidebar.button(key="signout").click().run()
        assert _sees_nothing(at) and access.USER_KEY not in at.session_state
    lines = [r.getMessage() for r in caplog.records if r.name == "sparsect.audit"]
    assert [line.split("event=")[1].split()[0] for line in lines] == \
        ["signin.failed", "signin.ok", "pacs.search", "signout"]
    assert all('user="Dr Ana"' in line for line in lines) and "by=date" in lines[2] and "endpoint=PACS" in lines[2]
    assert not any(PASSWORD in line or "wrong password" in line or "20240102" in line for line in lines)


def test_without_sign_in_configured_the_page_is_open(clean_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    assert not at.exception and at.sidebar.radio(key="source").options == ["Sample", "Upload DICOM", "Measured scan"]


def test_passwords_compare_by_hash_and_plain():
    stored = access.hash_password(PASSWORD, iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and PASSWORD not in stored
    assert access.check_password(PASSWORD, {access.HASH_VARIABLE: stored})
    assert not access.check_password(PASSWORD + "x", {access.HASH_VARIABLE: stored})
    assert not access.check_password(PASSWORD, {access.HASH_VARIABLE: "md5$1$00$00"})
    assert access.check_password(PASSWORD, {access.PASSWORD_VARIABLE: PASSWORD})
    assert not access.check_password("", {})
    assert access.method({}, files=[]) is None
    assert access.method({access.PASSWORD_VARIABLE: PASSWORD}, files=[]) == "password"


def test_oidc_is_configured_by_an_auth_table(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[other]\nx = 1\n')
    assert not access.oidc_configured([secrets, tmp_path / "missing.toml"])
    secrets.write_text('[auth]\nclient_id = "sparsect"\n')
    assert access.method({}, files=[secrets]) == "oidc"


def test_app_refuses_a_shared_address_with_a_pacs_and_no_sign_in(clean_env, tmp_path, monkeypatch):
    (tmp_path / "pacs.json").write_text(json.dumps({"pacs": [{"name": "Main", "url": "http://127.0.0.1:9/dicom-web"}]}))
    monkeypatch.chdir(tmp_path)
    started = []
    monkeypatch.setattr(serve.os, "execve", lambda *args: started.append(args))
    result = CliRunner().invoke(cli, ["app", "--host", "0.0.0.0", "--pacs-config", "pacs.json"])
    assert result.exit_code == 2 and started == []
    assert result.output.count("\n") == 1 and "refusing to serve on 0.0.0.0 with a PACS configured and no sign-in" \
        in result.output and "or an [auth] table in .streamlit/secrets.toml" in result.output
    assert CliRunner().invoke(cli, ["app", "--host", "127.0.0.1", "--pacs-config", "pacs.json"]).exit_code == 0
    monkeypatch.setenv(access.PASSWORD_VARIABLE, "short")
    assert "at least 12 characters" in CliRunner().invoke(cli, ["app", "--host", "0.0.0.0"]).output
    monkeypatch.setenv(access.PASSWORD_VARIABLE, PASSWORD)
    result = CliRunner().invoke(cli, ["app", "--host", "0.0.0.0", "--pacs-config", "pacs.json"])
    assert result.exit_code == 0 and len(started) == 2
    assert started[-1][2]["SPARSECT_PACS_CONFIG"] == str(tmp_path / "pacs.json")
    assert "--server.address" in started[-1][1] and "0.0.0.0" in started[-1][1]
    assert CliRunner().invoke(cli, ["app", "--host", "0.0.0.0", "--pacs-config", "missing.toml"]).exit_code == 2


def test_check_accepts_oidc_and_needs_nothing_without_a_pacs(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nclient_id = "sparsect"\n')
    env = {"SPARSECT_PACS_URL": "http://127.0.0.1:9/dicom-web"}
    assert serve.check("0.0.0.0", env, [secrets]) == ["PACS"]
    assert serve.check("0.0.0.0", {}, []) == []
    assert serve.check("::1", env, []) == ["PACS"] and serve.check("localhost", env, []) == ["PACS"]
    with pytest.raises(serve.ServeError, match="no sign-in"):
        serve.check("10.1.2.3", env, [])


def test_pacs_configuration_file(tmp_path):
    (tmp_path / "token").write_text("tok-1\n")
    (tmp_path / "pacs.toml").write_text(f'''
[[pacs]]
name = "Main"
url = "https://pacs.example.org/dicom-web"
token_file = "{tmp_path / 'token'}"
allow_send = true

[[pacs]]
name = "Archive"
url = "http://archive:8042/dicom-web"
user_env = "ARCHIVE_USER"
password_env = "ARCHIVE_PASSWORD"
''')
    env = {"SPARSECT_PACS_CONFIG": str(tmp_path / "pacs.toml"), "ARCHIVE_USER": "ana", "ARCHIVE_PASSWORD": "pw"}
    main, archive = pacs_endpoints.configured(env)
    assert (main.name, main.credentials.token, main.allow_send) == ("Main", "tok-1", True)
    assert (archive.credentials.user, archive.credentials.password, archive.allow_send) == ("ana", "pw", False)
    assert "tok-1" not in repr(main) and "pw" not in repr(archive)
    assert pacs_endpoints.by_name("Archive", env) == archive and pacs_endpoints.by_name("Other", env) is None


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "A", "url": "http://h/dicom-web", "password": "x"}, "unknown key(s) password (secrets go"),
    ({"name": "A", "url": "http://u:p@h/dicom-web"}, "not in the URL"),
    ({"url": "http://h/dicom-web"}, "needs a name and a url"),
    ({"name": "A", "url": "http://h/dicom-web", "user_env": "NOPE_USER", "password_env": "NOPE"}, "NOPE_USER"),
    ({"name": "A", "url": "http://h/dicom-web", "allow_send": "yes"}, "true or false"),
])
def test_pacs_configuration_errors_are_one_line(tmp_path, entry, message):
    (tmp_path / "pacs.json").write_text(json.dumps({"pacs": [entry]}))
    with pytest.raises(pacs_endpoints.ConfigError, match=re.escape(message)) as error:
        pacs_endpoints.configured({"SPARSECT_PACS_CONFIG": str(tmp_path / "pacs.json")})
    assert "\n" not in str(error.value)


def test_hash_command_asks_twice_and_prints_a_usable_hash(monkeypatch, capsys):
    answers = iter([PASSWORD, PASSWORD, "short", PASSWORD, "different password"])
    monkeypatch.setattr(access.getpass, "getpass", lambda prompt: next(answers))
    access.main()
    stored = capsys.readouterr().out.strip()
    assert access.check_password(PASSWORD, {access.HASH_VARIABLE: stored}) and PASSWORD not in stored
    with pytest.raises(SystemExit, match="at least 12"):
        access.main()
    with pytest.raises(SystemExit, match="differ"):
        access.main()


def test_app_passes_the_run_limit_to_the_page(clean_env, monkeypatch):
    from sparsect.app import run_queue

    started = []
    monkeypatch.setattr(serve.os, "execve", lambda *args: started.append(args))
    assert CliRunner().invoke(cli, ["app", "--max-runs", "2"]).exit_code == 0
    assert started[-1][2][run_queue.MAX_RUNS_ENV] == "2"
    assert run_queue.max_runs_from_env(10**9, started[-1][2]) == 2  # what the page's queue reads
    refused = CliRunner().invoke(cli, ["app", "--max-runs", "0"])
    assert refused.exit_code == 2 and "--max-runs must be at least 1" in refused.output and len(started) == 1
