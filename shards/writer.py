"""Writing shards, their manifest and their dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from imprint.io import sha256_file, write_parquet_atomic
from imprint.quality.summary import card_lines
from imprint.shards.schema import SHARD_SCHEMA, SHARDS_SCHEMA_VERSION


def write_shard(rows: list[dict[str, Any]], path: Path, row_group_rows: int) -> dict[str, Any]:
    """Write rows as one Parquet shard (temporary name, then rename). Returns its rows, bytes and sha256."""
    table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
    # Images are already compressed (JPEG/PNG): only the small columns gain from zstd.
    compression = {name: ("none" if name in ("object", "target", "mask") else "zstd") for name in SHARD_SCHEMA.names}
    write_parquet_atomic(table, path, row_group_size=row_group_rows, compression=compression,
                         use_dictionary=["source", "group_id", "instance_id", "category"], write_statistics=False)
    return {"file": path.name, "rows": table.num_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


LICENCES = {
    "ytvos": "YouTube-VOS: annotations CC BY 4.0; the videos are for non-commercial research purposes only.",
    "vipseg": "VIPSeg: released for non-commercial research purposes only.",
    "ppr10k": "PPR10K: non-commercial research only; no reproduction or commercial exploitation.",
    "mvimgnet": "MVImgNet / MVImgNet2.0 Terms of Use: research only (code CC BY-NC 4.0).",
    "objaverse": "Objaverse: ODC-By for the collection; each object keeps its own Creative Commons licence.",
    "pixabay": "Pixabay Content License (not CC0); cache the API for 24 h; no systematic mass downloads.",
    "sav": "SA-V: videos and annotations CC BY 4.0.",
    "urls": "Your own URL list: the licences of the images you listed.",
}


def dataset_card(manifest: dict[str, Any], report: dict[str, Any]) -> str:
    """The README.md beside the shards: features, counts by source, licences, how to load."""
    stage = manifest["stage"]
    lines = [
        f"# imprint stage-{stage} pairs",
        "",
        "Training pairs for IMPRINT (CVPR 2024) "
        + ("stage 1 (identity: two views of one object, backgrounds removed)." if stage == 1 else
           "stage 2 (compositing: an augmented object and the natural target image)."),
        f"Built by `imprint pairs` {manifest['version']} (schema `{SHARDS_SCHEMA_VERSION}`), seed "
        f"{manifest['config']['seed']}. Rebuilding from the same records, config and seed gives the same bytes.",
        "",
        "## Counts",
        "",
        "| source | pairs | licence |",
        "|---|---|---|",
    ]
    for source, n in sorted(manifest["sources"].items()):
        lines.append(f"| {source} | {n} | {LICENCES.get(source, 'see the source')} |")
    lines += [f"| **total** | **{manifest['rows']}** | |", "",
              f"{len(manifest['shards'])} shard(s). Pairs planned {report['seen']}, built {report['kept']}, "
              f"dropped {sum(report['dropped'].values())} ({', '.join(f'{k}: {v}' for k, v in report['dropped'].items()) or 'none'}).",
              "", *card_lines(report.get("quality"), report["dropped"]), "## Features", "",
              "| column | type | meaning |", "|---|---|---|",
              "| `pair_id` | string | stable hash of (stage, source, group, instance, frames, seed) |",
              "| `stage` | int8 | 1 or 2 |",
              "| `source`, `group_id`, `instance_id` | string | where the pair comes from |",
              "| `src_frame`, `tgt_frame` | int32 | `frame_index` of the object's frame and of the target's |",
              f"| `object` | Image | the object, background filled with {manifest['config']['fill']}, "
              f"{manifest['config']['object_resolution']} px{' after P(T(.))' if stage == 2 else ''} |",
              f"| `target` | Image | the target, {manifest['config']['resolution']} px "
              f"({'view 2, background removed' if stage == 1 else 'the natural frame, cropped around the object'}) |",
              "| `mask` | Image | the fine object mask in target pixels (1-bit PNG); the loader derives the 4 levels |",
              "| `bbox` | int32[4] | `[x0, y0, x1, y1)` of the mask in target pixels |",
              "| `aug` | struct | affine T and colour P parameters (null in stage 1), crop windows, fill |",
              "| `seed` | int64 | the run seed |", "| `category` | string | class name where known |",
              "| `quality` | struct | the pair's `identity` and `change` (on its un-augmented crops) and both "
              "records' `sharpness`, `mask_components`, `mask_largest_share` |", "",
              "## Load", "", "```python", "import datasets",
              "ds = datasets.load_dataset(\"parquet\", data_files=\"part-*.parquet\", split=\"train\")",
              "ds[0][\"object\"]  # a PIL image", "", "import glob, pyarrow.parquet as pq",
              "table = pq.read_table(sorted(glob.glob(\"part-*.parquet\")))",
              "", "from imprint.shards.loader import ShardLoader, LoaderConfig  # torch batches for training",
              "```", "", "Check the files against `manifest.json` with `imprint verify .`; look at samples with "
              "`imprint preview . --out preview.html`.", ""]
    return "\n".join(lines)
