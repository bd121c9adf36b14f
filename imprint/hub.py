"""Loading pretrained models by hub id or local folder, with one clear error when they cannot be had.

Every ``from_pretrained`` of a model the user names (DINOv2, Stable Diffusion, a segmenter, a metric
backbone) goes through :func:`load_pretrained`, so an offline machine or a mistyped id ends in one line
that says what to do instead of a traceback from deep inside the hub client.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from imprint.errors import ImprintError

T = TypeVar("T")


class ModelUnavailable(ImprintError):
    """A model named by hub id or folder could not be loaded; the message says what to do."""


def load_pretrained(load: Callable[..., T], name_or_path: str | os.PathLike[str], what: str, **kwargs: Any) -> T:
    """``load(name_or_path, **kwargs)`` (a ``from_pretrained``), turning "cannot get it" into :class:`ModelUnavailable`.

    ``what`` names the model for the message ("the DINOv2 encoder", "the stage-2 UNet").
    """
    name = str(name_or_path)
    try:
        return load(name, **kwargs)
    except OSError as exc:
        raise ModelUnavailable(unavailable_message(name, what, exc)) from exc


def unavailable_message(name: str, what: str, exc: BaseException) -> str:
    reason = " ".join(str(exc).split())[:300]
    if Path(name).exists():
        return f"cannot load {what} from the folder {name}: {reason}. Check that it is a complete model folder " \
               f"(config.json and weights, as save_pretrained writes them)"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    where = "HF_HUB_OFFLINE is set, and it is not in the local cache" if offline else \
        "the Hugging Face hub could not be reached or has no such model"
    return (f"cannot load {what} {name!r}: {where} ({reason}). Download it where there is a network "
            f"(huggingface-cli download {name}) and pass its folder, or point HF_HOME at a cache that holds it")
