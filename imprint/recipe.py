"""A data recipe: one YAML file that reproduces a dataset (what to ingest, which source feeds which
stage, caps, mixing weights, and the pair settings). See ``configs/data/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imprint.config import ConfigError, load_mapping

RECIPE_KEYS = ("name", "description", "ingest", "ingest_config", "sources", "pairs")


@dataclass(frozen=True)
class SourceSpec:
    stage: int
    pairs_per_instance: int | None = None  # None: the pairs config's default
    weight: float = 1.0  # relative sampling weight in the loader (recorded in the manifest)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    ingest: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> {root: PATH}
    ingest_config: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist (see configs/data/ for examples)")
    data = load_mapping(path, f"recipe {path} must be a mapping with keys {', '.join(RECIPE_KEYS)}")
    unknown = set(data) - set(RECIPE_KEYS)
    if unknown:
        raise ConfigError(f"recipe {path}: unknown keys {sorted(unknown)}; known: {', '.join(RECIPE_KEYS)}")
    sources = {}
    for name, spec in (data.get("sources") or {}).items():
        spec = dict(spec or {})
        bad = set(spec) - {"stage", "pairs_per_instance", "weight"}
        if bad or spec.get("stage") not in (1, 2):
            raise ConfigError(f"recipe {path}: source {name!r} needs stage: 1|2 and may set pairs_per_instance, "
                              f"weight (got {spec})")
        if float(spec.get("weight", 1.0)) < 0:
            raise ConfigError(f"recipe {path}: source {name!r} has a negative weight")
        sources[name] = SourceSpec(int(spec["stage"]), spec.get("pairs_per_instance"), float(spec.get("weight", 1.0)))
    return Recipe(name=str(data.get("name", path.stem)), description=str(data.get("description", "")),
                  ingest={k: dict(v or {}) for k, v in (data.get("ingest") or {}).items()},
                  ingest_config=dict(data.get("ingest_config") or {}), sources=sources,
                  pairs=dict(data.get("pairs") or {}))
