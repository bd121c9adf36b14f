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
