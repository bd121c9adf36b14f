"""The compositing pipeline: exact background outside the region, seeds, mask levels, bad input, CLI."""

import csv

import numpy as np
import pytest
from PIL import Image

from imprint.augment.mask_levels import MaskLevelConfig, mask_levels
from imprint.cli import main
from imprint.eval.pipeline import CompositeInputError, CompositeOptions, CompositingPipeline, box_mask

pytestmark = pytest.mark.slow
FAST = CompositeOptions(steps=4, seed=3)


@pytest.fixture(scope="module")
def pipe(compositor):
    return CompositingPipeline.from_pretrained(compositor, device="cpu")


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    obj = np.zeros((70, 50, 4), np.uint8)
    yy, xx = np.mgrid[:70, :50]
    disc = (yy - 35) ** 2 / 30 ** 2 + (xx - 25) ** 2 / 20 ** 2 <= 1
    obj[disc] = (220, 120, 30, 255)
    background = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    fine = np.zeros((120, 160), bool)
    fine[40:100, 60:100] = (yy[:60, :40] - 30) ** 2 / 30 ** 2 + (xx[:60, :40] - 20) ** 2 / 20 ** 2 <= 1
    return Image.fromarray(obj, "RGBA"), background, fine


def test_pixels_outside_the_region_are_the_background_exactly(pipe, inputs):
    obj, bg, fine = inputs
    outs, regions = pipe([obj, obj], [bg, bg], [fine, box_mask([10, 10, 50, 60], (160, 120))], options=FAST,
                         return_regions=True)
    for out, region, mask in zip(outs, regions, [fine, box_mask([10, 10, 50, 60], (160, 120))]):
        assert out.shape == bg.shape and out.dtype == np.uint8
        assert region[mask].all() and not region.all()
        assert np.array_equal(out[~region], bg[~region])
        assert (out[mask] != bg[mask]).any()


def test_a_seed_reproduces_the_output(pipe, inputs):
    obj, bg, fine = inputs
    a = pipe([obj], [bg], [fine], options=FAST)[0]
    b = pipe([obj], [bg], [fine], options=FAST)[0]
    c = pipe([obj], [bg], [fine], options=CompositeOptions(steps=4, seed=4))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_every_mask_level_is_honoured(pipe, inputs):
    obj, bg, fine = inputs
    levels = mask_levels(fine, MaskLevelConfig())
    _, regions = pipe([obj] * 4, [bg] * 4, list(levels), options=FAST, return_regions=True)
    for level, region in zip(levels, regions):
        assert region[level].all()
    # the box (level 0) edits at least as much as the fine mask (level 3)
    assert regions[0].sum() >= regions[3].sum()


def test_saved_pipeline_gives_the_same_pixels(pipe, inputs, tmp_path):
    obj, bg, fine = inputs
    pipe.save_pretrained(tmp_path / "copy")
    again = CompositingPipeline.from_pretrained(tmp_path / "copy", device="cpu")
    assert np.array_equal(pipe([obj], [bg], [fine], options=FAST)[0], again([obj], [bg], [fine], options=FAST)[0])


def test_bad_inputs_name_the_fix(pipe, inputs, compositor):
    obj, bg, fine = inputs
    with pytest.raises(CompositeInputError, match="not inside"):
        box_mask([100, 10, 200, 50], (160, 120))
    with pytest.raises(CompositeInputError, match="empty"):
        pipe([obj], [bg], [np.zeros_like(fine)], options=FAST)
    with pytest.raises(CompositeInputError, match="no alpha"):
        pipe([obj.convert("RGB")], [bg], [fine], options=FAST)
    with pytest.raises(CompositeInputError, match="background's size"):
        pipe([obj], [bg], [fine[:50]], options=FAST)
    stage1 = compositor.parent / "stage1-like"
    stage1.mkdir(exist_ok=True)
    (stage1 / "config.json").write_text('{"type": "imprint-stage1", "stage": 1}')
    with pytest.raises(CompositeInputError, match="not a stage-2 compositor"):
        CompositingPipeline.from_pretrained(stage1)


def test_cli_single_and_jobs(compositor, inputs, tmp_path):
    obj, bg, fine = inputs
    obj.save(tmp_path / "obj.png")
    Image.fromarray(bg).save(tmp_path / "bg.png")
    Image.fromarray(fine.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    assert main(["composite", "--model", str(compositor), "--object", str(tmp_path / "obj.png"), "--background",
                 str(tmp_path / "bg.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "o.png"),
                 "--steps", "3"]) == 0
    assert Image.open(tmp_path / "o.png").size == (160, 120)
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["object", "background", "mask", "box", "out"])
        w.writeheader()
        w.writerow({"object": "obj.png", "background": "bg.png", "mask": "", "box": "10,10,60,80", "out": "a.png"})
        w.writerow({"object": "obj.png", "background": "bg.png", "mask": "mask.png", "box": "", "out": "b.png"})
    assert main(["composite", "--model", str(compositor), "--jobs", str(tmp_path / "jobs.csv"), "--steps", "2"]) == 0
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()
