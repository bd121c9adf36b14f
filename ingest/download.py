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
  again (``cached``). Per item that is one ``stat`` (the cache), the ``.part`` opened
  (its folder made only when missing), one ``writev`` of the body's chunks for most
  files (no joined copy), ``close`` and the rename; ``fsync`` only with
  ``DownloadConfig.fsync`` (a kill loses nothing without it: only a power cut can).
- A process keeps one client per config (:func:`shared_client`): a job's chunks reuse its
  keep-alive connections, and its TLS context (:func:`ssl_context`, made once: loading the
  CA bundle is the slow part of making a client).
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
import stat
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

from imprint import __version__
from imprint.errors import ImprintError
from imprint.io import sha256_file

OK_STATUSES = frozenset({"ok", "cached"})  # every other status is a failure, named by its reason
SECRET_PARAMS = frozenset({"key", "token", "api_key", "apikey", "access_token", "auth", "signature", "sig"})
REDACTED = "REDACTED"
DEFAULT_USER_AGENT = f"imprint/{__version__} (dataset builder; python-httpx)"
WRITE_BLOCK = 2**20  # bytes buffered before a write: fewer GIL hand-offs with many threads
WRITE_BUFFERS = 256  # chunks buffered at most before a write (writev takes up to IOV_MAX = 1024)


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

    @staticmethod
    def extra_json(extra: dict[str, Any]) -> str:
        return json.dumps(extra, sort_keys=True) if extra else "{}"


STATUS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ItemStatus))  # the ledger's columns, in order


def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters (key, token, api_key, …) and any password hidden."""
    if "?" not in url and "@" not in url:  # no query, no user info: nothing to hide (the common case)
        return url
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
    if "?" not in url and "@" not in url:
        return []
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


# --------------------------------------------------------------------------------------------- client


_SSL_CONTEXTS: dict[tuple[str | None, str | None], "ssl.SSLContext"] = {}
_SSL_LOCK = threading.Lock()


def ssl_context() -> "ssl.SSLContext":
    """httpx's verifying TLS context (certifi's CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), made once
    per process and shared: loading the CA bundle costs 50-80 ms, which every chunk's client paid before."""
    import httpx

    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _SSL_LOCK:
        ctx = _SSL_CONTEXTS.get(key)
        if ctx is None:
            ctx = _SSL_CONTEXTS[key] = httpx.create_ssl_context()
        return ctx


def http_client(cfg: DownloadConfig, **kwargs: Any) -> Any:
    """The ``httpx.Client`` a :class:`Fetcher` uses: ``cfg``'s timeout, a keep-alive pool of
    ``cfg.concurrency`` connections, redirects followed, our User-Agent, no compression (sizes are
    checked on the bytes as sent), the shared TLS context. ``kwargs`` go to the client (``event_hooks``)."""
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(cfg.timeout),
        limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
        follow_redirects=True, max_redirects=10, verify=ssl_context(),
        headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "identity"}, **kwargs)


_CLIENTS: dict[tuple[int, tuple[str | None, str | None], DownloadConfig], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_client(cfg: DownloadConfig) -> Any:
    """This process's client for ``cfg`` (:func:`http_client`), kept open between a job's chunks: the next
    chunk reuses its keep-alive connections instead of opening (and TLS-handshaking) new ones. Keyed by the
    process id too, so a forked child never shares its parent's sockets."""
    key = (os.getpid(), (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")), cfg)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None or client.is_closed:
            client = _CLIENTS[key] = http_client(cfg)
        return client


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOL_PREFIX = "fetch"


def shared_pool(workers: int) -> ThreadPoolExecutor | None:
    """This process's thread pool of ``workers`` fetch threads, kept between a job's chunks like its client:
    starting 16 threads for every chunk cost ~50-100 us of CPU per item of a 128-item chunk (measured by
    ``imprint bench downloads``). Keyed by the process id (a forked child never uses its parent's threads).
    None when called from one of its own threads (a step that fetches from inside a fetch would wait on
    itself): the caller then makes a pool of its own."""
    if threading.current_thread().name.startswith(_POOL_PREFIX):
        return None
    key = (os.getpid(), workers)
    with _CLIENTS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_POOL_PREFIX)
        return pool


def close_shared_clients() -> None:
    """Close this process's shared clients and stop its shared fetch threads (at the end of a job; the next
    :func:`shared_client` / :func:`shared_pool` makes anew)."""
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
        pools = [pool for (pid, _), pool in _POOLS.items() if pid == os.getpid()]
        _POOLS.clear()
    for client in clients:
        client.close()
    for pool in pools:
        pool.shutdown(wait=True)


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
        self._client = client if client is not None else shared_client(self.cfg)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._hosts: dict[str, threading.Semaphore] = {}
        self._hosts_lock = threading.Lock()

    # -- lifecycle
    def close(self) -> None:
        """Nothing to release: a client passed in is its owner's to close; the shared one stays open for the
        next chunk (idle connections expire after httpx's keep-alive expiry, 5 s)."""

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

        try:
            found = os.stat(dest)
        except OSError:
            found = None
        if found is not None and stat.S_ISREG(found.st_mode):
            if want is None or sha256_file(dest) == want:
                return status("cached", nbytes=found.st_size)
            dest.unlink()  # a stale or corrupt copy: fetch it again
        attempts = 0  # dest's folder is made when the first .part cannot be opened in it
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
        pool = shared_pool(self.cfg.concurrency)
        if pool is not None:
            return list(pool.map(one, jobs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_POOL_PREFIX) as own:
            return list(own.map(one, jobs))

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
                result = self._stream(url, dest, part, want)
        except httpx.TimeoutException as exc:
            result = _Attempt("retry", "failed_download", f"timeout: {type(exc).__name__}: {exc}")
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects,
                httpx.InvalidURL, httpx.DecodingError) as exc:
            result = _Attempt("fail", "failed_download", f"{type(exc).__name__}: {exc}")
        except httpx.RemoteProtocolError as exc:  # most often the peer closed before the whole body came
            result = _Attempt("retry", "failed_download", f"truncated body or protocol error: {exc}")
        except httpx.TransportError as exc:  # connection refused/reset, proxy errors
            result = _Attempt("retry", "failed_download", f"{type(exc).__name__}: {exc}")
        except OSError as exc:  # our disk: full, read-only, permissions
            result = _Attempt("fail", "error", f"cannot write {part}: {exc}")
        except BaseException:
            _remove(part)
            raise
        if result.kind != "ok":  # after a success the .part is already renamed: nothing to remove
            _remove(part)
        return result

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
            pending: list[bytes] = []  # written in blocks of up to WRITE_BLOCK: one writev for most images
            pending_bytes = 0
            fd = _open_part(part)
            try:
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
                    if pending_bytes >= WRITE_BLOCK or len(pending) >= WRITE_BUFFERS:
                        _write_all(fd, pending)
                        pending.clear()
                        pending_bytes = 0
                _write_all(fd, pending)
                if cfg.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if expected is not None and not r.headers.get("content-encoding") and r.num_bytes_downloaded != expected:
                return _Attempt("retry", "failed_download",
                                f"truncated body: got {r.num_bytes_downloaded} of {expected} bytes")
            if h is not None and h.hexdigest() != want:
                return _Attempt("fail", "bad_checksum", f"sha256 {h.hexdigest()} != expected {want}", nbytes=n)
            os.replace(part, dest)
            return _Attempt("ok", nbytes=n)


def _open_part(part: Path) -> int:
    """Open (create or truncate) ``part`` for writing; its folder is made the first time it is missing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(part, flags, 0o666)
    except FileNotFoundError:
        part.parent.mkdir(parents=True, exist_ok=True)
        return os.open(part, flags, 0o666)


def _write_all(fd: int, blocks: list[bytes]) -> None:
    """Write ``blocks`` to ``fd`` in one ``writev`` (no joined copy), finishing a short write if there is one."""
    if not blocks:
        return
    if not hasattr(os, "writev"):  # pragma: no cover - not POSIX
        blocks = [b"".join(blocks)]
        done = 0
    else:
        done = os.writev(fd, blocks)
    rest = memoryview(b"".join(blocks))[done:] if done < sum(map(len, blocks)) else None
    while rest:
        rest = rest[os.write(fd, rest):]


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # never made, or its folder never could be
        os.unlink(path)
