"""The architecture configs of the models a training config names, without their weights.

``imprint train --dry-run`` builds every model from its config alone, on the meta device. A model named
by folder or hub id is resolved in this order, and never over the network:

1. a local folder: its own config file (``unet/config.json``, ``config.json``, ...);
2. the Hugging Face cache, when the model (or its config) was downloaded before;
3. the configs shipped in ``configs/models/<hub id>/`` (SD 2.1-base, SD 2 inpainting's UNet, DINOv2
   small/base/large/giant), written from the public configs; ``configs/models/README.md`` says where
   each value comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imprint.errors import ImprintError
from imprint.io import read_json

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"
UNET_CONFIG = "unet/config.json"
VAE_CONFIG = "vae/config.json"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
TRANSFORMERS_CONFIG = "config.json"


class ArchitectureUnavailable(ImprintError):
    """No architecture config for a model the training config names; the message says what to do."""


@dataclass(frozen=True)
class Architecture:
    """A model's config (the dict its ``from_config`` takes) and where it was found."""

    config: dict[str, Any]
    source: str


def architecture(name: str, filename: str, what: str) -> Architecture:
    """The config file ``filename`` (e.g. ``unet/config.json``) of the model ``name`` (a folder or hub id)."""
    folder = Path(name)
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise ArchitectureUnavailable(
                f"{what}: the folder {name} has no {filename}; pass a model folder as save_pretrained writes it")
        return Architecture(_read(path, what), f"folder {path}")
    cached = _cached(name, filename)
    if cached is not None:
        return Architecture(_read(cached, what), f"Hugging Face cache: {name}/{filename}")
    shipped = MODEL_CONFIG_DIR / name / filename
    if shipped.is_file():
        return Architecture(_read(shipped, what), f"shipped: configs/models/{name}/{filename}")
    raise ArchitectureUnavailable(
        f"{what}: no architecture config for {name!r} (not a folder, not in the Hugging Face cache, and imprint "
        f"ships configs only for {', '.join(shipped_models())}). Download its configs where there is a network "
        f"(huggingface-cli download {name} --include '*.json') or pass a local folder")


def shipped_models() -> list[str]:
    """The hub ids whose configs ``configs/models/`` holds."""
    folders = {p.parent.relative_to(MODEL_CONFIG_DIR) for p in MODEL_CONFIG_DIR.rglob("*config.json")}
    return sorted({str(f.parent if f.name in ("unet", "vae", "scheduler") else f) for f in folders})


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        config = read_json(path)
    except (OSError, ValueError) as exc:
        raise ArchitectureUnavailable(f"{what}: {path} is not a readable JSON config ({exc})") from exc
    if not isinstance(config, dict):
        raise ArchitectureUnavailable(f"{what}: {path} must hold a JSON object")
    return config


def _cached(name: str, filename: str) -> Path | None:
    """``filename`` of the hub repo ``name`` from the local Hugging Face cache, or None (never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo_id=name, filename=filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(hit) if isinstance(hit, str) else None
