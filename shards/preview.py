"""``imprint preview DATA/shards --n 32 --out preview.html``: an HTML contact sheet of shard samples.

One self-contained file (images inline as base64 data URIs, a small CSS grid), one row per
sample: object | target | target with the mask overlaid | the four mask levels (0 = box ...
3 = fine mask), and a caption with the pair's ids, frames and augmentation parameters. The
``n`` rows are drawn without replacement from all rows of all shards (every stage of a
``DATA/shards`` folder) with ``np.random.default_rng(seed)``, so a seed always shows the same rows;
only the row groups holding them are read.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np

from imprint.augment.mask_levels import NUM_LEVELS, MaskLevelConfig, mask_levels
from imprint.errors import UsageError
from imprint.io import open_parquet, read_manifest, row_group_offsets, write_text_atomic
from imprint.shards.verify import shard_dirs
from imprint.storage import Location, Where, location

__all__ = ["main", "render_row", "sample_rows", "write_preview"]

OVERLAY_RGB = (255, 0, 160)
OVERLAY_ALPHA = 0.45

_CSS = """
body { font: 13px system-ui, sans-serif; margin: 16px; background: #f6f6f6; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
.sample, .head { display: grid; grid-template-columns: repeat(7, minmax(60px, 150px)) minmax(220px, 1fr);
                 gap: 6px; align-items: start; padding: 6px 0; border-bottom: 1px solid #ddd; }
.head { font-weight: 600; position: sticky; top: 0; background: #f6f6f6; }
.sample img { width: 100%; border: 1px solid #ccc; background: #fff; display: block; }
.sample img.mask { image-rendering: pixelated; }
.cap { font: 11px ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
"""

_HEADERS = ("object", "target", "target + mask", *(f"level {i}" for i in range(NUM_LEVELS)), "pair")


def sample_rows(shard_dir: Where, n: int, seed: int = 0) -> list[tuple[dict[str, Any], int | None]]:
    """``n`` rows (fewer if there are fewer) drawn without replacement across all shards, as
    ``(row, stage)``, in shard order; reads only the row groups that hold them."""
    parts: list[tuple[Location, int, int | None]] = []  # (path, rows, stage)
    for d in shard_dirs(shard_dir):
        manifest = read_manifest(d)
        parts += [(d / s["file"], s["rows"], manifest.get("stage")) for s in manifest["shards"]]
    offsets = np.cumsum([0] + [rows for _, rows, _ in parts])
    total = int(offsets[-1])
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    out: list[tuple[dict[str, Any], int | None]] = []
    for k, (path, rows, stage) in enumerate(parts):
        wanted = picks[(picks >= offsets[k]) & (picks < offsets[k + 1])] - offsets[k]
        if wanted.size == 0:
            continue
        with open_parquet(path) as pf:
            starts = row_group_offsets(pf.metadata)
            groups = np.searchsorted(starts, wanted, side="right") - 1
            for g in np.unique(groups):
                table = pf.read_row_group(int(g)).to_pylist()
                for i in wanted[groups == g]:
                    out.append((table[int(i - starts[g])], stage))
    return out


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _image_uri(data: bytes) -> str:
    """A stored JPEG/PNG as a data URI, unchanged."""
    from PIL import Image

    with Image.open(BytesIO(data)) as img:
        fmt = (img.format or "PNG").lower()
    return _data_uri(data, f"image/{'jpeg' if fmt == 'jpeg' else fmt}")


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {"optimize": True}))
    return buf.getvalue()


def _overlay(target: np.ndarray, mask: np.ndarray, bbox: Sequence[int] | None) -> np.ndarray:
    """The target with the mask blended in a translucent colour and the bbox outlined."""
    out = target.astype(np.float32)
    out[mask] = (1 - OVERLAY_ALPHA) * out[mask] + OVERLAY_ALPHA * np.asarray(OVERLAY_RGB, np.float32)
    out = out.round().astype(np.uint8)
    if bbox is not None and len(bbox) == 4:
        h, w = mask.shape
        x0, y0 = max(0, int(bbox[0])), max(0, int(bbox[1]))
        x1, y1 = min(w, int(bbox[2])) - 1, min(h, int(bbox[3])) - 1
        if x0 <= x1 and y0 <= y1:
            out[y0, x0:x1 + 1] = out[y1, x0:x1 + 1] = OVERLAY_RGB
            out[y0:y1 + 1, x0] = out[y0:y1 + 1, x1] = OVERLAY_RGB
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " ".join(f"{k}={_fmt(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return str(value)


def caption(row: dict, stage: int | None) -> str:
    """The text under a sample: ids, frames, box, seed and the augmentation parameters."""
    lines = [
        f"{row['pair_id']}",
        f"{row['source']} · stage {row.get('stage', stage)}"
        + (f" · {row['category']}" if row.get("category") else ""),
        f"group {row['group_id']} / instance {row['instance_id']}",
        f"frames {row['src_frame']} → {row['tgt_frame']} · bbox {_fmt(row['bbox'])} · seed {row['seed']}",
    ]
    for key, value in (row.get("aug") or {}).items():
        if value is not None:
            lines.append(f"{key}: {_fmt(value)}")
    return "\n".join(lines)


def render_row(row: dict, stage: int | None, levels: MaskLevelConfig) -> str:
    """One sample as an HTML ``div.sample``: 7 images and the caption."""
    from PIL import Image

    from imprint.geometry import binarize
    from imprint.masks import bits_of, encode_mask_png

    with Image.open(BytesIO(row["target"]["bytes"])) as img:
        target = np.asarray(img.convert("RGB"))
    with Image.open(BytesIO(row["mask"]["bytes"])) as img:
        fine = bits_of(img) if img.mode == "1" else binarize(np.asarray(img.convert("L")))
    cells = [
        f'<img src="{_image_uri(row["object"]["bytes"])}" alt="object">',
        f'<img src="{_image_uri(row["target"]["bytes"])}" alt="target">',
    ]
    if fine.shape == target.shape[:2]:
        overlay = _overlay(target, fine, row.get("bbox"))
        cells.append(f'<img src="{_data_uri(_encode(overlay, "JPEG"), "image/jpeg")}" alt="target + mask">')
    else:  # verify reports this; show the mask alone
        cells.append(f'<img src="{_data_uri(encode_mask_png(fine), "image/png")}" alt="mask (size differs)">')
    for i, level in enumerate(mask_levels(fine, levels)):
        cells.append(f'<img class="mask" src="{_data_uri(encode_mask_png(level), "image/png")}" alt="level {i}">')
    cells.append(f'<div class="cap">{html.escape(caption(row, stage))}</div>')
    return '<div class="sample">\n' + "\n".join(cells) + "\n</div>"


def write_preview(shard_dir: Where, out_html: Where, n: int = 32, seed: int = 0,
                  levels: MaskLevelConfig = MaskLevelConfig()) -> Location:  # noqa: B008 - frozen, immutable
    """Write the contact sheet of ``n`` deterministically drawn rows to ``out_html``; returns its path."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rows = sample_rows(shard_dir, n, seed)
    title = f"imprint preview: {shard_dir}"
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(rows)} samples (seed {seed}); mask levels with sigmas {levels.sigmas}, "
        f"threshold {levels.threshold}.</p>",
        '<div class="head">' + "".join(f"<div>{h}</div>" for h in _HEADERS) + "</div>",
        *(render_row(row, stage, levels) for row, stage in rows),
        "</body></html>",
    ]
    out = Location.of(out_html)
    out.parent.mkdir()
    write_text_atomic(out, "\n".join(parts) + "\n")
    return out


DESCRIPTION = ("Write a self-contained HTML contact sheet of shard samples: object, target, target with the mask, "
               "the four mask levels, and each pair's ids and augmentation parameters.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``imprint preview PATH --n 32 --out preview.html [--seed 0]``."""
    parser.add_argument("path", type=location,
                        help="DATA/shards/stageN, or DATA/shards for every stage: a path or s3:// / gs:// URI")
    parser.add_argument("--n", type=int, default=32, help="samples to show")
    parser.add_argument("--out", type=location, default=Location("preview.html"),
                        help="the HTML file to write (a path or a URI)")
    parser.add_argument("--seed", type=int, default=0, help="which rows are drawn")


def run(args: argparse.Namespace) -> int:
    try:
        out = write_preview(args.path, args.out, n=args.n, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"imprint preview: wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("preview", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
