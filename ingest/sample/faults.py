"""Data faults injected into a generated sample layout, with the ground truth of every pair.

The test and benchmark data of the quality filters (:mod:`imprint.quality`). Real annotation sets hold
faults that no check on region size catches; this module writes them into a YouTube-VOS or MVImgNet
layout written by :mod:`imprint.ingest.sample`, deterministically from a seed:

- ``blur``: strongly defocused frames (a disk kernel of radius 1.2-2.2 % of the frame diagonal);
- ``speckle``: speckled masks (object specks scattered around the object, holes punched into it);
- ``identity_switch``: from a frame in the middle on, one id labels another object (YouTube-VOS: two
  objects' ids swapped; MVImgNet: the later views come from another capture);
- ``static``: a static shot (frames after one are that frame again, with sensor noise, re-encoded);
- ``duplicate``: duplicated frames (a frame's image and annotation copied byte for byte onto the next).

Each fault goes into its own group; the rest stay clean. :class:`FaultTruth` says, for every pair of
records of one instance, whether it is ``faulty`` (a blurred or speckled record, the two sides of an
identity switch, two frames of one static or duplicate run), ``clean`` (no fault touched either record),
or ``redundant`` (a copy of a frame paired outside its run: a repeat of another pair, neither).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FAULT_KINDS = ("blur", "speckle", "identity_switch", "static", "duplicate")
TRUTH_FILE = "faults.json"
LAYOUTS = ("ytvos", "mvimgnet")


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` in ``group``, for ``instances``, on ``frames``.

    ``original``: the frame that ``static`` / ``duplicate`` copies (``frames`` are its copies);
    ``identity_switch``: ``frames`` are those showing the other object.
    """

    kind: str
    group: str
    instances: tuple[str, ...]
    frames: tuple[str, ...]
    original: str | None = None


def frame_number(name: str) -> int:
    return int("".join(c for c in name if c.isdigit()) or 0)


@dataclass(frozen=True)
class FaultTruth:
    """The faults written into one layout and the label of every pair they make."""

    source: str
    faults: tuple[Fault, ...]

    def record_faults(self, group: str, instance: str, frame: str) -> set[str]:
        """The faults that damaged this record itself (``blur``, ``speckle``)."""
        return {f.kind for f in self.faults if f.kind in ("blur", "speckle") and f.group == group
                and instance in f.instances and frame in f.frames}

    def is_copy(self, group: str, instance: str, frame: str) -> bool:
        return any(f.kind in ("static", "duplicate") and f.group == group and instance in f.instances
                   and frame in f.frames for f in self.faults)

    def pair_fault(self, group: str, instance: str, a: str, b: str) -> str | None:
        """The fault that makes the pair (a, b) of one instance faulty, or None."""
        for f in self.faults:
            if f.group != group or instance not in f.instances:
                continue
            if f.kind in ("blur", "speckle") and (a in f.frames or b in f.frames):
                return f.kind
            if f.kind == "identity_switch" and (a in f.frames) != (b in f.frames):
                return f.kind
            if f.kind in ("static", "duplicate") and {a, b} <= {*f.frames, f.original}:
                return f.kind
        return None

    def pair_label(self, group: str, instance: str, a: str, b: str) -> str:
        """``faulty``, ``redundant`` (a run's copy paired outside its run) or ``clean``."""
        if self.pair_fault(group, instance, a, b) is not None:
            return "faulty"
        if self.is_copy(group, instance, a) or self.is_copy(group, instance, b):
            return "redundant"
        return "clean"

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "faults": [asdict(f) for f in self.faults]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> FaultTruth:
        data = json.loads(text)
        faults = tuple(Fault(f["kind"], f["group"], tuple(f["instances"]), tuple(f["frames"]), f.get("original"))
                       for f in data["faults"])
        return cls(data["source"], faults)

    @classmethod
    def load(cls, root: Path) -> FaultTruth:
        return cls.from_json((Path(root) / TRUTH_FILE).read_text())


# --------------------------------------------------------------------------- the layouts


class _Layout:
    """Where a group's frames, images and annotations are, and how an annotation is edited."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def groups(self) -> dict[str, list[str]]:  # group -> frame names in order
        raise NotImplementedError

    def instances(self, group: str, frame: str) -> list[str]:
        raise NotImplementedError

    def image(self, group: str, frame: str) -> Path:
        raise NotImplementedError

    def annotation(self, group: str, frame: str) -> Path:
        raise NotImplementedError

    def read_labels(self, group: str, frame: str, instance: str) -> np.ndarray:
        """The instance's mask (bool) in this frame."""
        raise NotImplementedError

    def paint(self, group: str, frame: str, instance: str, on: np.ndarray, off: np.ndarray) -> None:
        """Add pixels ``on`` to the instance's mask and take ``off`` away."""
        raise NotImplementedError

    def copy_frame(self, group: str, src: str, dst: str, image: np.ndarray | None = None) -> None:
        """Make ``dst`` a copy of ``src`` (annotation byte for byte; the image too, or ``image``)."""
        shutil.copyfile(self.annotation(group, src), self.annotation(group, dst))
        if image is None:
            shutil.copyfile(self.image(group, src), self.image(group, dst))
        else:
            _save_jpeg(self.image(group, dst), image)

    def switch(self, group: str, frames: list[str], rng: np.random.Generator
               ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Make one id label another object from a frame in the middle on: (the instances switched, the
        frames after the switch), or None where the group cannot hold it."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write what the edits changed in the layout's index files."""


class _YouTubeVOS(_Layout):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.split = self.root / "train"
        self.meta = json.loads((self.split / "meta.json").read_text())

    def groups(self) -> dict[str, list[str]]:
        out = {}
        for video, entry in sorted(self.meta["videos"].items()):
            stems = {s for obj in entry["objects"].values() for s in obj["frames"]}
            out[video] = sorted(stems, key=frame_number)
        return out

    def instances(self, group: str, frame: str) -> list[str]:
        return sorted(k for k, o in self.meta["videos"][group]["objects"].items() if frame in o["frames"])

    def image(self, group: str, frame: str) -> Path:
        return self.split / "JPEGImages" / group / f"{frame}.jpg"

    def annotation(self, group: str, frame: str) -> Path:
        return self.split / "Annotations" / group / f"{frame}.png"

    def _labels(self, group: str, frame: str) -> tuple[np.ndarray, list[int]]:
        with Image.open(self.annotation(group, frame)) as im:
            return np.array(im), list(im.getpalette() or [])

    def _save(self, group: str, frame: str, labels: np.ndarray, palette: list[int]) -> None:
        im = Image.fromarray(labels.astype(np.uint8))
        im.putpalette(palette)
        im.save(self.annotation(group, frame), format="PNG")

    def read_labels(self, group: str, frame: str, instance: str) -> np.ndarray:
        mask: np.ndarray = self._labels(group, frame)[0] == int(instance)
        return mask

    def paint(self, group: str, frame: str, instance: str, on: np.ndarray, off: np.ndarray) -> None:
        labels, palette = self._labels(group, frame)
        own = labels == int(instance)
        labels[on & (labels == 0)] = int(instance)
        labels[off & own] = 0
        self._save(group, frame, labels, palette)

    def copy_frame(self, group: str, src: str, dst: str, image: np.ndarray | None = None) -> None:
        super().copy_frame(group, src, dst, image)
        for obj in self.meta["videos"][group]["objects"].values():  # the copy shows what src shows
            frames = [f for f in obj["frames"] if f != dst] + ([dst] if src in obj["frames"] else [])
            obj["frames"] = sorted(frames, key=frame_number)

    def switch(self, group: str, frames: list[str], rng: np.random.Generator
               ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        objects = self.meta["videos"][group]["objects"]
        both = [f for f in frames if len(self.instances(group, f)) >= 2]
        if len(objects) < 2 or len(both) < 4:
            return None
        a, b = sorted(objects, key=int)[:2]
        start = both[len(both) // 2 + int(rng.integers(-1, 1))]
        for frame in frames[frames.index(start):]:
            labels, palette = self._labels(group, frame)
            swapped = labels.copy()
            swapped[labels == int(a)] = int(b)
            swapped[labels == int(b)] = int(a)
            self._save(group, frame, swapped, palette)
        later = set(frames[frames.index(start):])
        fa, fb = set(objects[a]["frames"]), set(objects[b]["frames"])
        objects[a]["frames"] = sorted((fa - later) | (fb & later), key=frame_number)
        objects[b]["frames"] = sorted((fb - later) | (fa & later), key=frame_number)
        return (a, b), tuple(sorted(later, key=frame_number))

    def finish(self) -> None:
        (self.split / "meta.json").write_text(json.dumps(self.meta))


class _MVImgNet(_Layout):
    def groups(self) -> dict[str, list[str]]:
        out = {}
        for images in sorted(self.root.glob("*/*/images")):
            group = f"{images.parent.parent.name}/{images.parent.name}"
            out[group] = sorted((p.stem for p in images.glob("*.jpg")), key=frame_number)
        return out

    def instances(self, group: str, frame: str) -> list[str]:
        return ["1"]

    def image(self, group: str, frame: str) -> Path:
        return self.root / group / "images" / f"{frame}.jpg"

    def annotation(self, group: str, frame: str) -> Path:
        return self.root / group / "masks" / f"{frame}.png"

    def read_labels(self, group: str, frame: str, instance: str) -> np.ndarray:
        with Image.open(self.annotation(group, frame)) as im:
            return np.asarray(im) > 127

    def paint(self, group: str, frame: str, instance: str, on: np.ndarray, off: np.ndarray) -> None:
        with Image.open(self.annotation(group, frame)) as im:
            soft = np.array(im)
        soft[on] = 255
        soft[off] = 0
        Image.fromarray(soft).save(self.annotation(group, frame), format="PNG")

    def switch(self, group: str, frames: list[str], rng: np.random.Generator
               ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        others = [g for g in self.groups() if g.split("/")[0] != group.split("/")[0]]
        if not others or len(frames) < 4:
            return None
        other = others[int(rng.integers(len(others)))]
        other_frames = self.groups()[other]
        start = len(frames) // 2 + int(rng.integers(-1, 1))
        for k, frame in enumerate(frames[start:]):
            src = other_frames[min(start + k, len(other_frames) - 1)]
            shutil.copyfile(self.image(other, src), self.image(group, frame))
            shutil.copyfile(self.annotation(other, src), self.annotation(group, frame))
        return ("1",), tuple(frames[start:])


def _layout(source: str, root: Path) -> _Layout:
    if source == "ytvos":
        return _YouTubeVOS(root)
    if source == "mvimgnet":
        return _MVImgNet(root)
    raise ValueError(f"faults are injected into {', '.join(LAYOUTS)} layouts, not {source!r}")


# --------------------------------------------------------------------------- the faults


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path, format="JPEG", quality=90)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def defocus(rgb: np.ndarray, radius: float) -> np.ndarray:
    """A defocused image: the disk kernel of an out-of-focus lens, ``radius`` pixels."""
    r = max(1, int(round(radius)))
    disk = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    cv2.circle(disk, (r, r), r, 1.0, -1, lineType=cv2.LINE_AA)
    out: np.ndarray = cv2.filter2D(rgb, -1, disk / disk.sum(), borderType=cv2.BORDER_REFLECT)
    return out


def _blur(layout: _Layout, group: str, frames: list[str], rng: np.random.Generator) -> Fault:
    n = int(rng.integers(2, 4))
    picked = sorted(rng.choice(len(frames), size=min(n, len(frames) - 1), replace=False))
    chosen = [frames[i] for i in picked]
    for frame in chosen:
        rgb = _read_rgb(layout.image(group, frame))
        diag = float(np.hypot(*rgb.shape[:2]))
        _save_jpeg(layout.image(group, frame), defocus(rgb, diag * rng.uniform(0.012, 0.022)))
    instances = sorted({i for f in chosen for i in layout.instances(group, f)})
    return Fault("blur", group, tuple(instances), tuple(chosen))


def speckles(mask: np.ndarray, rng: np.random.Generator, density: float) -> tuple[np.ndarray, np.ndarray]:
    """(specks to add around the object, holes to punch into it): blobs of 1-5 pixels."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    mx, my = (x1 - x0) // 3 + 2, (y1 - y0) // 3 + 2
    x0, x1, y0, y1 = max(0, x0 - mx), min(w, x1 + mx), max(0, y0 - my), min(h, y1 + my)
    n = max(12, int(density * (x1 - x0) * (y1 - y0) / 4))
    on, off = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    for target in (on, off):
        px = rng.integers(x0, x1, n)
        py = rng.integers(y0, y1, n)
        radius = rng.integers(0, 2, n)
        for x, y, r in zip(px, py, radius):
            cv2.circle(target, (int(x), int(y)), int(r), 1, -1)
    return on.astype(bool) & ~mask, off.astype(bool) & mask


def _speckle(layout: _Layout, group: str, frames: list[str], rng: np.random.Generator) -> Fault:
    instance = layout.instances(group, frames[0])[0]
    mine = [f for f in frames if instance in layout.instances(group, f)]
    n = int(rng.integers(2, 4))
    chosen = [mine[i] for i in sorted(rng.choice(len(mine), size=min(n, len(mine) - 1), replace=False))]
    for frame in chosen:
        on, off = speckles(layout.read_labels(group, frame, instance), rng, float(rng.uniform(0.02, 0.05)))
        layout.paint(group, frame, instance, on, off)
    return Fault("speckle", group, (instance,), tuple(chosen))


def _run(kind: str, layout: _Layout, group: str, frames: list[str], rng: np.random.Generator) -> Fault:
    """``static`` / ``duplicate``: frames after one become copies of it (noisy for a static shot)."""
    length = int(rng.integers(3, 5)) if kind == "static" else 1
    start = int(rng.integers(0, len(frames) - length))
    original, copies = frames[start], frames[start + 1:start + 1 + length]
    base = _read_rgb(layout.image(group, original)).astype(np.float32)
    for frame in copies:
        if kind == "static":
            noisy = np.clip(base + rng.normal(0.0, 1.5, base.shape), 0, 255).round().astype(np.uint8)
            layout.copy_frame(group, original, frame, noisy)
        else:
            layout.copy_frame(group, original, frame)
    return Fault(kind, group, tuple(layout.instances(group, original)), tuple(copies), original)


def _inject(kind: str, layout: _Layout, group: str, frames: list[str], rng: np.random.Generator) -> Fault | None:
    if kind == "identity_switch":
        switched = layout.switch(group, frames, rng)
        return None if switched is None else Fault(kind, group, *switched)
    if kind == "blur":
        return _blur(layout, group, frames, rng)
    if kind == "speckle":
        return _speckle(layout, group, frames, rng)
    return _run(kind, layout, group, frames, rng)


def inject_faults(root: Path, source: str, seed: int = 0, kinds: Iterable[str] = FAULT_KINDS,
                  per_kind: int = 1, clean: int = 1) -> FaultTruth:
    """Write faults into the ``source`` layout at ``root`` (from :mod:`imprint.ingest.sample`); return the truth.

    ``per_kind`` groups get each kind; ``clean`` groups at least are left untouched (fewer groups than
    that: ValueError). Groups are assigned from ``seed``; the truth is also written to ``root/faults.json``.
    """
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; choose from {FAULT_KINDS}")
    layout = _layout(source, root)
    groups = layout.groups()
    rng = np.random.default_rng([seed, 0x5EED])
    order = [list(groups)[i] for i in rng.permutation(len(groups))]
    faults: list[Fault] = []
    todo = [k for k in kinds for _ in range(per_kind)]
    if len(groups) < len(todo) + clean:
        raise ValueError(f"{len(groups)} groups cannot hold {len(todo)} faults and {clean} clean group(s)")
    for kind in sorted(todo, key=lambda k: k != "identity_switch"):  # the pickiest first
        for group in order[:len(order) - clean]:
            fault = _inject(kind, layout, group, groups[group], rng)
            if fault is not None:
                faults.append(fault)
                order.remove(group)
                break
        else:
            raise ValueError(f"no group of {root} can hold a {kind} fault (it needs two objects seen together "
                             f"in four frames, or another capture)")
    layout.finish()
    truth = FaultTruth(source, tuple(faults))
    (Path(root) / TRUTH_FILE).write_text(truth.to_json())
    return truth

