"""``imprint ingest``: sources as their owners distribute them -> ``DATA/records/<source>/``.

Everything about a source comes from its definition (:mod:`imprint.ingest.sources`): the
choices, the options of the downloaded sources, whether it is fetched first, the settings
it needs and whether ``--limit`` caps its groups. So this module names no source.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imprint.errors import ImprintError, UsageError
from imprint.executor import add_executor_arguments
from imprint.storage import Location, local_dir, location

if TYPE_CHECKING:
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import IngestPlan
    from imprint.ingest.sources import Request, SourceDef
    from imprint.recipe import Recipe

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Read a source as its owners distribute it (folder or .zip/.tar/.tar.gz archive), or fetch it first, and write "
    "one record per (frame, object instance) to DATA/records/SOURCE/part-NNNNN.parquet, with report.json (seen / "
    "kept / dropped by reason, failed items, seconds, config). Rerunning the same command resumes: finished parts "
    "are kept, the rest is redone. The sources are listed in docs/sources.md.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from imprint.ingest.sources import bundles, shared_options, sources

    defs = sources()
    p.add_argument("source", nargs="?", choices=(*defs, *bundles()),
                   help="which source to read; " + "; ".join(f"'{b.name}': {b.help}" for b in bundles().values())
                        + "; omit it with --recipe")
    p.add_argument("--recipe", type=Path, default=None,
                   help="a data recipe (configs/data/*.yaml): ingest every source it lists, with its root")
    p.add_argument("--root", type=local_dir, help="the extracted folder or the official archive (not for fetched sources)")
    p.add_argument("--out", type=location, required=True,
                   help="DATA: a folder, or object storage (s3://BUCKET/PATH, gs://BUCKET/PATH); records go to "
                        "DATA/records/SOURCE/")
    p.add_argument("--local-data", type=local_dir, default=None, metavar="DIR",
                   help="a local or shared folder that holds raw/ (unpacked archives, downloads, renders, the "
                        "generated sample) in place of DATA; needed for those when --out is object storage")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N groups (videos / captures) by id; for fetched sources, the first N items")
    add_executor_arguments(p)
    p.add_argument("--config", type=Path, default=None, help="YAML file of ingest settings (see configs/ingest/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set min_area_frac=0.01 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="delete DATA/records/SOURCE first (and re-render)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sample and of the renders")
    fetched = [d.name for d in defs.values() if d.materialise is not None]
    group = p.add_argument_group(f"sources fetched or decoded first ({', '.join(fetched)})")
    for option, users in shared_options().values():
        option.add_to(group, users)


@dataclass(frozen=True)
class _Job:
    source: SourceDef
    request: Request | None  # a materialised source's request (its DATA on a filesystem, for raw/)
    plan: IngestPlan | None  # None: materialised first, planned after


def _jobs(args: argparse.Namespace, recipe: Recipe | None, cfg: IngestConfig) -> list[_Job]:
    """Every source to ingest, checked and (for sources read as they are) planned: no executor yet."""
    from imprint.ingest.job import local_data, plan_ingest
    from imprint.ingest.sources import Request, bundles, get_source

    if recipe is None and args.source is None:
        raise UsageError("name a SOURCE or pass --recipe FILE")
    wanted = list(recipe.ingest.items()) if recipe else [(args.source, {"root": args.root})]
    data = args.local_data if args.local_data is not None else args.out  # holds raw/: a filesystem
    roots: list[tuple[str, Path | None]] = []
    for name, spec in wanted:
        root = Location(spec["root"]).local_path(f"the root of {name}") if spec.get("root") is not None else None
        bundle = bundles().get(name)
        if bundle:
            request = Request(local_data(data, name, "the generated layouts are written"), root, args.limit,
                              args.seed, args)
            roots += list(bundle.make(request).items())
        else:
            roots.append((name, root))
    jobs = []
    for name, root in roots:
        defn = get_source(name)
        if defn.materialise is not None:
            request = Request(local_data(data, name, "what it fetches or decodes is kept"), root, args.limit,
                              args.seed, args)
            if defn.materialise.check is not None:
                defn.materialise.check(request)
            jobs.append(_Job(defn, request, None))
        elif root is None:
            raise UsageError(f"--root is required for {name} (the extracted folder or archive)")
        else:
            jobs.append(_Job(defn, None, plan_ingest(defn, root, data, cfg, limit=args.limit)))
    return jobs


def run(args: argparse.Namespace) -> int:
    from imprint.config import load_config
    from imprint.executor import make_executor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import plan_ingest, run_plan
    from imprint.recipe import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    cfg = load_config(IngestConfig, args.config, args.overrides, base=recipe.ingest_config if recipe else None)
    jobs = _jobs(args, recipe, cfg)  # every layout and argument is checked before an executor (Ray) starts
    status = 0
    with make_executor(args.executor, args.workers, args.ray_address) as executor:
        for job in jobs:
            name = job.source.name
            try:
                plan = job.plan
                if plan is None:
                    assert job.source.materialise is not None and job.request is not None
                    root = job.source.materialise.run(job.request, executor)
                    plan = plan_ingest(job.source, root, job.request.out, cfg, limit=args.limit)
                run_plan(plan, args.out, executor, overwrite=args.overwrite)
            except ImprintError as exc:  # one source failing never stops the others
                log.error("imprint ingest %s: %s", name, exc)
                status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("ingest", argv)
