"""Render benchmark: Objaverse views rendered per second per core at 256 px (pyrender, one llvmpipe thread)
on textured GLBs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from imprint.ingest.render import (Orbit, RenderConfig, _pyrender_views, cameras, demo_object, load_meshes, normalise,
                                   render_views)


def measure(work: Path, quick: bool) -> dict[str, Any]:
    """Times loading + normalising + rendering 12-view orbits of a 1.3 k-face textured sphere and a box,
    alternately, written to ``work`` as GLBs first (so the GLB parse is counted);
    ``render_only_ms_per_view`` leaves the loading out. The OpenGL platform is the one ``auto`` picks (or
    ``PYOPENGL_PLATFORM``); it is in the result.
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = RenderConfig(views=12, size=256, gl_threads=1)
    glbs = []
    for kind in ("sphere", "box"):
        path = work / f"bench-{kind}.glb"
        demo_object(kind).export(str(path))
        glbs.append(path)
    objects = 4 if quick else 20
    render_views(glbs[0], cfg, np.random.default_rng(0))  # warm-up: context creation, shader compilation
    t0 = time.perf_counter()
    for i in range(objects):
        render_views(glbs[i % 2], cfg, np.random.default_rng(i))
    total = time.perf_counter() - t0
    loaded = []
    for path in glbs:
        meshes = load_meshes(path, cfg.max_faces)
        normalise(meshes)
        loaded.append(meshes)
    t1 = time.perf_counter()
    for i in range(objects):
        orbit = Orbit.draw(cfg, np.random.default_rng(i))
        _pyrender_views(loaded[i % 2], cfg, orbit, cameras(cfg, orbit))
    render_only = time.perf_counter() - t1
    views = objects * cfg.views
    return {"name": "render", "backend": "pyrender", "platform": os.environ.get("PYOPENGL_PLATFORM"),
            "size": cfg.size, "views": views, "objects": objects, "seconds": round(total, 4),
            "views_per_s_per_core": round(views / total, 2), "ms_per_view": round(1000 * total / views, 2),
            "render_only_ms_per_view": round(1000 * render_only / views, 2),
            "lp_num_threads": os.environ.get("LP_NUM_THREADS")}
