"""A programmable HTTP server on 127.0.0.1 for the download tests (importable as ``http_fixture``).

Routes are matched on the path (the query string is ignored except by the fake
Pixabay API). Every request is counted per path, so a test can assert that nothing
was fetched twice. Behaviours: a file, an error status, N failures then success, a 429
with ``Retry-After``, a slow response (for timeouts), a truncated body (a
``Content-Length`` larger than what is sent), and a fake Pixabay API.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[["Request"], "Reply"]


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    n: int  # 1 for the first request of this path


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    delay: float = 0.0  # seconds before the headers are sent
    declared_length: int | None = None  # a Content-Length other than len(body): a truncated body


class FixtureServer:
    """A threaded server with routes added by the test; use as a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.counts: Counter = Counter()
        self.log: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802 - the base class's naming
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                with server._lock:
                    server.counts[parts.path] += 1
                    n = server.counts[parts.path]
                    server.log.append((parts.path, query))
                route = server.routes.get(parts.path)
                reply = route(Request(parts.path, query, dict(self.headers), n)) if route else Reply(404, b"not found")
                try:
                    if reply.delay:
                        time.sleep(reply.delay)
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    length = reply.declared_length if reply.declared_length is not None else len(reply.body)
                    self.send_header("Content-Length", str(length))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if reply.declared_length is not None:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(reply.body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle
    def __enter__(self) -> "FixtureServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from imprint.ingest.download import close_shared_clients

        self._server.shutdown()
        self._server.server_close()
        # The fetcher's clients outlive a test (one per config per process): their keep-alive connections to
        # this server's handler threads must not serve a later server that happens to get the same port.
        close_shared_clients()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return self.counts[path]

    # -- routes
    def route(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)

    def file(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        return self.route(path, lambda r: Reply(200, data, content_type=content_type))

    def status(self, path: str, code: int, body: bytes = b"error", headers: dict[str, str] | None = None) -> str:
        return self.route(path, lambda r: Reply(code, body, dict(headers or {})))

    def flaky(self, path: str, data: bytes, failures: int, code: int = 500) -> str:
        """``failures`` responses with ``code``, then the file."""
        return self.route(path, lambda r: Reply(code, b"try again") if r.n <= failures else Reply(200, data))

    def retry_after(self, path: str, data: bytes, value: str, times: int = 1) -> str:
        """``times`` 429 responses with ``Retry-After: value``, then the file."""
        return self.route(path, lambda r: Reply(429, b"slow down", {"Retry-After": value})
                          if r.n <= times else Reply(200, data))

    def slow(self, path: str, data: bytes, delay: float) -> str:
        return self.route(path, lambda r: Reply(200, data, delay=delay))

    def truncated(self, path: str, data: bytes, missing: int = 1000) -> str:
        """Declares ``len(data) + missing`` bytes, sends ``data``, closes the connection."""
        return self.route(path, lambda r: Reply(200, data, declared_length=len(data) + missing))

    def pixabay(self, images: dict[int, bytes], key: str = "testkey", path: str = "/api/",
                limit_once: bool = True, total: int | None = None, remaining: int = 99) -> str:
        """A fake Pixabay API: hits for ``images`` (id -> JPEG bytes) served at ``/img/<id>.jpg``.

        ``totalHits`` is capped at 500 like the real API, and a page past it is a 400.
        The first request gets a 429 (``X-RateLimit-Reset: 1``) when ``limit_once``.
        ``total`` pretends there are more hits than images (their URLs 404).
        """
        ids = sorted(images)
        n_total = total if total is not None else len(ids)
        for i, data in images.items():
            self.file(f"/img/{i}.jpg", data, "image/jpeg")
        state = {"calls": 0}

        def handle(r: Request) -> Reply:
            state["calls"] += 1
            rate = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": "1"}
            if limit_once and state["calls"] == 1:
                return Reply(429, b"API rate limit exceeded", {**rate, "X-RateLimit-Remaining": "0"}, "text/plain")
            if r.query.get("key") != key:
                return Reply(400, b"[ERROR 400] Invalid or missing API key", rate, "text/plain")
            page, per_page = int(r.query.get("page", 1)), int(r.query.get("per_page", 20))
            capped = min(n_total, 500)
            start = (page - 1) * per_page
            if start >= capped:
                return Reply(400, b'[ERROR 400] "page" is out of valid range.', rate, "text/plain")
            hits = []
            for k in range(start, min(start + per_page, capped)):
                hid = ids[k] if k < len(ids) else 900000 + k
                hits.append({
                    "id": hid, "pageURL": f"https://pixabay.com/photos/thing-{hid}/", "type": "photo",
                    "tags": "dog, animal, pet", "previewURL": self.url(f"/img/{hid}.jpg"),
                    "webformatURL": self.url(f"/img/{hid}.jpg"), "largeImageURL": self.url(f"/img/{hid}.jpg"),
                    "imageWidth": 160, "imageHeight": 120, "imageSize": 1000, "views": 1, "downloads": 1,
                    "likes": 0, "comments": 0, "user_id": 7, "user": "someone",
                    "userImageURL": self.url("/user.jpg")})
            body = json.dumps({"total": n_total, "totalHits": capped, "hits": hits}).encode()
            return Reply(200, body, rate, "application/json")

        return self.route(path, handle)
