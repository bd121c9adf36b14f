"""Augmentation: affine T and LUT colour P, four mask levels.

Stage-2 objects are augmented as ``P(T(I_obj))``: :mod:`.affine` (T, an
albumentations affine warp and flip), :mod:`.color` (P, colour and lighting through
one 3D LUT) and :mod:`.mask_levels` (the four shape-guidance precision levels).
Sampling (from a ``np.random.Generator``) and applying are separate, and the
drawn params are frozen dataclasses with exact ``to_dict`` / ``from_dict``, so a
training row can record and replay them.
"""

from .affine import AffineConfig, AffineParams, apply_affine, is_degenerate, sample_affine
from .color import (
    ColorConfig,
    ColorParams,
    apply_color,
    build_lut,
    color_table,
    list_cubes,
    load_cube_table,
    sample_color,
)
from .mask_levels import NUM_LEVELS, MaskLevelConfig, draw_level, mask_level, mask_levels

__all__ = [
    "NUM_LEVELS",
    "AffineConfig",
    "AffineParams",
    "ColorConfig",
    "ColorParams",
    "MaskLevelConfig",
    "apply_affine",
    "apply_color",
    "build_lut",
    "color_table",
    "draw_level",
    "is_degenerate",
    "list_cubes",
    "load_cube_table",
    "mask_level",
    "mask_levels",
    "sample_affine",
    "sample_color",
]
