"""Object storage: every data location takes an ``s3://`` URI, against moto's S3 server on 127.0.0.1.

Ingest and pairs write to the store byte for byte what a local run writes, and ``imprint verify`` passes on
the URI; readers take only parts with a marker; the loader, eval, preview and the dry run read shards from
the URI, and the loader fetches row groups by ranged GETs (the server's own record of the requests shows
it), never a whole shard; a failed write leaves no object; filesystem-only locations refuse a URI with one
line saying what to do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from test_loader import small_cfg, write_shard_set

from imprint.cli import main
from imprint.io import (read_json, read_manifest, read_parquet, read_shard_rows, write_bytes_atomic,
                        write_json_atomic, write_parquet_atomic)
from imprint.parts import (JobConflict, finished_parts, marker_path, part_path, prepare_out_dir, read_marker,
                           unfinished)
from imprint.storage import Location, StorageError, local_dir, location

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "data" / "sample.yaml"


def _s3(uri: str) -> tuple[pafs.FileSystem, str]:
    """A plain pyarrow view of the store, independent of the code under test."""
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def _remote_files(uri: str) -> dict[str, bytes]:
    """Every object under ``uri``: relative key -> bytes."""
    fs, root = _s3(uri)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(root) + 1:]] = f.read()
    return out


def _local_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- locations ------------------------------------------------------------------------------------------


def test_location_reads_paths_and_uris(tmp_path: Path) -> None:
    loc = Location("s3://bucket/data/records")
    assert not loc.is_local and loc.scheme == "s3" and loc.fs_path == "bucket/data/records"
    part = loc / "ytvos" / "part-00000.parquet"
    assert str(part) == "s3://bucket/data/records/ytvos/part-00000.parquet"
    assert (part.name, part.stem, str(part.parent)) == ("part-00000.parquet", "part-00000",
                                                       "s3://bucket/data/records/ytvos")
    assert str(Location("gs://b/x/")) == "gs://b/x" and str(Location("gcs://b/x")) == "gs://b/x"
    assert Location(f"file://{tmp_path}").local_path() == tmp_path
    assert Location(tmp_path).is_local and Location(str(tmp_path / "a")).local_path() == tmp_path / "a"
    assert Location.of(loc) is loc and Location(loc) == loc
    assert pickle.loads(pickle.dumps(part)) == part  # a task carries its URI; the worker resolves it
    assert pickle.loads(pickle.dumps(Location(tmp_path))).local_path() == tmp_path
    # gs:// resolves to pyarrow's GCS filesystem (no request is made until data is read)
    assert type(Location("gs://some-bucket/x").fs).__name__ == "GcsFileSystem"


def test_unusable_locations_say_what_to_do() -> None:
    with pytest.raises(StorageError, match="s3:// and gs://"):
        Location("ftp://host/data")
    with pytest.raises(StorageError, match="names no bucket"):
        Location("s3://")
    with pytest.raises(argparse.ArgumentTypeError, match="ftp://"):
        location("ftp://host/data")
    with pytest.raises(argparse.ArgumentTypeError, match="must be a local or shared folder"):
        local_dir("s3://bucket/runs")
    with pytest.raises(StorageError, match="must be a local or shared folder"):
        Location("s3://bucket/runs").local_path("the run folder")
    with pytest.raises(StorageError):
        open(Location("s3://bucket/x"))  # noqa: SIM115 - os.fspath refuses a URI


def test_filesystem_only_arguments_refuse_a_uri(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--stage", "1", "--config", "stage1-tiny", "--shards", str(tmp_path), "--out",
              "s3://bucket/run"])
    assert exit_.value.code == 2
    assert "s3://bucket/run is object storage; this must be a local or shared folder" in capsys.readouterr().err
    # a source whose raw files need a filesystem says to pass --local-data, before anything starts
    assert main(["ingest", "sample", "--out", "s3://bucket/data", "--executor", "local"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--local-data DIR" in err[0] and "s3://bucket/data is object storage" in err[0]


# --- the I/O core on a store -------------------------------------------------------------------------------


def test_writes_are_whole_or_absent(s3_bucket: str) -> None:
    base = Location(s3_bucket) / "io"
    write_json_atomic(base / "a.json", {"x": 1})
    assert read_json(base / "a.json") == {"x": 1}
    table = pa.table({"a": np.arange(1000), "b": [f"v{i}" for i in range(1000)]})
    written = write_parquet_atomic(table, base / "t.parquet", row_group_size=100)
    data = _remote_files(s3_bucket)["io/t.parquet"]
    assert (written.size, written.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert read_parquet(base / "t.parquet", ["a"]).column("a").to_pylist() == list(range(1000))
    with pytest.raises(Exception):  # noqa: B017 - the writer's own error: the file is never started
        write_parquet_atomic(table, base / "bad.parquet", compression="no-such-codec")

    def broken():
        yield b"half"
        raise RuntimeError("the producer died")

    with pytest.raises(RuntimeError):
        write_bytes_atomic(base / "gen.bin", b"".join(broken()))
    assert sorted(_remote_files(s3_bucket)) == ["io/a.json", "io/t.parquet"]  # nothing half-written
    with pytest.raises(FileNotFoundError):
        read_json(base / "missing.json")


class _Task:
    def __init__(self, name: str, fp: str) -> None:
        self.name, self._fp = name, fp

    def fingerprint(self) -> str:
        return self._fp


def test_parts_and_markers_in_a_store(s3_bucket: str) -> None:
    out = Location(s3_bucket) / "job"
    prepare_out_dir(out, {"job": 1}, overwrite=False)
    prepare_out_dir(out, {"job": 1}, overwrite=False)  # the same job again: fine
    with pytest.raises(JobConflict, match="--overwrite"):
        prepare_out_dir(out, {"job": 2}, overwrite=False)
    table = pa.table({"a": [1, 2]})
    for name in ("part-00000", "part-00001", "part-00002"):
        write_parquet_atomic(table, part_path(out, name))
    write_json_atomic(marker_path(out, "part-00000"), {"fingerprint": "f0", "rows": 2})
    write_json_atomic(marker_path(out, "part-00001"), {"fingerprint": "old", "rows": 2})
    tasks = [_Task(f"part-0000{i}", f"f{i}") for i in range(4)]
    assert [t.name for t in unfinished(out, tasks)] == ["part-00001", "part-00002", "part-00003"]
    # part-00002 has no marker: being written, or left by a killed writer; readers never see it
    assert [p.name for p in finished_parts(out)] == ["part-00000.parquet", "part-00001.parquet"]
    assert read_marker(out, "part-00000") == {"fingerprint": "f0", "rows": 2}
    prepare_out_dir(out, {"job": 2}, overwrite=True)
    assert sorted(_remote_files(str(out))) == ["_job.json"]


def test_an_unreachable_bucket_fails_on_the_driver_with_what_to_check(s3_server, tmp_path: Path,
                                                                      sample_roots, capsys) -> None:
    assert main(["ingest", "ytvos", "--root", str(sample_roots["ytvos"]), "--out", "s3://no-such-bucket/data",
                 "--executor", "local"]) == 1
    err = capsys.readouterr().err
    assert "cannot" in err and "s3://no-such-bucket/data/records/ytvos" in err and "AWS_ENDPOINT_URL" in err
    assert "part(s) failed" not in err  # the driver's first write says it, before any task runs


# --- the whole flow: local vs the store ------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(s3_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The sample recipe ingested and paired (quality filters on) twice: into a local DATA and into
    s3://BUCKET/data, with the same raw folder (so the records' image paths agree)."""
    raw = tmp_path_factory.mktemp("raw")
    local = tmp_path_factory.mktemp("local")
    uri = s3_server.bucket("flow") + "/data"
    for out in (str(local), uri):
        assert main(["ingest", "--recipe", str(RECIPE), "--out", out, "--local-data", str(raw),
                     "--executor", "local"]) == 0
        assert main(["pairs", "--recipe", str(RECIPE), "--records", f"{out}/records", "--out", f"{out}/shards",
                     "--executor", "local", "--filters", "default"]) == 0
    return {"local": local, "uri": uri, "raw": raw}


@pytest.mark.slow
def test_ingest_and_pairs_in_a_store_equal_a_local_run(built) -> None:
    local, remote = _local_files(built["local"]), _remote_files(built["uri"])
    parts = sorted(k for k in local if k.endswith(".parquet"))
    assert len(parts) >= 10 and any(k.startswith("records/") for k in parts) and any("shards/" in k for k in parts)
    assert sorted(k for k in remote if k.endswith(".parquet")) == parts
    assert all(remote[k] == local[k] for k in parts)  # records, shards and excluded/: byte for byte
    excluded = [k for k in parts if "/excluded/" in k]
    assert any("/excluded/records-" in k for k in excluded) and any("/excluded/part-" in k for k in excluded)
    assert sum(pq.read_metadata(pa.BufferReader(local[k])).num_rows for k in excluded) > 0  # the filters removed some
    for key in (k for k in local if "/_parts/" in k):  # every marker, last written, is there
        a, b = json.loads(local[key]), json.loads(remote[key])
        assert (a["fingerprint"], a["rows"]) == (b["fingerprint"], b["rows"])
    for stage in ("stage1", "stage2", "stage1-holdout", "stage2-holdout"):
        a = json.loads(local[f"shards/{stage}/manifest.json"])
        b = json.loads(remote[f"shards/{stage}/manifest.json"])
        assert a["shards"] == b["shards"] and a["rows"] == b["rows"] > 0
        # the quality summary (filters, thresholds, every score's histogram, removals) and the dataset card
        a, b = json.loads(local[f"shards/{stage}/report.json"]), json.loads(remote[f"shards/{stage}/report.json"])
        assert a["quality"] == b["quality"] and a["quality"]["filters"] and a["dropped"] == b["dropped"]
        assert (a["records"], b["records"]) == (str(built["local"] / "records"), f"{built['uri']}/records")
        for name in ("README.md", "ATTRIBUTION.md"):
            assert remote[f"shards/{stage}/{name}"] == local[f"shards/{stage}/{name}"]
    assert not any(k.startswith("raw/") for k in remote)  # raw files stayed on the filesystem


@pytest.mark.slow
def test_verify_passes_on_the_uri_and_ignores_unfinished_parts(built, capsys) -> None:
    uri = built["uri"]
    assert main(["verify", f"{uri}/shards"]) == 0
    out = capsys.readouterr().out
    assert "imprint verify: OK" in out and f"{uri}/shards/stage2:" in out
    # a part being written (no marker yet) in a stage folder is ignored; one the manifest lacks is a problem
    fs, path = _s3(f"{uri}/shards/stage1")
    fs.copy_file(f"{path}/part-00000.parquet", f"{path}/part-00099.parquet")
    assert main(["verify", f"{uri}/shards/stage1"]) == 0
    assert "1 unfinished part(s) without a marker ignored" in capsys.readouterr().out
    fs.copy_file(f"{path}/_parts/part-00000.json", f"{path}/_parts/part-00099.json")
    assert main(["verify", f"{uri}/shards/stage1"]) == 1
    assert f"{uri}/shards/stage1/part-00099.parquet: not listed in manifest.json" in capsys.readouterr().out
    fs.delete_file(f"{path}/_parts/part-00099.json")
    fs.delete_file(f"{path}/part-00099.parquet")


@pytest.mark.slow
def test_pairs_read_only_marked_records_parts(built, tmp_path: Path) -> None:
    from imprint.pairing.plan import record_parts

    uri = built["uri"]
    fs, path = _s3(f"{uri}/records/ytvos")
    fs.copy_file(f"{path}/part-00000.parquet", f"{path}/part-00042.parquet")  # no marker: not a record yet
    try:
        assert [p.name for p in record_parts(f"{uri}/records", "ytvos")] == ["part-00000.parquet"]
    finally:
        fs.delete_file(f"{path}/part-00042.parquet")


@pytest.mark.slow
def test_loader_eval_preview_and_dry_run_read_the_uri(built, s3_server) -> None:
    from imprint.eval.testsets import load_test_set
    from imprint.shards.loader import ShardLoader
    from imprint.shards.preview import sample_rows
    from imprint.train.dryrun import check_shards

    local, uri = built["local"], built["uri"]
    cfg = small_cfg(batch_size=4, object_size=56, target_size=64, shuffle_buffer=8)
    s3_server.clear()
    got = list(ShardLoader(f"{uri}/shards/stage2", cfg))
    want = list(ShardLoader(local / "shards" / "stage2", cfg))
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a["pair_id"] == b["pair_id"] and all(torch_equal(a[k], b[k]) for k in ("object", "target", "mask"))
    key = uri.removeprefix("s3://") + "/shards/stage2/part-"
    gets = s3_server.requests(key, "GET")
    assert gets and all(g.range for g in gets)  # only ranged GETs of the shards, never a whole object
    a, b = load_test_set(f"{uri}/shards/stage2-holdout", 5), load_test_set(local / "shards" / "stage2-holdout", 5)
    assert [e.id for e in a] == [e.id for e in b] and len(a) > 0
    assert all(np.array_equal(x.background, y.background) and np.array_equal(x.mask, y.mask) for x, y in zip(a, b))
    assert [r["pair_id"] for r, _ in sample_rows(f"{uri}/shards", 6, seed=3)] == \
        [r["pair_id"] for r, _ in sample_rows(local / "shards", 6, seed=3)]
    assert check_shards(f"{uri}/shards/stage1", 1)["rows"] == read_manifest(local / "shards" / "stage1")["rows"]
    assert read_shard_rows(f"{uri}/shards/stage1", 3, ["pair_id"]) == \
        read_shard_rows(local / "shards" / "stage1", 3, ["pair_id"])


@pytest.mark.slow
def test_preview_of_the_removed_items_reads_the_uri(built, tmp_path: Path) -> None:
    from imprint.quality.excluded import read_excluded
    from imprint.shards.verify import shard_dirs

    local, uri = built["local"], built["uri"]
    pages = {}
    for name, shards in (("local", str(local / "shards")), ("remote", f"{uri}/shards")):
        assert main(["preview", shards, "--excluded", "--n", "1000", "--out", str(tmp_path / f"{name}.html")]) == 0
        pages[name] = (tmp_path / f"{name}.html").read_text().replace(shards, "SHARDS")
    assert pages["remote"] == pages["local"]
    kinds = [k for d in shard_dirs(f"{uri}/shards") for k in read_excluded(d).column("kind").to_pylist()]
    assert pages["remote"].count('class="removed"') == len(kinds) > 0
    # each removed record is drawn from its records part, found under the URI its stage's report names
    assert pages["remote"].count('alt="record"') == kinds.count("record") > 0 and "not found" not in pages["remote"]


@pytest.mark.slow
def test_train_reads_its_shards_from_the_uri(built, tmp_path: Path) -> None:
    uri = built["uri"]
    assert main(["train", "--stage", "1", "--config", "stage1-tiny", "--shards", f"{uri}/shards/stage1",
                 "--out", str(tmp_path / "run"), "max_steps=2", "log_with=none", "batch_size=4",
                 "checkpoint_every=1000", "validate_every=1000"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert (tmp_path / "run" / "validation").is_dir()  # its validation examples were read from the URI too


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_loader_streams_row_groups_by_ranged_reads(s3_server, s3_bucket: str, tmp_path: Path) -> None:
    """The first sample of a 50-row-group shard costs its footer and the first row groups, not the shard."""
    from imprint.shards.loader import ShardStream

    write_shard_set(tmp_path / "stage2", sizes=(200,), seed=5)
    uri = f"{s3_bucket}/shards/stage2"
    fs, path = _s3(uri)
    pafs.copy_files(str(tmp_path / "stage2"), path, destination_filesystem=fs)
    size = (tmp_path / "stage2" / "part-00000.parquet").stat().st_size
    key = f"{path}/part-00000.parquet"
    s3_server.clear()
    stream = ShardStream(uri, small_cfg(shuffle_buffer=1))
    first = next(iter(stream))
    gets = s3_server.requests(key, "GET")
    fetched = sum(g.sent for g in gets)
    assert first["pair_id"] == "s2-0000"
    assert gets and all(g.range for g in gets), gets
    assert fetched < size / 2, (fetched, size)  # 16 of 50 row groups (one Arrow batch), only the needed columns
    s3_server.clear()
    assert len(list(iter(stream))) == 200
    gets = s3_server.requests(key, "GET")
    # a whole pass: every row group once, by ranged GETs (the footer's speculative 64 KiB read is read twice)
    assert all(g.range for g in gets) and sum(g.sent for g in gets) < size + 65536
    assert len(gets) <= 50 + 3  # one GET per row group (its columns coalesced), plus the footer


# --- workers write straight to the store ------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_ray_workers_write_their_parts_to_the_store(ray_local, s3_server, sample_roots, s3_bucket: str,
                                                    tmp_path: Path) -> None:
    from helpers import ingest

    from imprint.executor import RayExecutor

    cfg = {"groups_per_part": 1, "split": "train"}
    ingest("ytvos", sample_roots["ytvos"], tmp_path, **cfg)
    report = ingest("ytvos", sample_roots["ytvos"], f"{s3_bucket}/data", RayExecutor(max_retries=1), **cfg)
    assert report["executor"] == "ray" and not report["failed_parts"]
    local = {k: v for k, v in _local_files(tmp_path / "records").items() if k.endswith(".parquet")}
    remote = {k: v for k, v in _remote_files(f"{s3_bucket}/data/records").items() if k.endswith(".parquet")}
    assert len(local) >= 2 and remote == local
    # a rerun finds every part done from the store's markers and uploads no part again
    s3_server.clear()
    again = ingest("ytvos", sample_roots["ytvos"], f"{s3_bucket}/data", RayExecutor(max_retries=1), **cfg)
    assert again["kept"] == report["kept"]
    puts = s3_server.requests(f"{s3_bucket.removeprefix('s3://')}/data/records/ytvos/", "PUT")
    assert [p.key.rsplit("/", 1)[-1] for p in puts] == ["_job.json", "report.json"]


@pytest.mark.slow
def test_eval_takes_its_test_set_from_a_uri(compositor, sample_shards: Path, s3_bucket: str, tmp_path: Path) -> None:
    """``imprint eval --test s3://...`` scores what the same command scores on the folder."""
    fs, path = _s3(f"{s3_bucket}/shards/stage2")
    pafs.copy_files(str(sample_shards / "stage2"), path, destination_filesystem=fs)
    metrics = {}
    for name, test in (("local", str(sample_shards / "stage2")), ("remote", f"{s3_bucket}/shards/stage2")):
        assert main(["eval", "--model", f"ours={compositor}", "--test", test, "--out", str(tmp_path / name),
                     "--n", "2", "--levels", "0,3", "--steps", "1", "--dino", "tiny", "--clip", "tiny"]) == 0
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())["models"]["ours"]
    assert metrics["remote"]["n_samples"] == metrics["local"]["n_samples"] == 4
    assert metrics["remote"]["summary"] == metrics["local"]["summary"]
