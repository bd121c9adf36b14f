"""Typed, frozen configs loaded from YAML files and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what to fix."""


def _coerce(value: str, annotation: Any) -> Any:
    """Turn an override's text into the field's type (YAML rules for the literal)."""
    parsed = yaml.safe_load(value)
    if annotation in (float, "float") and isinstance(parsed, int):
        return float(parsed)
    if annotation in (str, "str") and not isinstance(parsed, str):
        return value
    return parsed


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not key=value (e.g. min_area_frac=0.01)")
        out[key.strip()] = value.strip()
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Build ``cls`` from its defaults, then a YAML file, then ``key=value`` overrides."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        values.update(loaded)
    for key, text in parse_overrides(overrides or []).items():
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(sorted(fields))}")
        values[key] = _coerce(text, hints.get(key))
    unknown = set(values) - fields
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)}; known keys: {', '.join(sorted(fields))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from exc


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def fingerprint(*parts: Any) -> str:
    """A stable sha256 over JSON-able parts (configs, input lists)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()
