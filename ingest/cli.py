"""``imprint ingest``: sources as their owners distribute them -> ``DATA/records/<source>/``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from imprint.errors import ImprintError, UsageError
from imprint.executor import Executor, add_executor_arguments

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Read a source as its owners distribute it (folder or .zip/.tar/.tar.gz archive) and write one record per "
    "(frame, object instance) to DATA/records/SOURCE/part-NNNNN.parquet, with report.json (seen / kept / "
    "dropped by reason, failed items, seconds, config). Rerunning the same command resumes: finished parts "
    "are kept, the rest is redone.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from imprint.ingest.sources import INGEST_SOURCES

    p.add_argument("source", nargs="?", choices=(*INGEST_SOURCES, "sample"),
                   help="which layout to read; 'sample' generates the embedded sample data (every layout) "
                        "from --seed and ingests it; omit it with --recipe")
    p.add_argument("--recipe", type=Path, default=None,
                   help="a data recipe (configs/data/*.yaml): ingest every source it lists, with its root")
    p.add_argument("--root", type=Path, help="the extracted folder or the official archive (not for 'sample')")
    p.add_argument("--out", type=Path, required=True, help="the DATA folder; records go to DATA/records/SOURCE/")
    p.add_argument("--limit", type=int, default=None, help="only the first N groups (videos / captures) by id")
    add_executor_arguments(p)
    p.add_argument("--config", type=Path, default=None, help="YAML file of ingest settings (see configs/ingest/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set min_area_frac=0.01 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="delete DATA/records/SOURCE first")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sample and of the renders")
    remote = p.add_argument_group("downloaded sources (objaverse, pixabay, urls) and SA-V")
    remote.add_argument("--retry-failed", action="store_true", help="retry the items that failed before")
    remote.add_argument("--uids", type=Path, default=None, help="objaverse: a file of uids, one per line")
    remote.add_argument("--lvis-categories", default=None, help="objaverse: comma-separated LVIS categories")
    remote.add_argument("--views", type=int, default=12, help="objaverse: views rendered on the orbit")
    remote.add_argument("--render-size", type=int, default=256, help="objaverse: view size in pixels")
    remote.add_argument("--objaverse-url", default=None,
                        help="objaverse: base URL or folder of a mirror (default: $IMPRINT_OBJAVERSE_URL, then HF)")
    remote.add_argument("--licences", default="by,by-sa,cc0", help="objaverse: licences kept (Sketchfab slugs)")
    remote.add_argument("--query", default=None, help="pixabay: search terms")
    remote.add_argument("--category", default=None, help="pixabay: category (animals, food, ...)")
    remote.add_argument("--pixabay-url", default=None, help="pixabay: API base URL (default: the real API)")
    remote.add_argument("--list", dest="url_list", type=Path, default=None,
                        help="urls: a .parquet or .csv with columns url, optional mask_url, group_id")
    remote.add_argument("--segmenter", default=None,
                        help="pixabay/urls: segmentation model, hub id or folder (see docs/sources-remote.md; "
                             "default: facebook/mask2former-swin-large-coco-panoptic)")


def _materialise(name: str, args: argparse.Namespace, executor: Executor) -> Path:
    """Fetch (and render or segment) a remote source into DATA/raw/<source>/; return the root to read."""
    if name == "objaverse":
        from imprint.ingest.objaverse import fetch_objaverse
        from imprint.ingest.render import RenderConfig

        uids = [u.strip() for u in args.uids.read_text().split() if u.strip()] if args.uids else None
        cats = args.lvis_categories.split(",") if args.lvis_categories else None
        return fetch_objaverse(args.out, uids, cats, args.limit, args.views, args.objaverse_url,
                               set(args.licences.split(",")), executor, args.retry_failed,
                               RenderConfig(views=args.views, size=args.render_size), seed=args.seed)
    segmenter = args.segmenter or "facebook/mask2former-swin-large-coco-panoptic"
    if name == "pixabay":
        from imprint.ingest.pixabay import PIXABAY_API, fetch_pixabay

        return fetch_pixabay(args.out, args.query, args.category, args.limit or 100, segmenter, executor,
                             args.retry_failed, args.pixabay_url or PIXABAY_API)
    if name == "urls":
        from imprint.ingest.urls import fetch_urls

        if args.url_list is None:
            raise UsageError("urls needs --list FILE.parquet|csv (columns url, optional mask_url, group_id)")
        return fetch_urls(args.url_list, args.out, args.segmenter, executor, args.retry_failed)
    if name == "sav":
        from imprint.ingest.sav import prepare_sav

        if args.root is None:
            raise UsageError("sav needs --root: the extracted sav_train folder, a sav_XXX.tar or a folder of tars")
        return prepare_sav(args.root, args.out, executor, args.limit)
    raise ValueError(name)


def run(args: argparse.Namespace) -> int:
    from imprint.config import load_config
    from imprint.executor import make_executor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest
    from imprint.recipe import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    cfg = load_config(IngestConfig, args.config, args.overrides, base=recipe.ingest_config if recipe else None)
    if recipe is None and args.source is None:
        raise UsageError("name a SOURCE or pass --recipe FILE")
    wanted = list(recipe.ingest.items()) if recipe else [(args.source, {"root": args.root})]
    jobs: list[tuple[str, Path | None]] = []
    for name, spec in wanted:
        if name in ("objaverse", "pixabay", "urls", "sav"):
            jobs.append((name, None))  # fetched or decoded first, on the executor
        elif name == "sample":
            from imprint.ingest.sample import SOURCES, generate

            roots = generate(args.out / "raw" / "sample", seed=args.seed)
            jobs += [(source, roots[source]) for source in SOURCES]
        elif spec.get("root") is None:
            raise UsageError(f"--root is required for {name} (the extracted folder or archive)")
        else:
            jobs.append((name, Path(spec["root"])))
    status = 0
    with make_executor(args.executor, args.workers, args.ray_address) as executor:
        for name, root in jobs:
            try:
                source_cfg: Any = cfg
                if root is None:
                    root = _materialise(name, args, executor)
                if name in ("pixabay", "urls"):  # single images: each is its own group (self-pairs)
                    from imprint.ingest.urls import single_image_config

                    source_cfg = single_image_config(cfg)
                run_ingest(name, root, args.out, source_cfg, executor,
                           limit=None if name in ("objaverse", "pixabay") else args.limit, overwrite=args.overwrite)
            except (ImprintError, ValueError) as exc:  # one source failing never stops the others
                log.error("imprint ingest %s: %s", name, exc)
                status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("ingest", argv)
