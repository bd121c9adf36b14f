"""Writing shards, their manifest, their dataset card and their attribution list."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from imprint.io import read_parquet, write_parquet_atomic
from imprint.quality.summary import card_lines
from imprint.shards.schema import SHARD_SCHEMA, SHARDS_SCHEMA_VERSION
from imprint.storage import Location, Where

ATTRIBUTION = "ATTRIBUTION.md"
CREDIT_COLUMNS = ["source", "group_id", "licence", "attribution"]


def write_shard(rows: list[dict[str, Any]], path: Where, row_group_rows: int) -> dict[str, Any]:
    """Write rows as one Parquet shard, whole or not at all (a path or a URI). Returns its rows, bytes and
    sha256."""
    table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
    # Images are already compressed (JPEG/PNG): only the small columns gain from zstd.
    compression = {name: ("none" if name in ("object", "target", "mask") else "zstd") for name in SHARD_SCHEMA.names}
    written = write_parquet_atomic(table, path, row_group_size=row_group_rows, compression=compression,
                                   use_dictionary=["source", "group_id", "instance_id", "category", "licence",
                                                   "attribution"],
                                   write_statistics=False)
    return {"file": Location.of(path).name, "rows": table.num_rows, "bytes": written.size, "sha256": written.sha256}


# (source, licence, attribution) -> {"pairs": n, "groups": [group ids]}
Credits = dict[tuple[str, str, str], dict[str, Any]]


def read_credits(paths: Iterable[Where]) -> Credits:
    """Who to credit for the pairs of these shards: pairs and groups per (source, licence, attribution)."""
    pairs: Counter[tuple[str, str, str]] = Counter()
    groups: dict[tuple[str, str, str], set[str]] = {}
    for path in paths:
        cols = read_parquet(path, CREDIT_COLUMNS).to_pydict()
        for source, group, licence, attribution in zip(*(cols[c] for c in CREDIT_COLUMNS)):
            key = (str(source), str(licence or "unknown"), str(attribution or ""))
            pairs[key] += 1
            groups.setdefault(key, set()).add(str(group))
    return {k: {"pairs": pairs[k], "groups": sorted(groups[k])} for k in sorted(pairs)}


def licence_counts(credits: Credits) -> dict[str, int]:
    """Pairs per licence."""
    out: Counter[str] = Counter()
    for (_, licence, _), c in credits.items():
        out[licence] += c["pairs"]
    return dict(sorted(out.items()))


def attribution_list(credits: Credits, rows: int) -> str:
    """``ATTRIBUTION.md``: every credit, by licence; one line per item that has its own attribution."""
    lines = ["# Attribution", "",
             f"The {rows} pairs of this folder come from the items below, grouped by licence. A pair's `licence` and "
             "`attribution` columns say the same for that pair. Credit them as their licences ask.", ""]
    for licence, n in sorted(licence_counts(credits).items(), key=lambda kv: (-kv[1], kv[0])):
        lines += [f"## {licence} ({n} pairs)", ""]
        for (source, lic, attribution), c in credits.items():
            if lic != licence:
                continue
            where = f"`{c['groups'][0]}`" if len(c["groups"]) == 1 else f"{len(c['groups'])} groups"
            lines.append(f"- {source} {where}, {c['pairs']} pairs: {attribution or 'no attribution given'}")
        lines.append("")
    return "\n".join(lines)


def dataset_card(manifest: dict[str, Any], report: dict[str, Any]) -> str:
    """The README.md beside the shards: features, counts by source and by licence, how to load."""
    from imprint.ingest.sources import sources

    known = sources()
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
        lines.append(f"| {source} | {n} | {known[source].licence if source in known else 'see the source'} |")
    dropped = ", ".join(f"{k}: {v}" for k, v in report["dropped"].items()) or "none"
    lines += [f"| **total** | **{manifest['rows']}** | |", "",
              f"{len(manifest['shards'])} shard(s). Pairs planned {report['seen']}, built {report['kept']}, "
              f"dropped {sum(report['dropped'].values())} ({dropped}).",
              "", *card_lines(report.get("quality"), report["dropped"]),
              "## Licences", "", "| licence | pairs |", "|---|---|",
              *(f"| {lic} | {n} |" for lic, n in manifest.get("licences", {}).items()), "",
              f"Every pair carries its item's `licence` and `attribution`; [`{ATTRIBUTION}`]({ATTRIBUTION}) lists "
              "every credit (each Objaverse object, each Pixabay image, each dataset), so a release can credit them.",
              "", "## Features", "",
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
              "| `licence` | string | the licence of the item the pair comes from |",
              "| `attribution` | string | who to credit for that item, and where it comes from |",
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
