"""The download layer: every failure mode ends as its status, retries, Retry-After, cache, ledger, resume."""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from http_fixture import FixtureServer, Reply

from imprint.executor import LocalExecutor
from imprint.ingest.download import (DownloadConfig, DownloadError, Fetcher, ItemStatus, backoff_delay, http_client,
                                     close_shared_clients, parse_retry_after, redact_url, scrub, shared_client,
                                     shared_pool, ssl_context)
from imprint.ingest.ledger import (load_status, load_status_parts, run_items, select_items, status_table,
                                   write_status_part)

DATA = bytes(range(256)) * 40  # 10 KiB


@dataclass(frozen=True)
class DownloadItem:
    """One file to fetch: ``url`` to ``dest``, checked against ``sha256`` when given."""

    item_id: str
    url: str
    dest: str
    sha256: str | None = None


@dataclass(frozen=True)
class FetchJob:
    """The plainest ledger step: fetch each item with one :class:`Fetcher`."""

    cfg: DownloadConfig = DownloadConfig()

    def __call__(self, items: Sequence[DownloadItem]) -> list[ItemStatus]:
        with Fetcher(self.cfg) as fetcher:
            return fetcher.fetch_many([(it.item_id, it.url, it.dest, it.sha256) for it in items])


def fast_cfg(**kw) -> DownloadConfig:
    base = dict(timeout=0.3, retries=2, backoff_base=0.001, backoff_cap=0.002, retry_after_cap=5.0)
    return DownloadConfig(**{**base, **kw})


def no_parts(root: Path) -> bool:
    return not list(root.rglob("*.part"))


# ------------------------------------------------------------------------------------------ units


def test_redact_url_hides_secrets_only():
    url = "https://h.example/api/?key=SECRET1&q=red+car&Token=SECRET2&api_key=SECRET3&page=2"
    red = redact_url(url)
    assert "SECRET" not in red
    assert "q=red+car" in red and "page=2" in red and red.count("REDACTED") == 3
    assert redact_url("https://user:pw@h.example/x.jpg") == "https://user:REDACTED@h.example/x.jpg"
    assert redact_url("https://h.example/a.jpg?w=3") == "https://h.example/a.jpg?w=3"
    assert scrub("GET https://h.example/api/?key=SECRET1 failed", url) == "GET https://h.example/api/?key=REDACTED failed"


def test_parse_retry_after_seconds_and_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(7.0, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now=now) == 0.0


def test_backoff_is_full_jitter_and_capped():
    rng = random.Random(0)
    for attempt in range(1, 10):
        for _ in range(50):
            d = backoff_delay(attempt, 0.5, 4.0, rng)
            assert 0.0 <= d <= min(4.0, 0.5 * 2 ** (attempt - 1))


def test_config_is_validated():
    with pytest.raises(ValueError, match="concurrency"):
        DownloadConfig(concurrency=0)
    with pytest.raises(ValueError, match="retries"):
        DownloadConfig(retries=-1)
    with pytest.raises(ValueError, match="user_agent"):
        DownloadConfig(user_agent="")


def test_select_items_semantics():
    items = [DownloadItem(i, f"http://x/{i}", f"/tmp/{i}") for i in "abcde"]
    ledger = {"a": ItemStatus("a", "", "ok"), "b": ItemStatus("b", "", "cached"),
              "c": ItemStatus("c", "", "failed_download"), "d": ItemStatus("d", "", "bad_checksum")}
    assert [i.item_id for i in select_items(items, ledger, retry_failed=False)] == ["e"]
    assert [i.item_id for i in select_items(items, ledger, retry_failed=True)] == ["c", "d", "e"]


# ------------------------------------------------------------------------------------------ fetcher


def test_each_failure_mode_ends_as_its_status(tmp_path: Path):
    sleeps: list[float] = []
    digest = hashlib.sha256(DATA).hexdigest()
    with FixtureServer() as srv:
        u = {
            "ok": srv.file("/ok", DATA),
            "missing": srv.status("/missing", 404),
            "forbidden": srv.status("/forbidden", 403),
            "flaky": srv.flaky("/flaky", DATA, failures=2),
            "down": srv.status("/down", 503),
            "retry_after": srv.retry_after("/ra", DATA, "1"),
            "slow": srv.slow("/slow", DATA, delay=1.0),
            "truncated": srv.truncated("/trunc", DATA),
            "checksum": srv.file("/sum", DATA + b"tampered"),
            "big": srv.file("/big", DATA * 10),
        }
        cfg = fast_cfg(max_bytes=len(DATA) * 5)
        with Fetcher(cfg, sleep=sleeps.append, rng=random.Random(0)) as f:
            st = {k: f.fetch(url, tmp_path / k, sha256=digest if k == "checksum" else None, item_id=k)
                  for k, url in u.items()}
            st["ftp"] = f.fetch("ftp://127.0.0.1/x.jpg", tmp_path / "ftp")
        counts = dict(srv.counts)

    assert st["ok"].status == "ok" and st["ok"].bytes == len(DATA) and (tmp_path / "ok").read_bytes() == DATA
    assert (st["missing"].status, st["missing"].attempts, counts["/missing"]) == ("failed_download", 1, 1)
    assert "404" in st["missing"].error
    assert (st["forbidden"].status, counts["/forbidden"]) == ("failed_download", 1)  # 4xx: no retry
    assert (st["flaky"].status, st["flaky"].attempts, counts["/flaky"]) == ("ok", 3, 3)
    assert (st["down"].status, st["down"].attempts, counts["/down"]) == ("failed_download", 3, 3)
    assert "503" in st["down"].error and "gave up after 3 attempts" in st["down"].error
    assert (st["retry_after"].status, counts["/ra"]) == ("ok", 2)
    assert 1.0 in sleeps  # the Retry-After value, not a backoff draw
    assert st["slow"].status == "failed_download" and "timeout" in st["slow"].error
    assert st["slow"].attempts == 3
    assert st["truncated"].status == "failed_download" and "truncated" in st["truncated"].error
    assert st["checksum"].status == "bad_checksum" and digest in st["checksum"].error
    assert counts["/sum"] == 1  # a wrong body is not retried
    assert st["big"].status == "too_large"
    assert st["ftp"].status == "failed_download" and st["ftp"].attempts == 1
    for name in ("missing", "forbidden", "down", "slow", "truncated", "checksum", "big", "ftp"):
        assert not (tmp_path / name).exists(), f"a failed {name} left a file under the final name"
    assert no_parts(tmp_path)


def test_retry_after_is_capped_and_dates_are_honoured(tmp_path: Path):
    sleeps: list[float] = []
    with FixtureServer() as srv:
        long = srv.retry_after("/long", DATA, "3600")
        date = srv.retry_after("/date", DATA, email.utils.formatdate(time.time() + 2, usegmt=True))
        with Fetcher(fast_cfg(retry_after_cap=0.5), sleep=sleeps.append) as f:
            assert f.fetch(long, tmp_path / "a").status == "ok"
            assert f.fetch(date, tmp_path / "b").status == "ok"
    assert sleeps[0] == 0.5
    assert 0.0 <= sleeps[1] <= 0.5


def test_cache_and_checksum_cache(tmp_path: Path):
    digest = hashlib.sha256(DATA).hexdigest()
    with FixtureServer() as srv:
        url = srv.file("/f", DATA)
        with Fetcher(fast_cfg()) as f:
            assert f.fetch(url, tmp_path / "f", digest).status == "ok"
            again = f.fetch(url, tmp_path / "f", digest)
            assert again.status == "cached" and again.bytes == len(DATA)
            (tmp_path / "f").write_bytes(b"corrupted copy")
            assert f.fetch(url, tmp_path / "f", digest).status == "ok"  # a wrong cached copy is refetched
            assert f.fetch(url, tmp_path / "f").status == "cached"
        assert srv.count("/f") == 2


def test_per_host_limit_bounds_concurrency(tmp_path: Path):
    active, peak, lock = [0], [0], threading.Lock()

    def handler(_req):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return Reply(200, DATA)

    with FixtureServer() as srv:
        for i in range(12):
            srv.route(f"/f{i}", handler)
        with Fetcher(fast_cfg(concurrency=8, per_host=2, timeout=5)) as f:
            sts = f.fetch_many([(str(i), srv.url(f"/f{i}"), tmp_path / f"{i}", None) for i in range(12)])
    assert [s.status for s in sts] == ["ok"] * 12
    assert peak[0] == 2


def test_chunks_share_one_thread_pool_and_a_nested_fetch_gets_its_own(tmp_path: Path):
    """A job's chunks reuse the process's fetch threads (not 16 new ones a chunk); a fetch made from one of
    those threads gets a pool of its own (the shared one could be all busy waiting on it); closing the shared
    clients stops the threads."""
    nested: list[list[str]] = []
    cfg = fast_cfg(concurrency=4, per_host=4, timeout=5)
    try:
        with FixtureServer() as srv:
            for chunk in range(2):
                for i in range(8):
                    srv.route(f"/c{chunk}/{i}", lambda _req: Reply(200, DATA))

            def fetch_chunk(chunk: int) -> set[int]:
                threads: set[int] = set()

                def on_done(_st: ItemStatus) -> None:
                    threads.add(threading.get_ident())

                with Fetcher(cfg) as f:
                    sts = f.fetch_many([(f"{chunk}-{i}", srv.url(f"/c{chunk}/{i}"), tmp_path / f"{chunk}-{i}", None)
                                        for i in range(8)], on_done)
                assert [s.status for s in sts] == ["ok"] * 8
                return threads

            first, second = fetch_chunk(0), fetch_chunk(1)
            pool = shared_pool(4)
            assert pool is not None and shared_pool(4) is pool
            assert second <= first | {t.ident for t in pool._threads}  # the same threads served both chunks
            assert len(first | second) <= 4

            srv.route("/inner", lambda _req: Reply(200, DATA))

            def from_a_fetch_thread() -> list[str]:
                assert shared_pool(4) is None  # inside a shared fetch thread: no shared pool
                with Fetcher(cfg) as f:
                    return [s.status for s in f.fetch_many([("in-a", srv.url("/inner"), tmp_path / "in-a", None),
                                                            ("in-b", srv.url("/inner"), tmp_path / "in-b", None)])]

            nested.append(pool.submit(from_a_fetch_thread).result(timeout=30))
    finally:
        close_shared_clients()
    assert nested == [["ok", "ok"]]
    assert all(not t.is_alive() for t in pool._threads)  # stopped with the shared clients
    assert shared_pool(4) is not pool  # the next job makes anew


def test_secret_never_reaches_a_status(tmp_path: Path):
    with FixtureServer() as srv:
        url = srv.status("/x", 404) + "?key=SECRETKEY&q=1"
        with Fetcher(fast_cfg()) as f:
            st = f.fetch(url, tmp_path / "x")
    assert "SECRETKEY" not in repr(st) and "key=REDACTED" in st.url


def test_clients_share_one_verifying_tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    ctx = ssl_context()
    assert ssl_context() is ctx  # made once per process, not once per chunk's client
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())  # the environment's CA bundle is honoured, as httpx does
    other = ssl_context()
    assert other is not ctx and other.verify_mode == ssl.CERT_REQUIRED
    with FixtureServer() as srv:
        url = srv.file("/f", DATA)
        with http_client(DownloadConfig()) as client:
            r = client.get(url)
        assert r.content == DATA and r.request.headers["user-agent"].startswith("imprint/")


def test_chunks_share_one_client_per_config(tmp_path: Path):
    cfg = fast_cfg()
    with FixtureServer() as srv:
        url = srv.file("/f", DATA)
        with Fetcher(cfg) as a:
            assert a.fetch(url, tmp_path / "a").status == "ok"
        with Fetcher(cfg) as b:  # the next chunk: the same client, still open, its connections kept
            assert b._client is a._client and not b._client.is_closed
            assert b.fetch(url, tmp_path / "b").status == "ok"
        assert shared_client(cfg) is a._client and shared_client(fast_cfg(retries=3)) is not a._client
        a._client.close()
        with Fetcher(cfg) as c:  # a closed one is replaced
            assert c._client is not a._client and c.fetch(url, tmp_path / "c").status == "ok"
    assert (tmp_path / "c").read_bytes() == DATA


def test_fetch_makes_missing_folders_and_an_unwritable_one_is_an_error(tmp_path: Path):
    with FixtureServer() as srv:
        url = srv.file("/f", DATA)
        with Fetcher(fast_cfg()) as f:
            deep = f.fetch(url, tmp_path / "a" / "b" / "c" / "f.bin")
            (tmp_path / "blocked").write_bytes(b"a file where a folder should be")
            blocked = f.fetch(url, tmp_path / "blocked" / "f.bin")
    assert deep.status == "ok" and (tmp_path / "a" / "b" / "c" / "f.bin").read_bytes() == DATA
    assert blocked.status == "error" and "cannot write" in blocked.error and blocked.attempts == 1
    assert no_parts(tmp_path)


def test_a_short_write_is_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real = os.writev
    calls: list[int] = []

    def short_writev(fd: int, blocks: Sequence[bytes]) -> int:  # the kernel may write less than asked
        calls.append(len(blocks))
        return real(fd, [bytes(blocks[0][:100])])

    monkeypatch.setattr(os, "writev", short_writev)
    body = DATA * 30  # 300 KiB: several chunks
    with FixtureServer() as srv:
        url = srv.file("/big", body)
        with Fetcher(fast_cfg()) as f:
            st = f.fetch(url, tmp_path / "big", sha256=hashlib.sha256(body).hexdigest())
    assert calls and st.status == "ok" and st.bytes == len(body)
    assert (tmp_path / "big").read_bytes() == body


# ------------------------------------------------------------------------------------------ jobs + ledger


def _items(srv: FixtureServer, root: Path, names: list[str]) -> list[DownloadItem]:
    return [DownloadItem(n, srv.url(f"/{n}"), str(root / "files" / n)) for n in names]


def test_rerun_fetches_nothing_done_and_retry_failed_refetches_only_failures(tmp_path: Path):
    good = [f"g{i}" for i in range(6)]
    with FixtureServer() as srv:
        for n in good:
            srv.file(f"/{n}", DATA)
        srv.status("/gone", 404)
        srv.flaky("/flaky", DATA, failures=2)  # fails twice (= 1 + retries) in the first run
        items = _items(srv, tmp_path, [*good, "gone", "flaky"])
        job = FetchJob(fast_cfg(retries=1))

        r1 = run_items(items, tmp_path, job, LocalExecutor(), chunk=3)
        assert r1["counts"] == {"failed_download": 2, "ok": 6}
        assert sorted(p.name for p in (tmp_path / "status").glob("part-*")) == \
            ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
        assert sorted(p.name for p in (tmp_path / "status" / "_parts").iterdir()) == \
            ["part-00000.json", "part-00001.json", "part-00002.json"]  # the markers, written last
        first = dict(srv.counts)

        r2 = run_items(items, tmp_path, job, LocalExecutor(), chunk=3)
        assert dict(srv.counts) == first  # not one request
        assert r2["attempted"] == 0 and r2["counts"] == r1["counts"]

        r3 = run_items(items, tmp_path, job, LocalExecutor(), chunk=3, retry_failed=True)
        assert r3["attempted"] == 2 and r3["this_run"] == {"failed_download": 1, "ok": 1}
        assert r3["counts"] == {"failed_download": 1, "ok": 7}
        assert srv.count("/gone") == 2 and srv.count("/flaky") == 3
        assert all(srv.count(f"/{n}") == 1 for n in good)
    ledger = load_status(tmp_path / "status")
    assert ledger["gone"].status == "failed_download" and ledger["flaky"].attempts == 1
    assert [f["item"] for f in r3["failures"]] == ["gone"]


def test_kill_midway_then_rerun_completes_without_duplicates(tmp_path: Path):
    names = [f"f{i:02d}" for i in range(9)]
    with FixtureServer() as srv:
        for n in names:
            srv.file(f"/{n}", n.encode() * 1000)
        items = _items(srv, tmp_path, names)
        job = FetchJob(fast_cfg())
        run_items(items, tmp_path, job, LocalExecutor(), chunk=3)
        # The "kill": task 1 died after fetching f03 but before f04 was complete and before its ledger part.
        (tmp_path / "status" / "part-00001.parquet").unlink()
        (tmp_path / "files" / "f04").unlink()
        (tmp_path / "files" / "f04.part").write_bytes(b"half a file")
        (tmp_path / "status" / "part-00002.parquet.tmp").write_bytes(b"half a ledger")
        report = run_items(items, tmp_path, job, LocalExecutor(), chunk=3)
        assert srv.count("/f04") == 2
        assert all(srv.count(f"/{n}") == 1 for n in names if n != "f04")
    assert report["counts"] == {"cached": 2, "ok": 7}  # f03, f05 were in place: cached, not fetched
    assert report["attempted"] == 3
    assert no_parts(tmp_path) and not list((tmp_path / "status").glob("*.tmp"))
    for n in names:
        assert (tmp_path / "files" / n).read_bytes() == n.encode() * 1000
    parts = load_status_parts(tmp_path / "status")
    ids = [s.item_id for sts in parts.values() for s in sts]
    assert sorted(ids) == names  # each item once


def test_ledger_keeps_items_of_an_earlier_list(tmp_path: Path):
    with FixtureServer() as srv:
        for n in "abcdef":
            srv.file(f"/{n}", DATA)
        job = FetchJob(fast_cfg())
        run_items(_items(srv, tmp_path, list("abcd")), tmp_path, job, LocalExecutor(), chunk=2)
        run_items(_items(srv, tmp_path, list("aef")), tmp_path, job, LocalExecutor(), chunk=2)
        assert srv.count("/a") == 1
    ledger = load_status(tmp_path / "status")
    assert sorted(ledger) == list("abcdef")
    assert all(s.ok for s in ledger.values())


def _explode_on_b(items):
    if any(it.item_id == "b" for it in items):
        raise RuntimeError("boom")
    return FetchJob(fast_cfg())(items)


def test_a_failed_task_is_reported_and_rerun(tmp_path: Path):
    with FixtureServer() as srv:
        for n in "abcd":
            srv.file(f"/{n}", DATA)
        items = _items(srv, tmp_path, list("abcd"))
        with pytest.raises(DownloadError, match="part-00000"):
            run_items(items, tmp_path, _explode_on_b, LocalExecutor(), chunk=2)
        report = json.loads((tmp_path / "report.json").read_text())
        assert [t["task"] for t in report["failed_tasks"]] == ["part-00000"]
        assert "boom" in report["failed_tasks"][0]["error"]
        assert report["not_attempted"] == 2
        again = run_items(items, tmp_path, FetchJob(fast_cfg()), LocalExecutor(), chunk=2)
    assert again["counts"] == {"ok": 4} and again["attempted"] == 2
    assert again["failed_tasks"] == []


def test_duplicate_item_ids_are_refused(tmp_path: Path):
    items = [DownloadItem("a", "http://x/1", "/tmp/a"), DownloadItem("a", "http://x/2", "/tmp/a2")]
    with pytest.raises(ValueError, match="unique"):
        run_items(items, tmp_path, FetchJob(), LocalExecutor())


def test_ledger_parts_round_trip_and_older_parts_read_with_defaults(tmp_path: Path):
    sts = [ItemStatus("b", "http://h/b", "ok", None, 1, 10, "/d/b", 0.5, 2.0, {"objects": 2, "dropped": {"small": 1}}),
           ItemStatus("a", "http://h/a", "failed_download", "HTTP 404", 1, 0, None, 0.1, 3.0)]
    write_status_part(tmp_path, 0, sts)
    assert load_status_parts(tmp_path) == {0: sorted(sts, key=lambda s: s.item_id)}
    assert pq.read_table(tmp_path / "part-00000.parquet").to_pylist()[1]["extra"] == \
        '{"dropped": {"small": 1}, "objects": 2}'
    # a part written before `updated` and `extra` existed: those read as their defaults
    pq.write_table(status_table(sts).drop_columns(["updated", "extra"]), tmp_path / "part-00001.parquet")
    old = load_status_parts(tmp_path)[1]
    assert [(s.item_id, s.status, s.updated, s.extra) for s in old] == [("a", "failed_download", 0.0, {}),
                                                                        ("b", "ok", 0.0, {})]
    pq.write_table(status_table(sts).drop_columns(["status"]), tmp_path / "part-00002.parquet")
    with pytest.raises(DownloadError, match="part-00002.parquet is unreadable"):
        load_status_parts(tmp_path)


def _fetch_in_child(items_json: str, root: str) -> None:
    """What the killed child runs: the job over ``items_json`` (id, url, dest) in chunks of 2."""
    items = [DownloadItem(*row) for row in json.loads(items_json)]
    run_items(items, Path(root), FetchJob(fast_cfg(timeout=60.0)), LocalExecutor(), chunk=2)


def test_a_real_kill_mid_chunk_then_rerun_loses_nothing_and_fetches_nothing_twice(tmp_path: Path):
    import signal
    import subprocess
    import sys

    names = ["a-gone", *[f"f{i}" for i in range(1, 8)]]  # chunks: (a-gone, f1) (f2, f3) (f4, f5) (f6, f7)
    hung = threading.Event()
    with FixtureServer() as srv:
        srv.status("/a-gone", 404)
        for n in names[1:]:
            srv.file(f"/{n}", n.encode() * 5000)

        def hang(r: object) -> Reply:  # f5 hangs in the first run until the child is killed
            hung.set()
            return Reply(200, b"f5" * 5000, delay=30.0)

        srv.route("/f5", hang)
        items = _items(srv, tmp_path, names)
        rows = json.dumps([(it.item_id, it.url, it.dest) for it in items])
        code = ("import os, sys; sys.path[:0] = [sys.argv[3], os.path.dirname(sys.argv[3])]; "  # the test, fixtures
                "from test_download import _fetch_in_child; "
                "_fetch_in_child(sys.argv[1], sys.argv[2])")
        child = subprocess.Popen([sys.executable, "-c", code, rows, str(tmp_path), str(Path(__file__).parent)])
        try:
            assert hung.wait(60), "the child never reached f5"
            deadline = time.monotonic() + 30
            while not (tmp_path / "files" / "f4").exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # f4, in f5's chunk, lands before the kill
            child.send_signal(signal.SIGKILL)
        finally:
            assert child.wait(60) == -signal.SIGKILL
        assert (tmp_path / "files" / "f4").exists() and not (tmp_path / "files" / "f5").exists()
        assert not (tmp_path / "status" / "part-00002.parquet").exists()  # the killed chunk wrote no ledger part
        srv.file("/f5", b"f5" * 5000)
        report = run_items(items, tmp_path, FetchJob(fast_cfg()), LocalExecutor(), chunk=2)
        assert srv.count("/a-gone") == 1  # a failure is kept, not retried without --retry-failed
        assert all(srv.count(f"/{n}") == 1 for n in names[1:] if n != "f5")  # f4 was in place: cached
        assert srv.count("/f5") == 2
    assert report["counts"] == {"cached": 1, "failed_download": 1, "ok": 6}
    assert report["attempted"] == 4 and report["this_run"] == {"cached": 1, "ok": 3}
    assert report["failures"] == [{"item": "a-gone", "url": srv.url("/a-gone"), "status": "failed_download",
                                   "error": "HTTP 404 Not Found"}]
    assert no_parts(tmp_path) and not list((tmp_path / "status").rglob("*.tmp"))
    for n in names[1:]:
        assert (tmp_path / "files" / n).read_bytes() == n.encode() * 5000
    ids = [s.item_id for sts in load_status_parts(tmp_path / "status").values() for s in sts]
    assert sorted(ids) == names  # each item once in the ledger
