"""SA-V: the RLE codec, materialising mp4 + masklet json into frames and masks, and records through run_ingest.

The fixture is SA-V as distributed (``sav_train/sav_000/sav_NNNNNN.mp4`` + ``_manual.json``,
24 fps, masklets on every 4th frame as COCO compressed RLE), generated here: an mp4v video
of moving shapes whose masks are known exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import balanced, read_records, read_report, rle_counts_encode, rle_encode

from imprint.executor import LocalExecutor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest
from imprint.ingest.sav import SAVConfig, SAVSource, prepare_sav, rle_counts_decode, rle_runs, runs_to_mask
from imprint.masks import decode_mask_png

W, H, N_FRAMES, RATE = 128, 96, 25, 4  # annotated frames 0, 4, ..., 24


def _shapes(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of frame ``i``: a rectangle moving right, a disc moving down that appears at frame 4."""
    yy, xx = np.mgrid[:H, :W]
    rect = (xx >= 10 + 2 * i) & (xx < 40 + 2 * i) & (yy >= 20) & (yy < 50)
    disc = ((yy - (15 + 2 * i)) ** 2 + (xx - 95) ** 2 < 12 ** 2) if i >= 4 else np.zeros((H, W), bool)
    return rect, disc


def _frame(i: int) -> np.ndarray:
    rect, disc = _shapes(i)
    rgb = np.full((H, W, 3), 60, np.uint8)
    rgb[rect] = (230, 40, 40)
    rgb[disc] = (40, 200, 230)
    return rgb


def _write_video(path: Path, n: int = N_FRAMES) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (W, H))
    assert writer.isOpened(), "cv2 cannot write mp4v here"
    for i in range(n):
        writer.write(cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
    writer.release()


def _manual_json(video_id: str, n: int = N_FRAMES) -> dict:
    annotated = range(0, n, RATE)
    masklet = [[rle_encode(m) for m in _shapes(i)] for i in annotated]
    return {"video_id": video_id, "video_duration": n / 24.0, "video_frame_count": float(n),
            "video_height": float(H), "video_width": float(W), "video_resolution": float(H * W),
            "video_environment": "Indoor", "video_split": "train", "masklet": masklet,
            "masklet_id": [0, 1], "masklet_frame_count": [len(masklet)] * 2, "masklet_type": ["manual", "manual"],
            "masklet_num": 2}


@pytest.fixture(scope="module")
def sav_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sav_train/sav_000 with two good videos (one also with an auto json), a corrupt mp4, a video without json."""
    root = tmp_path_factory.mktemp("sav") / "sav_train"
    d = root / "sav_000"
    d.mkdir(parents=True)
    for vid in ("sav_000001", "sav_000002"):
        _write_video(d / f"{vid}.mp4")
        (d / f"{vid}_manual.json").write_text(json.dumps(_manual_json(vid)))
    auto = _manual_json("sav_000002")
    auto["masklet"] = [[row[0]] for row in auto["masklet"]]
    (d / "sav_000002_auto.json").write_text(json.dumps(auto))
    (d / "sav_000003.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # not a video
    (d / "sav_000003_manual.json").write_text(json.dumps(_manual_json("sav_000003")))
    _write_video(d / "sav_000004.mp4", n=9)  # no manual json
    return root


def rle_decode(rle: dict) -> np.ndarray:
    return runs_to_mask(*rle_runs(rle))


# ------------------------------------------------------------------------------------------------ RLE


def test_rle_known_values() -> None:
    # pycocotools: an empty 848x480 mask is "P`]<" (SOURCES.md §7); [[0,1],[1,1]] is runs [1, 3] -> "13"
    assert rle_encode(np.zeros((848, 480), bool)) == {"size": [848, 480], "counts": "P`]<"}
    assert rle_encode(np.array([[0, 1], [1, 1]], bool))["counts"] == "13"
    assert not rle_decode({"size": [848, 480], "counts": "P`]<"}).any()
    assert rle_decode({"size": [2, 2], "counts": "13"}).tolist() == [[False, True], [True, True]]
    assert rle_decode({"size": [2, 2], "counts": [1, 3]}).tolist() == [[False, True], [True, True]]


def test_rle_round_trip_random() -> None:
    rng = np.random.default_rng(0)
    for i in range(200):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if i % 3 == 0:
            mask = rng.random((h, w)) < rng.random()
        else:
            mask = np.zeros((h, w), bool)
            y, x = rng.integers(0, h), rng.integers(0, w)
            mask[y:y + rng.integers(1, 40), x:x + rng.integers(1, 40)] = True
        rle = rle_encode(mask)
        assert rle["size"] == [h, w]
        assert np.array_equal(rle_decode(rle), mask)
    cnts = np.array([0, 5, 1000, 3, 70000, 2, 1, 1])
    assert rle_counts_decode(rle_counts_encode(cnts)).tolist() == cnts.tolist()


def test_rle_rejects_bad_input() -> None:
    good = rle_encode(np.eye(6, dtype=bool))
    with pytest.raises(ValueError, match="pixels"):
        rle_decode({"size": [6, 7], "counts": good["counts"]})
    with pytest.raises(ValueError, match="truncated"):
        rle_counts_decode("P`]")  # ends inside a number
    with pytest.raises(ValueError):
        rle_decode({"counts": good["counts"]})


# ------------------------------------------------------------------------------------------------ materialise


def test_prepare_writes_frames_and_masks(sav_root: Path, tmp_path: Path) -> None:
    raw = prepare_sav(sav_root, tmp_path, LocalExecutor())
    assert raw == tmp_path / "raw" / "sav"
    report = json.loads((raw / "report.json").read_text())
    assert report["videos"] == report["items"] == 4
    assert report["counts"] == {"corrupt_video": 1, "missing_annotation": 1, "ok": 2}
    reasons = {f["item"]: f["status"] for f in report["failures"]}
    assert reasons == {"sav_000003": "corrupt_video", "sav_000004": "missing_annotation"}

    video = raw / "videos" / "sav_000001"
    info = json.loads((video / "video.json").read_text())
    assert (info["width"], info["height"], info["video_frames"], info["annotated_frames"]) == (W, H, 25, 7)
    assert info["empty_masks"] == 1  # the disc before it appears
    names = sorted(p.stem for p in (video / "frames").glob("*.jpg"))
    assert names == [f"{i:05d}" for i in range(0, N_FRAMES, RATE)]
    assert sorted(p.name for p in (video / "masks").iterdir()) == ["000", "001"]
    for name in names:
        i = int(name)
        rect, disc = _shapes(i)
        assert np.array_equal(decode_mask_png((video / "masks" / "000" / f"{name}.png").read_bytes()), rect)
        disc_png = video / "masks" / "001" / f"{name}.png"
        assert disc_png.is_file() == bool(disc.any())
        if disc.any():
            assert np.array_equal(decode_mask_png(disc_png.read_bytes()), disc)
        # the JPEG is video frame 4t (the shapes move 2 px a frame, so a neighbour would be far off)
        jpg = cv2.cvtColor(cv2.imread(str(video / "frames" / f"{name}.jpg")), cv2.COLOR_BGR2RGB).astype(int)
        errors = [np.abs(jpg - _frame(j)).mean() for j in range(N_FRAMES)]
        assert int(np.argmin(errors)) == i and errors[i] < 8
    assert not list((raw / "videos").glob("*.tmp-*"))
    assert not (raw / "videos" / "sav_000003").exists()


def test_prepare_rerun_skips_and_auto_masklets(sav_root: Path, tmp_path: Path) -> None:
    raw = prepare_sav(sav_root, tmp_path, limit=2)
    first = {p: p.stat().st_mtime_ns for p in (raw / "videos").rglob("*") if p.is_file()}
    prepare_sav(sav_root, tmp_path, limit=2)
    report = json.loads((raw / "report.json").read_text())
    assert report["attempted"] == 0 and report["this_run"] == {} and report["counts"] == {"ok": 2}
    assert first == {p: p.stat().st_mtime_ns for p in (raw / "videos").rglob("*") if p.is_file()}
    assert not list(raw.rglob("video.json.done")) and not list((raw / "videos").glob("*.tmp*"))
    # other settings: the video is redone, here with the auto masklets too
    prepare_sav(sav_root, tmp_path, limit=2, cfg=SAVConfig(include_auto=True))
    assert sorted(p.name for p in (raw / "videos" / "sav_000002" / "masks").iterdir()) == ["000", "001", "auto000"]
    assert sorted(p.name for p in (raw / "videos" / "sav_000001" / "masks").iterdir()) == ["000", "001"]


def test_prepare_refuses_a_root_without_videos(tmp_path: Path) -> None:
    from imprint.ingest.base import LayoutError

    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="sav_NNNNNN.mp4"):
        prepare_sav(tmp_path / "empty", tmp_path / "data")


def test_prepare_from_official_tar(sav_root: Path, tmp_path: Path) -> None:
    import tarfile

    tar = tmp_path / "sav_000.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(sav_root / "sav_000" / "sav_000001.mp4", "sav_train/sav_000/sav_000001.mp4")
        tf.add(sav_root / "sav_000" / "sav_000001_manual.json", "sav_train/sav_000/sav_000001_manual.json")
    raw = prepare_sav(tar, tmp_path / "data")
    assert (raw / "archives" / "sav_000" / "sav_train" / "sav_000" / "sav_000001.mp4").is_file()
    assert (raw / "videos" / "sav_000001" / "video.json").is_file()


# ------------------------------------------------------------------------------------------------ records


def test_records_through_run_ingest(sav_root: Path, tmp_path: Path) -> None:
    raw = prepare_sav(sav_root, tmp_path)
    report = run_ingest("sav", raw, tmp_path, IngestConfig(), LocalExecutor())
    assert balanced(report)
    table = read_records(tmp_path, "sav").to_pylist()
    # per video: the rectangle in 7 frames, the disc in 6
    assert report["kept"] == len(table) == 2 * (7 + 6)
    assert {r["group_id"] for r in table} == {"sav_000001", "sav_000002"}
    assert {r["instance_id"] for r in table} == {"000", "001"}
    for r in table:
        assert r["source"] == "sav" and r["category"] is None
        assert r["frame_name"] == f"{int(r['frame_name']):05d}" and int(r["frame_name"]) % RATE == 0
        rect, disc = _shapes(int(r["frame_name"]))
        want = rect if r["instance_id"] == "000" else disc
        assert np.array_equal(decode_mask_png(r["mask"]), want)
        ys, xs = np.nonzero(want)
        assert r["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    disc_rows = sorted((r["frame_index"], r["frame_name"]) for r in table
                       if r["group_id"] == "sav_000001" and r["instance_id"] == "001")
    assert [n for _, n in disc_rows] == [f"{i:05d}" for i in range(4, N_FRAMES, RATE)]
    assert [i for i, _ in disc_rows] == list(range(1, 7))  # frame_index: position among annotated frames
    assert read_report(tmp_path, "sav")["kept"] == report["kept"]


def test_reads_the_official_val_layout(sav_root: Path, tmp_path: Path) -> None:
    """sav_val: JPEGImages_24fps/<vid>/<00000>.jpg + Annotations_6fps/<vid>/<obj>/<00000>.png."""
    raw = prepare_sav(sav_root, tmp_path / "prep", limit=1)
    video = raw / "videos" / "sav_000001"
    val = tmp_path / "sav_val"
    shutil.copytree(video / "frames", val / "JPEGImages_24fps" / "sav_000001")
    shutil.copytree(video / "masks", val / "Annotations_6fps" / "sav_000001")
    (val / "sav_val.txt").write_text("sav_000001\n")
    report = run_ingest("sav", tmp_path, tmp_path / "data", IngestConfig(), LocalExecutor())
    assert report["kept"] == 13 and balanced(report)


def test_reader_says_to_materialise_first(sav_root: Path) -> None:
    from imprint.ingest.base import LayoutError

    with pytest.raises(LayoutError, match="materialise them first"):
        SAVSource().discover(sav_root, IngestConfig())
