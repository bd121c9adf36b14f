"""Deterministic synthetic sample data in the official on-disk layouts of four datasets.

Used by ``imprint ingest sample``, ``make demo``, the benchmarks and the tests. Every
file is a pure function of ``seed`` and the arguments: two runs with the same seed
write byte-identical trees, and writing the same root again overwrites it identically.

Content: short videos of textured objects (ellipses, polygons, stars, the scikit-image
horse silhouette, halves of the scikit-image logo, stick-figure people and cars) that
move, turn, scale and change lighting over natural backgrounds (photos that ship
inside the scikit-image wheel, mixed with procedural noise); multi-view captures of a
textured box or cylinder turning on a turntable; groups of portrait photos.

Layouts (``generate_*`` returns the folder a reader takes as ``--root``):

* ``ytvos``: YouTube-VOS 2019, ``train/meta.json``, ``train/JPEGImages/<vid>/00000.jpg``
  (step 5) and ``train/Annotations/<vid>/00000.png`` (palette PNG, value = object id).
* ``vipseg``: ``VIPSeg_720P/images/<video>/00000001.jpg``, ``VIPSeg_720P/panomasks/<video>/
  00000001.png`` (16-bit raw panoptic values), ``panoVIPSeg_categories.json``,
  ``train.txt`` and ``val.txt`` (``split_files``: also beside ``VIPSeg_720P/`` as the archive keeps
  them, as the split jsons only, or none).
* ``ppr10k``: ``source/<g>_<i>.tif`` (16-bit), ``target_a/<g>_<i>.tif`` (8-bit) and
  ``masks/<g>_<i>.png`` (0 / 255) (``layout``: also the download with ``masks_360p/`` beside the
  image folder, or the official ``train/``/``val/`` split folders with ``source_aug``).
* ``mvimgnet``: ``<class>/<instance>/images/001.jpg``, ``<class>/<instance>/masks/001.png``
  (soft 0..255) and ``mvimgnet_category.txt`` (``id,name``) (``mask_layout``: also the separate
  ``masks/`` tree or RGBA images beside the JPEGs; ``padded=False``: ``1.jpg``, ``2.jpg``, ...).

The defaults are the layouts ``generate`` writes; the other layouts are options of each ``generate_*``
for tests of the places real downloads keep their files.

Each written source folder holds a small marker file; a folder without it is never
overwritten (:class:`FileExistsError`), so a real dataset cannot be replaced by mistake.

The package: ``common`` (seeded randomness, argument checks, file writing), ``textures``
(photos, noise, backgrounds), ``sprites`` (textured shapes), ``scenes`` (tracks, frames
and cameras), and one module per layout (``ytvos``, ``vipseg``, ``ppr10k``, ``mvimgnet``); ``faults`` writes
data faults (blur, speckled masks, identity switches, static shots, duplicated frames) into a YouTube-VOS or
MVImgNet layout, with their ground truth, for the quality filters' tests and benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from imprint.ingest.sample.common import check_args, scaled_size
from imprint.ingest.sample.mvimgnet import generate_mvimgnet
from imprint.ingest.sample.ppr10k import generate_ppr10k
from imprint.ingest.sample.vipseg import generate_vipseg
from imprint.ingest.sample.ytvos import generate_ytvos

__all__ = ["SOURCES", "generate", "generate_ytvos", "generate_vipseg", "generate_ppr10k", "generate_mvimgnet"]

SOURCES = ("ytvos", "vipseg", "ppr10k", "mvimgnet")


def generate(root: Path, seed: int = 0, *, sources: Sequence[str] = SOURCES, size: tuple[int, int] = (256, 144),
             scale: int = 1) -> dict[str, Path]:
    """Write every requested source under root/<source>/ and return {source: path to pass as --root}.

    ``size`` is the (width, height) of the video frames (YouTube-VOS, VIPSeg); the
    portraits (PPR10K, 144x216) and the multi-view captures (MVImgNet, 192x192) are
    scaled by the same factor over 144 rows. ``scale`` multiplies the number of videos,
    photo groups and captures, for bigger benchmark sets.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sample source(s) {unknown}; choose from {SOURCES}")
    if scale < 1:
        raise ValueError("scale must be >= 1")
    size = check_args(seed, size)
    k = size[1] / 144
    root = Path(root)
    writers: dict[str, Callable[[], Path]] = {
        "ytvos": lambda: generate_ytvos(root, seed, n_videos=3 * scale, size=size),
        "vipseg": lambda: generate_vipseg(root, seed, n_videos=2 * scale, size=size),
        "ppr10k": lambda: generate_ppr10k(root, seed, n_groups=3 * scale, size=scaled_size((144, 216), k)),
        "mvimgnet": lambda: generate_mvimgnet(root, seed, n_instances=2 * scale, size=scaled_size((192, 192), k)),
    }
    return {name: writers[name]() for name in dict.fromkeys(sources)}
