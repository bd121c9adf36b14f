"""``imprint bench``: benchmarks with their floors, measured in the same run.

Results go to ``bench/results/<name>.json`` with the machine's description.
Targets are reported (``meets_target``), never asserted in tests.

ingest: a generated 720p YouTube-VOS-layout set is ingested on one core (local
executor) and on Ray; the floor reads each annotation PNG once and each frame's
header, on one core. Peak memory is measured in child processes for N and 4N frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imprint.errors import UsageError

BENCHMARKS = ("ingest", "pairs", "loader", "train", "composite", "downloads", "render")


def machine_description() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        mem_gib = None
    versions = {}
    for mod in ("numpy", "PIL", "pyarrow", "ray", "cv2", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional module is just not listed
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def _ingest_floor(root: Path) -> tuple[float, int]:
    """Seconds to read each annotation PNG once and each frame's header; and the frame count."""
    split = root / "train"
    meta = json.loads((split / "meta.json").read_text())
    frames = []
    for video, entry in meta["videos"].items():
        stems = sorted({s for obj in entry["objects"].values() for s in obj["frames"]})
        frames += [(split / "JPEGImages" / video / f"{s}.jpg", split / "Annotations" / video / f"{s}.png")
                   for s in stems]
    t0 = time.perf_counter()
    for image, annotation in frames:
        with Image.open(image) as im:
            _ = im.size
        with Image.open(annotation) as im:
            _ = np.asarray(im)
    return time.perf_counter() - t0, len(frames)


def _run_ingest(root: Path, out: Path, executor_name: str, workers: int | None) -> dict[str, Any]:
    from imprint.executor import make_executor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    shutil.rmtree(out, ignore_errors=True)
    cfg = IngestConfig(groups_per_part=2)
    with make_executor(executor_name, workers) as ex:
        t0 = time.perf_counter()
        report = run_ingest("ytvos", root, out, cfg, ex, log=lambda _m: None)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "frames": report["frames"], "records": report["kept"]}


def _peak_rss_child(root: Path, limit: int) -> float:
    """Peak RSS (MiB) of a child process ingesting the first ``limit`` videos on one core."""
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import sys, resource; from pathlib import Path; from imprint.bench import _run_ingest_limited; "
                "_run_ingest_limited(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        res = subprocess.run([sys.executable, "-c", code, str(root), tmp, str(limit)], check=True,
                             capture_output=True, text=True)
        return int(res.stdout.strip().splitlines()[-1]) / 1024.0


def _run_ingest_limited(root: Path, out: Path, limit: int) -> None:
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    run_ingest("ytvos", root, out, IngestConfig(groups_per_part=2), LocalExecutor(), limit=limit,
               log=lambda _m: None)


def bench_ingest(work: Path, quick: bool) -> dict[str, Any]:
    from imprint.ingest.sample import generate_ytvos

    n_videos, n_frames = (4, 10) if quick else (24, 20)
    t0 = time.perf_counter()
    root = generate_ytvos(work / "ytvos720", seed=0, n_videos=n_videos, n_frames=n_frames, size=(1280, 720))
    gen_s = time.perf_counter() - t0
    _ingest_floor(root)  # warm the page cache so both runs read from memory
    floor_s, frames = _ingest_floor(root)
    local = _run_ingest(root, work / "out-local", "local", None)
    workers = os.cpu_count() or 1
    ray_run = _run_ingest(root, work / "out-ray", "ray", workers)
    per_frame_floor = floor_s / frames
    per_frame_local = local["seconds"] / local["frames"]
    ratio = per_frame_local / per_frame_floor
    small = max(1, n_videos // 4)
    rss_n = _peak_rss_child(root, small)
    rss_4n = _peak_rss_child(root, small * 4)
    growth = rss_4n / rss_n - 1.0
    return {
        "dataset": {"layout": "ytvos", "videos": n_videos, "frames_per_video": n_frames, "size": [1280, 720],
                    "frames": frames, "records": local["records"], "generate_seconds": round(gen_s, 2)},
        "floor": {"what": "read each annotation PNG once (decode) and each frame's header, one core",
                  "seconds": round(floor_s, 4), "ms_per_frame": round(1e3 * per_frame_floor, 3)},
        "ingest_one_core": {"executor": "local", "seconds": round(local["seconds"], 4),
                            "ms_per_frame": round(1e3 * per_frame_local, 3),
                            "frames_per_s": round(local["frames"] / local["seconds"], 2),
                            "instances_per_s": round(local["records"] / local["seconds"], 2)},
        "ingest_ray": {"executor": "ray", "workers": workers, "seconds": round(ray_run["seconds"], 4),
                       "frames_per_s_per_core": round(ray_run["frames"] / ray_run["seconds"] / workers, 2),
                       "instances_per_s_per_core": round(ray_run["records"] / ray_run["seconds"] / workers, 2),
                       "note": "Ray started before timing; includes task scheduling and the driver's report merge"},
        "ratio_to_floor": round(ratio, 3),
        "memory": {"frames_n": small * n_frames, "peak_rss_mib_n": round(rss_n, 1),
                   "frames_4n": small * 4 * n_frames, "peak_rss_mib_4n": round(rss_4n, 1),
                   "growth": round(growth, 3)},
        "targets": {"ratio_to_floor": "<= 1.5", "memory_growth_n_to_4n": "<= 0.20"},
        "meets_target": {"ratio_to_floor": ratio <= 1.5, "memory_growth": growth <= 0.20},
    }


def _pairs_floor(records_dir: Path, specs: list, cfg) -> float:
    """Decode every distinct input (frame JPEG, record mask PNG) once and encode every output with the
    same codecs and sizes (object and target JPEG/PNG, mask PNG): what no pair builder can avoid."""
    import cv2
    import pyarrow.parquet as pq

    from imprint.masks import decode_mask_png, encode_mask_png
    from imprint.pairing.build import encode_image

    tables = {}
    rows = []
    for spec in specs:
        if spec.records not in tables:
            tables[spec.records] = pq.read_table(spec.records, columns=["image_uri", "mask"]).to_pydict()
        t = tables[spec.records]
        rows.append(((t["image_uri"][spec.src_row], (spec.records, spec.src_row), t["mask"][spec.src_row]),
                     (t["image_uri"][spec.tgt_row], (spec.records, spec.tgt_row), t["mask"][spec.tgt_row])))
    obj = np.full((cfg.object_resolution, cfg.object_resolution, 3), 127, np.uint8)
    tgt = np.full((cfg.resolution, cfg.resolution, 3), 127, np.uint8)
    t0 = time.perf_counter()
    seen: set = set()
    for pair in rows:
        for uri, key, mask in pair:
            if key not in seen:
                seen.add(key)
                decode_mask_png(mask)
            if uri not in seen:
                seen.add(uri)
                frame = cv2.imread(uri, cv2.IMREAD_COLOR)
                # outputs of the real sizes with real content (windows of the frame, no resampling)
                tgt = np.ascontiguousarray(frame[:cfg.resolution, :cfg.resolution])
                obj = np.ascontiguousarray(frame[:cfg.object_resolution, :cfg.object_resolution])
        encode_image(obj, cfg)
        encode_image(tgt, cfg)
        encode_mask_png(tgt[..., 0] > 127)
    return time.perf_counter() - t0


def _pairs_child(records: Path, out: Path, n_sources: str, rows: int) -> None:
    from imprint.executor import LocalExecutor
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs

    run_pairs(records, out, 2, json.loads(n_sources), PairsConfig(shard_rows=rows), LocalExecutor(),
              log=lambda _m: None)


def _peak_rss_pairs(records: Path, sources: dict[str, int]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import sys, resource; from pathlib import Path; from imprint.bench import _pairs_child; "
                "_pairs_child(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], 64); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        res = subprocess.run([sys.executable, "-c", code, str(records), tmp, json.dumps(sources)], check=True,
                             capture_output=True, text=True)
        return int(res.stdout.strip().splitlines()[-1]) / 1024.0


def bench_pairs(work: Path, quick: bool) -> dict[str, Any]:
    from imprint.executor import LocalExecutor
    from imprint.ingest.sample import generate_ytvos
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.pairing.plan import plan_pairs

    n_videos, n_frames = (4, 10) if quick else (12, 20)
    root = generate_ytvos(work / "ytvos720", seed=1, n_videos=n_videos, n_frames=n_frames, size=(1280, 720))
    _run_ingest_limited(root, work / "data", n_videos)
    records = work / "data" / "records"
    cfg = PairsConfig(shard_rows=64)
    cap = 4
    specs = list(plan_pairs(records, {"ytvos": cap}, 2, cfg))
    _pairs_floor(records, specs[:8], cfg)  # warm caches and imports
    floor_s = _pairs_floor(records, specs, cfg)
    run_pairs(records, work / "warm", 2, {"ytvos": 1}, cfg, LocalExecutor(), log=lambda _m: None)  # imports
    t0 = time.perf_counter()
    report = run_pairs(records, work / "shards", 2, {"ytvos": cap}, cfg, LocalExecutor(), log=lambda _m: None)
    seconds = time.perf_counter() - t0
    ratio = (seconds / report["seen"]) / (floor_s / len(specs))
    rss_n = _peak_rss_pairs(records, {"ytvos": 1})
    rss_4n = _peak_rss_pairs(records, {"ytvos": 4})
    n1 = len(list(plan_pairs(records, {"ytvos": 1}, 2, cfg)))
    return {
        "dataset": {"layout": "ytvos", "videos": n_videos, "frames_per_video": n_frames, "size": [1280, 720],
                    "pairs": len(specs), "stage": 2, "resolution": cfg.resolution,
                    "object_resolution": cfg.object_resolution, "image_format": cfg.image_format},
        "floor": {"what": "decode each distinct input frame (JPEG) and record mask (PNG) once, encode object, "
                          "target and mask "
                          "per pair with the same codecs and sizes, one core",
                  "seconds": round(floor_s, 4), "ms_per_pair": round(1e3 * floor_s / len(specs), 3)},
        "pairs_one_core": {"executor": "local", "seconds": round(seconds, 4), "built": report["kept"],
                           "dropped": report["dropped"],
                           "ms_per_pair": round(1e3 * seconds / report["seen"], 3),
                           "pairs_per_s_per_core": round(report["seen"] / seconds, 2)},
        "ratio_to_floor": round(ratio, 3),
        "memory": {"pairs_n": n1, "peak_rss_mib_n": round(rss_n, 1), "pairs_4n": len(specs),
                   "peak_rss_mib_4n": round(rss_4n, 1), "growth": round(rss_4n / rss_n - 1, 3)},
        "targets": {"ratio_to_floor": "<= 1.5", "memory_growth_n_to_4n": "<= 0.20"},
        "meets_target": {"ratio_to_floor": ratio <= 1.5, "memory_growth": rss_4n / rss_n - 1 <= 0.20},
    }


def bench_loader(work: Path, quick: bool) -> dict[str, Any]:
    """``ShardLoader`` on one core (no workers) against decoding the same image bytes the same way."""
    import pyarrow.parquet as pq
    import torch

    from imprint.executor import LocalExecutor
    from imprint.ingest.sample import generate_ytvos
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.shards.loader import LoaderConfig, ShardLoader, decode_mask, decode_rgb

    torch.set_num_threads(1)
    n_videos = 3 if quick else 8
    root = generate_ytvos(work / "ytvos720", seed=2, n_videos=n_videos, n_frames=12, size=(1280, 720))
    _run_ingest_limited(root, work / "data", n_videos)
    shards = work / "shards"
    run_pairs(work / "data" / "records", shards, 2, {"ytvos": 16}, PairsConfig(shard_rows=64), LocalExecutor(),
              log=lambda _m: None)
    cfg = LoaderConfig(batch_size=8, num_workers=0, drop_last=False)
    columns = ["object", "target", "mask"]
    rows = [r for p in sorted(shards.glob("part-*.parquet")) for r in pq.read_table(p, columns=columns).to_pylist()]

    def floor() -> float:
        t0 = time.perf_counter()
        for r in rows:
            decode_rgb(r["object"]["bytes"], cfg.object_size)
            decode_rgb(r["target"]["bytes"], cfg.target_size)
            decode_mask(r["mask"]["bytes"], cfg.target_size)
        return time.perf_counter() - t0

    def epoch() -> tuple[float, int]:
        loader = ShardLoader(shards, cfg)
        t0 = time.perf_counter()
        n = sum(len(batch["pair_id"]) for batch in loader)
        return time.perf_counter() - t0, n

    floor()
    epoch()  # warm-up: page cache, imports
    floor_s = min(floor() for _ in range(3))
    loader_s, n = min(epoch() for _ in range(3))
    ratio = (loader_s / n) / (floor_s / len(rows))
    return {
        "dataset": {"pairs": len(rows), "stage": 2, "object_size": cfg.object_size, "target_size": cfg.target_size,
                    "batch_size": cfg.batch_size},
        "floor": {"what": "decode the object, target and mask bytes of every row (same decoders, no tensors), "
                          "one core", "seconds": round(floor_s, 4),
                  "samples_per_s": round(len(rows) / floor_s, 1)},
        "loader_one_core": {"num_workers": 0, "seconds": round(loader_s, 4), "samples": n,
                            "samples_per_s_per_core": round(n / loader_s, 1)},
        "ratio_to_floor": round(ratio, 3),
        "targets": {"ratio_to_floor": "<= 1.3"},
        "meets_target": {"ratio_to_floor": ratio <= 1.3},
    }


def _tiny_shards(work: Path) -> Path:
    """The embedded sample, ingested and paired at the tiny models' sizes."""
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest
    from imprint.ingest.sample import generate
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs

    roots = generate(work / "sample", seed=0, scale=2)
    for source, root in roots.items():
        run_ingest(source, root, work / "data", IngestConfig(split="all" if source == "vipseg" else "train"),
                   LocalExecutor(), log=lambda _m: None)
    cfg = PairsConfig(resolution=64, object_resolution=56, shard_rows=32, pairs_per_instance=8)
    run_pairs(work / "data" / "records", work / "shards" / "stage2", 2, {"ytvos": 8, "vipseg": 8, "ppr10k": 8}, cfg,
              LocalExecutor(), log=lambda _m: None)
    return work / "shards" / "stage2"


def _minimal_loop(cfg, shards: Path, steps: int) -> float:
    """A hand-written loop over the same modules and batches (batches decoded beforehand): seconds."""
    import torch

    from imprint.shards.loader import LoaderConfig, ShardLoader, prepare_batch
    from imprint.train.models import ImageEncoder, latent_factor, load_components
    from imprint.train.parts import condition, diffusion_loss, set_trainable, stage_inputs

    torch.manual_seed(cfg.seed)
    unet, vae, scheduler = load_components(cfg)
    encoder = ImageEncoder.build(cfg, unet.config.cross_attention_dim)
    groups = set_trainable(cfg.stage, encoder, unet, vae)
    opt = torch.optim.AdamW([{"params": ps, "lr": 1e-4} for ps in groups.values()])
    loader = ShardLoader(shards, LoaderConfig(batch_size=cfg.batch_size, object_size=cfg.object_size,
                                              target_size=cfg.resolution, latent_factor=latent_factor(vae)))
    batches = []
    while len(batches) < steps:
        batches += list(loader)
    unet.train(), encoder.train()
    t0 = time.perf_counter()
    for batch in batches[:steps]:
        x = prepare_batch(batch)
        inputs = stage_inputs(cfg, x, vae, scheduler)
        cond = condition(encoder, x["object"], cfg.cfg_drop_prob)
        loss = diffusion_loss(unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample,
                              inputs.target, inputs.weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for ps in groups.values() for p in ps], cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def bench_train(work: Path, quick: bool) -> dict[str, Any]:
    """Tiny-config CPU step time of ``imprint train`` against a minimal loop over the same modules, as the
    marginal time of the extra steps between a short and a long run (start-up and export cancel out)."""
    import torch

    from imprint.config import load_config
    from imprint.train.config import TrainConfig, resolve_config_path
    from imprint.train.loop import train

    torch.set_num_threads(1)
    shards = _tiny_shards(work)
    n1, n2 = (4, 12) if quick else (10, 50)
    base = ["log_with=none", "checkpoint_every=100000", "validate_every=100000", "batch_size=4", "num_validation=1",
            "validation_steps=1", "sct.n_epochs=100"]

    def run(steps: int, name: str) -> dict:
        cfg = load_config(TrainConfig, resolve_config_path("stage2-tiny"), [*base, f"max_steps={steps}"])
        return train(cfg, shards, work / name, from_dinov2=True)

    run(2, "warm")
    short, long = run(n1, "short"), run(n2, "long")
    cfg = load_config(TrainConfig, resolve_config_path("stage2-tiny"), base)
    _minimal_loop(cfg, shards, 2)
    m_short, m_long = _minimal_loop(cfg, shards, n1), _minimal_loop(cfg, shards, n2)
    trainer_step = (long["loop_seconds"] - short["loop_seconds"]) / (n2 - n1)
    minimal_step = (m_long - m_short) / (n2 - n1)
    stall = (long["data_wait_seconds"] - short["data_wait_seconds"]) / (long["loop_seconds"] - short["loop_seconds"])
    ratio = trainer_step / minimal_step
    return {
        "config": "stage2-tiny (CPU, batch 4, 64 px, 1 thread)", "steps": [n1, n2],
        "trainer_ms_per_step": round(1e3 * trainer_step, 2),
        "minimal_loop_ms_per_step": round(1e3 * minimal_step, 2),
        "ratio_to_minimal": round(ratio, 3),
        "loader_stall_fraction": round(stall, 4),
        "gpu": "no GPU lent to this task: the sd21-size step time and memory at 512 px, bf16, batch 8 were not "
               "measured",
        "targets": {"ratio_to_minimal": "<= 1.10", "loader_stall_fraction": "< 0.05"},
        "meets_target": {"ratio_to_minimal": ratio <= 1.10, "loader_stall_fraction": stall < 0.05},
    }


def bench_composite(work: Path, quick: bool) -> dict[str, Any]:
    """Seconds per composite at 50 steps (tiny stage-2 model, CPU) against the bare diffusers denoising loop
    over the same modules and inputs: what background blending, pre- and post-processing cost."""
    import torch

    from imprint.config import load_config
    from imprint.eval.pipeline import CompositeOptions, CompositingPipeline, box_mask
    from imprint.train.config import TrainConfig, resolve_config_path
    from imprint.train.loop import train

    torch.set_num_threads(1)
    shards = _tiny_shards(work)
    cfg = load_config(TrainConfig, resolve_config_path("stage2-tiny"), ["max_steps=1", "log_with=none"])
    train(cfg, shards, work / "run", from_dinov2=True)
    pipe = CompositingPipeline.from_pretrained(work / "run" / "final", device="cpu")
    rng = np.random.default_rng(0)
    obj = np.zeros((64, 48, 4), np.uint8)
    obj[8:56, 8:40] = (200, 80, 40, 255)
    bg = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    mask = box_mask([40, 20, 90, 80], (128, 96))
    steps, reps = 50, (2 if quick else 5)
    opts = CompositeOptions(steps=steps, guidance=3.0, seed=0)

    def ours() -> float:
        t0 = time.perf_counter()
        pipe([obj], [bg], [mask], options=opts)
        return time.perf_counter() - t0

    # the bare loop: the same modules, inputs prepared once, no blending and no paste
    res = pipe.resolution
    lat = res // pipe.factor
    cond = pipe.encoder(torch.rand(1, 3, pipe.object_size, pipe.object_size))
    uncond = pipe.encoder.null(1)
    extra = torch.cat([torch.ones(1, 1, lat, lat), torch.randn(1, 4, lat, lat)], 1)

    @torch.no_grad()
    def bare() -> float:
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(0)
        pipe.scheduler.set_timesteps(steps)
        latents = torch.randn(1, 4, lat, lat, generator=g)
        for t in pipe.scheduler.timesteps:
            x = torch.cat([latents, extra], 1)
            out = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            u, c = out.chunk(2)
            latents = pipe.scheduler.step(u + 3.0 * (c - u), t, latents).prev_sample
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
        return time.perf_counter() - t0

    ours(), bare()
    ours_s = min(ours() for _ in range(reps))
    bare_s = min(bare() for _ in range(reps))
    ratio = ours_s / bare_s
    return {
        "config": f"stage2-tiny at {res} px, {steps} DDIM steps, guidance 3, CPU 1 thread",
        "seconds_per_composite": round(ours_s, 4), "bare_loop_seconds": round(bare_s, 4),
        "ratio_to_bare": round(ratio, 3),
        "gpu": "no GPU lent to this task: the sd21-size figure was not measured",
        "targets": {"ratio_to_bare": "<= 1.10"}, "meets_target": {"ratio_to_bare": ratio <= 1.10},
    }


DESCRIPTION = ("Run the benchmarks and write bench/results/<name>.json with the machine's description. Targets are "
               "compared in the results, never asserted in tests.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", default=[],
                   help="which benchmarks: ingest, pairs, loader, train, composite, downloads, render (default: all)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")


def run(args: argparse.Namespace) -> int:
    names = args.names or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise UsageError(f"unknown benchmark(s) {sorted(unknown)}; available: {', '.join(BENCHMARKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    from imprint.ingest.download import bench_downloads
    from imprint.ingest.render import bench_render

    runners = {"ingest": bench_ingest, "pairs": bench_pairs, "loader": bench_loader, "train": bench_train,
               "composite": bench_composite, "downloads": bench_downloads, "render": bench_render}
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"imprint-bench-{name}-") as tmp:
            result = runners[name](Path(tmp), args.quick)
        result = {"benchmark": name, "quick": args.quick, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": machine_description(), **result}
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, indent=1))
        print(json.dumps({k: result[k] for k in result if k not in ("machine",)}, indent=1))
        print(f"imprint bench: wrote {path}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("bench", argv)
