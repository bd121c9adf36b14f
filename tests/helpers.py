"""Small helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import json
from pathlib import Path

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
