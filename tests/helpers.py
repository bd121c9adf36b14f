"""Small helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imprint.executor import LocalExecutor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest


def ingest(source: str, root: Path, out: Path, executor=None, **cfg) -> dict:
    return run_ingest(source, root, out, IngestConfig(**cfg), executor or LocalExecutor())


def read_records(out: Path, source: str) -> pa.Table:
    parts = sorted((out / "records" / source).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None


def read_report(out: Path, source: str) -> dict:
    return json.loads((out / "records" / source / "report.json").read_text())


def balanced(report: dict) -> bool:
    return report["seen"] == report["kept"] + sum(report["dropped"].values())


def rle_counts_encode(cnts: np.ndarray | list[int]) -> str:
    """Run lengths -> COCO compressed-RLE string (``rleToString``), to write the fixtures."""
    out = []
    cnts = [int(v) for v in cnts]
    for i, x in enumerate(cnts):
        if i > 2:
            x -= cnts[i - 2]
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if ch & 0x10 else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def rle_encode(mask: np.ndarray) -> dict:
    """Bool mask HxW -> COCO compressed RLE dict (pycocotools ``encode`` gives the same)."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    cnts = np.diff(np.r_[0, change, flat.size]).tolist()
    if flat.size and flat[0]:
        cnts = [0, *cnts]
    return {"size": [h, w], "counts": rle_counts_encode(cnts)}
