"""What a stage's quality looks like to a reader: the ``quality`` section of ``report.json``, its lines in the
dataset card, and its histograms (SVG) in ``imprint preview``."""

from __future__ import annotations

import html
from typing import Any

from imprint.quality.filters import FiltersConfig
from imprint.quality.histograms import (RECORD_LEVEL, SCORE_RULES, SYMBOLS, ScoreHistograms, describe, edges,
                                        quantile)
from imprint.stats import Stats

WHOLE_NUMBERS = ("mask_components", "hash_distance")
QUALITY_REASONS = ("fragmented_mask", "blurry", "near_duplicate", "identity_mismatch", "static_pair")
_BARS = "▁▂▃▄▅▆▇█"


def quality_report(filters: FiltersConfig, stage: int, records: Stats, hist: ScoreHistograms,
                   excluded_rows: int) -> dict[str, Any]:
    """``report.json``'s ``quality``: the filters and thresholds, the records the record filters saw, every
    score's distribution (kept / removed per bin) and how many rows ``excluded/`` holds."""
    return {"filters": list(filters.enabled), "identity_backend": filters.identity.backend,
            "identity_model": filters.identity.model if filters.identity.backend == "dinov2" else None,
            "thresholds": filters.thresholds(stage),
            "records": {"seen": records.seen, "kept": records.kept, "dropped": dict(sorted(records.dropped.items()))},
            "scores": describe(hist, filters.thresholds(stage), filters.enabled),
            "excluded_rows": excluded_rows}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


MARK = "│"  # where the threshold falls (not "|": it would split a Markdown table's cell)


def sparkline(desc: dict[str, Any]) -> str:
    """The distribution as block characters, bin by bin, with ``MARK`` where the threshold falls: before its bin
    when values below it are removed, after it when values above (or at) it are."""
    counts = [k + r for k, r in zip(desc["kept"], desc["removed"])]
    top = max(counts) or 1
    edges = desc["edges"]
    out = []
    threshold = desc.get("threshold")
    for i, c in enumerate(counts):
        inside = threshold is not None and edges[i] <= threshold < edges[i + 1]
        if inside and desc["rule"] == "<":
            out.append(MARK)
        out.append(" " if c == 0 else _BARS[min(len(_BARS) - 1, int(c / top * (len(_BARS) - 1) + 0.999))])
        if inside and desc["rule"] != "<":
            out.append(MARK)
    return "".join(out)


def _quantile_text(counts: list[int], score: str, q: float) -> str:
    """A binned quantile; in the last bin (which also holds everything above the range) "≥ its start"."""
    value = quantile(counts, score, q)
    last = edges(score)[-2]
    return f"≥ {_fmt(float(last))}" if value is not None and value >= last else _fmt(value)


def rule_text(rule: str, threshold: float) -> str:
    """``removed < 0.45``, ``removed > 12``, ``removed ≤ 3``."""
    return f"removed {SYMBOLS[rule]} {_fmt(threshold)}"


def removal_text(score: str, value: float, threshold: float) -> str:
    """``sharpness 0.31 (< 0.45)``: an excluded row's score against its threshold."""
    return f"{score} {value:.4g} ({SYMBOLS[SCORE_RULES[score][1]]} {threshold:.4g})"


def card_lines(quality: dict[str, Any] | None, dropped: dict[str, int]) -> list[str]:
    """The dataset card's "Data quality" section (empty without a quality report)."""
    if not quality:
        return []
    on = quality["filters"]
    recs = quality["records"]
    removed_pairs = {k: v for k, v in dropped.items() if k in QUALITY_REASONS}
    lines = ["## Data quality", "",
             (f"Filters on: {', '.join(f'`{f}`' for f in on)}" if on else "Filters off (`--filters none`): every "
              "score below was measured, nothing was removed for it") +
             f"; identity backend `{quality['identity_backend']}`"
             + (f" (`{quality['identity_model']}`)." if quality.get("identity_model") else "."),
             f"Records seen when planning {recs['seen']}, kept {recs['kept']}"
             + (f", removed {', '.join(f'{k}: {v}' for k, v in recs['dropped'].items())}" if recs["dropped"] else "")
             + "; pairs removed "
             + (", ".join(f"{k}: {v}" for k, v in sorted(removed_pairs.items())) or "none") + ".",
             "", f"| score | of | removed when | removed | p5 / median / p95 | distribution (`{MARK}` threshold) |",
             "|---|---|---|---|---|---|"]
    for score, desc in quality["scores"].items():
        level = "records" if score in RECORD_LEVEL else "pairs"
        counts = [k + r for k, r in zip(desc["kept"], desc["removed"])]
        q = " / ".join(_quantile_text(counts, score, p) for p in (0.05, 0.5, 0.95))
        rule = f"{SYMBOLS[desc['rule']]} {desc['threshold']:.3g}" if desc["threshold"] is not None else "–"
        state = "" if desc["filter_on"] else " (off)"
        lines.append(f"| `{score}` | {level} | {rule}: `{desc['reason']}`{state} | {sum(desc['removed'])} of "
                     f"{sum(counts)} | {q} | `{sparkline(desc)}` |")
    lines += ["", f"Every removed item is a row of `excluded/` ({quality['excluded_rows']} rows: keys, reason, score, "
              "threshold); look at them with `imprint preview . --excluded`, and at the kept pairs nearest a "
              "threshold with `imprint preview . --worst SCORE`. Each pair's scores are in its `quality` column.", ""]
    return lines


def svg_histogram(score: str, desc: dict[str, Any], width: int = 300, height: int = 90) -> str:
    """One score's histogram as inline SVG: kept (grey) and removed (red) stacked per bin, the threshold as
    a dashed line, the range on the axis."""
    counts = [k + r for k, r in zip(desc["kept"], desc["removed"])]
    top = max(counts) or 1
    n = len(counts)
    lo, hi = desc["edges"][0], desc["edges"][-1]
    plot_h = height - 22
    bar_w = width / n
    parts = [f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(score)}</title>']
    for i, (k, r) in enumerate(zip(desc["kept"], desc["removed"])):
        x = i * bar_w
        hk, hr = plot_h * k / top, plot_h * r / top
        if hk:
            parts.append(f'<rect x="{x:.1f}" y="{plot_h - hk:.1f}" width="{bar_w - 1:.1f}" height="{hk:.1f}" '
                         f'fill="#8a8f98"/>')
        if hr:
            parts.append(f'<rect x="{x:.1f}" y="{plot_h - hk - hr:.1f}" width="{bar_w - 1:.1f}" height="{hr:.1f}" '
                         f'fill="#d6336c"/>')
    threshold = desc.get("threshold")
    if threshold is not None:
        tx = min(max((threshold - lo) / (hi - lo), 0.0), 1.0) * width
        parts.append(f'<line x1="{tx:.1f}" y1="0" x2="{tx:.1f}" y2="{plot_h}" stroke="#d6336c" '
                     f'stroke-dasharray="4 3" stroke-width="1.5"/>')
    parts.append(f'<line x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}" stroke="#555"/>')
    if score in WHOLE_NUMBERS:  # bins centred on whole numbers: label the numbers
        lo, hi = lo + 0.5, hi - 0.5
    parts.append(f'<text x="0" y="{height - 6}" font-size="10">{_fmt(lo)}</text>')
    parts.append(f'<text x="{width}" y="{height - 6}" font-size="10" text-anchor="end">{_fmt(hi)}+</text>')
    if threshold is not None:
        parts.append(f'<text x="{width / 2}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#d6336c">'
                     f'{html.escape(rule_text(desc["rule"], threshold))}</text>')
    parts.append("</svg>")
    return "".join(parts)
