"""Evaluation metrics against hand-computed values, tiny backbones through save/from_pretrained, and the report."""

from __future__ import annotations

import json
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imprint.eval import metrics as M
from imprint.eval.report import build_metrics_document, svg_histogram, write_report


# --------------------------------------------------------------------------------------------------- identity


def test_cosine_similarity_of_normalised_embeddings_by_hand():
    assert M.cosine_similarity(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx([24 / 25])
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[5.0, 0.0], [1.0, 1.0], [-2.0, -2.0]])
    assert M.cosine_similarity(a, b) == pytest.approx([1.0, 1 / math.sqrt(2), -1.0])
    with pytest.raises(ValueError, match="same shape"):
        M.cosine_similarity(np.ones((2, 3)), np.ones((3, 3)))


def test_crop_to_box_pad_square_and_reference_object():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    assert np.array_equal(M.crop_to_box(img, (2, 3, 6, 5)), img[3:5, 2:6])
    assert M.crop_to_box(img, (2, 3, 6, 5), pad=1).shape == (4, 6, 3)
    assert M.crop_to_box(img, (0, 0, 4, 2), pad=3).shape == (5, 7, 3)  # clipped at the top-left corner
    assert M.crop_to_box(img, (2, 3, 6, 5), square=True).shape == (4, 4, 3)
    mask = np.zeros((10, 12), bool)
    mask[4:6, 5:9] = True
    ref = M.reference_object(Image.fromarray(img), mask, fill=0)
    assert ref.shape == (2, 4, 3) and np.array_equal(ref, img[4:6, 5:9])
    mask[4, 5] = False
    ref = M.reference_object(torch.from_numpy(img).permute(2, 0, 1), mask.astype(np.uint8) * 255, fill=(1, 2, 3))
    assert ref.shape == (2, 4, 3) and (ref[0, 0] == [1, 2, 3]).all() and np.array_equal(ref[1], img[5, 5:9])
    with pytest.raises(ValueError, match="empty box"):
        M.crop_to_box(img, (5, 5, 5, 9))


# --------------------------------------------------------------------------------------------------- realism


def test_frechet_distance_of_two_gaussians_is_the_closed_form():
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2 = 5 + (1 - 2)^2 + (2 - 3)^2 = 7
    assert M.frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([4.0, 9.0])) \
        == pytest.approx(7.0)
    # full covariances against Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) computed through eigen-decompositions
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = a @ a.T + np.eye(3), b @ b.T + np.eye(3)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = 1.0 + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum()
    assert M.frechet_distance(np.zeros(3), s1, np.array([1.0, 0, 0]), s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_samples_matches_the_closed_form_and_is_zero_on_itself():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(40000, 2))
    y = rng.normal([1.0, 0.0], [2.0, 1.0], size=(40000, 2))
    assert M.fid(x, y) == pytest.approx(1.0 + 1.0, abs=0.05)  # |mu|^2 = 1, (1 - 2)^2 = 1
    z = torch.from_numpy(rng.normal(size=(200, 8)))
    assert abs(M.fid(z, z)) < 1e-6
    few = rng.normal(size=(10, 32))  # singular covariances: finite, as the reference code handles them
    assert math.isfinite(M.fid(few, few + 0.1))


def test_kid_unbiased_mmd_by_hand_and_on_sets():
    x, y = np.array([[1.0], [2.0]]), np.array([[0.0], [0.0]])
    # degree 2, gamma 1, coef0 1: Kxx off-diagonal 9 + 9, Kyy off-diagonal 1 + 1, Kxy all 1 -> (18 + 2)/2 - 2*4/4
    assert M.mmd2_unbiased(x, y, degree=2) == pytest.approx(8.0)
    assert M.mmd2_unbiased(x, y, degree=1) == pytest.approx(2.0)  # linear: x1 x2 + y1 y2 - 2 mean(x) mean(y)
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 16))
    same = M.kid(a, a, subsets=20, subset_size=100, seed=0)
    twin = M.kid(a, rng.normal(size=(300, 16)), subsets=20, subset_size=100, seed=0)  # same distribution
    other = M.kid(a, rng.normal(size=(300, 16)) + 1.0, subsets=20, subset_size=100, seed=0)
    # identical sets: ~0 (slightly negative: subsets share rows, whose self-kernel enters the cross term)
    assert abs(same.mean) < 0.01 * other.mean and same.std >= 0 and same.subset_size == 100
    assert abs(twin.mean) < 0.02 and twin.std > 0
    assert other.mean > 1.0
    assert M.kid(a, a, subsets=3, subset_size=10_000).subset_size == 300  # capped by the set size
    assert M.kid(a, a, subsets=4, seed=5) == M.kid(a, a, subsets=4, seed=5)


# --------------------------------------------------------------------------------------------------- background


def _mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_background_metrics_outside_the_mask_by_hand():
    bg = np.full((16, 16, 3), 100, np.uint8)
    mask = _mask(16, 16, 0, 14, 0, 14)  # 196 inside, 60 outside
    out = bg.copy()
    out[mask] = 255  # anything inside is ignored
    perfect = M.background_metrics(out, bg, mask)
    assert perfect == {"psnr": M.PSNR_CAP_DB, "ssim": pytest.approx(1.0), "l1": 0.0, "identical": True,
                       "n_pixels": 60}
    out[15, 15] = 110  # one outside pixel off by 10 in every channel
    r = M.background_metrics(out, bg, mask)
    assert r["l1"] == pytest.approx(10 / 60 / 255)
    assert r["psnr"] == pytest.approx(10 * math.log10(255**2 / (100 / 60)))
    assert r["ssim"] < 1.0 and r["identical"] is False
    assert json.loads(json.dumps(perfect)) == perfect  # JSON-safe even when identical
    assert M.background_metrics(out, bg, mask, exclude_border=1)["n_pixels"] == 256 - 225
    with pytest.raises(ValueError, match="whole image"):
        M.background_metrics(out, bg, np.ones((16, 16), bool))
    with pytest.raises(ValueError, match="at least 11"):
        M.background_metrics(bg[:8, :8], bg[:8, :8], ~mask[:8, :8])
    with pytest.raises(ValueError, match="W x H"):
        M.background_metrics(out, bg[:12], mask)


# --------------------------------------------------------------------------------------------------- shape


def test_shape_iou_on_a_synthetic_output():
    rng = np.random.default_rng(3)
    bg = rng.integers(40, 60, size=(16, 16, 3), dtype=np.uint8)
    guide = _mask(16, 16, 4, 12, 4, 12)  # 64 px
    out = bg.copy()
    out[4:12, 6:14] = 250  # the object: 8 x 8, shifted right by 2
    out[0:2] = np.clip(bg[0:2].astype(int) + 10, 0, 255).astype(np.uint8)  # small changes: below the threshold
    # default region = the guidance box: the object there is 8 x 6 = 48 px, IoU 48 / 64
    assert M.shape_iou(out, bg, guide) == pytest.approx(48 / 64)
    # the whole image as region: 64 px object, 48 shared, union 80
    assert M.shape_iou(out, bg, guide, region=np.ones((16, 16), bool)) == pytest.approx(48 / 80)
    exact = bg.copy()
    exact[guide] = 0
    assert M.shape_iou(exact, bg, guide) == 1.0
    assert M.shape_iou(bg, bg, guide) == 0.0


def test_summarise():
    assert M.summarise([1, 2, 3, None]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2 / 3)), "median": 2.0,
                                            "n": 3}
    assert M.summarise([]) == {"mean": None, "std": None, "median": None, "n": 0}
    with pytest.raises(ValueError, match="non-finite"):
        M.summarise([1.0, float("nan")])


# --------------------------------------------------------------------------------------------------- backbones


@pytest.fixture(scope="module")
def tiny_backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random DINOv2, ViT (DINO v1 layout) and CLIP checkpoints with their image processors, on disk."""
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config,
                              Dinov2Model, ViTConfig, ViTImageProcessor, ViTModel)

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("backbones")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=56)).save_pretrained(root / "dinov2")
    BitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}, image_mean=mean,
                      image_std=std).save_pretrained(root / "dinov2")
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, image_size=32)).save_pretrained(root / "dino")
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=mean, image_std=std).save_pretrained(root / "dino")
    text = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=99,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8,
                  image_size=32)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    return {"dinov2": root / "dinov2", "dino": root / "dino", "clip": root / "clip"}


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 3 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


def test_dinov2_backbone_round_trip_matches_the_model(tiny_backbones):
    from transformers import AutoImageProcessor, Dinov2Model

    bb = M.FeatureBackbone.from_pretrained(str(tiny_backbones["dinov2"]), batch_size=2)
    assert bb.kind == "dino" and bb.pooling == "cls" and not bb.model.training
    images = _images(5)
    feats = bb.embed(images)
    assert feats.shape == (5, 32) and feats.dtype == torch.float32 and not feats.requires_grad
    model = Dinov2Model.from_pretrained(tiny_backbones["dinov2"]).eval()
    pixels = AutoImageProcessor.from_pretrained(tiny_backbones["dinov2"], backend="pil")(
        images=images, return_tensors="pt")["pixel_values"]
    assert pixels.shape[-2:] == (56, 56)
    with torch.no_grad():
        assert torch.allclose(feats, model(pixel_values=pixels).pooler_output, atol=1e-5)
    batch = torch.from_numpy(np.stack([np.asarray(im.resize((50, 40))) for im in images])).permute(0, 3, 1, 2)
    assert torch.allclose(bb.embed(batch), M.FeatureBackbone.from_pretrained(tiny_backbones["dinov2"],
                                                                             batch_size=8).embed(batch), atol=1e-5)
    mean = M.FeatureBackbone.from_pretrained(tiny_backbones["dinov2"], pooling="mean").embed(images[:2])
    assert mean.shape == (2, 32) and not torch.allclose(mean, feats[:2])
    scores = M.identity_scores(images[:3], images[:3], bb)
    assert scores == pytest.approx([1.0, 1.0, 1.0])


def test_dino_vit_and_clip_backbones_round_trip(tiny_backbones):
    from transformers import CLIPModel

    vit = M.FeatureBackbone.from_pretrained(tiny_backbones["dino"])
    assert vit.kind == "dino" and vit.embed(_images(2)).shape == (2, 32)
    clip = M.FeatureBackbone.from_pretrained(tiny_backbones["clip"])
    assert clip.kind == "clip"
    images = _images(3, seed=1)
    feats = clip.embed(images)
    assert feats.shape == (3, 16)
    model = CLIPModel.from_pretrained(tiny_backbones["clip"]).eval()
    with torch.no_grad():
        out = model.get_image_features(pixel_values=clip._pixels([M.to_rgb_array(im) for im in images]))
    ref = out if isinstance(out, torch.Tensor) else out.pooler_output
    assert torch.allclose(feats, ref, atol=1e-5)
    scores = M.identity_scores(images, images[::-1], clip)
    assert scores[1] == pytest.approx(1.0) and scores[0] < 1.0
    with pytest.raises(ValueError, match="not a CLIP"):
        M.FeatureBackbone.from_pretrained(tiny_backbones["dinov2"], kind="clip")
    with pytest.raises(ValueError, match="pooling"):
        M.FeatureBackbone.from_pretrained(tiny_backbones["clip"], pooling="mean")


def test_dreamsim_is_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "dreamsim", None)
    assert not M.dreamsim_available()
    assert M.dreamsim_scores(_images(2), _images(2)) is None

    fake = types.ModuleType("dreamsim")

    def dreamsim(pretrained: bool, device: str):
        def preprocess(im: Image.Image) -> torch.Tensor:
            return torch.from_numpy(np.asarray(im.resize((4, 4)), np.float32) / 255).permute(2, 0, 1)[None]
        return (lambda a, b: (a - b).abs().flatten(1).mean(1)), preprocess

    fake.dreamsim = dreamsim
    monkeypatch.setitem(sys.modules, "dreamsim", fake)
    images = _images(3)
    scores = M.dreamsim_scores(images, images[::-1], batch_size=2)
    assert scores.shape == (3,) and scores[1] == 0.0 and scores[0] > 0


# --------------------------------------------------------------------------------------------------- report


def _results() -> dict:
    rng = np.random.default_rng(4)
    models = {}
    for name, quality in (("imprint", 0.8), ("baseline", 0.6)):
        samples = []
        for case in range(3):
            for level in (0, 3):
                bg = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
                mask = _mask(24, 32, 6, 18, 8, 24)
                samples.append({
                    "id": f"case{case}", "level": level, "subject": "dog",
                    "reference": rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8),
                    "background": bg, "mask": mask, "output": Image.fromarray(bg),
                    "metrics": {"dino": quality + 0.01 * case, "clip": quality + 0.1, "psnr": 30.0 + case,
                                "ssim": 0.9, "l1": 0.01 * (2 - quality), "shape_iou": 0.5 + 0.1 * level,
                                "identical": False, "n_pixels": 576, "dreamsim": None},
                })
        models[name] = {"samples": samples, "info": {"checkpoint": f"runs/{name}"},
                        "set_metrics": {"fid": 40.0 / quality, "kid": M.KIDResult(0.01 / quality, 0.001, 10, 6)}}
    return {"settings": {"seed": 0, "dino_model": "tiny", "levels": [0, 3]}, "models": models}


def test_write_report_files(tmp_path):
    metrics_path, report_path = write_report(tmp_path / "rep", _results())
    doc = json.loads(metrics_path.read_text())
    assert doc["schema"] == "imprint-eval/1" and doc["settings"]["seed"] == 0
    assert list(doc["models"]) == ["imprint", "baseline"]
    m = doc["models"]["imprint"]
    assert m["summary"]["dino"] == {"mean": pytest.approx(0.81), "std": pytest.approx(math.sqrt(2 / 3) * 0.01),
                                    "median": pytest.approx(0.81), "n": 6}
    assert m["by_level"]["3"]["shape_iou"]["mean"] == pytest.approx(0.8) and m["by_level"]["0"]["shape_iou"]["n"] == 3
    assert m["set_metrics"]["kid"]["mean"] == pytest.approx(0.0125) and m["set_metrics"]["fid"] == pytest.approx(50)
    assert len(m["samples"]) == 6 and m["samples"][0]["subject"] == "dog"
    assert m["samples"][0]["metrics"]["identical"] is False
    assert not {"reference", "output", "background", "mask"} & set(m["samples"][0])
    assert "dreamsim" not in m["summary"] and any("DreamSim" in n for n in doc["notes"])

    page = report_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert '<table class="headline">' in page and "How to read this" in page
    for label in ("DINO ↑", "CLIP ↑", "FID ↓", "KID ↓", "BG PSNR ↑", "BG SSIM ↑", "BG L1 ↓",
                  "shape IoU L0 ↑", "shape IoU L3 ↑"):
        assert label in page, label
    assert "DreamSim ↓" not in page  # not computed: no column, a note instead
    # imprint is best on DINO (first column); baseline on nothing it loses
    assert re.search(r'<td class="name">imprint</td><td class="best">0\.810', page)
    assert re.search(r'<td class="name">baseline</td><td>0\.610', page)
    assert '<td class="best">0.9000' not in page  # SSIM: every model ties, nothing highlighted
    assert oct(report_path.stat().st_mode & 0o777) == oct(0o644)
    assert page.count("<svg") >= 2 * 6  # one histogram per model and per-sample metric
    assert page.count("data:image/png;base64,") == 2 * 3 * (1 + 2 * 2)  # per case: reference + 2 levels x 2 images
    assert "runs/imprint" in page


def test_report_rejects_bad_results(tmp_path):
    with pytest.raises(ValueError, match="models"):
        write_report(tmp_path, {"models": {}})
    bad = _results()
    bad["models"]["imprint"]["summary"] = {}
    with pytest.raises(ValueError, match="unknown keys"):
        build_metrics_document(bad)
    bad = _results()
    bad["models"]["imprint"]["samples"][0]["metrics"]["dino"] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        build_metrics_document(bad)
    bad = _results()
    bad["settings"]["array"] = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(TypeError, match="settings.array"):
        build_metrics_document(bad)


def test_svg_histogram_counts():
    svg = svg_histogram([0.0, 0.0, 1.0], 0.0, 1.0, bins=2)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<title>2</title>" in svg and "<title>1</title>" in svg and "n=3" in svg
