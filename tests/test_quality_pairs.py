"""The quality filters in ``imprint pairs`` on generated faults: each fault caught by its filter, clean data kept,
every removal in ``excluded/`` and ``report.json``, and the held-out fault sets of the issue's "done when"."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from imprint.cli import main
from imprint.executor import LocalExecutor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest
from imprint.ingest.sample import generate_mvimgnet, generate_ytvos
from imprint.ingest.sample.faults import FaultTruth, inject_faults
from imprint.pairing.config import PairsConfig
from imprint.pairing.job import run_pairs
from imprint.pairing.plan import plan_pairs
from imprint.quality.excluded import read_excluded
from imprint.quality.filters import NO_FILTERS, FiltersConfig

# small pairs, every candidate pair planned (no sampling: a filtered run is a subset of the unfiltered plan)
FAST = dict(resolution=64, object_resolution=56, shard_rows=64, row_group_rows=16, pairs_per_instance=1000)
STAGE = {"ytvos": 2, "mvimgnet": 1}


def faulty_data(root: Path, seed: int, kinds=None, *, ytvos: int = 0, mvimgnet: int = 0, frames: int = 8,
                clean: int = 1, fault_seed: int | None = None) -> tuple[Path, dict[str, FaultTruth]]:
    """Sample layouts with faults injected (``kinds``; None: every kind; () : none), ingested into root/data."""
    truths = {}
    for source, n in (("ytvos", ytvos), ("mvimgnet", mvimgnet)):
        if not n:
            continue
        if source == "ytvos":
            layout = generate_ytvos(root, seed, n_videos=n, n_frames=frames)
        else:
            layout = generate_mvimgnet(root, seed, n_classes=max(2, n // 3), n_instances=3, n_frames=frames + 4)
        if kinds != ():
            truths[source] = inject_faults(layout, source, fault_seed if fault_seed is not None else seed,
                                           **({} if kinds is None else {"kinds": kinds}), clean=clean)
        run_ingest(source, layout, root / "data", IngestConfig(), LocalExecutor())
    return root / "data" / "records", truths


def pairs(records: Path, out: Path, source: str, filters: FiltersConfig = FiltersConfig(), **cfg) -> dict:  # noqa: B008
    config = PairsConfig(**{**FAST, **cfg, "filters": filters})
    return run_pairs(records, out, STAGE[source], {source: 1000}, config, LocalExecutor())


def kept_pairs(out: Path) -> list[dict]:
    files = sorted(out.glob("part-*.parquet"))
    return pq.read_table(files, columns=["pair_id", "group_id", "instance_id", "src_frame", "tgt_frame",
                                         "quality"]).to_pylist() if files else []


def frame_names(records: Path, source: str) -> dict[tuple[str, str, int], str]:
    table = pq.read_table(sorted((records / source).glob("part-*.parquet")),
                          columns=["group_id", "instance_id", "frame_index", "frame_name"]).to_pylist()
    return {(r["group_id"], r["instance_id"], r["frame_index"]): r["frame_name"] for r in table}


def excluded_by_reason(out: Path) -> Counter:
    return Counter(read_excluded(out, columns=["reason"]).column("reason").to_pylist())


def test_blurred_frames_are_removed_as_blurry(tmp_path):
    records, truth = faulty_data(tmp_path, 11, ("blur",), ytvos=3)
    out = tmp_path / "s"
    report = pairs(records, out, "ytvos", FiltersConfig(enabled=("blurry",)))
    names = frame_names(records, "ytvos")
    blurred = {k for k, n in names.items() if truth["ytvos"].record_faults(k[0], k[1], n) == {"blur"}}
    removed = read_excluded(out).to_pylist()
    assert blurred and {(r["group_id"], r["instance_id"], r["src_frame"]) for r in removed} == blurred
    assert all(r["kind"] == "record" and r["reason"] == "blurry" and r["value"] < r["threshold"] for r in removed)
    assert report["quality"]["records"]["dropped"] == {"blurry": len(blurred)}
    for row in kept_pairs(out):  # no pair uses a blurred frame
        assert (row["group_id"], row["instance_id"], row["src_frame"]) not in blurred
        assert (row["group_id"], row["instance_id"], row["tgt_frame"]) not in blurred


def test_speckled_masks_are_removed_as_fragmented(tmp_path):
    records, truth = faulty_data(tmp_path, 12, ("speckle",), ytvos=3)
    out = tmp_path / "s"
    report = pairs(records, out, "ytvos", FiltersConfig(enabled=("fragmented_mask",)))
    names = frame_names(records, "ytvos")
    speckled = {k for k, n in names.items() if truth["ytvos"].record_faults(k[0], k[1], n)}
    removed = read_excluded(out).to_pylist()
    assert speckled and {(r["group_id"], r["instance_id"], r["src_frame"]) for r in removed} == speckled
    assert {r["reason"] for r in removed} == {"fragmented_mask"}
    assert report["quality"]["records"]["dropped"] == {"fragmented_mask": len(speckled)}


def test_duplicated_frames_are_removed_as_near_duplicates(tmp_path):
    records, truth = faulty_data(tmp_path, 13, ("duplicate",), ytvos=3)
    out = tmp_path / "s"
    pairs(records, out, "ytvos", FiltersConfig(enabled=("near_duplicate",)))
    dup = truth["ytvos"].faults[0]
    names = frame_names(records, "ytvos")
    copies = {k for k, n in names.items() if k[0] == dup.group and n in dup.frames}
    removed = read_excluded(out).to_pylist()
    assert copies and {(r["group_id"], r["instance_id"], r["src_frame"]) for r in removed} == copies
    index = {n: k[2] for k, n in names.items() if k[0] == dup.group}
    assert all(r["reason"] == "near_duplicate" and r["value"] == 0 and r["detail"] == f"repeats frame "
               f"{index[dup.original]}" for r in removed)


def test_a_static_shot_is_removed_as_static_pairs(tmp_path):
    records, truth = faulty_data(tmp_path, 14, ("static",), ytvos=3)
    out = tmp_path / "s"
    report = pairs(records, out, "ytvos", FiltersConfig(enabled=("static_pair",)))
    t = truth["ytvos"]
    names = frame_names(records, "ytvos")
    static = {r["pair_id"] for r in read_excluded(out).to_pylist()}
    planned = list(plan_pairs(records, {"ytvos": 1000}, 2, PairsConfig(**FAST, filters=NO_FILTERS)))
    faulty = {s.pair_id for s in planned
              if t.pair_fault(s.group_id, s.instance_id, names[(s.group_id, s.instance_id, s.src_frame)],
                              names[(s.group_id, s.instance_id, s.tgt_frame)]) == "static"}
    assert faulty and static == faulty  # every pair inside the shot, and nothing else
    assert report["dropped"] == {"static_pair": len(faulty)}


def test_an_identity_switch_is_removed_as_identity_mismatch(tmp_path):
    records, truth = faulty_data(tmp_path, 15, ("identity_switch",), ytvos=4)
    out = tmp_path / "s"
    report = pairs(records, out, "ytvos", FiltersConfig(enabled=("identity_mismatch",)))
    t = truth["ytvos"]
    names = frame_names(records, "ytvos")
    crossing = {(s.group_id, s.instance_id, s.src_frame, s.tgt_frame)
                for s in plan_pairs(records, {"ytvos": 1000}, 2, PairsConfig(**FAST, filters=NO_FILTERS))
                if t.pair_fault(s.group_id, s.instance_id, names[(s.group_id, s.instance_id, s.src_frame)],
                                names[(s.group_id, s.instance_id, s.tgt_frame)])}
    removed = read_excluded(out).to_pylist()
    assert crossing <= {(r["group_id"], r["instance_id"], r["src_frame"], r["tgt_frame"]) for r in removed}
    assert all(r["reason"] == "identity_mismatch" and r["object"]["bytes"] and r["target"]["bytes"]
               for r in removed)
    assert report["dropped"]["identity_mismatch"] == len(removed)


def test_a_clean_video_with_motion_scale_and_light_changes_keeps_most_pairs(tmp_path):
    records, _ = faulty_data(tmp_path, 16, (), ytvos=6)
    planned = list(plan_pairs(records, {"ytvos": 1000}, 2, PairsConfig(**FAST, filters=NO_FILTERS)))
    report = pairs(records, tmp_path / "s", "ytvos")
    assert report["kept"] >= 0.9 * len(planned), report["dropped"]


def _label(truths, names, source, row) -> str:
    g, i = row["group_id"], row["instance_id"]
    return truths[source].pair_label(g, i, names[(g, i, row["src_frame"])], names[(g, i, row["tgt_frame"])])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [201, 202])
def test_held_out_fault_sets_lose_their_faulty_pairs_and_keep_the_clean_ones(tmp_path, seed):
    """The issue's "done when", on fault sets no threshold was chosen on (seeds 1-8 were measured): every
    fault kind in both layouts, placed by another seed; >= 95% of the faulty pairs removed, >= 80% of the
    fault-free ones kept, every removal in excluded/ and counted in report.json."""
    records, truths = faulty_data(tmp_path, seed, None, ytvos=12, mvimgnet=9, frames=10, clean=2,
                                  fault_seed=seed * 7 + 3)
    faulty = clean = faulty_gone = clean_kept = 0
    for source in ("ytvos", "mvimgnet"):
        names = frame_names(records, source)
        out = tmp_path / source
        report = pairs(records, out, source)
        planned = {s.pair_id: {"group_id": s.group_id, "instance_id": s.instance_id, "src_frame": s.src_frame,
                               "tgt_frame": s.tgt_frame}
                   for s in plan_pairs(records, {source: 1000}, STAGE[source], PairsConfig(**FAST, filters=NO_FILTERS))}
        kept = {r["pair_id"] for r in kept_pairs(out)}
        assert kept <= set(planned)
        removed = read_excluded(out).to_pylist()
        gone_records = {(r["group_id"], r["instance_id"], r["src_frame"]) for r in removed if r["kind"] == "record"}
        gone_pairs = {r["pair_id"] for r in removed if r["kind"] == "pair"}
        for pair_id, row in planned.items():  # every removal is traced in excluded/
            if pair_id not in kept:
                assert pair_id in gone_pairs or {(row["group_id"], row["instance_id"], row["src_frame"]),
                                                 (row["group_id"], row["instance_id"], row["tgt_frame"])} & gone_records
        reasons = excluded_by_reason(out)
        assert sum(report["dropped"].values()) == sum(1 for r in removed if r["kind"] == "pair")
        assert reasons == Counter(report["dropped"]) + Counter(report["quality"]["records"]["dropped"])
        for pair_id, row in planned.items():
            label = _label(truths, names, source, row)
            faulty += label == "faulty"
            clean += label == "clean"
            faulty_gone += label == "faulty" and pair_id not in kept
            clean_kept += label == "clean" and pair_id in kept
    assert faulty_gone >= 0.95 * faulty, (faulty_gone, faulty)
    assert clean_kept >= 0.80 * clean, (clean_kept, clean)


def test_filters_flag_none_default_and_file(tmp_path, capsys):
    records, _ = faulty_data(tmp_path, 17, ("blur", "static"), ytvos=4)
    args = ["pairs", "--records", str(records), "--executor", "local", "--stage", "2", "--resolution", "64",
            "--set", "object_resolution=56", "--set", "pairs_per_instance=1000"]
    assert main([*args, "--out", str(tmp_path / "none"), "--filters", "none"]) == 0
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    strict = tmp_path / "strict.yaml"
    strict.write_text("min_sharpness: 0.99\nenabled: [blurry]\n")
    assert main([*args, "--out", str(tmp_path / "strict"), "--filters", str(strict)]) == 0
    none = json.loads((tmp_path / "none" / "stage2" / "report.json").read_text())
    default = json.loads((tmp_path / "default" / "stage2" / "report.json").read_text())
    assert none["dropped"] == {} and none["quality"]["records"]["dropped"] == {} and none["quality"]["filters"] == []
    assert read_excluded(tmp_path / "none" / "stage2").num_rows == 0
    assert default["kept"] < none["kept"] and default["quality"]["records"]["dropped"].get("blurry")
    # scores are measured either way: every kept pair has them
    assert all(r["quality"]["identity"] is not None and r["quality"]["src_sharpness"] is not None
               for r in kept_pairs(tmp_path / "none" / "stage2"))
    strict_report = json.loads((tmp_path / "strict" / "stage2" / "report.json").read_text())
    assert strict_report["kept"] == 0 and strict_report["quality"]["thresholds"]["min_sharpness"] == 0.99
    card = (tmp_path / "default" / "stage2" / "README.md").read_text()
    assert "## Data quality" in card and "`sharpness`" in card and "`identity`" in card and "excluded/" in card
    assert main([*args, "--out", str(tmp_path / "bad"), "--filters", str(tmp_path / "missing.yaml")]) == 2
    assert "--filters takes none, default or a YAML file" in capsys.readouterr().err


def test_a_rerun_finishes_without_duplicating_excluded_rows(tmp_path):
    records, _ = faulty_data(tmp_path, 18, ("blur", "identity_switch"), ytvos=6)
    out = tmp_path / "s"
    first = pairs(records, out, "ytvos", shard_rows=16)
    rows = read_excluded(out).num_rows
    assert rows == sum(first["dropped"].values()) + sum(first["quality"]["records"]["dropped"].values()) > 0
    for marker in sorted((out / "_parts").glob("*.json"))[:2]:  # as if killed before those shards finished
        marker.unlink()
    again = pairs(records, out, "ytvos", shard_rows=16)
    assert read_excluded(out).num_rows == rows
    assert (again["kept"], again["dropped"], again["quality"]) == (first["kept"], first["dropped"], first["quality"])


def test_preview_shows_scores_removed_items_and_the_worst_kept(tmp_path):
    records, _ = faulty_data(tmp_path, 19, ("blur", "speckle", "identity_switch"), ytvos=5)
    shards = tmp_path / "shards"
    pairs(records, shards / "stage2", "ytvos")
    removed = read_excluded(shards / "stage2").num_rows
    assert main(["preview", str(shards), "--excluded", "--n", "500", "--out", str(tmp_path / "ex.html")]) == 0
    page = (tmp_path / "ex.html").read_text()
    assert page.count('class="removed"') == removed > 0
    for reason in ("blurry", "fragmented_mask", "identity_mismatch"):
        assert reason in page
    assert page.count("<svg") == 6 and "removed &lt; 0.45" in page  # each score's histogram with its threshold
    assert main(["preview", str(shards), "--worst", "identity", "--n", "5", "--out", str(tmp_path / "w.html")]) == 0
    worst = (tmp_path / "w.html").read_text()
    kept = sorted(r["quality"]["identity"] for r in kept_pairs(shards / "stage2"))
    assert worst.count('class="sample"') == 5 and f"identity {kept[0]:.4g}" in worst
    assert main(["preview", str(shards), "--worst", "beauty", "--out", str(tmp_path / "x.html")]) == 2
