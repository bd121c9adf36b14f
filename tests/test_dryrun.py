"""``imprint train --dry-run``: the models assembled on the meta device, counted, stepped, and sized."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from imprint.cli import main
from imprint.config import load_config
from imprint.shards.schema import SHARDS_SCHEMA_VERSION
from imprint.train.architectures import MODEL_CONFIG_DIR, ArchitectureUnavailable, architecture, shipped_models
from imprint.train.config import TrainConfig, resolve_config_path
from imprint.train.dryrun import DRY_RUN_FILE, DryRunError, assemble, dry_run, module_counts
from imprint.train.memory import GpuKernels, LiveBytes
from imprint.train.models import ImageEncoder, latent_factor, load_components
from imprint.train.parts import set_trainable

SD2_UNET = 865_910_724  # the SD 2 UNet as diffusers builds it; "an 865M UNet" (Stability-AI/stablediffusion README)
EXTRA_INPUT_WEIGHTS = 5 * 320 * 3 * 3  # stage 2: noisy latent (4) + mask (1) + masked-background latent (4) = 9
UNET_TOLERANCE = 0.001  # relative: the public figure is known to about 0.1%
DINOV2_README = {"small": 21e6, "base": 86e6, "large": 300e6, "giant": 1100e6}  # facebookresearch/dinov2, rounded


def config(name: str, *overrides: str) -> TrainConfig:
    stage = 2 if name.startswith("stage2") else 1
    return load_config(TrainConfig, resolve_config_path(name), [f"stage={stage}", "log_with=none", *overrides])


def counts(params) -> dict:
    params = list(params)
    return {"params": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


@pytest.fixture()
def no_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache: only the shipped configs can answer."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("stage", [1, 2])
def test_tiny_dry_run_counts_equal_the_real_built_models(stage, tmp_path):
    cfg = config(f"stage{stage}-tiny")
    report = dry_run(cfg, config_name=f"stage{stage}-tiny", out=tmp_path)
    assert json.loads((tmp_path / DRY_RUN_FILE).read_text())["modules"] == report["modules"]

    unet, vae, scheduler = load_components(cfg)  # the real models, with weights, as the trainer builds them
    encoder = ImageEncoder.build(cfg, unet.config.cross_attention_dim)
    set_trainable(stage, encoder, unet, vae)
    real = {"unet": counts(unet.parameters()), "encoder": counts(encoder.dinov2.parameters()),
            "adapter": counts(p for n, p in encoder.named_parameters() if not n.startswith("dinov2.")),
            "vae": counts(vae.parameters())}
    assert {k: {"params": v["params"], "trainable": v["trainable"]} for k, v in report["modules"].items()} == real
    assert report["total"]["params"] == sum(v["params"] for v in real.values())

    # The meta forward has the shapes of the real forward on a real batch.
    from imprint.shards.loader import prepare_batch
    from imprint.train.parts import condition, stage_inputs

    b, r, s, f = cfg.batch_size, cfg.resolution, cfg.object_size, latent_factor(vae)
    batch = {"object": torch.randint(0, 255, (b, s, s, 3), dtype=torch.uint8),
             "target": torch.randint(0, 255, (b, r, r, 3), dtype=torch.uint8),
             "mask": torch.ones(b, 1, r, r, dtype=torch.uint8),
             "mask_latent": torch.ones(b, 1, r // f, r // f, dtype=torch.uint8)}
    x = prepare_batch(batch)
    with torch.no_grad():
        inputs = stage_inputs(cfg, x, vae, scheduler)
        cond = condition(encoder, x["object"], 0.0)
        pred = unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample
    assert report["forward"]["tokens"] == list(cond.shape)
    assert report["forward"]["unet_input"] == list(inputs.unet_input.shape)
    assert report["forward"]["unet_output"] == list(pred.shape)


def test_tiny_memory_parts_add_up():
    """Between two steps exactly the weights, the EMA copy (of everything that trains, as the trainer keeps it),
    AdamW's two states and the scheduler's table are alive (the tracker frees everything else), and the peak is
    at least that plus the gradients."""
    cfg = config("stage2-tiny", "ema=true")
    mem = dry_run(cfg)["memory"]
    parts = mem["parts_bytes"]
    unet = sum(p.numel() * 4 for p in load_components(cfg)[0].parameters())
    assert parts["ema"] == parts["gradients"] > unet  # the UNet, the adapter and the null embedding
    alphas = 4 * cfg.scheduler["num_train_timesteps"]  # add_noise keeps the scheduler's ᾱ table on the device
    assert mem["between_steps_bytes"] == parts["weights"] + parts["ema"] + parts["optimizer_states"] + alphas
    assert parts["optimizer_states"] == 2 * parts["gradients"]
    assert mem["per_device_bytes"] >= mem["between_steps_bytes"] + parts["gradients"]
    assert mem["per_device_bytes"] == max(mem["phase_peaks_bytes"].values())
    assert mem["per_device_ddp_bytes"] == mem["per_device_bytes"] + parts["gradients"]
    assert parts["activations"] > 0 and "TorchDispatchMode" in mem["method"]


@pytest.fixture(scope="module")
def sd21_reports(tmp_path_factory):
    """Both paper-scale dry runs, offline, through the CLI, with an empty hub cache."""
    import huggingface_hub.constants

    mp = pytest.MonkeyPatch()
    mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    reports = {}
    try:
        for stage in (1, 2):
            out = tmp_path_factory.mktemp(f"dry{stage}")
            assert main(["train", "--stage", str(stage), "--config", f"stage{stage}-sd21", "--dry-run",
                         "--out", str(out)]) == 0
            reports[stage] = json.loads((out / DRY_RUN_FILE).read_text())
    finally:
        mp.undo()
    return reports


@pytest.mark.slow
def test_stage2_sd21_is_sd21s_unet_with_five_more_input_channels(sd21_reports):
    r = sd21_reports[2]
    unet = r["modules"]["unet"]
    assert abs(unet["params"] - (SD2_UNET + EXTRA_INPUT_WEIGHTS)) <= UNET_TOLERANCE * SD2_UNET
    assert unet["params"] - sd21_reports[1]["modules"]["unet"]["params"] == EXTRA_INPUT_WEIGHTS
    assert unet["config"].startswith("shipped: configs/models/stabilityai/stable-diffusion-2-1-base/unet")
    # The paper's stage-2 split: adapter (+ null embedding) and the whole UNet; DINOv2 and the VAE frozen.
    assert unet["trainable"] == unet["params"]
    assert r["modules"]["adapter"]["trainable"] == r["modules"]["adapter"]["params"]
    assert r["modules"]["encoder"]["trainable"] == 0 and r["modules"]["vae"]["trainable"] == 0
    assert r["forward"]["unet_input"] == [8, 9, 64, 64] and r["forward"]["tokens"] == [8, 257, 1024]
    mem = r["memory"]
    assert mem["settings"] == {"batch_size": 8, "resolution": 512, "object_size": 224, "mixed_precision": "bf16",
                               "gradient_checkpointing": True, "ema": True, "optimizer": "AdamW",
                               "weights_dtype": "float32"}
    total = r["total"]["params"]
    assert mem["parts_bytes"]["weights"] == 4 * total + 4 * 6  # fp32 weights + the encoder's mean/std buffers
    assert mem["parts_bytes"]["gradients"] == 4 * r["total"]["trainable"]
    assert mem["parts_bytes"]["ema"] == 4 * r["total"]["trainable"]  # UNet, adapter and null embedding
    assert mem["per_device_bytes"] > mem["between_steps_bytes"] + mem["parts_bytes"]["gradients"]


@pytest.mark.slow
def test_stage1_sd21_trains_dinov2_the_adapter_and_the_unet_decoder(sd21_reports):
    from diffusers import UNet2DConditionModel

    r = sd21_reports[1]
    unet = r["modules"]["unet"]
    assert abs(unet["params"] - SD2_UNET) <= UNET_TOLERANCE * SD2_UNET
    cfg = architecture("stabilityai/stable-diffusion-2-1-base", "unet/config.json", "the UNet").config
    with torch.device("meta"):
        built = UNet2DConditionModel.from_config(cfg)
    decoder = sum(p.numel() for name in ("up_blocks", "conv_norm_out", "conv_out")
                  for p in getattr(built, name).parameters())
    assert unet["trainable"] == decoder and 0.5 * unet["params"] < decoder < unet["params"]
    # all of DINOv2 but its mask token (1 x hidden size: masked-image pretraining only, never a gradient)
    assert r["modules"]["encoder"]["params"] - r["modules"]["encoder"]["trainable"] == 1536
    assert abs(r["modules"]["encoder"]["params"] / DINOV2_README["giant"] - 1) < 0.05
    null_embedding = 257 * 1024  # (224 / 14)^2 + 1 tokens, stage 2 only
    assert r["modules"]["adapter"]["params"] - r["modules"]["adapter"]["trainable"] == null_embedding
    assert r["modules"]["vae"]["trainable"] == 0 and r["forward"]["unet_input"] == [8, 4, 64, 64]


@pytest.mark.parametrize("size,shape", [("small", (384, 12, 6)), ("base", (768, 12, 12)),
                                        ("large", (1024, 24, 16)), ("giant", (1536, 40, 24))])
def test_shipped_dinov2_sizes(size, shape, no_hub_cache):
    from transformers import Dinov2Config, Dinov2Model

    arch = architecture(f"facebook/dinov2-{size}", "config.json", "DINOv2")
    assert arch.source == f"shipped: configs/models/facebook/dinov2-{size}/config.json"
    c = arch.config
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]) == shape
    assert c["use_swiglu_ffn"] is (size == "giant") and (c["patch_size"], c["image_size"]) == (14, 518)
    with torch.device("meta"):
        model = Dinov2Model(Dinov2Config.from_dict(c))
    # The README's figures are rounded and leave out the 518 px position table (0.5M for small).
    assert abs(sum(p.numel() for p in model.parameters()) / DINOV2_README[size] - 1) < 0.06


def test_the_sd2_inpainting_unet_equals_the_one_stage2_builds(no_hub_cache):
    made = module_counts(assemble(config("stage2-sd21")))["unet"]["params"]
    loaded = assemble(config("stage2-sd21", "inpainting=stabilityai/stable-diffusion-2-inpainting"))
    assert loaded.unet.conv_in.in_channels == 9 and "stable-diffusion-2-inpainting" in loaded.sources["unet"]
    assert module_counts(loaded)["unet"]["params"] == made == SD2_UNET + EXTRA_INPUT_WEIGHTS


def test_architectures_come_from_a_folder_before_the_shipped_ones(tmp_path, no_hub_cache):
    cfg = config("stage1-tiny")
    for sub, values in (("unet", cfg.unet), ("vae", cfg.vae)):
        (tmp_path / "sd" / sub).mkdir(parents=True)
        (tmp_path / "sd" / sub / "config.json").write_text(json.dumps(values))
    (tmp_path / "sd" / "scheduler").mkdir()
    (tmp_path / "sd" / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg.scheduler))
    report = dry_run(config("stage1-tiny", f"pretrained={tmp_path / 'sd'}"))
    assert report["modules"]["unet"]["config"] == f"folder {tmp_path / 'sd' / 'unet' / 'config.json'}"
    assert report["modules"]["unet"]["params"] == dry_run(cfg)["modules"]["unet"]["params"]
    with pytest.raises(ArchitectureUnavailable, match=r"'nobody/nothing'.*facebook/dinov2-giant.*huggingface-cli"):
        assemble(config("stage1-tiny", "encoder=nobody/nothing"))
    assert "stabilityai/stable-diffusion-2-1-base" in shipped_models()
    assert (MODEL_CONFIG_DIR / "README.md").is_file()


@pytest.mark.slow
def test_dry_run_checks_the_shards_schema_when_given(sample_shards, tmp_path, capsys):
    assert main(["train", "--stage", "1", "--config", "stage1-tiny", "--dry-run",
                 "--shards", str(sample_shards / "stage1")]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((sample_shards / "stage1" / "manifest.json").read_text())
    rows = sum(s["rows"] for s in manifest["shards"])
    assert f"{len(manifest['shards'])} part(s), {rows:,} rows, schema {SHARDS_SCHEMA_VERSION} OK" in out
    assert "unet" in out and "peak GPU memory per device" in out

    assert main(["train", "--stage", "2", "--config", "stage2-tiny", "--dry-run",
                 "--shards", str(sample_shards / "stage1")]) == 1
    assert "holds stage-1 pairs" in capsys.readouterr().err

    broken = tmp_path / "stage1"
    shutil.copytree(sample_shards / "stage1", broken)
    part = broken / manifest["shards"][0]["file"]
    pq.write_table(pq.read_table(part).drop_columns(["category"]), part)
    with pytest.raises(DryRunError, match=r"1 schema problem.*lacks column\(s\) category"):
        dry_run(config("stage1-tiny"), shards=broken)


def test_training_without_shards_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--stage", "1", "--config", "stage1-tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "imprint train: imprint train needs --shards" in err and "only --dry-run runs without them" in err
    assert main(["train", "--stage", "1", "--config", "stage1-tiny", "--dry-run", "--resume", "latest"]) == 2
    assert "--resume does nothing with --dry-run" in capsys.readouterr().err


def test_live_bytes_follow_storages_until_freed():
    live = LiveBytes()
    with live:
        a = torch.empty(1000, device="meta")  # 4000 bytes
        b = a.view(10, 100)  # a view: no new storage
        c = a * 2
        live.mark("three")
        del a, c
        live.mark("view_keeps_it")
        del b
    assert live.marks == {"three": 8000, "view_keeps_it": 4000} and live.live == 0 and live.peak == 8000


def test_gpu_kernels_autocast_and_fused_attention():
    kernels = GpuKernels()
    lin = torch.nn.Linear(64, 64, device="meta")
    x = torch.empty(2, 64, device="meta")
    with kernels, kernels.autocasting(torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16  # autocast's lower-precision list
        assert torch.nn.functional.layer_norm(lin(x), (64,)).dtype == torch.float32  # its float32 list
    n = 4096  # tokens: the score matrix alone would be 2 * 4096 * 4096 * 4 bytes = 128 MiB
    q, k, v = (torch.empty(2, 1, n, 64, device="meta", requires_grad=True) for _ in range(3))
    live = LiveBytes()
    with kernels, live:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 1, n, 64) and live.live < 2 * n * 64 * 4 + 2 * n * 4 * 2  # output + log-sum-exp


def test_stage2_dry_run_takes_a_stage1_encoder_export(tmp_path):
    cfg1, cfg2 = config("stage1-tiny"), config("stage2-tiny")
    unet, _, _ = load_components(cfg1)
    export = ImageEncoder.build(cfg1, unet.config.cross_attention_dim).save_pretrained(tmp_path / "encoder", stage=1)
    report = dry_run(cfg2, encoder_path=export)
    fresh = dry_run(cfg2)
    assert report["modules"]["adapter"]["config"] == f"--encoder {export}"
    assert report["modules"]["encoder"]["config"] == f"folder {export / 'dinov2' / 'config.json'}"
    assert {k: v["params"] for k, v in report["modules"].items()} == {k: v["params"] for k, v in fresh["modules"].items()}
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "config.json").write_text(json.dumps({"type": "imprint-compositor"}))
    with pytest.raises(DryRunError, match="stage-2 compositor export; --encoder takes the encoder/ folder"):
        dry_run(cfg2, encoder_path=tmp_path / "final")
