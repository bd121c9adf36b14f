"""Sources: one self-describing definition per source module, and the one registry that lists them.

A source module (``ingest/ytvos.py``, ``ingest/objaverse.py``, ...) ends with one
``SOURCE = SourceDef(...)``: its name, its kind (which decides the stage it feeds), its
licence and attribution, the ingest settings it always needs, its reader (a
:class:`~imprint.ingest.base.Source` subclass) and, for a source that is downloaded or
decoded before it can be read, its materialise step with the command-line options that
step needs. :data:`MODULES` names those modules, one line each. The CLI (``imprint
ingest``), pairing (which stage, self-pairs or not), the dataset card (licences) and
``docs/sources.md`` all read the definitions from here, so adding a source is one new
module and one line in :data:`MODULES` (the README's "Adding a source" walks through it).

Nothing here imports a source module at import time: :func:`sources` does, on first use.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from imprint.errors import UsageError

if TYPE_CHECKING:
    from imprint.executor import Executor
    from imprint.ingest.base import Source

#: The registry: the module of every source, one line each (each defines ``SOURCE = SourceDef(...)``).
MODULES = (
    "imprint.ingest.ytvos",
    "imprint.ingest.vipseg",
    "imprint.ingest.ppr10k",
    "imprint.ingest.mvimgnet",
    "imprint.ingest.sav",
    "imprint.ingest.objaverse",
    "imprint.ingest.pixabay",
    "imprint.ingest.urls",
)

Kind = Literal["video", "multiview", "image"]
KINDS: tuple[Kind, ...] = ("video", "multiview", "image")

#: Which stage a kind feeds (PAPER.md, "Data"): multi-view captures give stage-1 view pairs; videos and
#: photo groups give stage-2 frame pairs; single images give stage-2 self-pairs.
STAGE_OF_KIND: Mapping[str, int] = MappingProxyType({"multiview": 1, "video": 2, "image": 2})


@dataclass(frozen=True)
class Option:
    """One command-line option of a materialise step, declared by its source (``imprint ingest --help``).

    Sources that share an option (``--retry-failed``, ``--segmenter``) share the one object; two
    different options with the same flag are refused by :func:`check_registry`.
    """

    flags: tuple[str, ...]
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    action: str | None = None
    dest: str | None = None

    def add_to(self, group: argparse._ArgumentGroup, users: list[str]) -> None:
        kwargs: dict[str, Any] = {"help": f"{', '.join(users)}: {self.help}", "default": self.default}
        if self.action is not None:
            kwargs["action"] = self.action
        if self.type is not None:
            kwargs["type"] = self.type
        if self.dest is not None:
            kwargs["dest"] = self.dest
        group.add_argument(*self.flags, **kwargs)


@dataclass(frozen=True)
class Request:
    """What a materialise step is given: DATA, the source's ``--root`` (if any), ``--limit``, ``--seed``,
    and every parsed option (:meth:`option` reads one by its ``dest``)."""

    out: Path
    root: Path | None = None
    limit: int | None = None
    seed: int = 0
    options: argparse.Namespace = field(default_factory=argparse.Namespace)

    def option(self, dest: str, default: Any = None) -> Any:
        return getattr(self.options, dest, default)


@dataclass(frozen=True)
class Materialise:
    """How a downloaded (or decoded) source becomes a local layout under ``DATA/raw/<source>/``.

    ``run(request, executor)`` fetches (renders, segments, decodes) on the executor, keeping a
    status ledger (:mod:`imprint.ingest.ledger`), and returns the folder the reader reads.
    ``check(request)`` runs first, before any executor starts: cheap checks that raise an
    :class:`~imprint.errors.ImprintError` saying what to do (a missing key, list or root).
    """

    run: Callable[[Request, Executor], Path]
    check: Callable[[Request], None] | None = None
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class SourceDef:
    """Everything about one source, in one place.

    - ``name``: what ``imprint ingest NAME`` and the records' ``source`` column say.
    - ``kind``: ``video`` (frames of a video or photo group), ``multiview`` (views of one object) or
      ``image`` (single images: self-pairs); ``stage`` follows from it (:data:`STAGE_OF_KIND`).
    - ``licence`` and ``attribution``: every record's ``licence`` / ``attribution`` columns, unless the
      reader gives an item its own (Objaverse: each object's licence and author).
    - ``reader``: the :class:`~imprint.ingest.base.Source` subclass that lists and decodes the layout.
    - ``layout``: one line saying what ``--root`` (or the materialised folder) holds, for the docs.
    - ``ingest``: the ingest settings this source always needs (applied over the user's config), e.g.
      ``{"min_frames_per_instance": 1}`` for single images.
    - ``limit_groups``: whether ``--limit`` caps the groups ingest reads (False: the materialise step
      applies ``--limit`` itself, to what it fetches).
    - ``materialise``: for a source fetched or decoded before it is read, that step.
    - ``frame_rate``: frames per second that the records' ``frame_number`` counts (the number in
      ``frame_name``), where the source is a video with a documented rate: YouTube-VOS 30 (annotated every
      5th frame), SA-V 24 (every 4th). None otherwise (views of a capture, photos of a group, a rate its owners
      do not give): frame numbers then order frames but measure no time. Stage-2 time gaps
      (``imprint pairs``, ``min_gap_s`` / ``max_gap_s``) need it.
    """

    name: str
    kind: Kind
    reader: Callable[[], Source]
    licence: str
    attribution: str
    layout: str
    ingest: Mapping[str, Any] = field(default_factory=dict)
    limit_groups: bool = True
    materialise: Materialise | None = None
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"source name {self.name!r} must be lower-case letters, digits and _")
        if self.kind not in KINDS:
            raise ValueError(f"source {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.licence:
            raise ValueError(f"source {self.name}: a licence is required (what the data may be used for)")
        if self.frame_rate is not None and not self.frame_rate > 0:
            raise ValueError(f"source {self.name}: frame_rate must be > 0 frames per second (or None)")
        object.__setattr__(self, "ingest", MappingProxyType(dict(self.ingest)))

    @property
    def stage(self) -> int:
        """The stage this source feeds by default (``imprint pairs`` without a recipe)."""
        return STAGE_OF_KIND[self.kind]

    @property
    def downloaded(self) -> bool:
        return self.materialise is not None


@dataclass(frozen=True)
class Bundle:
    """Several sources made at once: ``make(request)`` returns ``{source name: root}`` to ingest.

    ``imprint ingest sample`` is one: it generates the embedded sample in every official layout.
    """

    name: str
    help: str
    make: Callable[[Request], dict[str, Path]]


def _make_sample(request: Request) -> dict[str, Path]:
    from imprint.ingest.sample import SOURCES, generate

    roots = generate(request.out / "raw" / "sample", seed=request.seed)
    return {name: roots[name] for name in SOURCES}


BUNDLES = (Bundle("sample", "the embedded sample: every official layout generated from --seed", _make_sample),)

_registered: dict[str, SourceDef] = {}


def register(defn: SourceDef) -> SourceDef:
    """Add a source defined outside :data:`MODULES` (a plugin, a test) for this process; returns it."""
    if defn.name in _builtin() or any(b.name == defn.name for b in BUNDLES):
        raise ValueError(f"source {defn.name!r} already exists")
    _registered[defn.name] = defn
    return defn


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _builtin() -> dict[str, SourceDef]:
    out: dict[str, SourceDef] = {}
    for module in MODULES:
        defn = getattr(importlib.import_module(module), "SOURCE", None)
        if not isinstance(defn, SourceDef):
            raise TypeError(f"{module} must define SOURCE = SourceDef(...)")
        out[defn.name] = defn
    return out


def sources() -> dict[str, SourceDef]:
    """Every source by name: the registry's modules, in order, then those added with :func:`register`."""
    return {**_builtin(), **_registered}


def bundles() -> dict[str, Bundle]:
    return {b.name: b for b in BUNDLES}


def get_source(name: str) -> SourceDef:
    """The definition of source ``name``; an unknown name is a :class:`UsageError` listing the known ones."""
    found = sources().get(name)
    if found is None:
        raise UsageError(f"unknown source {name!r}; choose one of {', '.join(sources())}")
    return found


def shared_options() -> dict[tuple[str, ...], tuple[Option, list[str]]]:
    """Every materialise option by its flags, with the sources that use it (checked: one option per flag)."""
    out: dict[tuple[str, ...], tuple[Option, list[str]]] = {}
    seen_flags: dict[str, Option] = {}
    for defn in sources().values():
        for opt in defn.materialise.options if defn.materialise else ():
            for flag in opt.flags:
                other = seen_flags.setdefault(flag, opt)
                if other is not opt:
                    raise ValueError(f"option {flag} is declared twice, differently (by {defn.name} and another "
                                     f"source): share one Option object")
            out.setdefault(opt.flags, (opt, []))[1].append(defn.name)
    return out


def markdown_table() -> str:
    """``docs/sources.md``'s table, from the registry (a test keeps the file equal to it)."""
    lines = ["| source | kind | stage | downloaded | frame rate | licence | attribution | layout |",
             "|---|---|---|---|---|---|---|---|"]
    for d in sources().values():
        rate = f"{d.frame_rate:g} fps" if d.frame_rate else "none"
        cells = [f"`{d.name}`", d.kind, str(d.stage), "yes" if d.downloaded else "no", rate, d.licence,
                 d.attribution, d.layout]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
