"""A minimal OpenID Connect provider on loopback for the sign-in test: discovery document, authorize (signs in
the one configured user at once and redirects back with a code), token (an RS256 id_token), jwks."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class Provider:
    """The provider's ``issuer`` URL, client, user and the codes it handed out (code -> (nonce, redirect))."""

    issuer: str = ""
    client_id: str = "sparsect"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    email: str = "ana@hospital.example"
    codes: dict[str, str] = field(default_factory=dict)
    tokens_issued: int = 0


def _id_token(provider: Provider, key, nonce: str) -> str:
    from joserfc import jwt  # Authlib's JOSE library

    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "user-1", "aud": provider.client_id, "iat": now, "exp": now + 600,
              "nonce": nonce, "email": provider.email, "email_verified": True, "name": "Ana"}
    return jwt.encode({"alg": "RS256", "kid": "test"}, claims, key)


def _handler(provider: Provider, key) -> type[BaseHTTPRequestHandler]:
    """The request handler of ``provider``, signing with ``key``."""

    class Handler(BaseHTTPRequestHandler):
        def _json(self, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                base = provider.issuer
                self._json({"issuer": base, "authorization_endpoint": f"{base}/authorize",
                            "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
                            "response_types_supported": ["code"], "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "scopes_supported": ["openid", "email", "profile"]})
            elif url.path == "/jwks":
                self._json({"keys": [key.as_dict(private=False)]})
            elif url.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                code = secrets.token_urlsafe(12)
                provider.codes[code] = query.get("nonce", "")
                self.send_response(302)
                self.send_header("Location", f"{query['redirect_uri']}?"
                                             + urlencode({"code": code, "state": query.get("state", "")}))
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(404)

        def do_POST(self) -> None:  # noqa: N802
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            nonce = provider.codes.pop(form.get("code", ""), None)
            if urlsplit(self.path).path != "/token" or nonce is None:
                self.send_error(400)
                return
            provider.tokens_issued += 1
            self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 600,
                        "id_token": _id_token(provider, key, nonce)})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            pass

    return Handler


@contextmanager
def oidc_provider() -> Iterator[Provider]:
    """A :class:`Provider` serving on 127.0.0.1 and a free port until the ``with`` block ends."""
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "test", "alg": "RS256", "use": "sig"})
    provider = Provider()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider, key))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
