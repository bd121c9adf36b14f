"""Augmentation: affine T and LUT colour P, four mask levels (comes with issue #3)."""
