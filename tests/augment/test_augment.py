"""imprint.augment: affine T, LUT colour P and the four mask levels (seeded, fast; no timings asserted)."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
from PIL import ImageFilter  # noqa: E402

from imprint.augment import (  # noqa: E402
    NUM_LEVELS,
    AffineConfig,
    AffineParams,
    ColorConfig,
    ColorParams,
    MaskLevelConfig,
    apply_affine,
    apply_color,
    build_lut,
    color_table,
    draw_level,
    is_degenerate,
    list_cubes,
    load_cube_table,
    mask_level,
    mask_levels,
    sample_affine,
    sample_color,
)
from imprint.augment.mask_levels import mask_level_into  # noqa: E402
from imprint.masks import mask_bbox  # noqa: E402


# ---------------------------------------------------------------- references (what the production code must equal)


def identity_affine() -> AffineParams:
    """The T that changes nothing."""
    return AffineParams(angle=0.0, scale=1.0, shear_x=0.0, shear_y=0.0, tx=0.0, ty=0.0, flip=False)


def identity_color() -> ColorParams:
    """The P that changes nothing."""
    return ColorParams(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, None)


def write_cube_file(
    path: str | os.PathLike[str],
    table: np.ndarray | ImageFilter.Color3DLUT,
    title: str | None = None,
) -> Path:
    """Write a 3-channel cubic LUT (``(n, n, n, 3)`` ``[b, g, r]`` array or Color3DLUT) as an Adobe ``.cube`` file.

    Lines are written red-fastest, the order ``pillow_lut.load_cube_file`` reads back.
    """
    if isinstance(table, ImageFilter.Color3DLUT):
        if table.channels != 3:
            raise ValueError("only 3-channel LUTs can be written")
        n1, n2, n3 = table.size
        table = np.asarray(table.table, dtype=np.float64).reshape(n3, n2, n1, 3)
    arr = np.asarray(table, dtype=np.float64)
    n = arr.shape[0]
    if arr.shape != (n, n, n, 3) or n < 2:
        raise ValueError(f"table must be (n, n, n, 3) with n >= 2, got {arr.shape}")
    lines = []
    if title:
        lines.append(f'TITLE "{title}"')
    lines.append(f"LUT_3D_SIZE {n}")
    lines.extend(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in arr.reshape(-1, 3).tolist())
    out = Path(path)
    out.write_text("\n".join(lines) + "\n")
    return out


def apply_affine_transform(
    image: np.ndarray,
    mask: np.ndarray,
    params: AffineParams,
    fill: tuple[int, int, int] = (255, 255, 255),
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`apply_affine` through ``A.HorizontalFlip`` and ``A.Affine`` transform objects (the reference)."""
    import albumentations as A

    img = np.ascontiguousarray(image)
    msk = (mask != 0).view(np.uint8)
    if params.flip:
        out = A.HorizontalFlip(p=1.0)(image=img, mask=msk)
        img, msk = out["image"], out["mask"]
    warp = A.Affine(
        scale=(params.scale, params.scale),
        translate_percent={"x": (params.tx, params.tx), "y": (params.ty, params.ty)},
        rotate=(params.angle, params.angle),
        shear={"x": (params.shear_x, params.shear_x), "y": (params.shear_y, params.shear_y)},
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        fit_output=False,
        keep_ratio=False,
        balanced_scale=False,
        border_mode=cv2.BORDER_CONSTANT,
        fill=tuple(fill),
        fill_mask=0,
        p=1.0,
    )
    out = warp(image=img, mask=msk)
    return np.ascontiguousarray(out["image"]), out["mask"] != 0


# ---------------------------------------------------------------- fixtures


def _image(rng: np.random.Generator, h: int = 96, w: int = 128) -> np.ndarray:
    """Smooth gradients plus noise: every channel and most values occur."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack((xx * 255.0 / (w - 1), yy * 255.0 / (h - 1), (xx + yy) * 255.0 / (h + w - 2)), axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _blob(rng: np.random.Generator, h: int = 160, w: int = 200, n: int = 5) -> np.ndarray:
    """A union of random ellipses (usually non-convex)."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(n):
        center = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        axes = (int(rng.integers(4, w // 5)), int(rng.integers(4, h // 5)))
        cv2.ellipse(m, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


def _rect_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _json_round_trip(d: dict) -> dict:
    return json.loads(json.dumps(d))


# ---------------------------------------------------------------- affine


def test_affine_params_round_trip_gives_identical_bytes():
    rng = np.random.default_rng(0)
    img = _image(rng)
    mask = _rect_mask(96, 128, 20, 70, 30, 100)
    for _ in range(5):
        params = sample_affine(rng, AffineConfig(flip_p=0.5))
        d = params.to_dict()
        assert all(type(v) in (float, bool) for v in d.values())
        again = AffineParams.from_dict(_json_round_trip(d))
        assert again == params
        a_img, a_mask = apply_affine(img, mask, params)
        b_img, b_mask = apply_affine(img, mask, again)
        assert a_img.tobytes() == b_img.tobytes() and a_mask.tobytes() == b_mask.tobytes()


def test_affine_is_deterministic_whatever_the_global_random_state():
    rng = np.random.default_rng(1)
    img, mask = _image(rng), _rect_mask(96, 128, 10, 80, 20, 90)
    params = AffineParams(angle=13.0, scale=1.1, shear_x=5.0, shear_y=-3.0, tx=0.05, ty=-0.04, flip=True)
    random.seed(1)
    np.random.seed(1)
    first = apply_affine(img, mask, params)
    random.seed(2)
    np.random.seed(2)
    second = apply_affine(img, mask, params)
    assert first[0].tobytes() == second[0].tobytes() and first[1].tobytes() == second[1].tobytes()
    assert first[0].shape == img.shape and first[0].dtype == np.uint8
    assert first[1].shape == mask.shape and first[1].dtype == bool


def test_affine_identity_returns_input():
    rng = np.random.default_rng(2)
    img, mask = _image(rng), _blob(rng, 96, 128)
    out_img, out_mask = apply_affine(img, mask, identity_affine())
    assert np.array_equal(out_img, img)
    assert np.array_equal(out_mask, mask)


def test_affine_flip_flips():
    rng = np.random.default_rng(3)
    img, mask = _image(rng), _blob(rng, 96, 128)
    flip = AffineParams(**{**identity_affine().to_dict(), "flip": True})
    out_img, out_mask = apply_affine(img, mask, flip)
    assert np.array_equal(out_img, img[:, ::-1])
    assert np.array_equal(out_mask, mask[:, ::-1])


def test_affine_fill_outside_and_mask_zero_outside():
    rng = np.random.default_rng(4)
    img = _image(rng)
    mask = np.ones((96, 128), bool)
    small = AffineParams(**{**identity_affine().to_dict(), "scale": 0.5})
    out_img, out_mask = apply_affine(img, mask, small, fill=(10, 200, 30))
    assert (out_img[0, 0] == (10, 200, 30)).all() and (out_img[-1, -1] == (10, 200, 30)).all()
    assert not out_mask[0, 0] and not out_mask[-1, -1] and out_mask[48, 64]
    assert 0.2 < out_mask.mean() < 0.3  # a quarter of the frame is left


def test_affine_translate_moves_by_whole_pixels():
    img = np.full((64, 100, 3), 255, np.uint8)
    mask = _rect_mask(64, 100, 20, 30, 40, 50)
    params = AffineParams(**{**identity_affine().to_dict(), "tx": 0.1, "ty": -0.25})
    _, out = apply_affine(img, mask, params)
    assert mask_bbox(out) == (50, 4, 60, 14)


def test_degenerate_draw_is_detected():
    rng = np.random.default_rng(5)
    img = _image(rng)
    mask = _rect_mask(96, 128, 30, 60, 80, 120)  # object on the right
    far = AffineParams(**{**identity_affine().to_dict(), "tx": 0.6})
    _, pushed = apply_affine(img, mask, far)
    assert is_degenerate(pushed, mask)
    partly = AffineParams(**{**identity_affine().to_dict(), "tx": 0.32})  # 40 px right: 8 of 40 columns stay
    _, cut = apply_affine(img, mask, partly)
    assert cut.any() and is_degenerate(cut, mask) and not is_degenerate(cut, mask, min_keep=0.1)
    _, same = apply_affine(img, mask, identity_affine())
    assert not is_degenerate(same, mask)
    assert is_degenerate(mask, np.zeros_like(mask))  # nothing to keep
    with pytest.raises(ValueError, match="min_keep"):
        is_degenerate(mask, mask, min_keep=1.5)


def test_sampled_affine_stays_in_ranges_and_uses_only_the_generator():
    cfg = AffineConfig(rotate=(-5.0, 30.0), scale=(0.9, 1.1), shear=(-2.0, 4.0), translate=(-0.1, 0.05), flip_p=0.3)
    rng = np.random.default_rng(6)
    draws = [sample_affine(rng, cfg) for _ in range(500)]
    for p in draws:
        assert -5.0 <= p.angle <= 30.0 and 0.9 <= p.scale <= 1.1
        assert -2.0 <= p.shear_x <= 4.0 and -2.0 <= p.shear_y <= 4.0
        assert -0.1 <= p.tx <= 0.05 and -0.1 <= p.ty <= 0.05
    assert 0.2 < np.mean([p.flip for p in draws]) < 0.4
    again = [sample_affine(np.random.default_rng(6), cfg) for _ in range(1)]
    assert again[0] == draws[0]


def test_affine_validation():
    with pytest.raises(ValueError, match="rotate"):
        AffineConfig(rotate=(10.0, -10.0))
    with pytest.raises(ValueError, match="scale"):
        AffineConfig(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="flip_p"):
        AffineConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="fill"):
        AffineConfig(fill=(0, 0, 256))
    assert AffineConfig(rotate=[-1, 1]).rotate == (-1.0, 1.0)  # lists from YAML become tuples
    with pytest.raises(ValueError, match="missing keys"):
        AffineParams.from_dict({"angle": 0.0})
    with pytest.raises(ValueError, match="flip"):
        AffineParams(0.0, 1.0, 0.0, 0.0, 0.0, 0.0, flip="yes")
    with pytest.raises(ValueError, match="finite"):
        AffineParams(float("nan"), 1.0, 0.0, 0.0, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="HxWx3"):
        apply_affine(np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), identity_affine())


# ---------------------------------------------------------------- colour


def _pillow_lut_table(params: ColorParams, size: int) -> np.ndarray:
    import pillow_lut

    lut = pillow_lut.rgb_color_enhance(
        size,
        brightness=params.brightness,
        exposure=params.exposure,
        contrast=params.contrast,
        warmth=params.warmth,
        saturation=params.saturation,
        hue=params.hue % 1.0,  # pillow_lut takes 0..1 turns; ours may be negative
        gamma=params.gamma,
    )
    return np.asarray(lut.table, dtype=np.float64).reshape(size, size, size, 3)


def test_numpy_lut_matches_pillow_lut():
    # pillow_lut's numpy path (hue == 0) is float32, its hue path float64 Python; ours is
    # float32 numpy: measured differences are ~2e-6, asserted at 1e-4.
    rng = np.random.default_rng(7)
    wide = ColorConfig(hue=(-0.5, 0.5), saturation=(-1.0, 2.0), contrast=(-0.5, 1.0), exposure=(-1.0, 1.0))
    for i in range(12):
        p = sample_color(rng, ColorConfig() if i % 2 else wide)
        d = {**p.to_dict(), "tint": 0.0}
        if i % 3 == 0:
            d["brightness"] = 0.0
        if i % 4 == 0:
            d["hue"] = 0.0  # pillow_lut's numpy path
        p = ColorParams.from_dict(d)
        for size in (17, 9):
            ours = np.asarray(build_lut(p, size).table, dtype=np.float64).reshape(size, size, size, 3)
            np.testing.assert_allclose(ours, _pillow_lut_table(p, size), atol=1e-4, rtol=0)


def test_identity_color_gives_input_back():
    rng = np.random.default_rng(8)
    img = _image(rng)
    grid = np.linspace(0.0, 1.0, 17)
    assert np.array_equal(color_table(identity_color())[1, 2, :, 0], grid.astype(np.float32))  # exact identity table
    out = apply_color(img, identity_color())
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).max() <= 1


def _only(**values) -> ColorParams:
    return ColorParams.from_dict({**identity_color().to_dict(), **values})


def test_brightness_warmth_tint_move_the_right_way():
    rng = np.random.default_rng(9)
    img = _image(rng).astype(np.uint8)
    mid = np.clip(img.astype(int) // 2 + 64, 0, 255).astype(np.uint8)  # away from the clipping ends
    base = mid.astype(float)
    up = apply_color(mid, _only(brightness=0.15)).astype(float)
    assert up.mean() > base.mean() + 30
    exp = apply_color(mid, _only(exposure=0.3)).astype(float)
    assert exp.mean() > base.mean() + 5

    def r_minus_b(a):
        return (a[..., 0] - a[..., 2]).mean()

    assert r_minus_b(apply_color(mid, _only(warmth=0.25)).astype(float)) > r_minus_b(base) + 3
    assert r_minus_b(apply_color(mid, _only(warmth=-0.25)).astype(float)) < r_minus_b(base) - 3

    def magenta(a):
        return ((a[..., 0] + a[..., 2]) / 2 - a[..., 1]).mean()

    assert magenta(apply_color(mid, _only(tint=0.15)).astype(float)) > magenta(base) + 3
    assert magenta(apply_color(mid, _only(tint=-0.15)).astype(float)) < magenta(base) - 3


def test_color_params_round_trip_gives_identical_bytes(tmp_path):
    rng = np.random.default_rng(10)
    img = _image(rng)
    write_cube_file(tmp_path / "look.cube", _invert_table(9))
    cfg = ColorConfig(cube_dir=str(tmp_path), cube_p=0.5)
    seen_cube = False
    for _ in range(8):
        p = sample_color(rng, cfg)
        seen_cube |= p.cube is not None
        d = p.to_dict()
        assert all(v is None or type(v) in (float, str) for v in d.values())
        again = ColorParams.from_dict(_json_round_trip(d))
        assert again == p
        assert apply_color(img, p, cfg).tobytes() == apply_color(img, again, cfg).tobytes()
    assert seen_cube


def test_sampled_color_stays_in_ranges():
    cfg = ColorConfig(brightness=(-0.1, 0.05), gamma=(0.9, 1.2), hue=(-0.02, 0.01), tint=(0.0, 0.1), cube_p=0.0)
    rng = np.random.default_rng(11)
    for _ in range(500):
        p = sample_color(rng, cfg, cubes=("a.cube",))
        assert -0.1 <= p.brightness <= 0.05 and 0.9 <= p.gamma <= 1.2
        assert -0.02 <= p.hue <= 0.01 and 0.0 <= p.tint <= 0.1
        for name in ("exposure", "contrast", "saturation", "warmth"):
            lo, hi = getattr(cfg, name)
            assert lo <= getattr(p, name) <= hi
        assert p.cube is None


def _invert_table(n: int) -> np.ndarray:
    axis = np.linspace(0.0, 1.0, n)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack((1.0 - r, 1.0 - g, 1.0 - b), axis=-1)


@pytest.mark.parametrize("n", [17, 5])
def test_inverting_cube_inverts(tmp_path, n):
    rng = np.random.default_rng(12)
    img = _image(rng)
    write_cube_file(tmp_path / "invert.cube", _invert_table(n), title="invert")
    loaded = load_cube_table(str(tmp_path / "invert.cube"))
    assert loaded.shape == (n, n, n, 3)
    np.testing.assert_allclose(loaded, _invert_table(n), atol=1e-6)
    cfg = ColorConfig(cube_dir=str(tmp_path))
    out = apply_color(img, _only(cube="invert.cube"), cfg)
    assert np.abs(out.astype(int) - (255 - img.astype(int))).max() <= 1


def test_cube_composes_before_the_adjustments_like_pillow_lut(tmp_path):
    import pillow_lut

    rng = np.random.default_rng(13)
    cube = np.clip(_invert_table(17) ** 1.3 + rng.normal(0, 0.02, (17, 17, 17, 3)), 0, 1)
    write_cube_file(tmp_path / "c.cube", cube)
    cube_lut = pillow_lut.load_cube_file(str(tmp_path / "c.cube"))
    p = _only(exposure=0.2, contrast=0.1, saturation=-0.2, warmth=0.1, gamma=1.1, cube="c.cube")
    ours = np.asarray(build_lut(p, 17, cube_lut).table, dtype=np.float64)
    ref = pillow_lut.rgb_color_enhance(cube_lut, exposure=0.2, contrast=0.1, saturation=-0.2, warmth=0.1, gamma=1.1)
    np.testing.assert_allclose(ours, np.asarray(ref.table, dtype=np.float64), atol=1e-4, rtol=0)


def test_cube_listing_and_sampling(tmp_path):
    for name in ("b.cube", "a.cube", "notes.txt", "C.CUBE"):
        (tmp_path / name).write_text("")
    assert list_cubes(tmp_path) == ["C.CUBE", "a.cube", "b.cube"]
    rng = np.random.default_rng(14)
    cubes = [str(tmp_path / "a.cube"), "x/b.cube"]
    picked = {sample_color(rng, ColorConfig(cube_p=1.0), cubes=cubes).cube for _ in range(50)}
    assert picked == {"a.cube", "b.cube"}  # recorded by file name
    from_dir = {sample_color(rng, ColorConfig(cube_p=1.0, cube_dir=str(tmp_path))).cube for _ in range(60)}
    assert from_dir == {"C.CUBE", "a.cube", "b.cube"}
    assert {sample_color(rng, ColorConfig(cube_p=0.0), cubes=["a.cube"]).cube for _ in range(50)} == {None}
    assert sample_color(rng, ColorConfig(cube_p=1.0)).cube is None  # no cubes anywhere


def test_color_validation(tmp_path):
    with pytest.raises(ValueError, match="lut_size"):
        ColorConfig(lut_size=1)
    with pytest.raises(ValueError, match="gamma"):
        ColorConfig(gamma=(0.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        ColorConfig(hue=(-0.6, 0.0))
    with pytest.raises(ValueError, match="cube_p"):
        ColorConfig(cube_p=-0.1)
    with pytest.raises(ValueError, match="bare file name"):
        _only(cube="../x.cube")
    with pytest.raises(ValueError, match="unknown keys"):
        ColorParams.from_dict({**identity_color().to_dict(), "vibrance": 0.0})
    with pytest.raises(ValueError, match="cube_dir is None"):
        apply_color(np.zeros((2, 2, 3), np.uint8), _only(cube="x.cube"), ColorConfig())
    with pytest.raises(FileNotFoundError):
        apply_color(np.zeros((2, 2, 3), np.uint8), _only(cube="x.cube"), ColorConfig(cube_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="cube_table"):
        color_table(_only(cube="x.cube"))
    assert isinstance(build_lut(identity_color(), 5), ImageFilter.Color3DLUT)


# ---------------------------------------------------------------- mask levels


def _assert_nested(levels: np.ndarray) -> None:
    assert levels.shape[0] == NUM_LEVELS and levels.dtype == bool
    for finer, coarser in ((3, 2), (2, 1), (1, 0)):
        assert not (levels[finer] & ~levels[coarser]).any(), f"level {finer} not inside level {coarser}"


def _box(mask: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = mask_bbox(mask)
    return _rect_mask(*mask.shape, y0, y1, x0, x1)


def test_mask_levels_nested_box_and_fine():
    rng = np.random.default_rng(15)
    cfg = MaskLevelConfig()
    for _ in range(10):
        mask = _blob(rng)
        levels = mask_levels(mask, cfg)
        assert levels.shape == (4, *mask.shape)
        _assert_nested(levels)
        assert np.array_equal(levels[0], _box(mask))
        assert np.array_equal(levels[3], mask)
        for k in range(NUM_LEVELS):
            assert np.array_equal(mask_level(mask, k, cfg), levels[k])


def test_mask_level_into_writes_the_level_inside_the_box_only():
    """The loader's call: the level written into a zeroed buffer (a bool view of a uint8 batch slot), inside
    the object's box only; the same values as mask_level / mask_levels."""
    rng = np.random.default_rng(21)
    for cfg in (MaskLevelConfig(), MaskLevelConfig(sigmas=(0.3, 0.01), threshold=0.5)):
        for _ in range(6):
            mask = _blob(rng, int(rng.integers(40, 300)), int(rng.integers(40, 300)))
            levels = mask_levels(mask, cfg)
            box = mask_bbox(mask)
            outside = ~_box(mask)
            for k in range(NUM_LEVELS):
                slot = np.zeros(mask.shape, np.uint8)
                assert mask_level_into(mask, k, cfg, slot.view(bool)) == box
                assert np.array_equal(slot.view(bool), levels[k]) and set(np.unique(slot)) <= {0, 1}
                slot[outside] = 9  # never written: the level is empty outside the box
                assert mask_level_into(mask, k, cfg, slot.view(bool)) == box and (slot[outside] == 9).all()
    empty = np.zeros((20, 30), bool)
    assert mask_level_into(empty, 1, MaskLevelConfig(), np.zeros_like(empty)) is None
    with pytest.raises(ValueError, match="out must be"):
        mask_level_into(empty, 1, MaskLevelConfig(), np.zeros((20, 30), np.uint8))


def test_coarser_levels_fill_concavities():
    u = np.zeros((200, 200), bool)  # a thick U: the gap between the arms is the concavity
    u[40:160, 40:75] = True
    u[40:160, 125:160] = True
    u[125:160, 40:160] = True
    levels = mask_levels(u)
    _assert_nested(levels)
    assert levels[1].sum() > levels[2].sum() > levels[3].sum()
    gap = np.zeros_like(u)
    gap[40:125, 75:125] = True
    assert levels[1][gap].mean() > 0.5 and levels[2][gap].mean() < levels[1][gap].mean()


def test_thin_shapes_keep_nesting_even_when_blur_fades():
    """A large blur of a thin ring stays under the threshold: level 1 then equals level 2 (never less)."""
    ring = np.zeros((200, 200), np.uint8)
    cv2.circle(ring, (100, 100), 70, 1, 12)
    mask = ring.astype(bool)
    levels = mask_levels(mask)
    _assert_nested(levels)
    assert levels[2].sum() > levels[3].sum()
    assert not levels[1][100, 100]  # the hole is not filled: absolute threshold on the blurred mask


def test_mask_levels_match_a_full_resolution_blur():
    """The shrink-blur-enlarge shortcut differs from the plain definition only on the contour."""
    rng = np.random.default_rng(16)
    cfg = MaskLevelConfig()
    for size in (300, 120):
        mask = _blob(rng, size, size, n=6)
        x0, y0, x1, y1 = mask_bbox(mask)
        diag = math.hypot(x1 - x0, y1 - y0)
        box = _box(mask)
        fine = mask.astype(np.float32)
        blur2 = cv2.GaussianBlur(fine, (0, 0), cfg.sigmas[1] * diag, borderType=cv2.BORDER_CONSTANT)
        blur1 = cv2.GaussianBlur(fine, (0, 0), cfg.sigmas[0] * diag, borderType=cv2.BORDER_CONSTANT)
        exact2 = ((blur2 > cfg.threshold) | mask) & box
        exact1 = ((blur1 > cfg.threshold) | exact2) & box
        levels = mask_levels(mask, cfg)
        for got, want in ((levels[1], exact1), (levels[2], exact2)):
            added = max(1, int((want & ~mask).sum()))
            assert (got ^ want).sum() <= 0.03 * added


def test_mask_levels_edge_cases():
    empty = np.zeros((32, 40), bool)
    assert mask_levels(empty).shape == (4, 32, 40) and not mask_levels(empty).any()
    assert not mask_level(empty, 1).any()
    dot = np.zeros((32, 40), np.uint8)
    dot[5, 7] = 255  # non-bool input: nonzero = object
    levels = mask_levels(dot)
    _assert_nested(levels)
    assert levels[0].sum() == 1 and levels[3].sum() == 1
    full = np.ones((50, 60), bool)
    assert mask_levels(full).all()
    with pytest.raises(ValueError, match="level"):
        mask_level(dot, 4)
    with pytest.raises(ValueError, match="2-D"):
        mask_levels(np.zeros((2, 2, 2), bool))


def test_mask_level_config_validation():
    with pytest.raises(ValueError, match="sum to 1"):
        MaskLevelConfig(probs=(0.5, 0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="non-negative"):
        MaskLevelConfig(probs=(1.5, -0.5, 0.0, 0.0))
    with pytest.raises(ValueError, match="coarse to fine"):
        MaskLevelConfig(sigmas=(0.01, 0.1))
    with pytest.raises(ValueError, match="threshold"):
        MaskLevelConfig(threshold=1.0)
    assert MaskLevelConfig(probs=[0, 0, 0.5, 0.5]).probs == (0.0, 0.0, 0.5, 0.5)


def test_draw_level_follows_probs():
    cfg = MaskLevelConfig(probs=(0.1, 0.2, 0.3, 0.4))
    rng = np.random.default_rng(17)
    counts = np.bincount([draw_level(rng, cfg) for _ in range(20000)], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), cfg.probs, atol=0.02)
    only_two = MaskLevelConfig(probs=(0.0, 0.0, 1.0, 0.0))
    assert {draw_level(rng, only_two) for _ in range(200)} == {2}
    assert draw_level(np.random.default_rng(3), cfg) == draw_level(np.random.default_rng(3), cfg)


def test_functional_affine_equals_the_albumentations_transform():

    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(61, 83, 3), dtype=np.uint8)
    mask = np.zeros((61, 83), bool)
    mask[10:50, 20:70] = True
    for _ in range(12):
        params = sample_affine(rng)
        a_img, a_mask = apply_affine(image, mask, params, fill=(1, 2, 3))
        b_img, b_mask = apply_affine_transform(image, mask, params, fill=(1, 2, 3))
        assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
