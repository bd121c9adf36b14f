"""The fetcher shared by every downloaded source: fetch, retry, check, cache.

A downloaded source is *materialised* into local files first, then read by an ordinary
:class:`imprint.ingest.base.Source` reader through ``run_ingest``. This module fetches
for any list of URLs; :mod:`imprint.ingest.ledger` runs the items as resumable chunks
and keeps their statuses.

- :class:`Fetcher` fetches one URL to one file with bounded concurrency (threads,
  plus a per-host limit), retries transient failures (timeouts, connection errors,
  5xx, 429) with exponential backoff and full jitter, honours ``Retry-After``,
  streams to ``<dest>.part``, checks the size (a truncated body is an error) and the
  checksum when one is given, then renames atomically: a kill never leaves a
  half-written file under the final name. A file already in place is not fetched
  again (``cached``).
- Every item ends with an :class:`ItemStatus`: ``ok`` or ``cached``, or the reason it
  failed (``failed_download``, ``bad_checksum``, ``too_large``, and after the fetch the
  step's own: ``failed_decode``, ``failed_segment``, ``failed_render``, ``error``, …)
  with its error text, attempts and bytes.

Secrets in URLs (query parameters named ``key``, ``token``, ``api_key`` …) never reach
a log, a status or a file name: see :func:`redact_url`.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import random
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imprint import __version__
from imprint.errors import ImprintError
from imprint.io import sha256_file

OK_STATUSES = frozenset({"ok", "cached"})  # every other status is a failure, named by its reason
SECRET_PARAMS = frozenset({"key", "token", "api_key", "apikey", "access_token", "auth", "signature", "sig"})
REDACTED = "REDACTED"
DEFAULT_USER_AGENT = f"imprint/{__version__} (dataset builder; python-httpx)"
WRITE_BLOCK = 2**20  # bytes buffered before a write: fewer GIL hand-offs with many threads


class DownloadError(ImprintError, RuntimeError):
    """A download job could not run, or some of its tasks failed as a whole; the message says what to do."""


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DownloadConfig:
    """How to fetch: concurrency, politeness, patience and limits.

    ``concurrency`` threads per task share one connection pool; at most ``per_host``
    requests run against one host at a time. An attempt that times out, loses its
    connection, gets a 5xx or a 429 is retried up to ``retries`` times, waiting a
    random time in ``[0, min(backoff_cap, backoff_base * 2**attempt)]`` (full jitter)
    or what ``Retry-After`` asks, capped at ``retry_after_cap``. ``timeout`` bounds
    connecting and each read; ``attempt_timeout`` bounds a whole attempt (a server
    trickling bytes). A body over ``max_bytes`` is refused (``too_large``).
    """

    concurrency: int = 16
    per_host: int = 8
    timeout: float = 20.0
    attempt_timeout: float = 300.0
    retries: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 120.0
    user_agent: str = DEFAULT_USER_AGENT
    max_bytes: int = 64 * 2**20
    fsync: bool = False  # fsync each file before the rename (survives power loss, not only kills)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("download concurrency must be >= 1")
        if self.per_host < 1:
            raise ValueError("download per_host must be >= 1")
        if self.timeout <= 0 or self.attempt_timeout <= 0:
            raise ValueError("download timeout and attempt_timeout must be > 0 seconds")
        if self.retries < 0:
            raise ValueError("download retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.retry_after_cap < 0:
            raise ValueError("backoff_base, backoff_cap and retry_after_cap must be >= 0 seconds")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if not self.user_agent:
            raise ValueError("user_agent must not be empty (servers refuse anonymous crawlers)")


# --------------------------------------------------------------------------------------------- statuses


@dataclass(slots=True)
class ItemStatus:
    """How one item ended. ``url`` is always redacted; ``extra`` holds step-specific counts (JSON)."""

    item_id: str
    url: str
    status: str
    error: str | None = None
    attempts: int = 0
    bytes: int = 0
    path: str | None = None
    seconds: float = 0.0
    updated: float = 0.0  # wall-clock time the status was set: the latest wins when ledgers overlap
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["extra"] = json.dumps(self.extra, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ItemStatus":
        row = dict(row)
        row["extra"] = json.loads(row.get("extra") or "{}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})




def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters (key, token, api_key, …) and any password hidden."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() in SECRET_PARAMS for k, _ in query):
        query = [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(query, safe=","))
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def url_secrets(url: str) -> list[str]:
    """The secret values in ``url`` (to scrub them from error texts that quote the URL)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    found = [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() in SECRET_PARAMS and v]
    if parts.password:
        found.append(parts.password)
    return found


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (raw or percent-encoded) replaced."""
    for secret in url_secrets(url):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, REDACTED)
    return text


# --------------------------------------------------------------------------------------------- retries


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); None when absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))



@dataclass(slots=True)
class _Attempt:
    kind: str  # ok | retry | fail
    status: str = "ok"
    error: str | None = None
    nbytes: int = 0
    wait: float | None = None  # what the server asked (Retry-After), before the cap


# --------------------------------------------------------------------------------------------- fetcher


class Fetcher:
    """Fetches URLs to files: retries, per-host limits, atomic writes, size and checksum checks, a file cache.

    Thread-safe: :meth:`fetch` may be called from many threads; :meth:`fetch_many`
    runs ``cfg.concurrency`` of them. ``sleep``, ``clock`` and ``rng`` are injectable
    for tests.
    """

    def __init__(self, cfg: DownloadConfig | None = None, *, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        import httpx

        self.cfg = cfg or DownloadConfig()
        self._httpx = httpx
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(self.cfg.timeout),
            limits=httpx.Limits(max_connections=self.cfg.concurrency,
                                max_keepalive_connections=self.cfg.concurrency),
            follow_redirects=True, max_redirects=10,
            headers={"User-Agent": self.cfg.user_agent, "Accept-Encoding": "identity"})
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._hosts: dict[str, threading.Semaphore] = {}
        self._hosts_lock = threading.Lock()

    # -- lifecycle
    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public
    def fetch(self, url: str, dest: str | Path, sha256: str | None = None, item_id: str | None = None) -> ItemStatus:
        """Fetch ``url`` to ``dest`` (never partially: through ``dest.part`` and an atomic rename)."""
        t0 = time.perf_counter()
        dest = Path(dest)
        item_id = item_id if item_id is not None else dest.stem
        safe_url = redact_url(url)
        want = sha256.lower() if sha256 else None

        def status(name: str, error: str | None = None, attempts: int = 0, nbytes: int = 0) -> ItemStatus:
            return ItemStatus(item_id, safe_url, name, scrub(error, url) if error else None, attempts, nbytes,
                              str(dest), round(time.perf_counter() - t0, 4), self._clock())

        if dest.is_file():
            if want is None or sha256_file(dest) == want:
                return status("cached", nbytes=dest.stat().st_size)
            dest.unlink()  # a stale or corrupt copy: fetch it again
        dest.parent.mkdir(parents=True, exist_ok=True)
        attempts = 0
        while True:
            attempts += 1
            result = self._attempt(url, dest, want)
            if result.kind == "ok":
                return status("ok", attempts=attempts, nbytes=result.nbytes)
            if result.kind == "fail":
                return status(result.status, result.error, attempts, result.nbytes)
            if attempts > self.cfg.retries:
                return status(result.status, f"{result.error} (gave up after {attempts} attempts)", attempts)
            if result.wait is not None:
                delay = min(result.wait, self.cfg.retry_after_cap)
            else:
                with self._rng_lock:
                    delay = backoff_delay(attempts, self.cfg.backoff_base, self.cfg.backoff_cap, self._rng)
            self._sleep(delay)

    def fetch_many(self, jobs: Sequence[tuple[str, str, str | Path, str | None]],
                   on_done: Callable[[ItemStatus], None] | None = None) -> list[ItemStatus]:
        """Fetch ``(item_id, url, dest, sha256)`` jobs on ``cfg.concurrency`` threads; statuses in job order."""
        if not jobs:
            return []

        def one(job: tuple[str, str, str | Path, str | None]) -> ItemStatus:
            item_id, url, dest, sha = job
            try:
                st = self.fetch(url, dest, sha, item_id)
            except Exception:  # noqa: BLE001 - a bug or an unforeseen failure: this item's error, not the task's
                st = ItemStatus(item_id, redact_url(url), "error", scrub(traceback.format_exc(), url), 0, 0,
                                str(dest), 0.0, self._clock())
            if on_done is not None:
                on_done(st)
            return st

        workers = min(self.cfg.concurrency, len(jobs))
        if workers == 1:
            return [one(j) for j in jobs]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            return list(pool.map(one, jobs))

    # -- internals
    def _host_slot(self, url: str) -> threading.Semaphore:
        host = urllib.parse.urlsplit(url).netloc.lower()
        with self._hosts_lock:
            sem = self._hosts.get(host)
            if sem is None:
                sem = self._hosts[host] = threading.Semaphore(self.cfg.per_host)
            return sem

    def _attempt(self, url: str, dest: Path, want: str | None) -> _Attempt:
        httpx = self._httpx
        part = dest.with_name(dest.name + ".part")
        try:
            with self._host_slot(url):
                return self._stream(url, dest, part, want)
        except httpx.TimeoutException as exc:
            return _Attempt("retry", "failed_download", f"timeout: {type(exc).__name__}: {exc}")
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects,
                httpx.InvalidURL, httpx.DecodingError) as exc:
            return _Attempt("fail", "failed_download", f"{type(exc).__name__}: {exc}")
        except httpx.RemoteProtocolError as exc:  # most often the peer closed before the whole body came
            return _Attempt("retry", "failed_download", f"truncated body or protocol error: {exc}")
        except httpx.TransportError as exc:  # connection refused/reset, proxy errors
            return _Attempt("retry", "failed_download", f"{type(exc).__name__}: {exc}")
        except OSError as exc:  # our disk: full, read-only, permissions
            return _Attempt("fail", "error", f"cannot write {part}: {exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()

    def _stream(self, url: str, dest: Path, part: Path, want: str | None) -> _Attempt:
        cfg = self.cfg
        deadline = time.monotonic() + cfg.attempt_timeout
        with self._client.stream("GET", url) as r:
            code = r.status_code
            if code == 429 or code >= 500:
                wait = parse_retry_after(r.headers.get("retry-after"), self._clock())
                return _Attempt("retry", "failed_download", f"HTTP {code} {r.reason_phrase}".rstrip(), wait=wait)
            if not 200 <= code < 300:
                return _Attempt("fail", "failed_download", f"HTTP {code} {r.reason_phrase}".rstrip())
            declared = r.headers.get("content-length")
            expected = int(declared) if declared and declared.isdigit() else None
            if expected is not None and expected > cfg.max_bytes:
                return _Attempt("fail", "too_large", f"Content-Length {expected} > max_bytes {cfg.max_bytes}")
            h = hashlib.sha256() if want else None
            n = 0
            pending: list[bytes] = []  # bodies are written in blocks of WRITE_BLOCK: one write for most images
            pending_bytes = 0
            with open(part, "wb") as f:
                for chunk in r.iter_bytes():
                    n += len(chunk)
                    if n > cfg.max_bytes:
                        return _Attempt("fail", "too_large", f"body exceeds max_bytes {cfg.max_bytes}")
                    if time.monotonic() > deadline:
                        return _Attempt("retry", "failed_download",
                                        f"timeout: attempt exceeded attempt_timeout={cfg.attempt_timeout}s")
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if h is not None:
                        h.update(chunk)
                    if pending_bytes >= WRITE_BLOCK:
                        f.write(b"".join(pending))
                        pending.clear()
                        pending_bytes = 0
                f.write(b"".join(pending))
                if cfg.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            if expected is not None and not r.headers.get("content-encoding") and r.num_bytes_downloaded != expected:
                return _Attempt("retry", "failed_download",
                                f"truncated body: got {r.num_bytes_downloaded} of {expected} bytes")
            if h is not None and h.hexdigest() != want:
                return _Attempt("fail", "bad_checksum", f"sha256 {h.hexdigest()} != expected {want}", nbytes=n)
            os.replace(part, dest)
            return _Attempt("ok", nbytes=n)
