"""`imprint verify` (a good set passes; each kind of damage is caught, naming the file), `imprint preview`
(the HTML contact sheet) and Hugging Face ``datasets`` reading the shards as images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_sets import write_manifest, write_shard_set

from imprint.shards.preview import main as preview_main
from imprint.shards.preview import write_preview
from imprint.shards.schema import SHARD_SCHEMA
from imprint.shards.verify import main as verify_main
from imprint.shards.verify import schema_problems, verify_shards


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good") / "shards"
    write_shard_set(root / "stage1", sizes=(5, 4), seed=1, stage=1)
    write_shard_set(root / "stage2", sizes=(10, 9, 7), seed=2, stage=2)
    return root


@pytest.fixture()
def stage2(good: Path, tmp_path: Path) -> Path:
    """A private copy of the good stage-2 folder, to damage."""
    return Path(shutil.copytree(good / "stage2", tmp_path / "stage2"))


def _rewrite_part(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, row_group_size=4)
    write_manifest(path.parent)  # the manifest matches the file again: only the content is wrong


def _only_about(problems: list[str], name: str) -> None:
    assert problems, "damage not caught"
    assert all(name in p for p in problems), problems


def test_good_set_passes(good: Path, capsys: pytest.CaptureFixture) -> None:
    assert verify_shards(good / "stage2")[0] == []
    problems, summaries = verify_shards(good)
    assert problems == [] and len(summaries) == 2
    assert summaries[1].startswith(f"{good / 'stage2'}: 3 shards, 26 rows (") and summaries[1].endswith(" 78 images")
    assert verify_main([str(good)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "OK" in out and "stage1: 2 shards, 9 rows" in out
    assert "stage2: 3 shards, 26 rows (vipseg 13, ytvos 13), 78 images" in out


def test_flipped_byte(stage2: Path, capsys: pytest.CaptureFixture) -> None:
    part = stage2 / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    problems = verify_shards(stage2)[0]
    _only_about(problems, "part-00001.parquet")
    assert any("sha256" in p for p in problems)
    assert verify_main([str(stage2)]) == 1
    assert "part-00001.parquet: sha256" in capsys.readouterr().out


def test_missing_part(stage2: Path) -> None:
    (stage2 / "part-00002.parquet").unlink()
    problems = verify_shards(stage2)[0]
    assert problems == [f"{stage2 / 'part-00002.parquet'}: listed in manifest.json but missing"]


def test_extra_part(stage2: Path) -> None:
    # a part without a marker is being written (or was left by a killed writer): ignored, and said so
    shutil.copy(stage2 / "part-00000.parquet", stage2 / "part-00003.parquet")
    problems, summaries = verify_shards(stage2)
    assert problems == []
    assert summaries[0].endswith("1 unfinished part(s) without a marker ignored")
    # a finished part (it has its marker) that the manifest leaves out is a problem
    (stage2 / "_parts").mkdir(exist_ok=True)
    (stage2 / "_parts" / "part-00003.json").write_text(json.dumps({"part": "part-00003"}))
    assert verify_shards(stage2)[0] == [f"{stage2 / 'part-00003.parquet'}: not listed in manifest.json"]


def test_manifest_rows_off(stage2: Path) -> None:
    manifest = json.loads((stage2 / "manifest.json").read_text())
    manifest["shards"][0]["rows"] += 1
    (stage2 / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_shards(stage2)[0]
    assert any("part-00000.parquet: has 10 rows, the manifest says 11" in p for p in problems)
    assert any("rows is 26, its shards sum to 27" in p for p in problems)


def test_schema_mismatch(stage2: Path) -> None:
    part = stage2 / "part-00000.parquet"
    table = pq.read_table(part)
    i = table.schema.get_field_index("bbox")
    bbox = pa.array(table.column("bbox").to_pylist(), pa.list_(pa.int64()))
    table = table.set_column(i, pa.field("bbox", bbox.type, nullable=False), bbox)
    _rewrite_part(part, table)
    problems = verify_shards(stage2)[0]
    _only_about(problems, "part-00000.parquet")
    assert len(problems) == 1 and re.search(r"column 'bbox' is list<.*int64>, expected fixed_size_list<.*int32>\[4\]",
                                            problems[0]), problems
    assert schema_problems(SHARD_SCHEMA) == []
    assert any("imprint.schema" in p for p in schema_problems(SHARD_SCHEMA.remove_metadata()))


def test_image_that_does_not_decode(stage2: Path) -> None:
    part = stage2 / "part-00002.parquet"
    rows = pq.read_table(part).to_pylist()
    rows[3]["target"]["bytes"] = rows[3]["target"]["bytes"][:40]  # a truncated image
    rows[5]["mask"]["bytes"] = rows[5]["object"]["bytes"]  # RGB, and the object's size
    _rewrite_part(part, pa.Table.from_pylist(rows, schema=SHARD_SCHEMA))
    problems = verify_shards(stage2)[0]
    _only_about(problems, "part-00002.parquet")
    assert any(f"row 3 ({rows[3]['pair_id']}): target does not decode" in p for p in problems)
    assert any(f"row 5 ({rows[5]['pair_id']}): mask is RGB" in p for p in problems)
    assert any(f"row 5 ({rows[5]['pair_id']}): mask is 32x32, the target 64x64" in p for p in problems)


def test_bbox_that_is_not_the_mask_box(stage2: Path) -> None:
    """The loader cuts the mask levels to ``bbox``: a box that is not the mask's own tight box is a problem."""
    part = stage2 / "part-00001.parquet"
    rows = pq.read_table(part).to_pylist()
    x0, y0, x1, y1 = rows[2]["bbox"]
    rows[2]["bbox"] = [x0, y0, x1 - 1, y1]  # inside the target, one column short of the mask
    _rewrite_part(part, pa.Table.from_pylist(rows, schema=SHARD_SCHEMA))
    problems = verify_shards(stage2)[0]
    _only_about(problems, "part-00001.parquet")
    assert len(problems) == 1 and f"row 2 ({rows[2]['pair_id']}): bbox [{x0}, {y0}, {x1 - 1}, {y1}] is not the " \
        f"mask's box [{x0}, {y0}, {x1}, {y1}]" in problems[0], problems


def test_no_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert verify_main([str(tmp_path)]) == 1
    assert "has no manifest.json; build it with `imprint pairs`" in capsys.readouterr().out


def test_preview(good: Path, tmp_path: Path) -> None:
    out = write_preview(good / "stage2", tmp_path / "p.html", n=5, seed=3)
    text = out.read_text()
    assert text.startswith("<!doctype html>") and text.count('<div class="sample">') == 5
    assert len(re.findall(r'<img [^>]*src="data:image/(?:png|jpeg);base64,', text)) == 5 * 7
    assert "http" not in text  # self-contained
    assert write_preview(good / "stage2", tmp_path / "q.html", n=5, seed=3).read_text() == text
    assert write_preview(good / "stage2", tmp_path / "r.html", n=5, seed=4).read_text() != text
    assert preview_main([str(good), "--n", "50", "--out", str(tmp_path / "all.html")]) == 0
    all_text = (tmp_path / "all.html").read_text()
    assert all_text.count('<div class="sample">') == 35 and "stage 1" in all_text and "angle=" in all_text


def test_datasets_reads_images(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets
    from PIL import Image

    files = sorted(str(p) for p in (good / "stage2").glob("part-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 26
    row = ds[0]
    assert isinstance(row["object"], Image.Image) and row["object"].size == (32, 32)
    assert isinstance(row["mask"], Image.Image) and row["mask"].size == (64, 64)
    assert row["bbox"] and row["aug"]["object_crop"]["side"] > 0
