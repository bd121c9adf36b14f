"""Images the sample is painted with: photos from the scikit-image wheel, procedural noise and textures,
lighting gains, and the natural backgrounds of the video layouts."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from imprint.ingest.sample.common import Size

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")

Colour = Sequence[float] | np.ndarray  # RGB in [0, 1]


# --------------------------------------------------------------------------- assets


@lru_cache(maxsize=None)
def skimage_image(name: str) -> np.ndarray:
    """An image shipped inside the scikit-image wheel (loads offline), read-only."""
    from skimage import data

    img = np.ascontiguousarray(getattr(data, name)())
    img.setflags(write=False)
    return img


def photo_rgb(name: str) -> np.ndarray:
    return skimage_image(name)[..., :3]


@lru_cache(maxsize=None)
def logo_parts() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The logo's RGB and three shapes from it: the disc and its green and orange halves.

    The logo's alpha channel is fully opaque, so its shapes come from its colours.
    """
    rgb = skimage_image("logo")[..., :3].astype(np.int16)
    white = rgb.min(axis=2) > 225
    r, g = rgb[..., 0], rgb[..., 1]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    close = lambda m: cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0  # noqa: E731
    disc = np.zeros(white.shape, np.uint8)
    cv2.circle(disc, (white.shape[1] // 2, white.shape[0] // 2), min(white.shape) // 2 - 4, 1, -1)
    shapes = {"disc": close(~white) & (disc > 0), "green": close(~white & (g > r)), "orange": close(~white & (r > g))}
    return skimage_image("logo")[..., :3], shapes


# --------------------------------------------------------------------------- procedural images


def value_noise(rng: np.random.Generator, h: int, w: int, channels: int = 1, cells: float = 5.0,
           octaves: int = 3, aspect: float = 1.0) -> np.ndarray:
    """Smooth value noise in [0, 1], float32 (h, w, channels); ``aspect`` > 1 stretches it along x."""
    out = np.zeros((h, w, channels), np.float32)
    total = 0.0
    for octave in range(octaves):
        n = cells * 2**octave
        gw = max(2, round(n * w / max(h, w) / aspect)) + 1
        gh = max(2, round(n * h / max(h, w))) + 1
        grid = rng.random((gh, gw, channels), dtype=np.float32)
        up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
        amp = 0.5**octave
        out += amp * up
        total += amp
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def random_crop(rng: np.random.Generator, img: np.ndarray, w: int, h: int, min_frac: float = 0.4) -> np.ndarray:
    """A random crop of ``img`` with the aspect of (w, h), resized to it, maybe mirrored."""
    ih, iw = img.shape[:2]
    cw_max = min(iw, ih * w / h)
    cw = cw_max * rng.uniform(min_frac, 1.0)
    ch = cw * h / w
    x = int(rng.uniform(0, iw - cw))
    y = int(rng.uniform(0, ih - ch))
    part = img[y:y + max(1, int(ch)), x:x + max(1, int(cw))]
    interp = cv2.INTER_AREA if part.shape[1] > w else cv2.INTER_CUBIC
    out = cv2.resize(part, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def object_texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """An object texture: a photo crop mixed with coloured noise and a tint, float32 RGB in [0, 1]."""
    base = random_crop(rng, photo_rgb(str(rng.choice(_PHOTOS))), w, h, 0.2).astype(np.float32) / 255.0
    noise = value_noise(rng, h, w, 3, cells=rng.uniform(2, 8))
    mix = rng.uniform(0.25, 0.5)
    tex = (1.0 - mix) * base + mix * noise
    if rng.random() < 0.35:  # stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.25) * max(w, h)
        tex *= (0.8 + 0.2 * np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period))[..., None]
    tex = 0.5 + (tex - 0.5) * rng.uniform(1.0, 1.5)  # contrast
    return np.clip(tex * rng.uniform(0.6, 1.3, 3).astype(np.float32), 0.0, 1.0)


def tinted_texture(rng: np.random.Generator, name: str, w: int, h: int, colour: Colour,
            contrast: float = 0.5) -> np.ndarray:
    """A grayscale scikit-image texture (brick, grass, gravel) tinted with ``colour``, float32 RGB."""
    gray = random_crop(rng, skimage_image(name), w, h, 0.5).astype(np.float32) / 255.0
    gray = 1.0 + (gray - float(gray.mean())) * contrast
    return np.clip(gray[..., None] * np.asarray(colour, np.float32), 0.0, 1.0)


def flat_colour(rng: np.random.Generator, w: int, h: int, colour: Colour, amount: float = 0.12) -> np.ndarray:
    """A flat colour with a little low-frequency variation, float32 RGB."""
    var = 1.0 + amount * (value_noise(rng, h, w, 1, cells=3) - 0.5)
    return np.clip(var * np.asarray(colour, np.float32), 0.0, 1.0)


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _gain_lut(gain: np.ndarray) -> np.ndarray:
    ramp = np.arange(256, dtype=np.float32)[:, None] * gain[None, :].astype(np.float32)
    return np.clip(ramp + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)


def apply_gain(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Per-channel gain of a uint8 RGB image (global lighting), through a lookup table."""
    return cv2.LUT(rgb, _gain_lut(gain))


# --------------------------------------------------------------------------- backgrounds


def photo_canvas(rng: np.random.Generator, canvas: Size) -> np.ndarray:
    """A natural background: a photo crop, colour-graded and mixed with coloured noise (uint8 RGB)."""
    cw, ch = canvas
    img = random_crop(rng, photo_rgb(str(rng.choice(_PHOTOS))), cw, ch, 0.45).astype(np.float32) / 255.0
    img = np.power(img, rng.uniform(0.8, 1.25)) * rng.uniform(0.8, 1.15, 3).astype(np.float32)
    mix = rng.uniform(0.1, 0.3)
    tint = value_noise(rng, ch, cw, 3, cells=rng.uniform(1.5, 4), octaves=2)
    return to_u8((1.0 - mix) * img + mix * tint)
