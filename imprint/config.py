"""Typed, frozen configs loaded from YAML files and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from imprint.errors import UsageError

C = TypeVar("C")


class ConfigError(UsageError, ValueError):
    """A config file or override that cannot be used; the message says what to fix."""


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 booleans: only true/false are booleans, so ``mixed_precision: no`` stays the string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_yaml(text: str) -> Any:
    """Parse a config, recipe or override value (YAML 1.2 booleans; see :class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)


def load_mapping(path: Path, not_a_mapping: str) -> dict[str, Any]:
    """The YAML file ``path`` as a mapping (an empty file is ``{}``); anything else raises ``not_a_mapping``."""
    loaded = load_yaml(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(not_a_mapping)
    return loaded


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "affine.rotate=[-10, 10]"]`` -> ``{"a": 1, "affine": {"rotate": [-10, 10]}}`` (YAML values)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} is not key=value (e.g. min_area_frac=0.01)")
        node = out
        *parents, leaf = key.strip().split(".")
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r} sets a key inside {name!r}, which is a value")
        try:
            node[leaf] = load_yaml(value) if value.strip() else ""
        except yaml.YAMLError:
            node[leaf] = value
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(cls: type[C], values: dict[str, Any], where: str = "") -> C:
    """Instantiate a (possibly nested) config dataclass from plain values, naming any bad key."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {where}{key!r}; known keys: {', '.join(sorted(fields))}")
        hint = hints.get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = build_config(hint, value, f"{where}{key}.")
        elif isinstance(value, list):
            value = tuple(value)
        elif hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:  # YAML 1.1 reads 4e-5 (no dot) as a string
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}{key} must be a number, got {value!r}") from None
        elif hint is str and value is not None and not isinstance(value, str):
            value = str(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {where or ''}{cls.__name__}: {exc}") from exc


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> C:
    """Build ``cls`` from its defaults, then ``base``, then a YAML file, then ``key=value`` overrides."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        values = _merge(values, load_mapping(path, f"config file {path} must hold a mapping of keys to values"))
    values = _merge(values, parse_overrides(overrides or []))
    return build_config(cls, values)


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def fingerprint(*parts: Any) -> str:
    """A stable sha256 over JSON-able parts (configs, input lists)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()
