"""The synthetic sample: deterministic bytes, idempotent rewrites, official layouts, sane objects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from imprint.ingest.sample import SOURCES, generate, generate_ytvos


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_object(mask: np.ndarray, what: str) -> None:
    """Non-empty, 1%..35% of the frame, a box of at least 16 px a side, clear of the border."""
    assert mask.any(), f"{what}: empty mask"
    h, w = mask.shape
    assert 0.01 <= mask.mean() <= 0.35, f"{what}: covers {mask.mean():.3f} of the frame"
    ys, xs = np.nonzero(mask)
    assert xs.max() - xs.min() + 1 >= 16 and ys.max() - ys.min() + 1 >= 16, f"{what}: box too small"
    assert xs.min() > 0 and ys.min() > 0 and xs.max() < w - 1 and ys.max() < h - 1, f"{what}: touches the border"


def test_returns_one_root_per_source(sample_roots):
    assert list(sample_roots) == list(SOURCES)
    for name, path in sample_roots.items():
        assert path.name == name and path.is_dir()


def test_same_seed_gives_identical_bytes_and_rewrites_identically(sample_roots, tmp_path):
    again = generate(tmp_path, seed=0)
    for name in SOURCES:
        assert _tree(again[name]) == _tree(sample_roots[name]), name
    (again["ytvos"] / "train" / "stray.txt").write_text("left over")
    rewritten = generate(tmp_path, seed=0, sources=("ytvos",))
    assert _tree(rewritten["ytvos"]) == _tree(sample_roots["ytvos"])


def test_another_seed_gives_other_data(sample_roots, tmp_path):
    other = generate(tmp_path, seed=1)
    for name in SOURCES:
        assert _tree(other[name]) != _tree(sample_roots[name]), name


def test_ytvos_layout(sample_roots):
    split = sample_roots["ytvos"] / "train"
    videos = json.loads((split / "meta.json").read_text())["videos"]
    assert len(videos) == 3
    late = False
    for vid, entry in videos.items():
        assert re.fullmatch(r"[0-9a-f]{10}", vid)
        stems = sorted(p.stem for p in (split / "JPEGImages" / vid).glob("*.jpg"))
        assert stems == [f"{5 * i:05d}" for i in range(len(stems))]
        assert stems == sorted(p.stem for p in (split / "Annotations" / vid).glob("*.png"))
        assert 1 <= len(entry["objects"]) <= 2
        for stem in stems:
            with Image.open(split / "Annotations" / vid / f"{stem}.png") as im:
                assert im.mode == "P" and im.getpalette()[3:9] == [128, 0, 0, 0, 128, 0]
                labels = np.asarray(im)
            with Image.open(split / "JPEGImages" / vid / f"{stem}.jpg") as im:
                assert im.size == (256, 144) and im.mode == "RGB"
            assert set(np.unique(labels)) <= {0} | {int(k) for k in entry["objects"]}
            for obj_id, obj in entry["objects"].items():
                present = stem in obj["frames"]
                assert present == bool((labels == int(obj_id)).any()), (vid, obj_id, stem)
                if present:
                    _check_object(labels == int(obj_id), f"ytvos {vid}/{stem}/{obj_id}")
        late |= any(obj["frames"][0] != "00000" for obj in entry["objects"].values())
    assert late, "one video has an object that enters after the first frame"


def test_vipseg_layout(sample_roots):
    vip = sample_roots["vipseg"] / "VIPSeg_720P"
    cats = json.loads((vip / "panoVIPSeg_categories.json").read_text())
    assert [c["id"] for c in cats] == list(range(124))
    assert (cats[0]["name"], cats[0]["isthing"]) == ("wall", 0)
    assert (cats[2]["name"], cats[2]["isthing"]) == ("door", 1)
    assert (cats[60]["name"], cats[60]["isthing"]) == ("person", 1)
    train = (vip / "train.txt").read_text().split()
    val = (vip / "val.txt").read_text().split()
    assert len(train) == 2 and len(val) == 1 and not set(train) & set(val)
    assert sorted(train + val) == sorted(p.name for p in (vip / "images").iterdir())
    values: set[int] = set()
    for video in train + val:
        assert re.fullmatch(r"\d+_[A-Za-z0-9_-]{11}", video)
        stems = sorted(p.stem for p in (vip / "images" / video).glob("*.jpg"))
        assert stems == sorted(p.stem for p in (vip / "panomasks" / video).glob("*.png"))
        numbers = [int(s) for s in stems]
        assert all(len(s) == 8 for s in stems) and numbers[0] == 1
        assert len(set(np.diff(numbers))) > 1, "irregular frame stride"
        for stem in stems:
            with Image.open(vip / "panomasks" / video / f"{stem}.png") as im:
                assert im.mode == "I;16"
                pano = np.asarray(im).astype(np.int64)
            present = {int(v) for v in np.unique(pano)}
            values |= present
            assert 200 in present and 0 in present
            assert any(0 < v < 125 and not cats[v - 1]["isthing"] for v in present), "stuff"
            things = [v for v in present if v >= 300]
            assert 2 <= len(things) <= 4
            for v in things:
                assert cats[v // 100 - 1]["isthing"] == 1
                _check_object(pano == v, f"vipseg {video}/{stem}/{v}")
    assert any(v // 100 == 61 for v in values), "people"


def test_ppr10k_layout(sample_roots):
    root = sample_roots["ppr10k"]
    names = sorted(p.stem for p in (root / "target_a").glob("*.tif"))
    assert names == sorted(f"{g}_{i}" for g in range(3) for i in range(3))
    assert names == sorted(p.stem for p in (root / "source").glob("*.tif"))
    assert names == sorted(p.stem for p in (root / "masks").glob("*.png"))
    for name in names:
        source = cv2.imread(str(root / "source" / f"{name}.tif"), cv2.IMREAD_UNCHANGED)
        target = cv2.imread(str(root / "target_a" / f"{name}.tif"), cv2.IMREAD_UNCHANGED)
        assert source.dtype == np.uint16 and source.shape == (216, 144, 3)
        assert target.dtype == np.uint8 and target.shape == (216, 144, 3)
        with Image.open(root / "masks" / f"{name}.png") as im:
            assert im.mode == "L"
            mask = np.asarray(im)
        assert set(np.unique(mask)) == {0, 255}
        _check_object(mask > 0, f"ppr10k {name}")


def test_mvimgnet_layout(sample_roots):
    root = sample_roots["mvimgnet"]
    names = dict(line.split(",") for line in (root / "mvimgnet_category.txt").read_text().splitlines())
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(classes) == 2 and set(classes) <= set(names)
    for cls in classes:
        instances = sorted((root / cls).iterdir())
        assert len(instances) == 2
        for inst in instances:
            assert re.fullmatch(r"[0-9a-f]{8}", inst.name)
            stems = sorted(p.stem for p in (inst / "images").glob("*.jpg"))
            assert stems == [f"{i:03d}" for i in range(1, 13)]
            assert stems == sorted(p.stem for p in (inst / "masks").glob("*.png"))
            for stem in stems:
                with Image.open(inst / "masks" / f"{stem}.png") as im:
                    assert im.mode == "L" and im.size == (192, 192)
                    soft = np.asarray(im)
                assert ((soft > 0) & (soft < 255)).any(), "soft edge"
                _check_object(soft > 127, f"mvimgnet {cls}/{inst.name}/{stem}")


def test_size_and_scale(tmp_path):
    roots = generate(tmp_path, seed=2, sources=("ytvos", "ppr10k"), size=(320, 180), scale=2)
    assert set(roots) == {"ytvos", "ppr10k"}
    videos = sorted((roots["ytvos"] / "train" / "JPEGImages").iterdir())
    assert len(videos) == 6
    with Image.open(next(videos[0].glob("*.jpg"))) as im:
        assert im.size == (320, 180)
    assert len(list((roots["ppr10k"] / "masks").glob("*.png"))) == 18
    with Image.open(next((roots["ppr10k"] / "masks").glob("*.png"))) as im:
        assert im.size == (180, 270)


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "ytvos").mkdir()
    (tmp_path / "ytvos" / "precious.txt").write_text("a real dataset")
    with pytest.raises(FileExistsError):
        generate_ytvos(tmp_path)
    assert (tmp_path / "ytvos" / "precious.txt").exists()


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, sources=("coco",))
    with pytest.raises(ValueError):
        generate(tmp_path, size=(32, 32))
    with pytest.raises(ValueError):
        generate(tmp_path, seed=-1)
