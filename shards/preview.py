"""``imprint preview DATA/shards --n 32 --out preview.html``: an HTML contact sheet of shard samples.

One self-contained file (images inline as base64 data URIs, a small CSS grid). At the top, each stage's
quality scores as histograms with their thresholds (from ``report.json``). Then one row per sample:
object | target | target with the mask overlaid | the four mask levels (0 = box ... 3 = fine mask), and a
caption with the pair's ids, frames, quality scores and augmentation parameters. The ``n`` rows are drawn
without replacement from all rows of all shards (every stage of a ``DATA/shards`` folder) with
``np.random.default_rng(seed)``, so a seed always shows the same rows; only the row groups holding them are
read.

``--excluded`` shows what the quality filters removed instead (rows of ``excluded/``: the crops as scored and
why), ``--worst SCORE`` the ``n`` kept pairs nearest the failing end of a score, worst first, so a
threshold can be tuned by eye.
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

__all__ = ["main", "render_row", "sample_rows", "worst_rows", "write_preview"]

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
h2 { font-size: 15px; margin: 14px 0 4px; }
.hists { display: flex; flex-wrap: wrap; gap: 10px 18px; }
figure { margin: 0; } figcaption { font-size: 12px; }
.removed { display: grid; grid-template-columns: 160px 160px minmax(260px, 1fr); gap: 8px; align-items: start;
           padding: 6px 0; border-bottom: 1px solid #ddd; }
.removed img { width: 100%; border: 1px solid #ccc; background: #fff; display: block; }
.gone { font-size: 11px; color: #888; }
.removed.head { font-weight: 600; font-size: 12px; position: sticky; top: 0; background: #f6f6f6; }
"""

_HEADERS = ("object", "target", "target + mask", *(f"level {i}" for i in range(NUM_LEVELS)), "pair")


def _parts(shard_dir: Where) -> list[tuple[Location, int, int | None]]:
    """(path, rows, stage) of every shard of every stage under ``shard_dir``, in manifest order."""
    parts: list[tuple[Location, int, int | None]] = []
    for d in shard_dirs(shard_dir):
        manifest = read_manifest(d)
        parts += [(d / s["file"], s["rows"], manifest.get("stage")) for s in manifest["shards"]]
    return parts


def _read_rows(parts: list[tuple[Location, int, int | None]], picks: np.ndarray
               ) -> list[tuple[dict[str, Any], int | None]]:
    """The rows at global indices ``picks`` (sorted), as ``(row, stage)``; reads only their row groups."""
    offsets = np.cumsum([0] + [rows for _, rows, _ in parts])
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


def sample_rows(shard_dir: Where, n: int, seed: int = 0) -> list[tuple[dict[str, Any], int | None]]:
    """``n`` rows (fewer if there are fewer) drawn without replacement across all shards, as
    ``(row, stage)``, in shard order; reads only the row groups that hold them."""
    parts = _parts(shard_dir)
    total = sum(rows for _, rows, _ in parts)
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    return _read_rows(parts, picks)


def worst_rows(shard_dir: Where, score: str, n: int) -> list[tuple[dict[str, Any], int | None]]:
    """The ``n`` kept pairs nearest the failing end of ``score`` (``quality`` column), worst first."""
    from imprint.shards.quality_view import worst_picks

    parts = _parts(shard_dir)
    ranked = worst_picks(parts, score, n)
    rows = _read_rows(parts, np.array(sorted(i for i, _ in ranked), dtype=np.int64))
    order = {i: k for k, (i, _) in enumerate(ranked)}
    by_index = dict(zip(sorted(i for i, _ in ranked), rows))
    return [by_index[i] for i in sorted(by_index, key=order.__getitem__)]


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


def quality_line(q: dict[str, Any]) -> str:
    """The pair's scores in one line: its identity and change, then each score of its two records (src/tgt)."""
    parts = [f"{k} {_fmt(q[k])}" for k in ("identity", "change") if q.get(k) is not None]
    for name, short in (("sharpness", "sharpness"), ("mask_components", "pieces"),
                        ("mask_largest_share", "largest piece")):
        a, b = q.get(f"src_{name}"), q.get(f"tgt_{name}")
        if a is not None or b is not None:
            parts.append(f"{short} {_fmt(a)}/{_fmt(b)}")
    return "quality: " + " · ".join(parts)


def caption(row: dict, stage: int | None) -> str:
    """The text under a sample: ids, frames, box, seed and the augmentation parameters."""
    lines = [
        f"{row['pair_id']}",
        f"{row['source']} · stage {row.get('stage', stage)}"
        + (f" · {row['category']}" if row.get("category") else ""),
        f"group {row['group_id']} / instance {row['instance_id']}",
        f"frames {row['src_frame']} → {row['tgt_frame']} · bbox {_fmt(row['bbox'])} · seed {row['seed']}",
    ]
    quality = row.get("quality")
    if quality:
        lines.append(quality_line(quality))
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
                  levels: MaskLevelConfig = MaskLevelConfig(),  # noqa: B008 - frozen, immutable
                  excluded: bool = False, worst: str | None = None) -> Location:
    """Write the contact sheet of ``n`` deterministically drawn rows to ``out_html``; returns its path.

    ``excluded``: the removed items instead; ``worst``: the kept pairs nearest the failing end of that score.
    """
    from imprint.shards.quality_view import EXCLUDED_HEAD, excluded_sample, quality_panel, render_excluded

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    dirs = shard_dirs(shard_dir)
    if excluded:
        removed = excluded_sample(dirs, n, seed)
        what = f"{len(removed)} removed items (seed {seed}): the crops as the filters saw them, and why"
        body = [EXCLUDED_HEAD, *(render_excluded(row, _data_uri, _encode) for row in removed)] if removed else \
            ["<p>Nothing was removed.</p>"]
    else:
        rows = worst_rows(shard_dir, worst, n) if worst else sample_rows(shard_dir, n, seed)
        what = (f"the {len(rows)} kept pairs nearest the failing end of {worst}, worst first" if worst else
                f"{len(rows)} samples (seed {seed})")
        body = ['<div class="head">' + "".join(f"<div>{h}</div>" for h in _HEADERS) + "</div>",
                *(render_row(row, stage, levels) for row, stage in rows)]
    title = f"imprint preview: {shard_dir}" + (" (excluded)" if excluded else f" (worst {worst})" if worst else "")
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", quality_panel(dirs),
        f"<h2>{html.escape(what)}</h2>",
        f"<p>mask levels with sigmas {levels.sigmas}, threshold {levels.threshold}.</p>" if not excluded else "",
        *body,
        "</body></html>",
    ]
    out = Location.of(out_html)
    out.parent.mkdir()
    write_text_atomic(out, "\n".join(parts) + "\n")
    return out


DESCRIPTION = ("Write a self-contained HTML contact sheet of shard samples: each score's distribution with its "
               "threshold, then object, target, target with the mask, the four mask levels, and each pair's ids, "
               "quality scores and augmentation parameters. --excluded shows what the quality filters removed, "
               "--worst SCORE the kept pairs nearest a threshold.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``imprint preview PATH --n 32 --out preview.html [--seed 0]``."""
    parser.add_argument("path", type=location,
                        help="DATA/shards/stageN, or DATA/shards for every stage: a path or s3:// / gs:// URI")
    parser.add_argument("--n", type=int, default=32, help="samples to show")
    parser.add_argument("--out", type=location, default=Location("preview.html"),
                        help="the HTML file to write (a path or a URI)")
    parser.add_argument("--seed", type=int, default=0, help="which rows are drawn")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--excluded", action="store_true",
                      help="show the items the quality filters removed (excluded/), with their reason and score")
    what.add_argument("--worst", metavar="SCORE", default=None,
                      help="show the kept pairs nearest the failing end of SCORE (identity, change, sharpness, "
                           "mask_largest_share, mask_components), worst first")


def run(args: argparse.Namespace) -> int:
    try:
        out = write_preview(args.path, args.out, n=args.n, seed=args.seed, excluded=args.excluded, worst=args.worst)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"imprint preview: wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("preview", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
