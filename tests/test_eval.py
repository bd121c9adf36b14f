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
