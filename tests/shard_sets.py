"""A tiny hermetic shard folder for the shard tests (loader, verify, preview, storage).

``write_shard_set`` writes random images and blob masks in ``len(sizes)`` parts with row groups of 4 and a
manifest with the right hashes; ``small_cfg`` is a loader config for its stored sizes.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from imprint.masks import encode_mask_png, mask_bbox
from imprint.shards.loader import LoaderConfig
from imprint.shards.schema import SHARD_SCHEMA, SHARDS_SCHEMA_VERSION

SOURCES = ("ytvos", "vipseg")
OBJ, TGT = 32, 64  # stored sizes of the tiny set


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random filled ellipse, never empty."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    ry, rx = rng.uniform(0.12, 0.3, 2) * size
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _crop(rng: np.random.Generator) -> dict:
    return {"x0": int(rng.integers(0, 50)), "y0": int(rng.integers(0, 50)), "side": int(rng.integers(80, 200)),
            "context": 0.1, "padded": False}


def make_row(rng: np.random.Generator, pair_id: str, source: str, stage: int = 2, obj: int = OBJ,
             tgt: int = TGT, k: int = 0) -> dict:
    """One shards row with random images (JPEG or PNG) and a blob mask (1-bit or 8-bit PNG)."""
    fine = _blob(rng, tgt)
    x0, y0, x1, y1 = mask_bbox(fine)
    img_fmt = "JPEG" if k % 2 == 0 else "PNG"
    mask_png = encode_mask_png(fine) if k % 3 else _encode(fine.astype(np.uint8) * 255, "PNG")
    affine = color = None
    if stage == 2:
        affine = {"angle": float(rng.uniform(-10, 10)), "scale": 1.0, "shear_x": 0.0, "shear_y": 0.0,
                  "tx": 0.0, "ty": 0.0, "flip": bool(rng.integers(2))}
        color = {"brightness": 0.1, "exposure": 0.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0,
                 "warmth": 0.0, "tint": 0.0, "gamma": 1.0, "cube": None}
    return {
        "pair_id": pair_id, "stage": stage, "source": source, "group_id": f"g{k // 4}", "instance_id": "1",
        "src_frame": k, "tgt_frame": k + 3,
        "object": {"bytes": _encode(rng.integers(0, 256, (obj, obj, 3), dtype=np.uint8), img_fmt), "path": None},
        "target": {"bytes": _encode(rng.integers(0, 256, (tgt, tgt, 3), dtype=np.uint8), img_fmt), "path": None},
        "mask": {"bytes": mask_png, "path": None},
        "bbox": [x0, y0, x1, y1],
        "aug": {"affine": affine, "color": color, "object_crop": _crop(rng), "target_crop": _crop(rng),
                "fill": [255, 255, 255]},
        "seed": int(rng.integers(0, 2**62)), "category": "cat" if k % 2 else None,
    }


def write_manifest(shard_dir: Path, stage: int = 2) -> dict:
    """(Re)write ``manifest.json`` for the ``part-*.parquet`` files in ``shard_dir`` as they are."""
    shards, total = [], {}
    for path in sorted(shard_dir.glob("part-*.parquet")):
        sources = pq.read_table(path, columns=["source"]).column("source").to_pylist()
        counts = {s: sources.count(s) for s in sorted(set(sources))}
        for s, c in counts.items():
            total[s] = total.get(s, 0) + c
        shards.append({"file": path.name, "rows": len(sources), "bytes": path.stat().st_size,
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "sources": counts})
    manifest = {"schema": SHARDS_SCHEMA_VERSION, "version": "0.1.0", "stage": stage, "config": {},
                "sources": dict(sorted(total.items())), "rows": sum(s["rows"] for s in shards), "shards": shards}
    (shard_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def write_shard_set(shard_dir: Path, sizes: tuple[int, ...] = (10, 9, 7), seed: int = 0, stage: int = 2,
                    obj: int = OBJ, tgt: int = TGT) -> dict:
    """A tiny shard folder: ``len(sizes)`` parts (row groups of 4), sources alternating; returns the manifest."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = 0
    for part, n in enumerate(sizes):
        rows = []
        for _ in range(n):
            rows.append(make_row(rng, f"s{stage}-{k:04d}", SOURCES[k % len(SOURCES)], stage, obj, tgt, k))
            k += 1
        table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
        pq.write_table(table, shard_dir / f"part-{part:05d}.parquet", row_group_size=4)
    return write_manifest(shard_dir, stage)


def small_cfg(**kw) -> LoaderConfig:
    base = {"batch_size": 3, "object_size": OBJ, "target_size": TGT, "latent_factor": 8, "shuffle_buffer": 5,
            "seed": 7}
    return LoaderConfig(**{**base, **kw})
