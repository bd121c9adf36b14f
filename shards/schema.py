"""The pair-shard schema (``shards/3``): the hand-off from ``imprint pairs`` to the trainer.

``DATA/shards/stage{1,2}/part-NNNNN.parquet``; one row per training pair. Image
columns are ``{bytes, path}`` structs and the schema carries the Hugging Face
``datasets`` features metadata, so ``datasets.load_dataset("parquet", ...)``
decodes them as images. Documented in ``docs/schema.md``.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

SHARDS_SCHEMA_VERSION = "shards/3"

# List children are named "element", as Parquet names them: a schema read back from a file equals this one.
IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

# Augmentation parameters are float64: the values in a row are exactly those that were applied.
AFFINE = pa.struct([
    pa.field("angle", pa.float64()), pa.field("scale", pa.float64()),
    pa.field("shear_x", pa.float64()), pa.field("shear_y", pa.float64()),
    pa.field("tx", pa.float64()), pa.field("ty", pa.float64()), pa.field("flip", pa.bool_()),
])

COLOR = pa.struct([
    pa.field("brightness", pa.float64()), pa.field("exposure", pa.float64()),
    pa.field("contrast", pa.float64()), pa.field("saturation", pa.float64()),
    pa.field("hue", pa.float64()), pa.field("warmth", pa.float64()), pa.field("tint", pa.float64()),
    pa.field("gamma", pa.float64()), pa.field("cube", pa.string()),
])

# Image columns stay nullable in Arrow: `datasets` only applies its Image feature to a field that
# equals its own (nullable) one. The writer and `imprint verify` make sure no image is null.

CROP = pa.struct([  # a square window in source-frame pixels; may extend past the frame (padded)
    pa.field("x0", pa.int32()), pa.field("y0", pa.int32()), pa.field("side", pa.int32()),
    pa.field("context", pa.float64()), pa.field("padded", pa.bool_()),
])

AUG = pa.struct([
    pa.field("affine", AFFINE),          # T; null for stage 1
    pa.field("color", COLOR),            # P; null for stage 1
    pa.field("object_crop", CROP),       # where the object image was cut from its frame
    pa.field("target_crop", CROP),       # where the target was cut from its frame
    pa.field("fill", pa.list_(pa.field("element", pa.int32()), 3)),  # background fill of removed backgrounds (I ⊗ M)
])

# The pair's quality scores (imprint.quality): measured on its un-augmented crops, and those of its two
# records from ingest. identity and change are null for a self-pair (an image source's object and target).
QUALITY = pa.struct([
    pa.field("identity", pa.float32()), pa.field("change", pa.float32()),
    pa.field("src_sharpness", pa.float32()), pa.field("tgt_sharpness", pa.float32()),
    pa.field("src_mask_components", pa.int32()), pa.field("tgt_mask_components", pa.int32()),
    pa.field("src_mask_largest_share", pa.float32()), pa.field("tgt_mask_largest_share", pa.float32()),
])

SHARD_SCHEMA = pa.schema([
    pa.field("pair_id", pa.string(), nullable=False),
    pa.field("stage", pa.int8(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("instance_id", pa.string(), nullable=False),
    pa.field("src_frame", pa.int32(), nullable=False),
    pa.field("tgt_frame", pa.int32(), nullable=False),
    pa.field("object", IMAGE),
    pa.field("target", IMAGE),
    pa.field("mask", IMAGE),
    pa.field("bbox", pa.list_(pa.field("element", pa.int32()), 4), nullable=False),
    pa.field("aug", AUG, nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("category", pa.string(), nullable=True),
    pa.field("licence", pa.string(), nullable=True),      # the pair's records' licence (never null when written)
    pa.field("attribution", pa.string(), nullable=True),  # who to credit (null where the source names no one)
    pa.field("quality", QUALITY, nullable=True),
])

IMAGE_COLUMNS = ("object", "target", "mask")

_ARROW_TO_HF = {pa.string(): "string", pa.int8(): "int8", pa.int32(): "int32", pa.int64(): "int64",
                pa.float32(): "float32", pa.float64(): "float64", pa.bool_(): "bool"}


def _hf_feature(dtype: pa.DataType) -> dict[str, Any]:
    """The ``datasets`` feature (as its JSON dict) of an Arrow type of this schema."""
    if pa.types.is_fixed_size_list(dtype):
        return {"feature": _hf_feature(dtype.value_type), "length": dtype.list_size, "_type": "List"}
    if pa.types.is_struct(dtype):
        return {f.name: _hf_feature(f.type) for f in dtype}
    return {"dtype": _ARROW_TO_HF[dtype], "_type": "Value"}


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    """``datasets`` features of every column: image structs as ``Image``, the rest from Arrow."""
    return {f.name: {"_type": "Image"} if f.name in IMAGE_COLUMNS else _hf_feature(f.type) for f in schema}


SHARD_SCHEMA = SHARD_SCHEMA.with_metadata({
    b"imprint.schema": SHARDS_SCHEMA_VERSION.encode(),
    b"huggingface": json.dumps({"info": {"features": hf_features(SHARD_SCHEMA)}}).encode(),
})
