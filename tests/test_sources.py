"""Sources: adding one is one module (proved by a source defined in this file, run through the CLI), and the
registry is what the CLI, pairing, the dataset card and docs/sources.md read."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import balanced
from PIL import Image

from imprint.cli import main
from imprint.executor import Executor
from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import (MODULES, Materialise, Option, Request, SourceDef, get_source, markdown_table,
                                    register, shared_options, sources, unregister)
from imprint.media import read_label_map

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------- a whole source
# Everything below, down to TINY, is what a new source module holds: a reader of its layout, a materialise
# step (here it draws the layout instead of downloading it) with its option, and its definition.


class TinyDiscs(Source):
    """``<root>/<group>/<frame>.jpg`` with ``<frame>.png`` beside it (0 background, 1 the disc)."""

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        groups = [Group(g.name, sorted_frames([Frame(p.stem, str(p), str(p.with_suffix(".png")))
                                                for p in g.glob("*.jpg")]))
                  for g in sorted(Path(root).iterdir()) if g.is_dir()]
        if not groups:
            raise LayoutError(f"{root} is not a tiny-discs folder: expected <group>/<frame>.jpg + .png")
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        return {"1": (read_label_map(frame.annotation_file, cfg.max_image_pixels) > 0, "disc")}


def draw_discs(request: Request, executor: Executor) -> Path:
    root = request.out / "raw" / "tinydiscs"
    rng = np.random.default_rng(request.seed)
    for g in range(int(request.option("tiny_groups"))):
        (root / f"g{g}").mkdir(parents=True, exist_ok=True)
        for t in range(4):
            yy, xx = np.mgrid[:48, :64]
            disc = (yy - 24) ** 2 + (xx - 14 - 9 * t) ** 2 < 10 ** 2
            rgb = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
            rgb[disc] = (220, 60 * g, 40)
            Image.fromarray(rgb).save(root / f"g{g}" / f"{t:03d}.jpg", quality=95)
            Image.fromarray(disc.astype(np.uint8)).save(root / f"g{g}" / f"{t:03d}.png")
    return root


TINY = SourceDef(
    name="tinydiscs", kind="video", reader=TinyDiscs, licence="CC0 1.0", attribution="the imprint test suite",
    layout="`<group>/<frame>.jpg` + `<frame>.png`", ingest={"min_area_frac": 0.01},
    materialise=Materialise(run=draw_discs, options=(
        Option(("--tiny-groups",), "how many groups to draw", type=int, default=2),)))


# ---------------------------------------------------------------------------------------------- the proof


@pytest.fixture()
def tiny():
    register(TINY)  # the "one registry line" (a plugin or a test registers; a module in the repo is in MODULES)
    yield TINY
    unregister(TINY.name)


def test_a_source_in_one_place_goes_through_ingest_and_pairs(tiny, tmp_path, capsys):
    data = tmp_path / "DATA"
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "tinydiscs: how many groups to draw" in " ".join(capsys.readouterr().out.split())
    assert main(["ingest", "tinydiscs", "--out", str(data), "--executor", "local", "--tiny-groups", "3"]) == 0
    report = json.loads((data / "records" / "tinydiscs" / "report.json").read_text())
    assert report["kept"] == 12 and report["groups"] == 3 and balanced(report)
    assert report["config"]["min_area_frac"] == 0.01  # the source's own setting
    records = pq.read_table(sorted((data / "records" / "tinydiscs").glob("part-*.parquet"))).to_pylist()
    assert {(r["source"], r["category"], r["licence"], r["attribution"]) for r in records} == {
        ("tinydiscs", "disc", "CC0 1.0", "the imprint test suite")}

    shards = data / "shards"
    assert main(["pairs", "--records", str(data / "records"), "--out", str(shards), "--executor", "local",
                 "--set", "resolution=64", "--set", "object_resolution=32"]) == 0
    assert not (shards / "stage1").exists()  # a video source feeds stage 2
    manifest = json.loads((shards / "stage2" / "manifest.json").read_text())
    assert manifest["sources"] == {"tinydiscs": manifest["rows"]} and manifest["rows"] > 0
    assert manifest["licences"] == {"CC0 1.0": manifest["rows"]}
    assert "tinydiscs 3 groups" in (shards / "stage2" / "ATTRIBUTION.md").read_text()
    assert "| tinydiscs |" in (shards / "stage2" / "README.md").read_text()


def test_a_wrong_layout_is_reported_before_any_executor_starts(tmp_path, capsys, monkeypatch):
    import imprint.executor

    def no_executor(*args, **kwargs):
        raise AssertionError("an executor was made before the layout was checked")

    monkeypatch.setattr(imprint.executor, "make_executor", no_executor)
    register(replace(TINY, name="tinyplain", materialise=None))  # read from --root as it is
    try:
        (tmp_path / "empty").mkdir()
        assert main(["ingest", "tinyplain", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "out"),
                     "--executor", "ray"]) == 1
    finally:
        unregister("tinyplain")
    err = capsys.readouterr().err
    assert "expected <group>/<frame>.jpg" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- the registry


def test_the_registry_is_the_modules_in_order_each_defining_its_source():
    defs = sources()
    assert [d.name for d in defs.values()][:len(MODULES)] == [
        "ytvos", "vipseg", "ppr10k", "mvimgnet", "sav", "objaverse", "pixabay", "urls"]
    assert {n: d.stage for n, d in defs.items()} == {
        "ytvos": 2, "vipseg": 2, "ppr10k": 2, "mvimgnet": 1, "sav": 2, "objaverse": 1, "pixabay": 2, "urls": 2}
    assert {n for n, d in defs.items() if d.kind == "image"} == {"pixabay", "urls"}
    assert {n for n, d in defs.items() if d.materialise} == {"sav", "objaverse", "pixabay", "urls"}
    assert {n for n, d in defs.items() if not d.limit_groups} == {"objaverse", "pixabay"}
    assert all(d.licence and d.attribution and d.layout for d in defs.values())
    assert get_source("pixabay").ingest["min_frames_per_instance"] == 1


def test_names_and_options_are_checked():
    with pytest.raises(ValueError, match="already exists"):
        register(SourceDef(name="ytvos", kind="video", reader=TinyDiscs, licence="x", attribution="y", layout="z"))
    with pytest.raises(ValueError, match="kind"):
        SourceDef(name="odd", kind="audio", reader=TinyDiscs, licence="x",  # type: ignore[arg-type]
                  attribution="y", layout="z")
    with pytest.raises(ValueError, match="licence"):
        SourceDef(name="odd", kind="image", reader=TinyDiscs, licence="", attribution="y", layout="z")
    flags = {flag for option, _ in shared_options().values() for flag in option.flags}
    assert {"--retry-failed", "--segmenter", "--list", "--uids", "--query"} <= flags
    users = {option.flags: users for option, users in shared_options().values()}
    assert users[("--retry-failed",)] == ["sav", "objaverse", "pixabay", "urls"]
    clash = SourceDef(name="clash", kind="image", reader=TinyDiscs, licence="x", attribution="y", layout="z",
                      materialise=Materialise(run=draw_discs, options=(Option(("--segmenter",), "another one"),)))
    register(clash)
    try:
        with pytest.raises(ValueError, match="--segmenter is declared twice"):
            shared_options()
    finally:
        unregister("clash")
    with pytest.raises(Exception, match="unknown source 'nope'; choose one of ytvos"):
        get_source("nope")


def test_docs_list_the_registry():
    assert markdown_table() in (REPO / "docs" / "sources.md").read_text(), (
        "docs/sources.md is out of date: paste imprint.ingest.sources.markdown_table() into it")


def test_a_request_reads_the_parsed_options():
    req = Request(Path("/d"), None, 3, 1, argparse.Namespace(query="cats"))
    assert req.option("query") == "cats" and req.option("missing", 7) == 7
