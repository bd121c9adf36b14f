"""imprint eval on the sample: both report files, every level, and the DreamBooth-style layout."""

import json

import numpy as np
import pytest
from PIL import Image

from imprint.cli import main
from imprint.eval.testsets import EvalSetError, from_dreambooth

pytestmark = pytest.mark.slow


def test_eval_writes_metrics_and_report(compositor, sample_shards, tmp_path):
    out = tmp_path / "report"
    assert main(["eval", "--model", f"ours={compositor}", "--model", f"again={compositor}", "--test",
                 str(sample_shards / "stage2"), "--out", str(out), "--n", "2", "--steps", "2", "--dino", "tiny",
                 "--clip", "tiny"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"ours", "again"}
    ours = metrics["models"]["ours"]
    assert ours["n_samples"] == 8 and sorted(ours["by_level"]) == ["0", "1", "2", "3"]
    for key in ("dino", "clip", "shape_iou"):
        assert ours["summary"][key]["n"] == 8
    assert "fid" in ours["set_metrics"] and "kid" in ours["set_metrics"]
    # the same model twice gives the same numbers (seeded)
    assert ours["summary"]["dino"] == metrics["models"]["again"]["summary"]["dino"]
    html = (out / "report.html").read_text()
    assert "<table" in html and html.count("data:image/png;base64") >= 8 and "ours" in html


def test_dreambooth_layout(tmp_path):
    subject = tmp_path / "subjects" / "dog"
    subject.mkdir(parents=True)
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[5:35, 5:25] = (10, 200, 30, 255)
    Image.fromarray(rgba, "RGBA").save(subject / "00.png")
    (tmp_path / "backgrounds").mkdir()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "backgrounds" / "000000047948_GT.png")
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[10:40, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / "backgrounds" / "000000047948_mask.png")
    (ex,) = from_dreambooth(tmp_path, 4)
    assert ex.id == "dog/000000047948" and ex.box_only and ex.mask[10:40, 20:50].all() and ex.mask.sum() == 900
    assert ex.object_mask.sum() == 600 and ex.real is None
    with pytest.raises(EvalSetError, match="DreamBooth-style"):
        from_dreambooth(tmp_path / "nothing", 1)


def _dreambooth(root):
    subject = root / "subjects" / "cat"
    subject.mkdir(parents=True)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[4:28, 6:26] = (200, 40, 30, 255)
    Image.fromarray(rgba, "RGBA").save(subject / "00.png")
    (root / "backgrounds").mkdir()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(root / "backgrounds" / "1_GT.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 20:50] = 255
    Image.fromarray(mask).save(root / "backgrounds" / "1_mask.png")
    return root


def test_eval_offline_with_the_default_backbones_is_one_line(tmp_path):
    """The default metric backbones are hub ids: offline and not cached, `imprint eval` ends in one line that says
    what to do (no traceback), with a non-zero exit. HF_HUB_OFFLINE=1 (set for the tests) makes it fail fast."""
    import os
    import subprocess
    import sys

    model = tmp_path / "final"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"type": "imprint-compositor"}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache
    out = subprocess.run([sys.executable, "-m", "imprint.cli", "eval", "--model", str(model), "--test",
                          str(_dreambooth(tmp_path / "test")), "--out", str(tmp_path / "report")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("imprint eval: cannot load the DINO metric backbone 'facebook/dinov2-small'")
    assert "HF_HUB_OFFLINE is set" in out.stderr and "pass its folder" in out.stderr
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_eval_checks_every_model_folder_before_loading_anything(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nothing"), "--test", str(_dreambooth(tmp_path / "test")),
                 "--out", str(tmp_path / "report"), "--dino", "tiny", "--clip", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imprint eval: ") and "has no config.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()  # not even the tiny backbones were built
