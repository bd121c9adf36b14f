"""What a run leaves for the next stage: the compositor folder (stage 2) and the encoder (stage 1).

The compositor folder (``RUN2/final``: ``unet/``, ``vae/``, ``scheduler/``, ``encoder/``, ``config.json`` of
type ``imprint-compositor``) has one writer, :meth:`Compositor.save_pretrained`, and one reader,
:meth:`Compositor.from_pretrained`. The trainer writes its stage-2 export with the first; the compositing
pipeline (``imprint.eval.pipeline.CompositingPipeline``) is a :class:`Compositor` and loads with the second.
Folders are written beside their target and renamed into place, so a kill never leaves half of one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from imprint.hub import load_pretrained
from imprint.io import replace_dir, write_json_atomic
from imprint.train.models import (COMPOSITOR_TYPE, VAE, ImageEncoder, ModelFolderError, NoiseScheduler, UNet,
                                  read_model_config)

STAGE1_TYPE = "imprint-stage1"
C = TypeVar("C", bound="Compositor")


def write_folder(folder: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into a fresh temporary folder beside ``folder``, then put it in ``folder``'s place."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    replace_dir(tmp, folder)
    return folder


class Compositor:
    """The stage-2 model: inpainting UNet, VAE, noise scheduler, image encoder, and its ``config.json``
    (``type``, ``stage``, ``version``, ``resolution``, ``object_size``, ``train_config``, ``encoder_init``)."""

    def __init__(self, unet: UNet, vae: VAE, scheduler: NoiseScheduler, encoder: ImageEncoder,
                 config: dict[str, Any]) -> None:
        self.unet, self.vae, self.scheduler, self.encoder = unet, vae, scheduler, encoder
        self.config = {"type": COMPOSITOR_TYPE, **{k: v for k, v in config.items() if k != "type"}}

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the compositor folder (replacing ``folder``)."""

        def write(tmp: Path) -> None:
            self.unet.save_pretrained(tmp / "unet", safe_serialization=True)
            self.vae.save_pretrained(tmp / "vae", safe_serialization=True)
            self.scheduler.save_pretrained(tmp / "scheduler")
            self.encoder.save_pretrained(tmp / "encoder", stage=2)
            write_json_atomic(tmp / "config.json", self.config)

        return write_folder(folder, write)

    @classmethod
    def from_pretrained(cls: type[C], folder: str | Path, scheduler_cls: Any = None) -> C:
        """Read a compositor folder; ``scheduler_cls`` (a diffusers scheduler class) replaces the saved
        scheduler's class (DDIM by default). Raises :class:`ModelFolderError` for another kind of folder."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        folder = Path(folder)
        config = read_model_config(folder)
        if config.get("type") != COMPOSITOR_TYPE:
            raise ModelFolderError(f"{folder} is a {config.get('type')!r} folder, not a stage-2 compositor: pass "
                                   f"the final/ folder of an `imprint train --stage 2` run")
        sched_cls = scheduler_cls or DDIMScheduler
        unet = load_pretrained(UNet2DConditionModel.from_pretrained, folder / "unet", "the compositor's UNet")
        vae = load_pretrained(AutoencoderKL.from_pretrained, folder / "vae", "the compositor's VAE")
        scheduler = load_pretrained(sched_cls.from_pretrained, folder / "scheduler", "the compositor's scheduler")
        return cls(unet, vae, scheduler, ImageEncoder.from_pretrained(folder / "encoder"), config)


def export_stage1(run: Path, unet: UNet, encoder: ImageEncoder, config: dict[str, Any]) -> Path:
    """Stage 1's ``final/`` (``unet/``, ``encoder/``, ``config.json`` of type ``imprint-stage1``) and
    ``RUN/encoder/``, the folder stage 2 takes as ``--encoder``."""

    def write(tmp: Path) -> None:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        encoder.save_pretrained(tmp / "encoder", stage=1)
        write_json_atomic(tmp / "config.json", {"type": STAGE1_TYPE, **{k: v for k, v in config.items() if k != "type"}})

    write_folder(Path(run) / "encoder", lambda tmp: encoder.save_pretrained(tmp, stage=1))
    return write_folder(Path(run) / "final", write)
