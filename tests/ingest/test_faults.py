"""Bad input: each fault is a counted drop with its reason; the job goes on."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import balanced, ingest, read_records, read_report
from PIL import Image


def _videos(root):
    meta_path = root / "train" / "meta.json"
    return meta_path, json.loads(meta_path.read_text())


def _frame_paths(root, video, stem):
    return root / "train" / "JPEGImages" / video / f"{stem}.jpg", root / "train" / "Annotations" / video / f"{stem}.png"


def test_every_fault_is_a_counted_drop_and_the_rest_is_kept(sample_roots, copy_root, tmp_path):
    clean_out = tmp_path / "clean"
    clean = ingest("ytvos", sample_roots["ytvos"], clean_out)
    root = copy_root(sample_roots["ytvos"])
    meta_path, meta = _videos(root)
    videos = sorted(meta["videos"])
    v0, v1, v2 = videos[:3]
    obj0 = sorted(meta["videos"][v0]["objects"])[0]
    stems0 = meta["videos"][v0]["objects"][obj0]["frames"]
    n_objs = lambda v, s: sum(s in o["frames"] for o in meta["videos"][v]["objects"].values())  # noqa: E731

    faults = {}
    img, ann = _frame_paths(root, v0, stems0[0])
    img.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 10)  # corrupt JPEG
    faults["corrupt_image"] = n_objs(v0, stems0[0])
    img, ann = _frame_paths(root, v0, stems0[1])
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])  # truncated JPEG
    faults["truncated_image"] = n_objs(v0, stems0[1])
    img, ann = _frame_paths(root, v0, stems0[2])
    ann.unlink()  # annotation missing for a frame
    faults["missing_annotation"] = n_objs(v0, stems0[2])
    img, ann = _frame_paths(root, v0, stems0[3])
    img.write_bytes(b"")  # 0-byte file
    faults["empty_file"] = n_objs(v0, stems0[3])
    img, ann = _frame_paths(root, v0, stems0[4])
    labels = np.asarray(Image.open(ann)).copy()
    with Image.open(ann) as im:
        palette = im.getpalette()
    labels[labels == int(obj0)] = 0  # the object listed in meta has no pixels
    out_im = Image.fromarray(labels, "P")
    out_im.putpalette(palette)
    out_im.save(ann)
    faults["empty_mask"] = 1
    img, ann = _frame_paths(root, v0, stems0[5])
    Image.new("RGB", (3000, 3000)).save(img, quality=50)  # over the pixel limit set below
    faults["decompression_bomb"] = n_objs(v0, stems0[5])
    # a one-frame video and a meta.json entry with no files
    one = meta["videos"][v1]
    first = sorted({s for o in one["objects"].values() for s in o["frames"]})[0]
    for o in one["objects"].values():
        o["frames"] = [s for s in o["frames"] if s == first]
    faults["single_frame_group"] = n_objs(v1, first)
    meta["videos"]["ffffffffff"] = {"objects": {"1": {"category": "ghost", "frames": ["00000", "00005"]}}}
    faults["no_files"] = 2
    meta_path.write_text(json.dumps(meta))

    out = tmp_path / "faulty"
    report = ingest("ytvos", root, out, max_image_pixels=1_000_000)
    assert balanced(report)
    for reason, n in faults.items():
        assert report["dropped"].get(reason) == n, (reason, report["dropped"])
    failed_reasons = {f["reason"] for f in report["failures"]}
    assert set(faults) - {"single_frame_group"} <= failed_reasons
    assert all(f["error"] for f in report["failures"])
    # nothing else is lost: v2 and the other videos are identical to the clean run
    rows = read_records(out, "ytvos").to_pylist()
    clean_rows = read_records(clean_out, "ytvos").to_pylist()
    def untouched(rs):
        return [{k: v for k, v in r.items() if not k.endswith("_uri")} for r in rs if r["group_id"] not in (v0, v1)]

    assert untouched(rows) == untouched(clean_rows) and untouched(rows)
    assert {r["group_id"] for r in rows} >= {v0}  # the damaged video keeps its good frames
    assert report["kept"] < clean["kept"]


def test_a_bug_in_a_group_is_counted_with_its_traceback(sample_roots, tmp_path, monkeypatch):
    from imprint.ingest import ytvos

    calls = {"n": 0}
    real = ytvos.YouTubeVOS.instances

    def flaky(self, frame, size, cfg):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("an unforeseen input")
        return real(self, frame, size, cfg)

    monkeypatch.setattr(ytvos.YouTubeVOS, "instances", flaky)
    report = ingest("ytvos", sample_roots["ytvos"], tmp_path)
    assert report["dropped"]["error"] >= 1 and balanced(report)
    assert any("KeyError" in f["error"] and "Traceback" in f["error"] for f in report["failures"])


def _parts(out):
    d = out / "records" / "ytvos"
    return {p.name: p.read_bytes() for p in sorted(d.glob("part-*.parquet"))}


def test_rerun_after_an_interrupted_job_finishes_without_duplicates(sample_roots, tmp_path):
    full = tmp_path / "full"
    ingest("ytvos", sample_roots["ytvos"], full, groups_per_part=1)
    reference = _parts(full)
    assert len(reference) >= 3
    # the states a kill can leave: a part without marker, a half-written temporary, a missing part
    broken = tmp_path / "broken"
    ingest("ytvos", sample_roots["ytvos"], broken, groups_per_part=1)
    d = broken / "records" / "ytvos"
    (d / "_parts" / "part-00000.json").unlink()
    (d / "part-00001.parquet").rename(d / "part-00001.parquet.tmp")
    (d / "part-00001.parquet.tmp").write_bytes(b"PAR1 half written")
    (d / "_parts" / "part-00001.json").unlink()
    (d / "part-00002.parquet").unlink()
    report = ingest("ytvos", sample_roots["ytvos"], broken, groups_per_part=1)
    assert _parts(broken) == reference
    assert not list(d.glob("*.tmp"))
    ref_report = read_report(full, "ytvos")
    for key in ("seen", "kept", "dropped", "failures", "parts", "frames"):
        assert report[key] == ref_report[key], key


def test_a_changed_config_is_refused_unless_overwrite(sample_roots, tmp_path):
    from imprint.ingest.job import IngestError

    ingest("ytvos", sample_roots["ytvos"], tmp_path)
    with pytest.raises(IngestError, match="--overwrite"):
        ingest("ytvos", sample_roots["ytvos"], tmp_path, min_area_frac=0.05)


@pytest.mark.slow
def test_killed_process_resumes_to_identical_parts(tmp_path):
    from imprint.ingest.sample import generate_ytvos

    root = generate_ytvos(tmp_path / "src", seed=3, n_videos=24, n_frames=8)
    ingest("ytvos", root, tmp_path / "ref", groups_per_part=1)
    reference = _parts(tmp_path / "ref")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "imprint.cli", "ingest", "ytvos", "--root", str(root), "--out", str(out),
           "--executor", "local", "--set", "groups_per_part=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "records" / "ytvos" / "_parts" / "part-00000.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(first.parent.glob("part-*.json")))
    assert 1 <= done_at_kill < len(reference), "the kill must land mid-job"
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_at_kill} already done" in rerun.stderr
    assert _parts(out) == reference
    assert read_report(out, "ytvos")["kept"] == read_report(tmp_path / "ref", "ytvos")["kept"]
