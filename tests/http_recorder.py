"""A loopback HTTP server that records every request's path and headers, for the credential tests; it can
answer with a redirect (to anywhere) or with an empty DICOM JSON list."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MOVED = "/moved"


@dataclass
class Recorder:
    """The server's base ``url``, the ``requests`` it saw as (method, path, headers) and where it redirects
    (``redirect``: a URL prefix the request path is appended to; None: answer ``[]``). Paths under ``/moved``
    are always answered, so a redirect to ``<url>/moved`` is followed once."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    redirect: str | None = None

    def authorized(self) -> list[str]:
        """The paths of the requests that carried an Authorization or Cookie header."""
        return [path for _, path, headers in self.requests
                if any(k.lower() in ("authorization", "cookie", "proxy-authorization") for k in headers)]


@contextmanager
def recorder(redirect: str | None = None) -> Iterator[Recorder]:
    """A :class:`Recorder` serving on 127.0.0.1 and a free port until the ``with`` block ends."""
    state = Recorder(redirect=redirect)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.requests.append((self.command, self.path, dict(self.headers.items())))
            if state.redirect is not None and not self.path.startswith(MOVED):
                self.send_response(302)
                self.send_header("Location", state.redirect + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
