"""The quality scores, identity backends, filters, excluded table and histograms, as units."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imprint.quality import scores as S
from imprint.quality.excluded import EXCLUDED_SCHEMA, read_excluded, records_part_path, write_excluded
from imprint.quality.features import ClassicBackend, IdentityConfig, get_backend, silhouette_iou
from imprint.quality.filters import (FILTER_NAMES, NO_FILTERS, Blurry, FiltersConfig, FragmentedMask,
                                     IdentityMismatch, NearDuplicate, PairItem, RecordItem, StaticPair,
                                     first_removal, pair_filters, record_filters)
from imprint.quality.histograms import ScoreHistograms, describe, quantile


def _scene(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A textured disc with a crisp outline on a textured background, drawn at ``size`` pixels."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    stripes = ((np.indices((size, size)).sum(0) * 12 // size) % 2 * 90).astype(np.uint8)
    frame = (base // 2 + 40).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 4, 1, -1)
    obj = np.dstack([stripes + 100, 60 + stripes // 2, 200 - stripes]).astype(np.uint8)
    frame[mask > 0] = obj[mask > 0]
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return frame, mask.astype(bool), box


def _defocus(img: np.ndarray, radius: float) -> np.ndarray:
    from imprint.ingest.sample.faults import defocus

    return defocus(img, radius)


def _record_sharpness(frame: np.ndarray, mask: np.ndarray, box) -> float:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return S.record_scores(grey, 1, mask, box).sharpness


def test_sharpness_falls_with_defocus_and_matches_across_resolutions():
    # boxes of 160 and 640 pixels: both above WORK_SIDE, so both are measured at 128
    small, mask_s, box_s = _scene(320)
    large, mask_l, box_l = _scene(1280)
    sharp_s, sharp_l = _record_sharpness(small, mask_s, box_s), _record_sharpness(large, mask_l, box_l)
    blur_s = _record_sharpness(_defocus(small, 0.02 * 320), mask_s, box_s)
    blur_l = _record_sharpness(_defocus(large, 0.02 * 1280), mask_l, box_l)
    assert sharp_s > 0.6 and sharp_l > 0.6
    assert blur_s < 0.4 and blur_l < 0.4
    # the same defocus relative to the object scores alike at 4x the resolution
    assert abs(sharp_s - sharp_l) < 0.1 and abs(blur_s - blur_l) < 0.1
    assert S.sharpness(np.full((32, 32), 7, np.uint8), np.ones((32, 32), bool)) == 0.0  # nothing to measure


def test_reduced_decode_gives_nearly_the_same_scores(tmp_path):
    frame, mask, box = _scene(1024)
    path = tmp_path / "f.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    side = max(box[2] - box[0], box[3] - box[1])
    r = S.reduction_for(side)
    assert r == 4 and S.reduction_for(100) == 1
    reduced = S.read_grey(path, r)
    assert reduced.shape == (256, 256)
    full = S.record_scores(S.read_grey(path, 1), 1, mask, box)
    fast = S.record_scores(reduced, r, mask, box)
    assert abs(full.sharpness - fast.sharpness) < 0.05
    assert (full.mask_components, full.mask_fill) == (fast.mask_components, fast.mask_fill)
    assert S.read_grey(tmp_path / "missing.jpg") is None


def test_mask_scores_of_whole_split_and_speckled_masks():
    disc = np.zeros((100, 100), bool)
    cv2.circle(disc.view(np.uint8), (50, 50), 40, 1, -1)
    n, share, solidity, fill = S.mask_scores(disc[10:91, 10:91])
    assert (n, share) == (1, 1.0) and solidity > 0.97 and abs(fill - np.pi / 4) < 0.03
    halves = np.zeros((40, 100), bool)
    halves[:, :45] = halves[:, 55:] = True
    n, share, solidity, fill = S.mask_scores(halves)
    assert n == 2 and share == 0.5 and solidity == pytest.approx(0.9, abs=0.01)
    from imprint.ingest.sample.faults import speckles

    on, off = speckles(disc, np.random.default_rng(0), 0.03)
    n, share, _, _ = S.mask_scores((disc | on) & ~off)
    assert n > 20 and share < 1.0
    assert S.mask_scores(np.zeros((5, 5), bool)) == (0, 0.0, 0.0, 0.0)


def test_hash_distances_find_repeats():
    frame, _, box = _scene(200)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    noisy = np.clip(grey + np.random.default_rng(1).normal(0, 1.5, grey.shape), 0, 255).astype(np.uint8)
    other = np.ascontiguousarray(np.rot90(grey))
    hashes = [S.dhash(g) for g in (grey, noisy, other)]
    assert all(len(h) == S.HASH_BYTES == 32 for h in hashes)
    d = S.hash_distances(hashes[0], S.hash_matrix(hashes))
    assert d[0] == 0 and d[1] <= 12 and d[2] > 60


def test_change_is_zero_for_a_repeat_and_large_for_another_object():
    a, am, _ = _scene(64, seed=0)
    b, bm, _ = _scene(64, seed=3)
    assert S.change(a, am, a, am) == 0.0
    moved = np.roll(a, 6, axis=1)
    assert S.change(a, am, moved, np.roll(am, 6, axis=1)) > 0.02
    assert S.change(a, np.zeros_like(am), b, np.zeros_like(bm)) == 0.0  # nothing to compare
    big = cv2.resize(a, (128, 128))
    assert S.change(big, cv2.resize(am.astype(np.uint8), (128, 128)) > 0, big,
                    cv2.resize(am.astype(np.uint8), (128, 128)) > 0) == 0.0


def _crop(frame: np.ndarray, mask: np.ndarray, box, side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    from imprint.geometry import object_crop

    img, m, _ = object_crop(frame, mask, box, 1.1, side, (0, 0, 0))
    return img, m


def test_classic_identity_keeps_one_object_under_light_change_and_tells_two_apart():
    frame, mask, box = _scene(200, seed=0)
    brighter = np.clip(frame.astype(np.float32) * np.array([1.25, 1.2, 1.3]), 0, 255).astype(np.uint8)
    other = frame.copy()
    other[mask] = np.roll(frame[mask], 1, axis=1)  # another colouring of the object
    star = np.zeros_like(mask)
    cv2.fillPoly(star.view(np.uint8), [np.array([[100, 40], [120, 90], [170, 100], [120, 120], [100, 170],
                                                   [80, 120], [30, 100], [80, 90]])], 1)
    backend = ClassicBackend(64)
    crops = [_crop(f, m, box) for f, m in ((frame, mask), (brighter, mask), (other, star))]
    feats = backend.embed([c[0] for c in crops], [c[1] for c in crops])
    same = backend.similarity(feats[0], feats[0])
    lit = backend.similarity(feats[0], feats[1])
    different = backend.similarity(feats[0], feats[2])
    assert same == pytest.approx(1.0)
    assert lit > 0.6 > different
    assert silhouette_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def test_dinov2_backend_loads_once_per_process_from_a_folder(tmp_path, monkeypatch):
    import transformers

    from imprint.quality import features

    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       mlp_ratio=2, image_size=56, patch_size=14)
    transformers.Dinov2Model(config).save_pretrained(tmp_path / "dino")
    calls = []
    real = transformers.Dinov2Model.from_pretrained
    monkeypatch.setattr(transformers.Dinov2Model, "from_pretrained",
                        classmethod(lambda cls, *a, **k: calls.append(a) or real(*a, **k)))
    features._dinov2.cache_clear()
    cfg = IdentityConfig(backend="dinov2", model=str(tmp_path / "dino"), batch_size=2)
    backend = get_backend(cfg)
    assert get_backend(cfg) is backend and len(calls) == 1
    assert backend.side == 56
    frame, mask, box = _scene(200)
    crops = [_crop(frame, mask, box, 56), _crop(np.ascontiguousarray(frame[::-1]), mask[::-1], box, 56),
             _crop(frame, mask, box, 56)]
    feats = backend.embed([c[0] for c in crops], [c[1] for c in crops])
    assert len(feats) == 3 and all(abs(np.linalg.norm(f) - 1) < 1e-4 for f in feats)
    assert backend.similarity(feats[0], feats[2]) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= backend.similarity(feats[0], feats[1]) <= 1.0
    features._dinov2.cache_clear()


def test_dinov2_that_cannot_be_had_is_one_clear_error(tmp_path):
    from imprint.hub import ModelUnavailable
    from imprint.quality import features

    features._dinov2.cache_clear()
    with pytest.raises(ModelUnavailable, match="DINOv2 identity model"):
        get_backend(IdentityConfig(backend="dinov2", model=str(tmp_path / "nothing-here")))


def _rec(frame: int, sharp: float = 0.8, comps: int = 1, share: float = 1.0, h: bytes = bytes(32)) -> RecordItem:
    return RecordItem(frame, sharp, comps, share, h)


def test_each_filter_removes_with_its_reason_and_threshold():
    assert Blurry(0.45).filter(_rec(0, sharp=0.3)).reason == "blurry"
    assert Blurry(0.45).filter(_rec(0, sharp=0.5)) is None
    frag = FragmentedMask(12, 0.8)
    assert frag.filter(_rec(0, comps=40, share=0.9)).score == "mask_components"
    assert frag.filter(_rec(0, comps=2, share=0.6)).score == "mask_largest_share"
    assert frag.filter(_rec(0, comps=3, share=0.95)) is None
    dup = NearDuplicate(3)
    flip = bytes([1]) + bytes(31)
    assert dup.filter(_rec(0)) is None
    removal = dup.filter(_rec(1, h=flip))
    assert removal.reason == "near_duplicate" and removal.value == 1 and "frame 0" in removal.detail
    assert dup.filter(_rec(2, h=bytes([255] * 32))) is None
    dup.reset()
    assert dup.filter(_rec(3, h=flip)) is None  # a new instance starts empty
    assert IdentityMismatch(0.6).filter(PairItem(2, 0.3, 0.1)).reason == "identity_mismatch"
    assert IdentityMismatch(0.6).filter(PairItem(2, 0.3, 0.1, self_pair=True)) is None
    assert StaticPair(0.006).filter(PairItem(2, 0.9, 0.001)).reason == "static_pair"
    assert StaticPair(0.006).filter(PairItem(2, 1.0, 0.0, self_pair=True)) is None


def test_filters_config_order_thresholds_and_validation():
    cfg = FiltersConfig()
    assert [f.name for f in record_filters(cfg)] == ["fragmented_mask", "blurry", "near_duplicate"]
    assert [f.name for f in pair_filters(cfg, 2)] == ["identity_mismatch", "static_pair"]
    assert record_filters(NO_FILTERS) == [] and pair_filters(NO_FILTERS, 1) == []
    assert cfg.identity_threshold(1) == cfg.identity_threshold(2) == 0.6  # measured: README, "Data quality"
    assert FiltersConfig(min_identity=0.7).identity_threshold(2) == 0.7
    assert FiltersConfig(min_identity_views=0.4).identity_threshold(1) == 0.4
    with pytest.raises(ValueError, match="no measured default"):  # dinov2: no weights offline, nothing measured
        FiltersConfig(identity=IdentityConfig(backend="dinov2"))
    dino = FiltersConfig(identity=IdentityConfig(backend="dinov2"), min_identity=0.5, min_identity_views=0.3)
    assert (dino.identity_threshold(2), dino.identity_threshold(1)) == (0.5, 0.3)
    assert FiltersConfig(identity=IdentityConfig(backend="dinov2"), enabled=("blurry",)).identity_threshold(2) is None
    assert set(cfg.thresholds(2)) >= {"min_sharpness", "min_identity", "min_change"}
    only = FiltersConfig(enabled=("blurry",))
    assert first_removal(record_filters(only), _rec(0, sharp=0.1, comps=99)).reason == "blurry"
    assert first_removal(record_filters(cfg), _rec(0, sharp=0.1, comps=99)).reason == "fragmented_mask"
    for bad in ({"enabled": ("sharp",)}, {"min_sharpness": 1.5}, {"max_mask_components": 0}):
        with pytest.raises(ValueError):
            FiltersConfig(**bad)
    with pytest.raises(ValueError, match="identity.backend"):
        IdentityConfig(backend="clip")
    assert set(FILTER_NAMES) == {"blurry", "fragmented_mask", "near_duplicate", "identity_mismatch", "static_pair"}


def test_excluded_rows_round_trip(tmp_path):
    row = {"kind": "record", "stage": 2, "source": "ytvos", "group_id": "v", "instance_id": "1", "src_frame": 3,
           "reason": "blurry", "score": "sharpness", "value": 0.2, "threshold": 0.45, "records": "r.parquet",
           "src_row": 7, "image_uri": "/x.jpg", "bbox": [1, 2, 3, 4]}
    path = records_part_path(tmp_path, "ytvos", "/d/records/ytvos/part-00002.parquet")
    assert path.name == "records-ytvos-part-00002.parquet"
    assert write_excluded([row], path) == 1
    pair = {**row, "kind": "pair", "pair_id": "p", "tgt_frame": 5, "reason": "static_pair", "score": "change",
            "object": {"bytes": b"x", "path": "p_object.jpg"}}
    write_excluded([pair], tmp_path / "excluded" / "part-00000.parquet")
    # a shard's excluded pairs count once the shard is finished (its part and marker exist), like the shard
    assert read_excluded(tmp_path).column("kind").to_pylist() == ["record"]
    (tmp_path / "part-00000.parquet").write_bytes(b"")
    (tmp_path / "_parts").mkdir()
    (tmp_path / "_parts" / "part-00000.json").write_text("{}")
    table = read_excluded(tmp_path)
    assert table.schema.equals(EXCLUDED_SCHEMA, check_metadata=False)
    assert table.column("kind").to_pylist() == ["record", "pair"]
    assert table.column("tgt_frame").to_pylist() == [None, 5]
    assert read_excluded(tmp_path / "nowhere").num_rows == 0


def test_histograms_merge_and_describe():
    a, b = ScoreHistograms(), ScoreHistograms()
    for v in (0.1, 0.5, 0.52, 0.9):
        a.add("sharpness", v, removed=v < 0.45)
    b.add("sharpness", 0.99)
    b.add("change", 5.0)  # above the range: the last bin
    a.merge(b)
    d = describe(ScoreHistograms.from_dict(a.to_dict()), FiltersConfig().thresholds(2), FILTER_NAMES)
    assert sum(d["sharpness"]["kept"]) == 4 and sum(d["sharpness"]["removed"]) == 1
    assert d["sharpness"]["threshold"] == 0.45 and d["sharpness"]["rule"] == "<"
    assert d["change"]["rule"] == "<" and describe(a, {"max_hash_distance": 3}, ())["sharpness"]["filter_on"] is False
    assert d["change"]["kept"][-1] == 1 and len(d["change"]["edges"]) == len(d["change"]["kept"]) + 1
    assert quantile(d["sharpness"]["kept"], "sharpness", 0.5) == pytest.approx(0.525)
    assert quantile([0] * 20, "sharpness", 0.5) is None
