"""``imprint bench``: the command, its result files, and the benchmark modules (timings are never asserted)."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

from imprint.bench import BENCHMARKS, main


def test_every_benchmark_is_a_module_with_measure() -> None:
    for name in BENCHMARKS:
        module = importlib.import_module(f"imprint.bench.{name}")
        assert callable(module.measure), name


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_production_modules_do_not_import_the_benchmarks() -> None:
    root = Path(__file__).resolve().parents[1]
    rooms = ("ingest", "pairing", "augment", "shards", "train", "eval")
    files = [*(root / "imprint").glob("*.py"), *(p for room in rooms for p in (root / room).rglob("*.py"))]
    assert len(files) > 30
    offenders = [str(p.relative_to(root)) for p in files
                 if any(name == "imprint.bench" or name.startswith("imprint.bench.") for name in _imports(p))]
    assert offenders == []


def test_unknown_benchmark_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bench_render_quick_writes_its_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "render.json").read_text())
    assert result["benchmark"] == "render" and result["quick"] is True
    assert result["machine"]["cores"] >= 1 and "numpy" in result["machine"]["versions"]
    assert result["views"] == 48 and result["objects"] == 4 and result["size"] == 256
    assert result["views_per_s_per_core"] > 0 and result["render_only_ms_per_view"] > 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["views"] == 48 and "machine" not in printed


def test_bench_file_server_is_a_keep_alive_child_process_stopped_after(tmp_path: Path) -> None:
    import httpx

    from imprint.bench.downloads import serve_directory

    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    with serve_directory(tmp_path) as base:
        with httpx.Client() as client:
            first, second = client.get(f"{base}/a.bin"), client.get(f"{base}/a.bin")
            assert first.content == second.content == b"x" * 1000
            assert first.http_version == "HTTP/1.1" and first.headers.get("connection", "").lower() != "close"
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(f"{base}/a.bin")


def test_bench_downloads_quick_writes_its_result(tmp_path: Path) -> None:
    assert main(["downloads", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "downloads.json").read_text())
    assert result["dataset"]["files"] == 64 and result["dataset"]["rounds"] == 3
    for way in ("floor", "fetcher", "job"):
        assert len(result[way]["seconds"]["runs"]) == 3 and result[way]["items_per_s"] > 0
        assert result[way]["client_cpu_us_per_item"] > 0
    for way in ("fetcher", "job"):
        ratio = result["ratio_to_baseline"][way]
        assert ratio["min"] <= ratio["median"] <= ratio["max"] and len(ratio["runs"]) == 3
    assert result["per_item_cost_us"]["ledger_alone"]["items"] == 64
    assert len(result["machine_load"]["loadavg_before"]) == 3
    assert result["segmentation"]["images"] == 10


def test_costs_turn_rates_into_core_hours_and_dollars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imprint.bench import costs

    rates = {"ingest_frames": 500.0, "pairs_512px": 50.0, "loader_samples": 400.0, "render_views_256px": 100.0}
    cluster = {"cpu_rates": {k: {"per_cpu_second": v} for k, v in rates.items()},
               "scaling": {"pairs": {"efficiency": 0.5}}, "object_storage": {"shard_bytes_per_pair": 100_000}}
    files = {"cluster": cluster, "ingest": {"ingest_one_core": {"frames_per_s": 250.0}},
             "pairs": {"pairs_one_core": {"pairs_per_s_per_core": 25.0}},
             "loader": {"loader_one_core": {"samples_per_s_per_core": 200.0}}, "render": {"views_per_s_per_core": 50.0}}
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    assert costs.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    mv = next(line for line in out.splitlines() if line.startswith("| MVImgNet |"))
    # 6.5M frames at 500/s + 1,753,504 pairs at 50/s = 13,000 + 35,070 s = 13.4 core-hours; twice at half the rates
    low, high = 6_500_000 / 500 / 3600 + 1_753_504 / 50 / 3600, 6_500_000 / 250 / 3600 + 1_753_504 / 25 / 3600
    assert f"| {low:.1f}–{high:.1f} |" in mv
    usd = 1.36 / 32 / 0.5  # per core-hour of work at efficiency 0.5
    assert f"${low * usd:.2f}–${high * usd:.2f}" in mv
    assert "0.18 TB" in mv  # 1,753,504 pairs x 100 kB
    assert costs.main([str(tmp_path), "--efficiency", "1.0"]) == 0
    assert f"${low * usd / 2:.2f}–" in capsys.readouterr().out
