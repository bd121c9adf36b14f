"""The quality parts of ``imprint preview``: each score's distribution with its threshold, the removed items
(``--excluded``) and the kept pairs nearest a threshold (``--worst SCORE``)."""

from __future__ import annotations

import functools
import html
from typing import Any

import numpy as np

from imprint.io import parquet_schema, read_json, read_parquet
from imprint.storage import Location
from imprint.quality.summary import removal_text, svg_histogram

# --worst SCORE: how a kept pair's value is read from its `quality` column, and which end is the worst
WORST = {
    "identity": (lambda q: q["identity"], False),
    "change": (lambda q: q["change"], False),
    "sharpness": (lambda q: _min(q["src_sharpness"], q["tgt_sharpness"]), False),
    "mask_largest_share": (lambda q: _min(q["src_mask_largest_share"], q["tgt_mask_largest_share"]), False),
    "mask_components": (lambda q: _max(q["src_mask_components"], q["tgt_mask_components"]), True),
}


def _min(a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return min(vals) if vals else None


def _max(a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return max(vals) if vals else None


def quality_panel(stage_dirs: list[Location]) -> str:
    """Each stage's score histograms (kept grey, removed red, the threshold dashed), from its report.json."""
    blocks = []
    for d in stage_dirs:
        try:
            quality = read_json(d / "report.json").get("quality")
        except (OSError, ValueError):
            quality = None
        if not quality:
            continue
        on = ", ".join(quality["filters"]) or "none"
        cells = []
        for score, desc in quality["scores"].items():
            removed, total = sum(desc["removed"]), sum(desc["kept"]) + sum(desc["removed"])
            state = "" if desc["filter_on"] else " · filter off"
            cells.append(f'<figure><figcaption><b>{html.escape(score)}</b> · {removed} of {total} removed '
                         f'({html.escape(desc["reason"])}){state}</figcaption>{svg_histogram(score, desc)}</figure>')
        blocks.append(f'<section class="quality"><h2>{html.escape(d.name)}: scores and thresholds</h2>'
                      f'<p>filters: {html.escape(on)} · identity backend {html.escape(quality["identity_backend"])}'
                      f' · records removed {sum(quality["records"]["dropped"].values())} of '
                      f'{quality["records"]["seen"]} · excluded rows {quality["excluded_rows"]}</p>'
                      f'<div class="hists">{"".join(cells)}</div></section>')
    return "\n".join(blocks)


def worst_picks(parts: list[tuple[Location, int, int | None]], score: str, n: int) -> list[tuple[int, float]]:
    """The ``n`` kept pairs nearest the failing end of ``score``: (global row index, value), worst first."""
    if score not in WORST:
        raise ValueError(f"--worst takes one of {', '.join(WORST)}, got {score!r}")
    read, descending = WORST[score]
    values: list[tuple[float, int]] = []
    offset = 0
    for path, rows, _ in parts:
        names = parquet_schema(path).names
        if "quality" in names:
            for i, q in enumerate(read_parquet(path, ["quality"]).column("quality").to_pylist()):
                v = read(q) if q else None
                if v is not None:
                    values.append((-v if descending else v, offset + i))
        offset += rows
    values.sort()
    return [(i, -v if descending else v) for v, i in values[:n]]


@functools.lru_cache(maxsize=4)
def _part_masks(records: str) -> list[bytes] | None:
    """The mask column of one records part, read once for all its removed records (None: the part is gone)."""
    if not Location.of(records).is_file():
        return None
    masks: list[bytes] = read_parquet(records, ["mask"]).column("mask").to_pylist()
    return masks


def _record_view(row: dict[str, Any], side: int = 160) -> np.ndarray | None:
    """A removed record as the filters saw it: its frame cut around its box, the mask tinted (None when the
    frame or the records part has gone)."""
    import cv2

    from imprint.geometry import crop_window, object_crop, resize_mask
    from imprint.masks import decode_mask_png

    frame = cv2.imread(row["image_uri"], cv2.IMREAD_COLOR)
    if frame is None:
        return None
    masks = _part_masks(row["records"])  # a path or a URI (resolved by excluded_sample)
    if masks is None:
        return None
    mask = decode_mask_png(masks[row["src_row"]])
    if mask.shape != frame.shape[:2]:
        return None
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    img, _, win = object_crop(rgb, np.ones_like(mask), row["bbox"], 1.3, side, (0, 0, 0))
    fine = resize_mask(crop_window(mask, win, False), side)  # the object's mask in that crop
    out = img.astype(np.float32)
    out[fine] = 0.6 * out[fine] + 0.4 * np.array([255, 0, 160], np.float32)
    return np.asarray(out.round().astype(np.uint8))


def excluded_caption(row: dict[str, Any]) -> str:
    frames = f"frame {row['src_frame']}" if row["tgt_frame"] is None else \
        f"frames {row['src_frame']} → {row['tgt_frame']}"
    lines = [f"{row['reason']}: {removal_text(row['score'], row['value'], row['threshold'])}",
             f"{row['source']} · stage {row['stage']} · {row['kind']}",
             f"group {row['group_id']} / instance {row['instance_id']} · {frames}"]
    if row.get("detail"):
        lines.append(str(row["detail"]))
    if row.get("pair_id"):
        lines.append(str(row["pair_id"]))
    return "\n".join(lines)


EXCLUDED_HEAD = ('<div class="removed head"><div>object (pair) / frame around the box, mask tinted (record)</div>'
                 '<div>target (pair), as scored</div><div>why</div></div>')


def render_excluded(row: dict[str, Any], data_uri: Any, encode: Any) -> str:
    """One removed item as a ``div.removed``: its crops (a pair: object and target as scored; a record: its
    frame around the box with the mask tinted) and why it was removed."""
    cells = []
    if row["kind"] == "pair":
        for name in ("object", "target"):
            img = row.get(name) or {}
            if img.get("bytes"):
                cells.append(f'<img src="{data_uri(img["bytes"], "image/jpeg")}" alt="{name}">')
    else:
        view = _record_view(row)
        cells.append(f'<img src="{data_uri(encode(view, "JPEG"), "image/jpeg")}" alt="record">' if view is not None
                     else '<div class="gone">frame or records part not found</div>')
    while len(cells) < 2:
        cells.append("<div></div>")
    cells.append(f'<div class="cap">{html.escape(excluded_caption(row))}</div>')
    return '<div class="removed">\n' + "\n".join(cells) + "\n</div>"


def excluded_sample(stage_dirs: list[Location], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` removed items (fewer if fewer were removed) drawn without replacement across the stages; each
    row's ``records`` is the records part's location (under the records folder its stage's report names)."""
    from imprint.quality.excluded import read_excluded, records_location

    rows: list[dict[str, Any]] = []
    for d in stage_dirs:
        report = d / "report.json"
        root = read_json(report).get("records") if report.is_file() else None
        for row in read_excluded(d).to_pylist():
            rows.append({**row, "records": str(records_location(root, row["records"]))})
    if len(rows) <= n:
        return rows
    picks = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return [rows[int(i)] for i in picks]
