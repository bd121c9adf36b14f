"""imprint.geometry: windows and crops, the resize rules, background removal, pixel scaling, the one mask rule;
and the proof that eval feeds a model the crop training saw for the same frame and box."""

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from imprint.augment.mask_levels import MaskLevelConfig
from imprint.executor import LocalExecutor
from imprint.geometry import (Window, binarize, crop_window, object_crop, object_pixels, remove_background,
                              resize_crop, resize_labels, resize_mask, resize_stored, square_window, target_crop,
                              target_pixels, to_rgb)
from imprint.masks import mask_bbox


def test_window_at_the_frame_edge_is_shifted_inside_or_padded():
    win = square_window([0, 0, 10, 20], 2.0, 100, 50)
    assert (win.x0, win.y0, win.side, win.padded) == (0, 0, 40, False)
    fit = square_window([0, 10, 30, 45], 2.0, 100, 50, fit=True)
    assert fit.side == 50 and not fit.padded and fit.y0 == 0
    big = square_window([0, 0, 100, 50], 1.5, 100, 50, fit=True)
    assert big.side == 100 and big.padded
    image = np.arange(2 * 3 * 3).reshape(2, 3, 3).astype(np.uint8)
    out = crop_window(image, Window(-1, -1, 3, 1.0, True), 255)
    assert out.shape == (3, 3, 3) and (out[0] == 255).all() and np.array_equal(out[1:, 1:], image[:2, :2])


# --------------------------------------------------------------------------------------------- the one mask rule


def test_binarize_is_at_least_half_of_full_scale():
    soft = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(binarize(soft), soft >= 128)  # 8-bit: > 127
    assert np.array_equal(binarize(np.array([0, 1, 1, 0], np.uint8)), [False, True, True, False])  # 0/1 labels
    assert np.array_equal(binarize(np.array([0.0, 0.49, 0.5, 1.0])), [False, False, True, True])
    assert np.array_equal(binarize(np.array([0, 2, 3], np.uint8), full_scale=4), [False, True, True])
    assert binarize(np.zeros((0, 3), np.uint8)).shape == (0, 3)
    bits = np.array([[True, False]])
    assert binarize(bits) is bits  # bool masks are taken as they are, not copied


def test_binarize_reproduces_every_earlier_threshold_on_binary_masks():
    """The rules it replaced (!= 0, > 127, >= 128, > 0.5) agree with it on every mask imprint writes."""
    rng = np.random.default_rng(0)
    fine = rng.random((40, 50)) < 0.3
    for mask in (fine, fine.astype(np.uint8), fine.astype(np.uint8) * 255, fine.astype(np.float32)):
        for old in (mask != 0, mask > (127 if mask.max() > 1 else 0.5), mask >= (128 if mask.max() > 1 else 0.5)):
            assert np.array_equal(binarize(mask), old)


def test_mask_readers_use_the_one_rule(tmp_path):
    """Soft 8-bit masks read by the core decoder, the loader and eval's metrics agree with binarize."""
    from PIL import Image

    from imprint.eval.metrics import to_mask
    from imprint.masks import decode_mask_png
    from imprint.shards.loader import decode_mask

    soft = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(soft).save(tmp_path / "soft.png")
    data = (tmp_path / "soft.png").read_bytes()
    assert np.array_equal(decode_mask(data, 64), soft >= 128) and np.array_equal(decode_mask_png(data), soft >= 128)
    Image.fromarray((soft >= 128).astype(np.uint8)).save(tmp_path / "labels.png")  # 0/1 in 8 bits
    assert np.array_equal(decode_mask_png((tmp_path / "labels.png").read_bytes()), soft >= 128)
    assert np.array_equal(to_mask(soft), soft >= 128) and np.array_equal(to_mask(Image.fromarray(soft)), soft >= 128)
    assert np.array_equal(to_mask(torch.from_numpy(soft >= 128).to(torch.uint8)), soft >= 128)  # a 0/1 batch mask


# --------------------------------------------------------------------------------------------- resize rules


def test_resize_rules():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)
    assert np.array_equal(resize_crop(image, 30), cv2.resize(image, (30, 30), interpolation=cv2.INTER_AREA))
    assert np.array_equal(resize_crop(image, 60), cv2.resize(image, (60, 60), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(resize_crop(image, 120), cv2.resize(image, (120, 120), interpolation=cv2.INTER_CUBIC))
    assert np.array_equal(resize_stored(image, 60), cv2.resize(image, (60, 60), interpolation=cv2.INTER_AREA))
    assert np.array_equal(resize_stored(image, 120), cv2.resize(image, (120, 120), interpolation=cv2.INTER_CUBIC))
    assert resize_stored(image, 90) is image
    mask = np.zeros((90, 90), bool)
    mask[12:48, 21:42] = True  # 36 x 21 px on the 3 px grid of a third of the size
    small = resize_mask(mask, 30)
    assert small.dtype == bool and small.sum() == 12 * 7 and mask_bbox(small) == (7, 4, 14, 16)
    mask[12:48, 42] = True  # a third of a cell more: under half, not kept
    assert np.array_equal(resize_mask(mask, 30), small)
    labels = np.kron(np.arange(9, dtype=np.uint16).reshape(3, 3), np.ones((4, 4), np.uint16))
    assert np.array_equal(resize_labels(labels, (6, 3)), np.repeat(np.arange(9).reshape(3, 3), 2, axis=1))
    assert resize_labels(mask, 45).dtype == bool and resize_labels(mask, 45).sum() == mask.sum() // 4


# --------------------------------------------------------------------------------------------- background, pixels


def test_remove_background_and_rgb():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rng.random((20, 30)) < 0.5
    for fill in (0, 7, (1, 2, 3)):
        out = remove_background(image, mask, fill)
        assert np.array_equal(out[mask], image[mask])
        assert (out[~mask] == np.broadcast_to(np.asarray(fill, np.uint8), (3,))).all()
    assert np.array_equal(remove_background(image, mask.astype(np.uint8) * 255, 5), remove_background(image, mask, 5))
    with pytest.raises(ValueError, match="30x20"):
        remove_background(image, mask[:10], 0)
    with pytest.raises(ValueError, match="fill"):
        remove_background(image, mask, (1, 2, 300))
    rgba = np.dstack([image, np.full((20, 30), 9, np.uint8)])
    assert np.array_equal(to_rgb(rgba), image) and to_rgb(image[..., 0]).shape == (20, 30, 3)
    with pytest.raises(TypeError, match="uint8"):
        to_rgb(image.astype(np.float32))


def test_pixel_scaling_to_model_inputs():
    images = torch.tensor([[[[0, 127, 255]]]], dtype=torch.uint8)  # 1 x 1 x 1 x 3
    obj, tgt = object_pixels(images), target_pixels(images, torch.float64)
    assert obj.shape == (1, 3, 1, 1) and obj.dtype == torch.float32 and obj.is_contiguous()
    assert obj.flatten().tolist() == [0.0, pytest.approx(127 / 255), 1.0]
    assert tgt.dtype == torch.float64 and tgt.flatten().tolist() == [-1.0, pytest.approx(127 / 127.5 - 1), 1.0]
    assert images.flatten().tolist() == [0, 127, 255]  # the input is never scaled in place
    with pytest.raises(ValueError, match="uint8"):
        object_pixels(obj)


def test_object_crop_fills_a_window_past_the_frame():
    frame = np.full((12, 60, 3), 200, np.uint8)
    mask = np.zeros((12, 60), bool)
    mask[0:10, 50:60] = True  # a 1.5x window (15 px) is taller than the frame
    image, crop_mask, win = object_crop(frame, mask, (50, 0, 60, 10), 1.5, 30, (7, 8, 9))
    assert win.padded and image.shape == (30, 30, 3) and crop_mask.shape == (30, 30)
    inner = cv2.erode(crop_mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # away from the blended edge
    assert (image[~crop_mask] == (7, 8, 9)).all() and inner.any() and (image[inner] == 200).all()
    target, tmask, twin = target_crop(frame, mask, (50, 0, 60, 10), 1.5, 30, (7, 8, 9))
    assert twin.side == 12 and not twin.padded and (target == 200).all()  # fitted into the frame
    assert tmask.dtype == bool and tmask.mean() == pytest.approx(100 / 144, abs=0.05)


# --------------------------------------------------------------------------------------------- eval = training


@pytest.mark.slow
def test_eval_feeds_the_model_the_crops_training_saw(sample_data, compositor, tmp_path):
    """For the same frames and boxes, the stage-2 object and target the pipeline hands its models equal the
    tensors the loader gave the trainer from the pair built of them (pairs -> shards -> loader -> prepare_batch)."""
    from imprint.eval.pipeline import CompositeOptions, CompositingPipeline
    from imprint.masks import decode_mask_png
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.shards.loader import LoaderConfig, ShardLoader, prepare_batch

    model = json.loads((compositor / "config.json").read_text())
    fill = (7, 9, 11)
    opts = CompositeOptions(fill=fill)
    cfg = PairsConfig(resolution=model["resolution"], object_resolution=model["object_size"], fill=fill,
                      object_pad=(opts.object_pad, opts.object_pad), target_context=(opts.context, opts.context),
                      augment=False, image_format="png", pairs_per_instance=2, shard_rows=8, row_group_rows=4)
    shards = tmp_path / "stage2"
    run_pairs(sample_data / "records", shards, 2, {"ytvos": 2, "vipseg": 2}, cfg, LocalExecutor())
    records = {}
    for source in ("ytvos", "vipseg"):
        for r in pq.read_table(sorted((sample_data / "records" / source).glob("part-*.parquet"))).to_pylist():
            records[(source, r["group_id"], r["instance_id"], r["frame_index"])] = r
    rows = {r["pair_id"]: r for r in pq.read_table(sorted(shards.glob("part-*.parquet"))).to_pylist()}

    loader = ShardLoader(shards, LoaderConfig(batch_size=1, object_size=model["object_size"], drop_last=False,
                                              target_size=model["resolution"], shuffle_buffer=1,
                                              levels=MaskLevelConfig(probs=(0.0, 0.0, 0.0, 1.0))))
    pipe = CompositingPipeline.from_pretrained(compositor, device="cpu")
    seen = 0
    for batch in loader:
        trained = prepare_batch(batch, "cpu")
        row = rows[batch["pair_id"][0]]
        src = records[(row["source"], row["group_id"], row["instance_id"], row["src_frame"])]
        tgt = records[(row["source"], row["group_id"], row["instance_id"], row["tgt_frame"])]
        obj_frame, tgt_frame = (cv2.cvtColor(cv2.imread(r["image_uri"]), cv2.COLOR_BGR2RGB) for r in (src, tgt))
        obj_mask, tgt_mask = decode_mask_png(src["mask"]), decode_mask_png(tgt["mask"])
        assert mask_bbox(obj_mask) == tuple(src["bbox"]) and mask_bbox(tgt_mask) == tuple(tgt["bbox"])
        # eval gets the object as an RGBA image (its alpha the mask) and the target frame as the background
        given = pipe.prepare([np.dstack([obj_frame, obj_mask.astype(np.uint8) * 255])], [tgt_frame], [tgt_mask],
                             options=opts)
        assert torch.equal(given.objects, trained["object"])
        assert torch.equal(given.targets, trained["target"])
        assert torch.equal(given.masks, trained["mask"])
        assert given.windows[0].to_dict() == row["aug"]["target_crop"]
        seen += 1
    assert seen >= 4
