"""Segmentation, the Pixabay client and the URL lists, end to end through ``run_ingest`` (no real network)."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from http_fixture import FixtureServer
from PIL import Image

from imprint.executor import LocalExecutor
from imprint.ingest.config import IngestConfig
from imprint.hub import ModelUnavailable
from imprint.ingest.download import DownloadConfig
from imprint.ingest.ledger import load_status
from imprint.ingest.pixabay import LICENCE, PixabayClient, PixabayError, TokenBucket, cache_name, fetch_pixabay
from imprint.ingest.segment import (COCO_THINGS, SegmentConfig, Segmenter, SegmenterError, border_fraction,
                                    check_segmenter, filter_segments, largest_component_share, mask_filter_reason,
                                    save_tiny_mask2former, thing_ids)
from imprint.ingest.urls import UrlListError, fetch_urls, read_url_list, url_item_id
from imprint.ingest.job import run_ingest

KEY = "SECRETKEY0123456789"
PERMISSIVE_SEG = SegmentConfig(min_area_frac=0.0, max_area_frac=1.0, min_component_share=0.0, max_border_frac=1.0)
PERMISSIVE_INGEST = IngestConfig(min_frames_per_instance=1, min_area_frac=0.0, max_area_frac=1.0, min_box_side=1,
                                 max_border_sides=4)
FAST = DownloadConfig(timeout=2.0, retries=1, backoff_base=0.001, backoff_cap=0.002, retry_after_cap=0.01)


class FakeClock:
    """Wall time that only moves when the code sleeps (or the test says so); records the sleeps."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def synthetic(seed: int, w: int = 160, h: int = 120) -> tuple[bytes, bytes]:
    """A JPEG of an ellipse on a noisy background, and the ellipse's mask as a PNG."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    img = np.clip(img.astype(int) + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    centre = (int(rng.integers(50, 110)), int(rng.integers(40, 80)))
    cv2.ellipse(mask, centre, (int(rng.integers(15, 40)), int(rng.integers(15, 35))), 0, 0, 360, 255, -1)
    img[mask > 0] = rng.integers(0, 256, 3)
    jpg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(jpg, "JPEG", quality=90)
    Image.fromarray(mask).save(png, "PNG")
    return jpg.getvalue(), png.getvalue()


@pytest.fixture(scope="module")
def tiny_segmenter(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_mask2former(tmp_path_factory.mktemp("tiny-m2f"), seed=0))


def records(out: Path, source: str):
    import pyarrow as pa

    parts = sorted((out / "records" / source).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


def balanced(report: dict) -> bool:
    return report["seen"] == report["kept"] + sum(report["dropped"].values())


def all_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ segmentation


def test_filters_on_hand_made_masks():
    cfg = SegmentConfig(min_area_frac=0.01, max_area_frac=0.5, min_component_share=0.8, max_border_frac=0.25)
    blob = np.zeros((100, 100), bool)
    blob[30:60, 30:60] = True
    assert mask_filter_reason(blob, cfg) is None
    tiny = np.zeros((100, 100), bool)
    tiny[0:3, 50:53] = True
    assert mask_filter_reason(tiny, cfg) == "area_too_small"
    assert mask_filter_reason(np.ones((100, 100), bool), cfg) == "area_too_large"
    two = np.zeros((100, 100), bool)
    two[10:30, 10:30] = True
    two[60:80, 60:80] = True
    assert largest_component_share(two) == pytest.approx(0.5)
    assert mask_filter_reason(two, cfg) == "fragmented"
    floor = np.zeros((100, 100), bool)
    floor[70:, :] = True  # a band along the bottom: covers the bottom row and 30 px of each side
    assert border_fraction(floor) == pytest.approx((100 + 2 * 29) / 396)
    assert mask_filter_reason(floor, cfg) == "cut_by_border"
    touching = np.zeros((100, 100), bool)
    touching[60:100, 40:60] = True  # an object standing on the bottom edge: kept
    assert mask_filter_reason(touching, cfg) is None

    drops: Counter = Counter()
    cands = [(blob, "dog", 0.6, True), (touching, "person", 0.9, True), (blob, "sky", 0.99, False),
             (tiny, "cat", 0.9, True), (two, "car", 0.8, True)]
    kept = filter_segments(cands, SegmentConfig(max_objects=1, min_area_frac=0.01, max_area_frac=0.5), drops)
    assert [s.label for s in kept] == ["person"]  # best score first, the rest over max_objects
    assert drops == Counter(not_thing=1, area_too_small=1, fragmented=1, too_many_objects=1)


def test_thing_ids_and_config_validation():
    labels = {0: "person", 1: "Dog", 2: "sky-other-merged", 3: "wall"}
    assert thing_ids(labels) == {0, 1}
    assert thing_ids(labels, things=("wall",)) == {3}
    with pytest.raises(SegmenterError, match="not labels"):
        thing_ids(labels, things=("unicorn",))
    assert len(COCO_THINGS) == 80
    with pytest.raises(ValueError, match="min_area_frac"):
        SegmentConfig(min_area_frac=0.5, max_area_frac=0.1)


def test_tiny_segmenter_plumbing(tiny_segmenter: str):
    info = check_segmenter(tiny_segmenter)
    assert info["model_type"] == "mask2former" and info["things"] == ["car", "dog", "person"]
    seg = Segmenter.from_pretrained(tiny_segmenter, PERMISSIVE_SEG, device="cpu")
    assert seg.stuff == {3, 4}
    kept_total, stuff_total, drops = 0, 0, Counter()
    for seed in range(6):
        jpg, _ = synthetic(seed)
        image = Image.open(io.BytesIO(jpg))
        panoptic = seg.panoptic(image)
        kept = seg.segment(image, drops)
        kept_total += len(kept)
        for mask, label, score in kept:
            assert mask.shape == (120, 160) and mask.dtype == bool and mask.any()
            assert label in ("person", "dog", "car") and 0.0 <= score <= 1.0
        stuff_total += sum(1 for *_, thing in panoptic if not thing)
        assert len(kept) + sum(1 for *_, thing in panoptic if not thing) == len(panoptic)
    assert kept_total > 0 and drops["not_thing"] == stuff_total


def test_segmenter_errors_say_what_to_do(tmp_path: Path):
    with pytest.raises(ModelUnavailable, match="cannot load the segmenter"):
        check_segmenter(str(tmp_path / "nothing-here"))
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(SegmenterError, match="not a universal"):
        check_segmenter(str(tmp_path / "bert"))


# ------------------------------------------------------------------------------------------ pixabay client


def test_api_key_is_required(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PIXABAY_API_KEY", raising=False)
    with pytest.raises(PixabayError, match="PIXABAY_API_KEY"):
        PixabayClient()
    monkeypatch.setenv("PIXABAY_API_KEY", KEY)
    PixabayClient().close()


def test_paging_stops_at_the_500_hit_cap(tmp_path: Path):
    with FixtureServer() as srv:
        base = srv.pixabay({1: b"x"}, key=KEY, limit_once=False, total=1234)
        clock = FakeClock()
        with PixabayClient(KEY, base, tmp_path / "cache", clock=clock, sleep=clock.sleep) as client:
            hits = client.search("dogs", limit=10_000)
            assert len(hits) == 500 and len({h["id"] for h in hits}) == 500
            assert client.requests == 3
        pages = [(q["page"], q["per_page"]) for _, q in srv.log]
        assert pages == [("1", "200"), ("2", "200"), ("3", "200")]  # never page 4 (a 400)
        with PixabayClient(KEY, base, None, clock=clock, sleep=clock.sleep) as client:
            assert len(client.search("cats", limit=5)) == 5
        assert srv.log[-1][1]["per_page"] == "5" and len(srv.log) == 4


def test_rate_limit_429_is_honoured_and_cache_lasts_24h(tmp_path: Path):
    with FixtureServer() as srv:
        base = srv.pixabay({i: b"x" for i in range(1, 8)}, key=KEY, limit_once=True)
        clock = FakeClock()
        client = PixabayClient(KEY, base, tmp_path / "cache", clock=clock, sleep=clock.sleep)
        hits = client.search("dogs", limit=7)
        assert len(hits) == 7
        assert srv.count("/api/") == 2 and 1.0 in clock.sleeps  # 429, X-RateLimit-Reset: 1, then ok
        again = client.search("dogs", limit=7)
        assert again == hits and srv.count("/api/") == 2 and client.cache_hits == 1
        clock.t += 24 * 3600 - 1
        client.search("dogs", limit=7)
        assert srv.count("/api/") == 2
        clock.t += 2  # now older than 24 h
        client.search("dogs", limit=7)
        assert srv.count("/api/") == 3
        client.close()
    files = list((tmp_path / "cache").iterdir())
    assert [f.name for f in files] == [cache_name({"q": "dogs", "per_page": 7, "page": 1})]
    assert KEY not in all_text(tmp_path)


def test_token_bucket_spaces_requests():
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=3, per=1.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert sum(clock.sleeps) == pytest.approx(2 / 3)
    bucket.block_for(10.0)
    t = clock.t
    bucket.acquire()
    assert clock.t - t == pytest.approx(10.0 + 1 / 3)


# ------------------------------------------------------------------------------------------ end to end


def test_fetch_pixabay_then_ingest(tmp_path: Path, tiny_segmenter: str):
    images = {100 + i: synthetic(i)[0] for i in range(6)}
    images[106] = b"this is not a jpeg"
    out = tmp_path / "DATA"
    with FixtureServer() as srv:
        base = srv.pixabay(images, key=KEY, limit_once=True)
        clock = FakeClock()
        client = PixabayClient(KEY, base, out / "raw" / "pixabay" / "api-cache", clock=clock, sleep=clock.sleep)
        root = fetch_pixabay(out, "dogs", "animals", 50, tiny_segmenter, LocalExecutor(), base_url=base,
                             segment=PERMISSIVE_SEG, download=FAST, client=client, chunk=4)
        report = json.loads((root / "report.json").read_text())
        assert report["counts"] == {"failed_decode": 1, "ok": 6}
        assert report["api_requests"] == 2 and report["objects"] > 0
        image_requests = {p: n for p, n in srv.counts.items() if p.startswith("/img/")}
        assert set(image_requests.values()) == {1}

        # A rerun within 24 h: the API answer comes from the cache, no image is fetched again.
        root2 = fetch_pixabay(out, "dogs", "animals", 50, tiny_segmenter, LocalExecutor(), base_url=base,
                              segment=PERMISSIVE_SEG, download=FAST, client=client, chunk=4)
        assert root2 == root
        assert {p: n for p, n in srv.counts.items() if p.startswith("/img/")} == image_requests
        assert srv.count("/api/") == 2
        client.close()

    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{100 + i}.jpg" for i in range(6)]
    meta = [json.loads(line) for line in (root / "meta.jsonl").read_text().splitlines()]
    assert [m["id"] for m in meta] == list(range(100, 107))
    assert meta[0]["pageURL"].startswith("https://pixabay.com/") and meta[0]["tags"] == ["dog", "animal", "pet"]
    assert not any("URL" in k and k != "pageURL" for m in meta for k in m)  # no expiring URL kept
    objects = json.loads((root / "masks" / "100" / "objects.json").read_text())
    assert objects["segmenter"] == tiny_segmenter and objects["width"] == 160
    assert load_status(root / "status")["106"].status == "failed_decode"
    assert KEY not in all_text(out)

    ingest_report = run_ingest("pixabay", root, out, PERMISSIVE_INGEST, LocalExecutor())
    table = records(out, "pixabay")
    assert table.num_rows == ingest_report["kept"] == report["objects"] > 0
    assert balanced(ingest_report)
    assert set(table.column("source").to_pylist()) == {"pixabay"}
    assert set(table.column("category").to_pylist()) <= {"person", "dog", "car"}
    # the image that did not decode: counted once, from the ledger, under its status
    assert ingest_report["dropped"]["failed_decode"] == 1 and "no_files" not in ingest_report["dropped"]
    assert [f["item"] for f in ingest_report["failures"] if f["reason"] == "failed_decode"] == ["106"]
    rows = table.to_pylist()
    assert {r["licence"] for r in rows} == {LICENCE}
    assert rows[0]["attribution"] == f"someone on Pixabay, https://pixabay.com/photos/thing-{rows[0]['group_id']}/"
    rows = table.to_pylist()
    assert len({(r["group_id"], r["instance_id"]) for r in rows}) == len(rows)  # no duplicate


def _write_list(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa

    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        cols = ["url", "mask_url", "group_id"]
        path.write_text("\n".join([",".join(cols)] + [",".join(str(r.get(c) or "") for c in cols) for r in rows]))
    return path


def test_fetch_urls_with_masks_then_ingest_and_resume(tmp_path: Path):
    out = tmp_path / "DATA"
    with FixtureServer() as srv:
        rows = []
        for i in range(5):
            jpg, png = synthetic(10 + i)
            rows.append({"url": srv.file(f"/im/{i}.jpg", jpg), "mask_url": srv.file(f"/mk/{i}.png", png),
                         "group_id": "g1" if i < 3 else None})
        rows.append({"url": srv.url("/im/missing.jpg"), "mask_url": srv.url("/mk/missing.png")})
        rows.append({"url": rows[0]["url"], "mask_url": rows[0]["mask_url"]})  # a duplicate row
        rows.append({"url": None})
        lst = _write_list(tmp_path / "mine.csv", rows)
        root = fetch_urls(lst, out, None, LocalExecutor(), download=FAST, chunk=2)
        report = json.loads((root / "report.json").read_text())
        assert root == out / "raw" / "urls" / "mine"
        assert report["counts"] == {"failed_download": 1, "ok": 5}
        assert report["skipped_rows"] == {"duplicate_url": 1, "empty_url": 1}
        first = dict(srv.counts)

        ingest = run_ingest("urls", root, out, PERMISSIVE_INGEST, LocalExecutor())
        table = records(out, "urls")
        assert table.num_rows == ingest["kept"] == 5 and balanced(ingest)
        assert ingest["dropped"] == {"failed_download": 1}  # the missing row, from the ledger
        g1 = [r for r in table.to_pylist() if r["group_id"] == "g1"]
        assert [r["frame_index"] for r in g1] == [0, 1, 2] and {r["instance_id"] for r in g1} == {"1"}
        for r in table.to_pylist():  # the mask is the served ellipse
            assert r["width"] == 160 and 0.01 < r["area_frac"] < 0.5

        # The "kill": the ledger part of a task is gone, an image is half-written, its masks were mid-write.
        item = sorted(p.stem for p in (root / "images").iterdir())[0]
        for p in (root / "status").glob("part-*.parquet"):
            if item in pq.read_table(p).column("item_id").to_pylist():
                p.unlink()
        (root / "images" / f"{item}.jpg").rename(root / "images" / f"{item}.jpg.part")
        (root / "masks" / item).rename(root / "masks" / f"{item}.tmp-1-1")
        fetch_urls(lst, out, None, LocalExecutor(), download=FAST, chunk=2)
        path_of = {url_item_id(r["url"]): r["url"][len(srv.base):] for r in rows[:6]}
        refetched = {p: srv.counts[p] - first[p] for p in srv.counts if srv.counts[p] != first.get(p)}
        assert refetched[path_of[item]] == 1  # the broken image, once; its mask was in place
        # Nothing else but, if it shared the lost ledger part, the row that had failed (never recorded now).
        assert set(refetched) - {path_of[item]} <= {"/im/missing.jpg"}
        assert not list(root.rglob("*.part")) and not list((root / "masks").glob("*.tmp*"))
        assert (root / "masks" / item / "objects.json").is_file()

        # --retry-failed: only the missing row is asked again.
        before = dict(srv.counts)
        fetch_urls(lst, out, None, LocalExecutor(), download=FAST, chunk=2, retry_failed=True)
        changed = {p: srv.counts[p] - before.get(p, 0) for p in srv.counts if srv.counts[p] != before.get(p, 0)}
        assert changed == {"/im/missing.jpg": 1}  # 404: no retry; its mask is not asked for a missing image

    again = run_ingest("urls", root, out, PERMISSIVE_INGEST, LocalExecutor(), overwrite=True)
    assert again["kept"] == 5 and records(out, "urls").num_rows == 5


def test_fetch_urls_segmented_rows(tmp_path: Path, tiny_segmenter: str):
    out = tmp_path / "DATA"
    with FixtureServer() as srv:
        rows = [{"url": srv.file(f"/im/{i}.jpg", synthetic(i)[0])} for i in range(4)]
        rows.append({"url": srv.file("/im/text.jpg", b"<html>not an image</html>")})
        lst = _write_list(tmp_path / "seg.parquet", rows)
        with pytest.raises(SegmenterError, match="--segmenter"):
            fetch_urls(lst, out, None, LocalExecutor(), download=FAST)
        root = fetch_urls(lst, out, tiny_segmenter, LocalExecutor(), download=FAST, segment=PERMISSIVE_SEG)
    report = json.loads((root / "report.json").read_text())
    assert report["counts"] == {"failed_decode": 1, "ok": 4}
    bad = [f for f in report["failures"] if f["status"] == "failed_decode"]
    assert len(bad) == 1 and "image" in bad[0]["error"]
    assert not (root / "images" / f"{bad[0]['item']}.jpg").exists()  # removed, so --retry-failed refetches it
    ingest = run_ingest("urls", root, out, IngestConfig(min_area_frac=0.0, max_area_frac=1.0, min_box_side=1,
                                                        max_border_sides=4), LocalExecutor())
    assert ingest["kept"] == report["objects"] > 0 and balanced(ingest)  # min_frames_per_instance=1: the source's
    assert ingest["dropped"]["failed_decode"] == 1


def test_imprint_ingest_urls_carries_the_lists_licences(tmp_path: Path, capsys: pytest.CaptureFixture):
    from imprint.cli import main

    data = tmp_path / "DATA"
    with FixtureServer() as srv:
        rows = []
        for i in range(2):
            jpg, png = synthetic(3 + i)
            rows.append({"url": srv.file(f"/{i}.jpg", jpg), "mask_url": srv.file(f"/{i}.png", png),
                         "licence": "CC BY 4.0" if i == 0 else None, "attribution": "Jo, https://jo.example" if i == 0
                         else None})
        lst = tmp_path / "cli.parquet"
        pq.write_table(pa.Table.from_pylist(rows), lst)
        assert main(["ingest", "urls", "--list", str(lst), "--out", str(data), "--executor", "local",
                     "--set", "min_area_frac=0", "--set", "max_border_sides=4"]) == 0
    table = records(data, "urls").to_pylist()
    assert (data / "raw" / "urls" / "cli" / "masks").is_dir() and len(table) == 2
    by_url = {r["image_uri"].rsplit("/", 1)[1].split(".")[0]: r for r in table}
    first, second = by_url[url_item_id(rows[0]["url"])], by_url[url_item_id(rows[1]["url"])]
    assert (first["licence"], first["attribution"]) == ("CC BY 4.0", "Jo, https://jo.example")
    assert second["licence"].startswith("Your own URL list") and second["attribution"] == rows[1]["url"]
    capsys.readouterr()
    assert main(["ingest", "urls", "--list", str(tmp_path / "none.csv"), "--out", str(data)]) == 2
    err = capsys.readouterr().err  # refused before any executor (Ray) starts
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_url_list_errors(tmp_path: Path):
    (tmp_path / "a.csv").write_text("link\nhttp://x/1.jpg\n")
    with pytest.raises(UrlListError, match="no 'url' column"):
        read_url_list(tmp_path / "a.csv")
    (tmp_path / "a.txt").write_text("http://x/1.jpg\n")
    with pytest.raises(UrlListError, match=".parquet or .csv"):
        read_url_list(tmp_path / "a.txt")
    with pytest.raises(UrlListError, match="does not exist"):
        read_url_list(tmp_path / "none.csv")
    (tmp_path / "b.csv").write_text("url,group_id\nhttp://x/1.jpg,7\n")
    assert read_url_list(tmp_path / "b.csv")[0].group_id == "7"


@pytest.mark.ray
def test_fetch_urls_on_ray(tmp_path: Path, ray_local):
    from imprint.executor import RayExecutor

    out = tmp_path / "DATA"
    with FixtureServer() as srv:
        rows = []
        for i in range(4):
            jpg, png = synthetic(20 + i)
            rows.append({"url": srv.file(f"/im/{i}.jpg", jpg), "mask_url": srv.file(f"/mk/{i}.png", png)})
        lst = _write_list(tmp_path / "ray.csv", rows)
        root = fetch_urls(lst, out, None, RayExecutor(), download=FAST, chunk=1)
        assert set(srv.counts.values()) == {1}
    assert json.loads((root / "report.json").read_text())["counts"] == {"ok": 4}
    assert len(list((root / "status").glob("part-*.parquet"))) == 4


def test_served_masks_follow_their_photo_as_displayed(tmp_path: Path):
    """A photo tagged "rotate 90" (EXIF) is segmented and paired upright; a mask made from its stored pixels is
    turned with it, one of another aspect ratio is refused (never stretched)."""
    from imprint.ingest.images import read_mask
    from imprint.media import probe_image, read_image
    from imprint.stats import Drop

    stored = np.zeros((40, 64, 3), np.uint8)
    stored[5:20, 8:30] = 255
    photo = tmp_path / "p.jpg"
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(photo, quality=95, exif=exif)
    size = probe_image(str(photo))
    assert size == (40, 64) and read_image(str(photo)).shape == (64, 40, 3) == cv2.imread(str(photo)).shape
    Image.fromarray(stored[..., 0]).save(tmp_path / "m.png")
    mask = read_mask(str(tmp_path / "m.png"), size, image=str(photo))
    assert np.array_equal(mask, np.rot90(stored[..., 0] > 127, -1))
    Image.fromarray(stored[:, :40, 0]).save(tmp_path / "crop.png")
    with pytest.raises(Drop, match="aspect ratio"):
        read_mask(str(tmp_path / "crop.png"), size, image=str(photo))
