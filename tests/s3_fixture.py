"""A local S3-compatible server for the tests: moto's server on 127.0.0.1, a free port, in this process.

The server is moto's own WSGI application (``moto.server``) behind a real HTTP server (werkzeug), wrapped by
a small middleware that records every request: method, object key, ``Range`` header and the bytes sent
back. So a test can tell a ranged read from a whole-object download by what the server saw.

Clients reach it the standard way: ``AWS_ENDPOINT_URL`` and dummy credentials in the environment (what a
user of MinIO or any S3-compatible store sets), so the code under test resolves ``s3://`` URIs exactly as
it would in production.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    method: str
    key: str  # "bucket/path/to/object"
    range: str | None  # the Range header, e.g. "bytes=100-199"
    sent: int  # body bytes sent back


@dataclass
class S3Server:
    """A running server: ``url`` to reach it, ``seen`` every request since :meth:`clear`."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _busy: int = 0  # requests being answered (a client may have its bytes before the server has finished)

    def bucket(self, prefix: str = "t") -> str:
        """Create a fresh bucket (3+ lower-case characters) and return its ``s3://`` URI."""
        import pyarrow.fs as pafs

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        pafs.S3FileSystem(endpoint_override=self.url, allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def requests(self, key_prefix: str, method: str | None = None) -> list[Seen]:
        """The requests for objects under ``key_prefix`` (``bucket/path``), optionally of one method, once
        every request in flight has been answered."""
        deadline = time.monotonic() + 10
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            return [s for s in self.seen if s.key.startswith(key_prefix) and (method is None or s.method == method)]

    def _start(self) -> None:
        with self._lock:
            self._busy += 1

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            self._busy -= 1


def _counting(body: Iterable[bytes], done: Any) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in body:
            sent += len(chunk)
            yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
        done(sent)


def start() -> tuple[S3Server, Any]:
    """Start the server on a free port of 127.0.0.1; returns it and a function that stops it."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    server: S3Server | None = None

    def recording(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        key = environ.get("PATH_INFO", "").lstrip("/")
        method, rng = environ["REQUEST_METHOD"], environ.get("HTTP_RANGE")
        assert server is not None
        server._start()
        try:
            body = app(environ, start_response)
        except BaseException:
            server._record(Seen(method, key, rng, 0))
            raise
        return _counting(body, lambda n: server._record(Seen(method, key, rng, n)))

    httpd = make_server("127.0.0.1", 0, recording, threaded=True, request_handler=Quiet)
    server = S3Server(f"http://127.0.0.1:{httpd.server_port}")
    thread = threading.Thread(target=httpd.serve_forever, name="s3-fixture", daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)

    return server, stop


def environment(server: S3Server) -> dict[str, str]:
    """The variables a client needs to reach ``server`` (set them; restore the old ones after)."""
    return {**ENV, "AWS_ENDPOINT_URL": server.url}


def set_env(values: dict[str, str]) -> dict[str, str | None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    return old


def restore_env(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
