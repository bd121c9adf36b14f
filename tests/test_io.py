import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imprint import io


def test_sha256_of_bytes_and_file_agree(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read chunk
    (tmp_path / "f").write_bytes(data)
    assert io.sha256_file(tmp_path / "f", chunk=4096) == io.sha256_bytes(data) == hashlib.sha256(data).hexdigest()


def test_atomic_writes_leave_no_temporary_and_replace_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    io.write_json_atomic(path, {"a": 1})
    io.write_json_atomic(path, {"a": 2, "p": tmp_path})
    assert io.read_json(path) == {"a": 2, "p": str(tmp_path)}
    io.write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    table = pa.table({"x": [1, 2, 3]})
    io.write_parquet_atomic(table, tmp_path / "t.parquet", row_group_size=2)
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "t.parquet", "x.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "x.json"
    io.write_json_atomic(path, {"ok": True})
    with pytest.raises(AttributeError):
        io.write_parquet_atomic({"not": "a table"}, path)  # type: ignore[arg-type]
    assert io.read_json(path) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_replace_dir_moves_a_finished_folder_over_the_old_one(tmp_path):
    new, dst = tmp_path / "new.partial", tmp_path / "dst"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    new.mkdir()
    (new / "a.txt").write_text("a")
    io.replace_dir(new, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst"] and [p.name for p in dst.iterdir()] == ["a.txt"]
    again = tmp_path / "again"
    again.mkdir()
    io.replace_dir(again, tmp_path / "fresh")  # nothing there before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "fresh"]


def _shard_folder(tmp_path, sizes, group_rows):
    from imprint.shards.schema import SHARDS_SCHEMA_VERSION

    shards, start = [], 0
    for k, n in enumerate(sizes):
        pq.write_table(pa.table({"i": list(range(start, start + n))}), tmp_path / f"part-{k:05d}.parquet",
                       row_group_size=group_rows)
        shards.append({"file": f"part-{k:05d}.parquet", "rows": n})
        start += n
    (tmp_path / io.MANIFEST).write_text(json.dumps({"schema": SHARDS_SCHEMA_VERSION, "shards": shards}))
    return tmp_path


def test_shard_rows_come_in_manifest_order_and_stop_at_n(tmp_path):
    folder = _shard_folder(tmp_path, [5, 3], group_rows=2)
    assert [r["i"] for r in io.read_shard_rows(folder)] == list(range(8))
    assert [r["i"] for r in io.read_shard_rows(folder, 6)] == list(range(6))
    assert io.read_shard_rows(folder, 0) == []
    with pq.ParquetFile(folder / "part-00000.parquet") as pf:
        assert io.row_group_offsets(pf.metadata).tolist() == [0, 2, 4, 5]


def test_manifest_errors_say_what_to_do(tmp_path):
    (tmp_path / "stage2").mkdir()
    _shard_folder(tmp_path / "stage2", [1], 1)
    with pytest.raises(io.ManifestError, match="pass one of them"):
        io.read_manifest(tmp_path)
    (tmp_path / "stage2" / io.MANIFEST).write_text("{")
    with pytest.raises(io.ManifestError, match="rebuild it with `imprint pairs`"):
        io.read_manifest(tmp_path / "stage2")


def test_reading_a_manifest_never_imports_torch(tmp_path):
    import subprocess
    import sys

    folder = _shard_folder(tmp_path, [2], 2)
    code = ("import sys; from imprint.io import read_shard_rows; read_shard_rows(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True)


def test_an_unreachable_model_is_one_clear_error(tmp_path):
    from imprint.hub import ModelUnavailable, load_pretrained

    def offline(name, **_kw):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    with pytest.raises(ModelUnavailable, match="cannot load the DINOv2 encoder 'facebook/dinov2-giant'.*pass its folder"):
        load_pretrained(offline, "facebook/dinov2-giant", "the DINOv2 encoder")
    with pytest.raises(ModelUnavailable, match="complete model folder"):
        load_pretrained(offline, tmp_path, "the UNet")
    assert load_pretrained(lambda name, **kw: (name, kw), "x", "y", subfolder="unet") == ("x", {"subfolder": "unet"})


def test_verify_and_preview_never_import_torch(sample_shards, tmp_path):
    """`imprint verify`, `imprint preview` and reading a manifest, run as the user runs them, load no torch."""
    import subprocess
    import sys

    code = ("import sys; from imprint.cli import main; from imprint.io import read_manifest; "
            "read_manifest(sys.argv[1] + '/stage2'); "
            "assert main(['verify', sys.argv[1]]) == 0; "
            "assert main(['preview', sys.argv[1], '--n', '4', '--out', sys.argv[2]]) == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'diffusers')))")
    out = subprocess.run([sys.executable, "-c", code, str(sample_shards), str(tmp_path / "p.html")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert "imprint verify: OK" in out.stdout and (tmp_path / "p.html").read_text().count('class="sample"') == 4


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "item"
    with io.atomic_dir(final) as tmp:
        (tmp / "a.png").write_bytes(b"a")
        assert not final.exists() and io.is_temporary_dir(tmp)
    assert sorted(p.name for p in final.iterdir()) == ["a.png"]
    with pytest.raises(RuntimeError):
        with io.atomic_dir(final) as tmp:
            (tmp / "b.png").write_bytes(b"b")
            raise RuntimeError("killed halfway")
    assert sorted(p.name for p in final.iterdir()) == ["a.png"]  # the old folder, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item"]  # nothing half-written left
    (tmp_path / "other.tmp-99-1").mkdir()  # what a killed writer leaves
    (tmp_path / "other.old").mkdir()
    io.remove_stale_dirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item"]
