"""Pairs: the window rule, caps, augmentation round-trip, reproducibility, resume and bad input."""

import io
import json
import shutil
from collections import Counter

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imprint.augment.affine import AffineConfig, AffineParams, apply_affine
from imprint.augment.color import ColorParams, apply_color
from imprint.cli import main
from imprint.executor import LocalExecutor
from imprint.geometry import Window, crop_window, remove_background, resize_crop, resize_mask
from imprint.ingest.sources import get_source
from imprint.masks import decode_mask_png, mask_bbox
from imprint.pairing.config import PairsConfig
from imprint.pairing.job import PairsError, run_pairs
from imprint.pairing.plan import candidate_pairs
from imprint.quality.filters import NO_FILTERS, FiltersConfig
from imprint.shards.schema import SHARD_SCHEMA, SHARDS_SCHEMA_VERSION

# the pairing rules, without the quality filters (tests/test_quality_pairs.py tests those)
SMALL = dict(resolution=128, object_resolution=64, shard_rows=16, row_group_rows=4, filters=NO_FILTERS)


def build(data, out, stage, sources, executor=None, **cfg):
    cfg = PairsConfig(**{**SMALL, **cfg})
    return run_pairs(data / "records", out, stage, sources, cfg, executor or LocalExecutor())


def rows_of(out):
    return pq.read_table(sorted(out.glob("part-*.parquet"))).to_pylist()


def parts(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*.parquet"))}


def records(data, source):
    table = pq.read_table(sorted((data / "records" / source).glob("part-*.parquet"))).to_pylist()
    return {(r["group_id"], r["instance_id"], r["frame_index"]): r for r in table}


def test_candidate_pairs_follow_the_rules():
    cfg = PairsConfig(window=2, min_gap_s=2 / 30, max_gap_s=3 / 30)
    frames = [0, 1, 2, 3, 5]  # frame numbers
    s1 = candidate_pairs(frames, "multiview", 1, cfg)
    assert all(1 <= abs(frames[a] - frames[b]) <= 2 for a, b in s1)
    assert (0, 2) in s1 and (2, 0) in s1 and (0, 3) not in s1 and (3, 4) in s1 and (2, 4) not in s1
    s2 = candidate_pairs(frames, "video", 2, cfg, frame_rate=30.0)  # 2..3 frames at 30 fps
    assert all(2 <= abs(frames[a] - frames[b]) <= 3 for a, b in s2) and (0, 3) in s2 and (0, 1) not in s2
    # the gap is time: at 15 fps the same numbers are twice as far apart
    s2_slow = candidate_pairs(frames, "video", 2, cfg, frame_rate=15.0)
    assert all(abs(frames[a] - frames[b]) <= 1 for a, b in s2_slow) and (0, 1) in s2_slow
    # without a frame rate there is no time: any two different frames
    assert candidate_pairs(frames, "video", 2, cfg) == [(a, b) for a in range(5) for b in range(5) if a != b]
    assert candidate_pairs(frames, "image", 2, cfg) == [(i, i) for i in range(5)]


def test_stage1_pairs_respect_the_window_and_never_cross_instances(sample_data, tmp_path):
    out = tmp_path / "stage1"
    report = build(sample_data, out, 1, {"mvimgnet": 1000}, window=3)
    rows = rows_of(out)
    recs = records(sample_data, "mvimgnet")
    assert rows and report["kept"] == len(rows)
    by_instance = {}
    for r in rows:
        assert r["stage"] == 1 and 1 <= abs(r["src_frame"] - r["tgt_frame"]) <= 3
        assert (r["group_id"], r["instance_id"], r["src_frame"]) in recs
        assert (r["group_id"], r["instance_id"], r["tgt_frame"]) in recs
        assert r["aug"]["affine"] is None and r["aug"]["color"] is None
        by_instance.setdefault((r["group_id"], r["instance_id"]), set()).add((r["src_frame"], r["tgt_frame"]))
    # every allowed pair of an instance is there when the cap is high enough
    for (group, instance), got in by_instance.items():
        frames = sorted(f for g, i, f in recs if (g, i) == (group, instance))
        assert got == {(a, b) for a in frames for b in frames if 1 <= abs(a - b) <= 3}
    assert len({r["pair_id"] for r in rows}) == len(rows)


def test_stage1_views_have_their_background_removed(sample_data, tmp_path):
    out = tmp_path / "s1"
    build(sample_data, out, 1, {"mvimgnet": 2}, image_format="png", fill=[7, 8, 9])
    for r in rows_of(out):
        target = np.asarray(Image.open(io.BytesIO(r["target"]["bytes"])).convert("RGB"))
        mask = decode_mask_png(r["mask"]["bytes"])
        assert target.shape[:2] == mask.shape == (128, 128)
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # resampling blends the edge
        assert np.array_equal(target[~near], np.broadcast_to([7, 8, 9], target[~near].shape))
        assert list(mask_bbox(mask)) == r["bbox"]


def test_caps_limit_pairs_per_instance(sample_data, tmp_path):
    out = tmp_path / "capped"
    build(sample_data, out, 2, {"ytvos": 3, "vipseg": 3})
    counts = {}
    for r in rows_of(out):
        assert r["src_frame"] != r["tgt_frame"]
        key = (r["source"], r["group_id"], r["instance_id"])
        counts[key] = counts.get(key, 0) + 1
    assert counts and max(counts.values()) == 3


def test_stage2_augmentation_parameters_round_trip(sample_data, tmp_path):
    """The object stored in a row is exactly P(T(crop)) with the parameters recorded in that row."""
    out = tmp_path / "s2"
    build(sample_data, out, 2, {"ytvos": 2}, image_format="png", object_resolution=96)
    recs = records(sample_data, "ytvos")
    rows = rows_of(out)
    assert rows
    for r in rows[:6]:
        src = recs[(r["group_id"], r["instance_id"], r["src_frame"])]
        frame = np.asarray(Image.open(src["image_uri"]).convert("RGB"))
        mask = decode_mask_png(src["mask"])
        crop = r["aug"]["object_crop"]
        win = Window(crop["x0"], crop["y0"], crop["side"], crop["context"], crop["padded"])
        fill = tuple(r["aug"]["fill"])
        obj_mask = resize_mask(crop_window(mask, win, False), 96)
        obj = remove_background(resize_crop(crop_window(frame, win, fill), 96), obj_mask, fill)
        moved, moved_mask = apply_affine(obj, obj_mask, AffineParams.from_dict(r["aug"]["affine"]), fill=fill)
        expected = remove_background(apply_color(moved, ColorParams.from_dict(r["aug"]["color"])), moved_mask, fill)
        stored = np.asarray(Image.open(io.BytesIO(r["object"]["bytes"])).convert("RGB"))
        assert np.array_equal(stored, expected)


def test_reruns_are_byte_identical_and_resume_after_a_kill(sample_data, tmp_path):
    ref = tmp_path / "ref"
    build(sample_data, ref, 2, {"ytvos": 4, "ppr10k": 2})
    reference = parts(ref)
    assert len(reference) >= 2
    again = tmp_path / "again"
    build(sample_data, again, 2, {"ytvos": 4, "ppr10k": 2})
    assert parts(again) == reference
    assert json.loads((again / "manifest.json").read_text())["shards"] == \
        json.loads((ref / "manifest.json").read_text())["shards"]
    # what a kill leaves: a shard without marker, a half-written temporary, no manifest
    (again / "_parts" / "part-00000.json").unlink()
    (again / "part-00001.parquet").rename(again / "part-00001.parquet.tmp")
    (again / "_parts" / "part-00001.json").unlink()
    (again / "manifest.json").unlink()
    build(sample_data, again, 2, {"ytvos": 4, "ppr10k": 2})
    assert parts(again) == reference and not list(again.glob("*.tmp"))
    assert (again / "manifest.json").is_file()


def test_shards_have_the_schema_manifest_and_card(sample_data, tmp_path):
    out = tmp_path / "s2"
    build(sample_data, out, 2, {"ytvos": 2, "vipseg": 2})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == SHARDS_SCHEMA_VERSION == "shards/3" and manifest["stage"] == 2
    assert manifest["rows"] == sum(s["rows"] for s in manifest["shards"]) == len(rows_of(out))
    assert set(manifest["sources"]) == {"ytvos", "vipseg"}
    for shard in manifest["shards"]:
        f = pq.ParquetFile(out / shard["file"])
        assert f.schema_arrow.equals(SHARD_SCHEMA, check_metadata=True)
        assert f.metadata.num_rows == shard["rows"] and all(
            f.metadata.row_group(i).num_rows <= 4 for i in range(f.num_row_groups))
    card = (out / "README.md").read_text()
    assert "load_dataset" in card and "YouTube-VOS" in card and "| ytvos |" in card


def test_every_pair_carries_its_licence_and_the_card_sums_them(sample_data, tmp_path):
    out = tmp_path / "s2"
    build(sample_data, out, 2, {"ytvos": 2, "vipseg": 2})
    rows = rows_of(out)
    licences = {"ytvos": get_source("ytvos").licence, "vipseg": get_source("vipseg").licence}
    for r in rows:
        assert r["licence"] == licences[r["source"]] and r["attribution"] == get_source(r["source"]).attribution
    manifest = json.loads((out / "manifest.json").read_text())
    by_source = Counter(r["source"] for r in rows)
    assert manifest["licences"] == {licences[s]: n for s, n in by_source.items()}
    card = (out / "README.md").read_text()
    assert "## Licences" in card and all(f"| {lic} | {n} |" in card for lic, n in manifest["licences"].items())
    credits = (out / "ATTRIBUTION.md").read_text()
    for source, n in by_source.items():
        groups = len({r["group_id"] for r in rows if r["source"] == source})
        assert f"- {source} {groups} groups, {n} pairs: {get_source(source).attribution}" in credits


def test_records_of_another_schema_are_refused(sample_data, tmp_path):
    data = tmp_path / "records"
    shutil.copytree(sample_data / "records" / "ytvos", data / "ytvos")
    for part in (data / "ytvos").glob("part-*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.replace_schema_metadata({b"imprint.schema": b"records/1"}), part)
    with pytest.raises(PairsError, match="records/1.*ingest ytvos again"):
        run_pairs(data, tmp_path / "s2", 2, {"ytvos": 2}, PairsConfig(), LocalExecutor())


def test_datasets_decodes_the_image_columns(sample_data, tmp_path, monkeypatch):
    import datasets
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "s1"
    build(sample_data, out, 1, {"mvimgnet": 2})
    ds = datasets.load_dataset("parquet", data_files=str(out / "part-*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds[0]["object"], Image.Image) and ds[0]["target"].size == (128, 128)
    assert ds[0]["mask"].size == (128, 128) and ds.num_rows == len(rows_of(out))
    assert ds[0]["licence"] == get_source("mvimgnet").licence and isinstance(ds[0]["attribution"], str)


def test_bad_inputs_are_counted_drops(sample_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_data / "records", data / "records")
    recs = pq.read_table(sorted((data / "records" / "ytvos").glob("part-*.parquet"))).to_pylist()
    victim = recs[0]["image_uri"]
    moved = tmp_path / "moved.jpg"
    shutil.copy(victim, moved)
    try:
        Path = type(tmp_path)
        Path(victim).unlink()
        report = build(data, tmp_path / "out", 2, {"ytvos": 4})
    finally:
        shutil.copy(moved, victim)
    assert report["dropped"].get("unreadable_frame", 0) >= 1
    assert any(f["reason"] == "unreadable_frame" and victim in f["error"] for f in report["failures"])
    assert report["seen"] == report["kept"] + sum(report["dropped"].values()) and report["kept"] > 0
    # a degenerate affine draw (object pushed out of the crop) and a vanishing object are counted
    far = build(data, tmp_path / "far", 2, {"ytvos": 2}, affine=AffineConfig(translate=(0.9, 0.95), rotate=(0.0, 0.0)))
    assert far["dropped"].get("degenerate_affine", 0) == far["seen"] and far["kept"] == 0
    tiny = build(data, tmp_path / "tiny", 2, {"ytvos": 2}, min_target_area=0.9)
    assert tiny["dropped"].get("vanished_after_crop", 0) == tiny["seen"]


def test_cli_builds_each_stage_from_the_sources_that_feed_it(sample_data, tmp_path):
    out = tmp_path / "shards"
    assert main(["pairs", "--records", str(sample_data / "records"), "--out", str(out), "--executor", "local",
                 "--resolution", "64", "--set", "object_resolution=32", "--set", "pairs_per_instance=2"]) == 0
    s1 = json.loads((out / "stage1" / "manifest.json").read_text())
    s2 = json.loads((out / "stage2" / "manifest.json").read_text())
    assert set(s1["sources"]) == {"mvimgnet"}
    assert set(s2["sources"]) == {"ytvos", "vipseg", "ppr10k"}
    assert s1["config"]["resolution"] == 64 and s1["config"]["window"] == 7


def test_cli_with_the_sample_recipe(sample_data, tmp_path):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "configs" / "data" / "sample.yaml"
    out = tmp_path / "shards"
    assert main(["pairs", "--recipe", str(recipe), "--records", str(sample_data / "records"), "--out", str(out),
                 "--executor", "local", "--stage", "2"]) == 0
    manifest = json.loads((out / "stage2" / "manifest.json").read_text())
    assert manifest["config"]["source_weights"]["ppr10k"] == 0.5
    assert manifest["config"]["resolution"] == 128
    assert not (out / "stage1").exists()


def test_holdout_splits_by_group_and_never_shares_one(sample_data, tmp_path):
    out = tmp_path / "shards"
    assert main(["pairs", "--records", str(sample_data / "records"), "--out", str(out), "--executor", "local",
                 "--stage", "2", "--holdout", "0.4", "--resolution", "64", "--set", "object_resolution=32"]) == 0
    train_rows, held = rows_of(out / "stage2"), rows_of(out / "stage2-holdout")
    assert train_rows and held
    train_groups = {(r["source"], r["group_id"]) for r in train_rows}
    held_groups = {(r["source"], r["group_id"]) for r in held}
    assert not train_groups & held_groups
    every = tmp_path / "all"  # the quality filters (on by default) judge each pair alike in any split
    build(sample_data, every, 2, {"ytvos": 16, "vipseg": 16, "ppr10k": 16}, resolution=64, object_resolution=32,
          filters=FiltersConfig())
    assert {r["pair_id"] for r in rows_of(every)} == {r["pair_id"] for r in train_rows + held}
    assert json.loads((out / "stage2-holdout" / "manifest.json").read_text())["config"]["split"] == "holdout"


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_frames_decode_to_the_rgb_pixels_of_imread_and_bgr2rgb(tmp_path, monkeypatch, ext):
    import imprint.pairing.build as pb

    rng = np.random.default_rng(0)
    path = tmp_path / f"frame.{ext}"
    cv2.imwrite(str(path), cv2.GaussianBlur(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), (5, 5), 0))
    want = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(pb.read_rgb(str(path)), want)
    monkeypatch.setattr(pb, "_IMREAD_RGB", None)  # OpenCV < 4.11: decode BGR and convert
    assert np.array_equal(pb.read_rgb(str(path)), want)
    assert pb.read_rgb(str(tmp_path / "missing.jpg")) is None


def test_colour_inside_the_object_box_gives_the_pixels_of_the_whole_crop():
    import imprint.pairing.build as pb

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    mask = np.zeros((224, 224), bool)
    mask[40:150, 70:200] = rng.random((110, 130)) > 0.3
    cfg = PairsConfig(fill=(10, 200, 30))
    params = ColorParams(brightness=0.1, exposure=0.2, contrast=0.2, saturation=-0.3, hue=0.05, warmth=0.2,
                         tint=-0.1, gamma=1.2)
    whole = remove_background(apply_color(image, params, cfg.color), mask, cfg.fill)
    boxed = remove_background(pb._color_on_object(image, mask, params, cfg), mask, cfg.fill)
    assert np.array_equal(whole, boxed)
    assert not np.array_equal(whole, remove_background(image, mask, cfg.fill))  # the colour did act
