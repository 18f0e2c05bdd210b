"""Who may use the page: sign-in before any section runs (:func:`gate`).

Two ways, chosen by the operator on the server:

- OpenID Connect through Streamlit's own ``st.login``: an ``[auth]`` table (redirect_uri, cookie_secret,
  client_id, client_secret, server_metadata_url) in ``.streamlit/secrets.toml`` of the directory the page is
  started from, or ``~/.streamlit/secrets.toml``. The user is the identity provider's e-mail (else ``sub``).
- A shared password for small deployments: ``SPARSECT_PAGE_PASSWORD_HASH`` (``pbkdf2_sha256$...``, made by
  ``python -m sparsect.app.access``) or ``SPARSECT_PAGE_PASSWORD`` in the server's environment. The visitor
  also gives a name, recorded in the audit log. Comparisons use :func:`hmac.compare_digest`; the password is
  never logged or shown.

OpenID Connect wins when both are configured. Without either, :func:`gate` lets everyone in (fine on a
loopback address; ``sparsect app`` refuses other addresses when a PACS is configured).
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparsect.app import audit

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PASSWORD_VARIABLE, HASH_VARIABLE = "SPARSECT_PAGE_PASSWORD", "SPARSECT_PAGE_PASSWORD_HASH"
MIN_PASSWORD = 12
USER_KEY, NAME_KEY, PASSWORD_KEY = "signed_in_user", "signin_name", "signin_password"
_ITERATIONS = 600_000


def hash_password(password: str, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` of ``password``, for ``SPARSECT_PAGE_PASSWORD_HASH``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_password(given: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``given`` is the page password of ``environ`` (constant-time comparison); False when none is set
    or the stored hash is malformed."""
    env = os.environ if environ is None else environ
    stored = env.get(HASH_VARIABLE)
    if stored:
        try:
            scheme, iterations, salt, expected = stored.split("$")
            if scheme != "pbkdf2_sha256":
                return False
            computed = hash_password(given, bytes.fromhex(salt), int(iterations)).rsplit("$", 1)[1]
        except ValueError:
            return False
        return hmac.compare_digest(computed, expected)
    plain = env.get(PASSWORD_VARIABLE)
    if not plain:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(plain.encode()).digest())


def secrets_files() -> list[Path]:
    """Where Streamlit looks for ``secrets.toml`` (its option ``secrets.files``, relative to the current folder)."""
    from streamlit import config

    return [Path(p) for p in config.get_option("secrets.files")]


def oidc_configured(files: list[Path] | None = None) -> bool:
    """Whether a Streamlit secrets file has an ``[auth]`` table (OpenID Connect sign-in)."""
    for path in secrets_files() if files is None else files:
        try:
            if isinstance(tomllib.loads(path.read_text(encoding="utf-8")).get("auth"), dict):
                return True
        except (OSError, ValueError):
            continue
    return False


def method(environ: Mapping[str, str] | None = None, files: list[Path] | None = None) -> str | None:
    """The configured sign-in: ``"oidc"``, ``"password"`` or None."""
    env = os.environ if environ is None else environ
    if oidc_configured(files):
        return "oidc"
    return "password" if env.get(HASH_VARIABLE) or env.get(PASSWORD_VARIABLE) else None


def _page_method(st: Any) -> str | None:
    try:
        if "auth" in st.secrets:
            return "oidc"
    except (FileNotFoundError, KeyError):  # no secrets file
        pass
    return method(files=[])


def current_user(st: Any) -> str | None:
    """The signed-in user of this session (None without sign-in configured)."""
    mode = _page_method(st)
    if mode == "oidc":
        user = st.user
        return (user.get("email") or user.get("sub")) if user.is_logged_in else None
    return st.session_state.get(USER_KEY) if mode == "password" else None


def gate(st: Any) -> bool:
    """Sign-in before anything else on the page: True when the visitor may go on (signed in, or no sign-in
    configured); otherwise the sign-in form is shown and nothing else should be."""
    mode = _page_method(st)
    if mode is None:
        return True
    if mode == "oidc":
        return _oidc_gate(st)
    return _password_gate(st)


def _oidc_gate(st: Any) -> bool:
    if st.user.is_logged_in:
        if not st.session_state.get(USER_KEY):
            st.session_state[USER_KEY] = current_user(st)
            audit.record("signin.ok", st.session_state[USER_KEY], via="oidc")
        st.sidebar.button("Sign out", key="signout", icon=":material/logout:", on_click=_sign_out, args=(st,))
        return True
    st.title("sparsect")
    st.info("Sign in with your organisation's account to use this page.")
    st.button("Sign in", key="signin_oidc", icon=":material/login:", on_click=st.login)
    return False


def _password_gate(st: Any) -> bool:
    state = st.session_state
    if state.get(USER_KEY):
        st.sidebar.button("Sign out", key="signout", icon=":material/logout:", on_click=_sign_out, args=(st,))
        return True
    st.title("sparsect")
    with st.form("signin"):
        st.text_input("Your name (recorded in the audit log)", key=NAME_KEY, max_chars=64)
        st.text_input("Page password", type="password", key=PASSWORD_KEY)
        submitted = st.form_submit_button("Sign in", icon=":material/login:")
    if not submitted:
        return False
    name = " ".join(str(state.get(NAME_KEY) or "").split())
    if not check_password(str(state.get(PASSWORD_KEY) or "")):
        audit.record("signin.failed", name or None, level=logging.WARNING, via="password")
        st.error("Wrong password.")
        return False
    if not name:
        st.error("Give your name: it is recorded in the audit log of PACS access.")
        return False
    state[USER_KEY] = name
    audit.record("signin.ok", name, via="password")
    st.rerun()
    return True


def _sign_out(st: Any) -> None:
    audit.record("signout", st.session_state.get(USER_KEY))
    st.session_state.clear()  # nothing of the signed-in visitor (PACS results, slices) stays in the session
    if _page_method(st) == "oidc":
        st.logout()


def main() -> None:
    """``python -m sparsect.app.access``: ask for a password twice and print its hash for
    ``SPARSECT_PAGE_PASSWORD_HASH``."""
    first = getpass.getpass("Page password: ")
    if len(first) < MIN_PASSWORD:
        raise SystemExit(f"error: use at least {MIN_PASSWORD} characters")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("error: the two passwords differ")
    print(hash_password(first))


if __name__ == "__main__":
    main()
