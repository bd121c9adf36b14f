"""SA-V frames match their masks, and frame numbers keep time.

The videos are generated here with PyAV in the codecs the SA-V videos and their kin use with B-frames
(MPEG-4 part 2 and H.264 with open GOPs): random access by seeking (``decord``'s ``get_batch``) returns
frames two off in such files. Every frame carries its own index, drawn as a row of black and white blocks,
so a written frame says which frame of the stream it is.
"""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import balanced, read_records, rle_encode

from imprint.cli import main
from imprint.executor import LocalExecutor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest
from imprint.ingest.sav import prepare_sav
from imprint.pairing.config import PairsConfig
from imprint.pairing.plan import plan_pairs

W, H, RATE, BITS = 160, 96, 4, 10


def _block(b: int) -> tuple[slice, slice]:
    x, y = 4 + (b % 5) * 30, 20 + (b // 5) * 36
    return slice(y, y + 24), slice(x, x + 24)


def index_frame(i: int) -> np.ndarray:
    """RGB frame ``i``: a colour of its own, and ``i`` in binary as ten black / white blocks."""
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = ((i * 37) % 200 + 30, (i * 91) % 200 + 30, (i * 53) % 200 + 30)
    for b in range(BITS):
        rgb[_block(b)] = 255 if (i >> b) & 1 else 0
    return rgb


def read_index(bgr: np.ndarray) -> int:
    """The index drawn in a frame (decoded, JPEG-compressed or not)."""
    value = 0
    for b in range(BITS):
        ys, xs = _block(b)
        if bgr[ys.start + 4:ys.stop - 4, xs.start + 4:xs.stop - 4].mean() > 127:
            value |= 1 << b
    return value


def write_video(path: Path, n: int, codec: str) -> None:
    """An mp4 of ``n`` index frames at 24 fps, with B-frames (``mpeg4``) or open GOPs (``h264``)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4" if codec == "mpeg4" else "libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.gop_size = 24
            stream.options = {"bf": "2"}
        else:
            stream.options = {"x264-params": "open-gop=1:bframes=8:b-pyramid=normal:keyint=48:min-keyint=48:"
                                             "scenecut=0"}
        stream.codec_context.time_base = fractions.Fraction(1, 24)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 24)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def box(i: int) -> np.ndarray:
    """The masklet at video frame ``i``: a box that moves a pixel every 4 frames (its place tells the frame)."""
    mask = np.zeros((H, W), bool)
    mask[4:16, 10 + i // 4:40 + i // 4] = True
    return mask


def write_sav(folder: Path, video_id: str, n: int, codec: str, visible=lambda t: True) -> None:
    """``sav_NNNNNN.mp4`` + ``_manual.json``: one masklet on every 4th frame where ``visible(t)``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / f"{video_id}.mp4", n, codec)
    empty = rle_encode(np.zeros((H, W), bool))
    masklet = [[rle_encode(box(t * RATE)) if visible(t) else empty] for t in range(0, (n + RATE - 1) // RATE)]
    (folder / f"{video_id}_manual.json").write_text(json.dumps({
        "video_id": video_id, "video_frame_count": float(n), "video_height": float(H), "video_width": float(W),
        "masklet": masklet, "masklet_num": 1, "masklet_type": ["manual"]}))


def sequential(path: Path) -> list[np.ndarray]:
    """Every frame of a video, front to back (the owners' ``sav_utils.decode_video``)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def sav_bframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("savb") / "sav_train"
    write_sav(root / "sav_000", "sav_000001", 120, "mpeg4")
    write_sav(root / "sav_000", "sav_000002", 300, "h264")
    return root


def test_the_fixture_videos_carry_their_index(sav_bframes: Path) -> None:
    for mp4 in sorted(sav_bframes.rglob("*.mp4")):
        assert [read_index(f) for f in sequential(mp4)] == list(range(len(sequential(mp4))))


def test_every_written_frame_is_the_kth_frame_of_the_stream(sav_bframes: Path, tmp_path: Path) -> None:
    raw = prepare_sav(sav_bframes, tmp_path, LocalExecutor())
    for mp4 in sorted(sav_bframes.rglob("*.mp4")):
        video = raw / "videos" / mp4.stem
        stream = sequential(mp4)
        names = sorted(p.stem for p in (video / "frames").glob("*.jpg"))
        assert names == [f"{k:05d}" for k in range(0, len(stream), RATE)]
        for name in names:
            k = int(name)
            jpg = cv2.imread(str(video / "frames" / f"{name}.jpg"))
            assert read_index(jpg) == k, f"{mp4.name}: frame {name} is frame {read_index(jpg)} of the stream"
            errors = {j: np.abs(jpg.astype(int) - stream[j].astype(int)).mean()
                      for j in range(max(0, k - 2), min(len(stream), k + 3))}
            assert min(errors, key=errors.get) == k and errors[k] < 3
        info = json.loads((video / "video.json").read_text())
        assert info["decoder"] == "opencv-sequential" and info["frames_written"] == len(names)


def test_check_alignment_on_real_files_reports_mismatches(sav_bframes: Path, tmp_path: Path, capsys) -> None:
    from imprint.ingest.sav import check_alignment

    data = tmp_path / "data"
    assert main(["ingest", "sav", "--root", str(sav_bframes), "--out", str(data), "--executor", "local",
                 "--check-alignment", "1000"]) == 0
    raw = data / "raw" / "sav"
    report = json.loads((raw / "alignment.json").read_text())
    total = len(list(raw.glob("videos/*/frames/*.jpg")))
    assert report["checked"] == total == 30 + 75 and report["mismatched"] == 0 and not report["unchecked"]
    assert read_records(data, "sav").num_rows == total
    # a frame two off, as a seek can return it: found, with its offset, and the job stops
    stream = sequential(sav_bframes / "sav_000" / "sav_000001.mp4")
    frame = raw / "videos" / "sav_000001" / "frames" / "00040.jpg"
    cv2.imwrite(str(frame), stream[42], [cv2.IMWRITE_JPEG_QUALITY, 95])
    report = check_alignment(raw, 1000)
    assert report["mismatched"] == 1
    bad = report["mismatches"][0]
    assert (bad["frame"], bad["best_offset"], bad["ok"]) == (40, 2, False) and "42" in bad["reason"]
    capsys.readouterr()
    assert main(["ingest", "sav", "--root", str(raw), "--out", str(data), "--executor", "local",
                 "--check-alignment", "1000"]) == 1
    assert "1 of 105 frames do not match" in capsys.readouterr().err
    # a sample of N frames: N compared, chosen by --seed
    assert check_alignment(raw, 7, seed=1)["checked"] == 7


def test_frames_around_a_long_absence_are_not_neighbours(tmp_path: Path) -> None:
    """SA-V writes only frames where a masklet is visible: positions close the gap, frame numbers keep it."""
    root = tmp_path / "sav_train"
    visible = lambda t: t < 6 or 60 <= t < 66  # noqa: E731 - frames 0..20, then absent 10 s, then 240..260
    write_sav(root / "sav_000", "sav_000001", 264, "mpeg4", visible)
    raw = prepare_sav(root, tmp_path / "data")
    report = run_ingest("sav", raw, tmp_path / "data", IngestConfig(), LocalExecutor())
    rows = sorted(read_records(tmp_path / "data", "sav").to_pylist(), key=lambda r: r["frame_index"])
    name = {r["frame_index"]: int(r["frame_name"]) for r in rows}
    assert list(name.values()) == [*range(0, 24, 4), *range(240, 264, 4)] and list(name) == list(range(12))
    records = tmp_path / "data" / "records"

    def pairs(stage: int, **cfg: float) -> set[tuple[int, int]]:
        return {(name[s.src_frame], name[s.tgt_frame]) for s in plan_pairs(records, {"sav": 1000}, stage,
                                                                           PairsConfig(**cfg))}

    # the stage-1 view window counts frame numbers: 20 and 240 are 220 frames apart, not 1
    window = pairs(1, window=7)
    assert (20, 240) not in window and (240, 20) not in window and (16, 20) in window and (240, 244) in window
    # records keep both: the position, and the frame's number in the 24 fps video
    assert [r["frame_number"] for r in rows] == list(name.values())
    assert report["frame_rate"] == 24.0 and balanced(report)
    # stage 2: a time gap in seconds at 24 fps; 20 -> 240 is 9.2 s
    near = pairs(2, max_gap_s=1.0)
    assert all(abs(a - b) <= 24 for a, b in near) and (0, 20) in near and (20, 240) not in near
    far = pairs(2, min_gap_s=5.0)
    assert all(abs(a - b) >= 120 for a, b in far) and (20, 240) in far
    assert (20, 240) in pairs(2)  # unbounded by default: any two different frames
