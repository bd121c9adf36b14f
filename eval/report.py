"""The evaluation report: ``metrics.json`` (every number) and a self-contained ``report.html`` (read at a glance).

:func:`write_report` takes the evaluation driver's results, structured like this (``...`` = any JSON value)::

    results = {
        "settings": {...},                 # the run's settings (JSON-able): data, seeds, backbones, steps, ...
        "notes": ["...", ...],             # optional: caveats shown at the top of the report and kept in the JSON
        "title": "...",                    # optional: the report's title
        "models": {                        # one entry per model / checkpoint, in the order the rows should have
            "imprint-step20000": {
                "info": {...},             # optional, JSON-able: checkpoint path, step, sampler, ...
                "samples": [               # one per (test case, mask level)
                    {
                        "id": "dog2/bg07",  # the test case: samples sharing an id form one row of the image grid
                        "level": 3,        # mask level (0 = box ... 3 = fine mask), int or str
                        "metrics": {       # per-sample metrics; a missing or None value = not computed
                            "dino": 0.71, "clip": 0.83, "dreamsim": 0.31,
                            "psnr": 38.2, "ssim": 0.97, "l1": 0.004, "shape_iou": 0.64,
                            # extra keys are kept (and shown) too; "identical" / "n_pixels" only in the JSON
                        },
                        # images (PIL.Image or uint8 H x W x 3 array / tensor), never written to metrics.json:
                        "reference": ...,              # the reference object
                        "background_with_mask": ...,   # background with the editable region drawn on it, or
                        "background": ..., "mask": ..., #   both, and the report draws the overlay itself
                        "output": ...,                 # the composite
                        # any other JSON-able key (e.g. "subject", "seed") is copied to metrics.json
                    },
                ],
                "set_metrics": {"fid": 41.2, "kid": KIDResult | {"mean": ..., "std": ...}},  # optional
                "set_metrics_by_level": {3: {"fid": ..., "kid": ...}},                      # optional
            },
        },
    }

Per-sample metric summaries (:func:`imprint.eval.metrics.summarise`: mean, std, median, n), overall and per
mask level, are computed here. The headline table takes for each model the mean over all its samples (every
level), the set metrics as given, and shape IoU per level.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from imprint.eval.metrics import KIDResult, summarise, to_mask, to_rgb_array
from imprint.io import write_text_atomic

SCHEMA = "imprint-eval/1"
IMAGE_KEYS = ("reference", "background_with_mask", "background", "mask", "output")
AUXILIARY_METRICS = ("identical", "n_pixels")  # kept per sample in the JSON, not tabulated
MODEL_KEYS = ("samples", "info", "set_metrics", "set_metrics_by_level")


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is labelled, read and formatted in the report."""

    key: str
    label: str
    higher_is_better: bool | None
    scope: str  # "sample" (one value per sample, summarised) or "set" (one value per model)
    fmt: str
    help: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("dino", "DINO", True, "sample", ".3f",
               "cosine similarity of DINO(v2) CLS embeddings of the generated object (output cropped to its box) "
               "and the reference object (background removed): identity preservation, 1 = same direction."),
    MetricSpec("clip", "CLIP", True, "sample", ".3f",
               "the same cosine similarity with CLIP image embeddings: semantic identity."),
    MetricSpec("dreamsim", "DreamSim", False, "sample", ".3f",
               "DreamSim perceptual distance between the same two crops: 0 = perceptually the same."),
    MetricSpec("fid", "FID", False, "set", ".2f",
               "Fréchet distance between the feature distributions of the outputs and of the real images "
               "(FD-DINOv2 on DINOv2 features): realism. Biased by the number of samples: compare only at equal N."),
    MetricSpec("kid", "KID", False, "set", ".4f",
               "kernel (MMD², polynomial kernel) distance of the same distributions, mean ± std over subsets; "
               "unbiased, so values near 0 (even slightly negative) mean indistinguishable."),
    MetricSpec("psnr", "BG PSNR", True, "sample", ".2f",
               "PSNR (dB) of the output against the input background outside the editable region; "
               "capped at 100 dB, reached when the background is untouched."),
    MetricSpec("ssim", "BG SSIM", True, "sample", ".4f",
               "SSIM of the output against the background, averaged outside the editable region (1 = perfect)."),
    MetricSpec("l1", "BG L1", False, "sample", ".4f",
               "mean absolute difference (0-1 scale) outside the editable region (0 = untouched)."),
    MetricSpec("shape_iou", "shape IoU", True, "sample", ".3f",
               "IoU of the changed pixels (colour differs from the background beyond a threshold) with the "
               "guidance mask, per mask level: does the object take the given shape? A proxy, for comparisons."),
)
SPECS = {spec.key: spec for spec in METRICS}


# --------------------------------------------------------------------------------------------------- JSON


def _jsonable(value: Any, where: str) -> Any:
    """A JSON-safe copy: numpy scalars to Python, non-finite floats to None, dataclasses to dicts."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, KIDResult):
        return value.as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value), where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray) and value.ndim <= 1 and value.size <= 64:
        return [_jsonable(v, where) for v in value.tolist()]
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-able (images go under {', '.join(IMAGE_KEYS)})")


def _level_key(level: Any) -> tuple[int, Any]:
    return (0, level) if isinstance(level, (int, np.integer)) else (1, str(level))


def _numeric(value: Any) -> bool:
    return value is not None and not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.number))


def _set_metric(value: Any) -> Any:
    """A set metric as stored: KID as ``{mean, std, ...}`` (from a KIDResult or a dict), else a number or None."""
    if isinstance(value, Mapping) and "mean" not in value:
        raise ValueError(f"a set metric given as a dict needs 'mean' (and 'std'), got keys {sorted(value)}")
    return _jsonable(value, "set_metrics")


def _set_value(value: Any) -> tuple[float | None, float | None]:
    """(value, std) of a stored set metric."""
    if isinstance(value, Mapping):
        return value.get("mean"), value.get("std")
    return (float(value), None) if _numeric(value) else (None, None)


def _validate(results: Mapping[str, Any]) -> None:
    if not isinstance(results, Mapping) or not isinstance(results.get("models"), Mapping) or not results["models"]:
        raise ValueError("results must be a dict with a non-empty 'models' dict (see imprint.eval.report)")
    for name, model in results["models"].items():
        if not isinstance(model, Mapping):
            raise ValueError(f"model {name!r}: expected a dict, got {type(model).__name__}")
        unknown = set(model) - set(MODEL_KEYS)
        if unknown:
            raise ValueError(f"model {name!r}: unknown keys {sorted(unknown)}; allowed: {', '.join(MODEL_KEYS)}")
        for i, sample in enumerate(model.get("samples", [])):
            for key in ("id", "level", "metrics"):
                if key not in sample:
                    raise ValueError(f"model {name!r}, sample {i}: missing {key!r}")
            if not isinstance(sample["metrics"], Mapping):
                raise ValueError(f"model {name!r}, sample {i}: 'metrics' must be a dict")


def sample_metric_keys(samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-sample metrics present (some value not None), registered ones first, auxiliary ones left out."""
    seen: dict[str, None] = {}
    for sample in samples:
        for key, value in sample["metrics"].items():
            if key not in AUXILIARY_METRICS and _numeric(value):
                seen.setdefault(key, None)
    known = [m.key for m in METRICS if m.key in seen]
    return known + sorted(k for k in seen if k not in SPECS)


def _summarise(model: str, key: str, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    values = [s["metrics"].get(key) if _numeric(s["metrics"].get(key)) else None for s in samples]
    try:
        return summarise(values)
    except ValueError as err:
        bad = [s["id"] for s, v in zip(samples, values) if v is not None and not math.isfinite(float(v))]
        raise ValueError(f"model {model!r}, metric {key!r}: non-finite values in samples {bad[:5]}") from err


def build_metrics_document(results: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``metrics.json``: settings, notes, metric definitions and, per model, summaries
    (overall and per level), set metrics and every sample's metrics (no images)."""
    _validate(results)
    models: dict[str, Any] = {}
    for name, model in results["models"].items():
        samples = list(model.get("samples", []))
        keys = sample_metric_keys(samples)
        levels = sorted({s["level"] for s in samples}, key=_level_key)
        summary = {k: _summarise(name, k, samples) for k in keys}
        by_level = {str(level): {k: _summarise(name, k, [s for s in samples if s["level"] == level]) for k in keys}
                    for level in levels}
        rows = []
        for i, s in enumerate(samples):
            extra = {k: v for k, v in s.items() if k not in IMAGE_KEYS and k not in ("id", "level", "metrics")}
            rows.append(_jsonable({"id": s["id"], "level": s["level"], "metrics": dict(s["metrics"]), **extra},
                                  f"models.{name}.samples[{i}]"))
        models[str(name)] = {
            "info": _jsonable(model.get("info", {}), f"models.{name}.info"),
            "n_samples": len(samples),
            "levels": [_jsonable(level, "level") for level in levels],
            "summary": summary,
            "by_level": by_level,
            "set_metrics": {k: _set_metric(v) for k, v in model.get("set_metrics", {}).items()},
            "set_metrics_by_level": {str(level): {k: _set_metric(v) for k, v in m.items()}
                                     for level, m in model.get("set_metrics_by_level", {}).items()},
            "samples": rows,
        }
    notes = [str(n) for n in results.get("notes", [])]
    if not any(m["summary"].get("dreamsim", {}).get("n") for m in models.values()) \
            and not any("dreamsim" in n.lower() for n in notes):
        notes.append("DreamSim was not computed: the optional `dreamsim` package is not installed "
                     "(pip install dreamsim).")
    return {
        "schema": SCHEMA,
        "title": str(results.get("title", "IMPRINT evaluation")),
        "settings": _jsonable(results.get("settings", {}), "settings"),
        "notes": notes,
        "metrics": {m.key: {"label": m.label, "higher_is_better": m.higher_is_better, "scope": m.scope,
                            "description": m.help} for m in METRICS},
        "models": models,
    }


# --------------------------------------------------------------------------------------------------- pictures


def overlay_mask(background: Any, mask: Any, colour: tuple[int, int, int] = (255, 0, 255), alpha: float = 0.45
                 ) -> np.ndarray:
    """The background with the mask's pixels tinted by ``colour`` (``alpha`` of it), as H x W x 3 uint8."""
    bg = to_rgb_array(background).astype(np.float32)
    m = to_mask(mask)
    if m.shape != bg.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match the background {bg.shape[:2]}")
    bg[m] = (1 - alpha) * bg[m] + alpha * np.asarray(colour, np.float32)
    return bg.round().astype(np.uint8)


def image_data_uri(image: Any, size: int) -> str:
    """A PNG ``data:`` URI of the image, shrunk to fit ``size`` x ``size`` (never enlarged)."""
    im = Image.fromarray(to_rgb_array(image))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _span(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]``, widened by 5% of the value (or 0.5 around 0) when it is a single point."""
    if hi > lo:
        return lo, hi
    half = abs(lo) * 0.05 or 0.5
    return lo - half, hi + half


def svg_histogram(values: Sequence[float], lo: float, hi: float, bins: int = 20, width: int = 220,
                  height: int = 90, ymax: int | None = None, mark: float | None = None) -> str:
    """A small inline SVG histogram of ``values`` over ``[lo, hi]`` (bars, axis labels, an optional mean line)."""
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    lo, hi = _span(lo, hi)
    counts, _ = np.histogram(vals, bins=bins, range=(lo, hi))
    top = max(int(ymax or 0), int(counts.max()) if counts.size else 0, 1)
    pad_l, plot_h = 4, height - 22  # 4 px margins, 18 px at the bottom for the axis labels
    bar_w = (width - 2 * pad_l) / bins
    parts = [f'<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">']
    for i, c in enumerate(counts):
        if c:
            h = plot_h * c / top
            parts.append(f'<rect x="{pad_l + i * bar_w:.1f}" y="{4 + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                         f'height="{h:.1f}" fill="#4a7ab5"><title>{int(c)}</title></rect>')
    base = 4 + plot_h
    parts.append(f'<line x1="{pad_l}" y1="{base}" x2="{width - pad_l}" y2="{base}" stroke="#888"/>')
    if mark is not None and lo <= mark <= hi:
        x = pad_l + (mark - lo) / (hi - lo) * (width - 2 * pad_l)
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{base}" stroke="#c0392b" stroke-dasharray="3,2"/>')
    parts.append(f'<text x="{pad_l}" y="{height - 3}" font-size="10" fill="#444">{lo:.3g}</text>')
    parts.append(f'<text x="{width - pad_l}" y="{height - 3}" font-size="10" fill="#444" '
                 f'text-anchor="end">{hi:.3g}</text>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 3}" font-size="10" fill="#444" '
                 f'text-anchor="middle">n={vals.size}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td.name,th.name{text-align:left;font-weight:600}
td.best{background:#d9f2d9;font-weight:700}.sd{color:#777;font-size:85%}.na{color:#aaa}
.notes{background:#fff8e1;border:1px solid #f0d58c;padding:8px 16px}
.legend dt{font-weight:600;margin-top:6px}.legend dd{margin-left:16px;color:#444}
.hists td{text-align:center;vertical-align:top;border:none}.hists th{border:none;background:none;text-align:left}
.grid td{text-align:center;vertical-align:top}.grid img{display:block;margin:2px auto;max-width:100%}
.grid .cap{font-size:11px;color:#555}.grid img{min-width:64px}pre{background:#f7f7f7;padding:8px;overflow:auto}
"""


def _arrow(spec: MetricSpec | None) -> str:
    if spec is None or spec.higher_is_better is None:
        return ""
    return " ↑" if spec.higher_is_better else " ↓"


def _fmt(value: float | None, fmt: str) -> str:
    return '<span class="na">—</span>' if value is None else format(value, fmt)


def _cell(value: float | None, std: float | None, spec: MetricSpec | None, best: bool) -> str:
    """A table cell: the value, its std in grey, shaded when it is the column's best."""
    fmt = spec.fmt if spec else ".4g"
    text = _fmt(value, fmt)
    if value is not None and std is not None:
        text += f' <span class="sd">± {format(std, fmt)}</span>'
    return f'<td class="best">{text}</td>' if best else f"<td>{text}</td>"


def _best(values: dict[str, float | None], higher: bool | None) -> set[str]:
    """Names holding the best value of a column (ties included); none when fewer than 2 models have one
    or when they all share it."""
    present = {k: v for k, v in values.items() if v is not None}
    if higher is None or len(present) < 2:
        return set()
    target = max(present.values()) if higher else min(present.values())
    best = {k for k, v in present.items() if np.isclose(v, target, rtol=1e-9, atol=0)}
    return set() if len(best) == len(present) else best  # all equal: nothing stands out


@dataclass(frozen=True)
class _Column:
    label: str
    spec: MetricSpec | None
    cells: dict[str, tuple[float | None, float | None]]  # model -> (value, std)


def _headline_columns(doc: dict[str, Any]) -> list[_Column]:
    models = doc["models"]
    sample_keys: dict[str, None] = {}
    for m in models.values():
        for k in m["summary"]:
            sample_keys.setdefault(k, None)
    set_keys: dict[str, None] = {}
    for m in models.values():
        for k in m["set_metrics"]:
            set_keys.setdefault(k, None)
    levels = sorted({lv for m in models.values() for lv in m["by_level"]}, key=lambda s: (not s.isdigit(), s.zfill(8)))
    order = [m.key for m in METRICS] + sorted(k for k in {**sample_keys, **set_keys} if k not in SPECS)
    columns = []
    for key in order:
        spec = SPECS.get(key)
        if key == "shape_iou" and key in sample_keys:
            for lv in levels:
                cells = {n: (m["by_level"].get(lv, {}).get(key, {}).get("mean"),
                             m["by_level"].get(lv, {}).get(key, {}).get("std")) for n, m in models.items()}
                if any(v is not None for v, _ in cells.values()):
                    columns.append(_Column(f"shape IoU L{lv}", spec, cells))
        elif key in set_keys:
            columns.append(_Column(spec.label if spec else key, spec,
                                   {n: _set_value(m["set_metrics"].get(key)) for n, m in models.items()}))
        elif key in sample_keys:
            columns.append(_Column(spec.label if spec else key, spec,
                                   {n: (m["summary"].get(key, {}).get("mean"), m["summary"].get(key, {}).get("std"))
                                    for n, m in models.items()}))
    return columns


def _table(row_names: list[str], columns: list[_Column], first: str) -> str:
    head = "".join(f"<th>{html.escape(c.label)}{_arrow(c.spec)}</th>" for c in columns)
    out = [f'<table class="headline"><tr><th class="name">{html.escape(first)}</th>{head}</tr>']
    best = [_best({n: c.cells[n][0] for n in row_names}, c.spec.higher_is_better if c.spec else None)
            for c in columns]
    for name in row_names:
        cells = []
        for c, winners in zip(columns, best):
            cells.append(_cell(*c.cells[name], c.spec, name in winners))
        out.append(f'<tr><td class="name">{html.escape(name)}</td>{"".join(cells)}</tr>')
    out.append("</table>")
    return "".join(out)


def _level_table(doc: dict[str, Any]) -> str:
    """Rows: model x level; columns: the per-sample metrics' means (± std) and the per-level set metrics."""
    rows: list[str] = []
    columns: dict[str, _Column] = {}
    for name, m in doc["models"].items():
        for lv, metrics in m["by_level"].items():
            row = f"{name} · L{lv}"
            rows.append(row)
            for key, s in metrics.items():
                spec = SPECS.get(key)
                columns.setdefault(key, _Column(spec.label if spec else key, spec, {}))
                columns[key].cells[row] = (s["mean"], s["std"])
            for key, v in m["set_metrics_by_level"].get(lv, {}).items():
                spec = SPECS.get(key)
                columns.setdefault(key, _Column(spec.label if spec else key, spec, {}))
                columns[key].cells[row] = _set_value(v)
    if not rows:
        return "<p>No samples.</p>"
    order = [m.key for m in METRICS] + sorted(k for k in columns if k not in SPECS)
    ordered = [columns[k] for k in order if k in columns]
    for c in ordered:
        for row in rows:
            c.cells.setdefault(row, (None, None))
    # Per level, the best model is what matters: highlight within each level, not across levels.
    parts = ['<table class="headline"><tr><th class="name">model · level</th>'
             + "".join(f"<th>{html.escape(c.label)}{_arrow(c.spec)}</th>" for c in ordered) + "</tr>"]
    levels = {row: row.rsplit(" · L", 1)[1] for row in rows}
    winners: list[set[str]] = []
    for c in ordered:
        best: set[str] = set()
        for lv in set(levels.values()):
            group = [r for r in rows if levels[r] == lv]
            best |= _best({r: c.cells[r][0] for r in group}, c.spec.higher_is_better if c.spec else None)
        winners.append(best)
    for row in rows:
        tds = []
        for c, best in zip(ordered, winners):
            tds.append(_cell(*c.cells[row], c.spec, row in best))
        parts.append(f'<tr><td class="name">{html.escape(row)}</td>{"".join(tds)}</tr>')
    parts.append("</table>")
    return "".join(parts)


def _legend(doc: dict[str, Any], columns: list[_Column]) -> str:
    shown = list(dict.fromkeys(c.spec.key for c in columns if c.spec))
    items = "".join(f"<dt>{html.escape(SPECS[k].label)}{_arrow(SPECS[k])}</dt><dd>{html.escape(SPECS[k].help)}</dd>"
                    for k in shown)
    return ('<dl class="legend">'
            "<dt>Reading the tables</dt><dd>One row per model or checkpoint; ↑ higher is better, ↓ lower is "
            "better; the best value of each column is shaded green (nothing is when all tie). Per-sample metrics "
            "show mean ± std over all samples (all mask levels) of that model; FID and KID are one number per "
            "model over all its outputs. In the by-level table the best is marked within each level.</dd>"
            f"{items}</dl>")


def _histograms(doc: dict[str, Any]) -> str:
    """Per per-sample metric: one histogram per model, sharing the bin range and the y scale."""
    keys: dict[str, None] = {}
    for m in doc["models"].values():
        for k in m["summary"]:
            keys.setdefault(k, None)
    if not keys:
        return "<p>No per-sample metrics.</p>"
    names = list(doc["models"])
    out = ['<table class="hists"><tr><th></th>' + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"]
    for key in [m.key for m in METRICS if m.key in keys] + sorted(k for k in keys if k not in SPECS):
        per_model = {n: [s["metrics"].get(key) for s in doc["models"][n]["samples"]
                         if _numeric(s["metrics"].get(key))] for n in names}
        every = [v for vals in per_model.values() for v in vals]
        if not every:
            continue
        lo, hi = float(min(every)), float(max(every))
        bins = 20
        ymax = max(int(np.histogram(v, bins=bins, range=_span(lo, hi))[0].max()) if v else 0
                   for v in per_model.values())
        spec = SPECS.get(key)
        means = {n: doc["models"][n]["summary"].get(key, {}).get("mean") for n in names}
        cells = "".join(f"<td>{svg_histogram(per_model[n], lo, hi, bins, ymax=ymax, mark=means[n])}</td>"
                        for n in names)
        out.append(f"<tr><th>{html.escape(spec.label if spec else key)}{_arrow(spec)}</th>{cells}</tr>")
    out.append("</table><p class=\"sd\">Bars: number of samples per bin (all levels); red dashed line: the mean. "
               "Every model of a row shares the same bins and scale.</p>")
    return "".join(out)


def _grid(name: str, samples: Sequence[Mapping[str, Any]], max_rows: int, thumb: int) -> str:
    """Rows = test cases (sample ids); columns = reference | per level: background + mask above the output."""
    by_id: dict[Any, dict[Any, Mapping[str, Any]]] = {}
    for sample in samples:
        by_id.setdefault(sample["id"], {})[sample["level"]] = sample
    if not by_id:
        return "<p>No samples.</p>"
    levels = sorted({lv for group in by_id.values() for lv in group}, key=_level_key)
    head = "".join(f"<th>level {html.escape(str(lv))}<br><span class=\"cap\">background + mask / output</span></th>"
                   for lv in levels)
    out = [f'<table class="grid"><tr><th>case</th><th>reference</th>{head}</tr>']
    for case, group in list(by_id.items())[:max_rows]:
        ref = next((s["reference"] for s in group.values() if s.get("reference") is not None), None)
        ref_cell = f'<img src="{image_data_uri(ref, thumb)}" alt="reference">' if ref is not None else "—"
        cells = []
        for lv in levels:
            s = group.get(lv)
            if s is None:
                cells.append('<td class="na">—</td>')
                continue
            bgm = s.get("background_with_mask")
            if bgm is None and s.get("background") is not None and s.get("mask") is not None:
                bgm = overlay_mask(s["background"], s["mask"])
            imgs = [f'<img src="{image_data_uri(bgm, thumb)}" alt="background + mask">' if bgm is not None else "",
                    f'<img src="{image_data_uri(s["output"], thumb)}" alt="output">'
                    if s.get("output") is not None else "—"]
            caption = ", ".join(f"{SPECS[k].label} {format(s['metrics'][k], SPECS[k].fmt)}"
                                for k in ("dino", "clip", "shape_iou") if _numeric(s["metrics"].get(k)))
            cells.append(f'<td>{"".join(imgs)}<div class="cap">{html.escape(caption)}</div></td>')
        out.append(f'<tr><td class="name">{html.escape(str(case))}</td><td>{ref_cell}</td>{"".join(cells)}</tr>')
    out.append("</table>")
    if len(by_id) > max_rows:
        out.append(f'<p class="sd">Showing {max_rows} of {len(by_id)} cases of {html.escape(name)}.</p>')
    return "".join(out)


def render_html(doc: dict[str, Any], results: Mapping[str, Any], max_grid_rows: int = 12, thumb: int = 160) -> str:
    """The report page for :func:`build_metrics_document`'s ``doc`` (images are taken from ``results``)."""
    columns = _headline_columns(doc)
    names = list(doc["models"])
    title = html.escape(doc["title"])
    counts = ", ".join(f"{html.escape(n)}: {doc['models'][n]['n_samples']} samples" for n in names)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
             f"<style>{_CSS}</style></head><body><h1>{title}</h1><p class=\"sd\">{counts}</p>"]
    if doc["notes"]:
        parts.append('<div class="notes"><ul>' + "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"])
                     + "</ul></div>")
    parts.append("<h2>Headline</h2>")
    parts.append(_table(names, columns, "model") if columns else "<p>No metrics.</p>")
    parts.append("<h2>How to read this</h2>" + _legend(doc, columns))
    parts.append("<h2>By mask level</h2>" + _level_table(doc))
    parts.append("<h2>Distributions</h2>" + _histograms(doc))
    parts.append("<h2>Images</h2>")
    for name in names:
        parts.append(f"<h3>{html.escape(name)}</h3>" + _grid(name, results["models"][name].get("samples", []),
                                                              max_grid_rows, thumb))
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(doc["settings"], indent=2, sort_keys=True))
                 + "</pre>")
    info = {n: doc["models"][n]["info"] for n in names if doc["models"][n]["info"]}
    if info:
        parts.append("<h2>Models</h2><pre>" + html.escape(json.dumps(info, indent=2, sort_keys=True)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, results: Mapping[str, Any], max_grid_rows: int = 12, thumb: int = 160
                 ) -> tuple[Path, Path]:
    """Write ``out_dir/metrics.json`` and ``out_dir/report.html`` (see the module docstring for ``results``).

    ``max_grid_rows`` test cases per model go into the image grids, as PNG thumbnails of at most ``thumb``
    pixels a side. Both files are written to a temporary name and renamed. Returns their paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = build_metrics_document(results)
    metrics_path, report_path = out / "metrics.json", out / "report.html"
    write_text_atomic(metrics_path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    write_text_atomic(report_path, render_html(doc, results, max_grid_rows, thumb))
    return metrics_path, report_path
