"""The two-stage trainer on tiny random models: what trains, losses, SCT, exact resume, exports, errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from imprint.config import load_config
from imprint.errors import UsageError
from imprint.train import parts
from imprint.train.checkpoint import ResumeError
from imprint.train.config import TrainConfig, resolve_config_path
from imprint.train.loop import TrainError, train
from imprint.train.models import ImageEncoder, inpainting_unet, load_components
from imprint.train.parts import group_lrs, set_trainable, trainable_report

pytestmark = pytest.mark.slow
DINO = dict(from_dinov2=True)  # stage 2 from a fresh DINOv2 + adapter (no stage-1 run needed)


def tiny(stage: int, **overrides) -> TrainConfig:
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    return load_config(TrainConfig, resolve_config_path(f"stage{stage}-tiny"), ["log_with=none", *items])


def models(cfg):
    unet, vae, scheduler = load_components(cfg)
    return ImageEncoder.build(cfg, unet.config.cross_attention_dim), unet, vae, scheduler


def test_stage1_trains_dinov2_adapter_and_the_unet_decoder_only():
    enc, unet, vae, _ = models(tiny(1))
    groups = set_trainable(1, enc, unet, vae)
    report = trainable_report(encoder=enc, unet=unet, vae=vae)
    # all of DINOv2 but its mask token (masked-image pretraining only: it never gets a gradient, and a trained
    # parameter without one stops a DDP run)
    assert report["encoder.dinov2"] == "mixed" and report["encoder.adapter"] is True
    assert [n for n, p in enc.dinov2.named_parameters() if not p.requires_grad] == ["embeddings.mask_token"]
    assert all(p is not enc.dinov2.embeddings.mask_token for ps in groups.values() for p in ps)
    for name in ("up_blocks", "conv_norm_out", "conv_out"):
        assert report[f"unet.{name}"] is True
    for name in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
        assert report[f"unet.{name}"] is False
    assert report["vae.encoder"] is False and report["vae.decoder"] is False


def test_stage2_trains_the_adapter_and_the_whole_unet():
    enc, unet, vae, _ = models(tiny(2))
    groups = set_trainable(2, enc, unet, vae)
    report = trainable_report(encoder=enc, unet=unet, vae=vae)
    assert report["encoder.dinov2"] is False and report["encoder.adapter"] is True
    assert report["encoder.<own>"] is True  # the null embedding
    assert all(v is True for k, v in report.items() if k.startswith("unet."))
    assert not any(v is True for k, v in report.items() if k.startswith("vae."))
    assert unet.conv_in.in_channels == 9 and set(groups) == {"adapter", "unet"}


def test_new_input_channels_start_at_zero():
    cfg = tiny(1)
    unet, _, _ = load_components(cfg)
    x = torch.randn(1, 4, 8, 8)
    cond = torch.randn(1, 17, 32)
    with torch.no_grad():
        before = unet(x, 10, encoder_hidden_states=cond).sample
        wide = inpainting_unet(unet)
        after = wide(torch.cat([x, torch.randn(1, 5, 8, 8)], 1), 10, encoder_hidden_states=cond).sample
    assert torch.allclose(before, after, atol=1e-6)


def test_sct_swaps_the_learning_rates_after_n_epochs():
    cfg = tiny(2, **{"sct.n_epochs": 2, "sct.adapter_lr": 4e-5, "sct.unet_lr": 4e-6})
    assert [group_lrs(cfg, e) for e in range(4)] == [{"adapter": 4e-5, "unet": 4e-6}] * 2 + \
        [{"adapter": 4e-6, "unet": 4e-5}] * 2
    assert "epochs 3-4: adapter lr 4e-06, UNet lr 4e-05" in "\n".join(parts.sct_schedule(cfg))


def test_the_swap_happens_at_the_right_epoch_in_a_run(sample_shards, tmp_path, monkeypatch):
    seen = []
    real = parts.apply_lrs

    def spy(optimizer, lrs, factor=1.0):
        seen.append(dict(lrs))
        real(optimizer, lrs, factor)

    monkeypatch.setattr("imprint.train.loop.apply_lrs", spy)
    cfg = tiny(2, max_steps=0, batch_size=8, checkpoint_every=1000, validate_every=1000)
    summary = train(cfg, sample_shards / "stage2", tmp_path / "run", **DINO)
    per_epoch = summary["steps"] // 2
    assert summary["last_epoch"] == 1 and per_epoch >= 1  # epochs 0 and 1
    first, second = seen[:per_epoch], seen[per_epoch:]
    assert all(s == {"adapter": 1e-3, "unet": 1e-4} for s in first)
    assert all(s == {"adapter": 1e-4, "unet": 1e-3} for s in second) and second
    assert "Sequential Collaborative Training" in (tmp_path / "run" / "schedule.txt").read_text()


def test_mask_weighted_loss():
    pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert parts.diffusion_loss(pred, target, parts.loss_weight(mask, 0.0)).item() == pytest.approx((1 + 16) / 2)
    assert parts.diffusion_loss(pred, target, parts.loss_weight(mask, 1.0)).item() == pytest.approx(30 / 4)


@pytest.mark.parametrize("stage", [1, 2])
def test_loss_falls_when_overfitting_a_few_pairs(sample_shards, stage):
    from imprint.shards.loader import LoaderConfig, ShardLoader, prepare_batch

    torch.manual_seed(0)
    cfg = tiny(stage, cfg_drop_prob=0.0)
    enc, unet, vae, scheduler = models(cfg)
    groups = set_trainable(stage, enc, unet, vae)
    opt = torch.optim.AdamW([p for ps in groups.values() for p in ps], lr=2e-3)
    batch = prepare_batch(next(iter(ShardLoader(sample_shards / f"stage{stage}",
                                                LoaderConfig(batch_size=4, object_size=56, target_size=64)))))
    gen = torch.Generator().manual_seed(0)
    inputs = parts.stage_inputs(cfg, batch, vae, scheduler, gen)  # fixed noise and timesteps
    losses = []
    for _ in range(40):
        cond = parts.condition(enc, batch["object"], 0.0)
        loss = parts.diffusion_loss(unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample,
                                    inputs.target, inputs.weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(sample_shards, tmp_path):
    shards = sample_shards / "stage2"
    train(tiny(2, max_steps=4, checkpoint_every=2), shards, tmp_path / "straight", **DINO)
    train(tiny(2, max_steps=2, checkpoint_every=2), shards, tmp_path / "killed", **DINO)
    train(tiny(2, max_steps=4, checkpoint_every=2), shards, tmp_path / "killed", resume="latest", **DINO)
    a = load_file(str(tmp_path / "straight" / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea = load_file(str(tmp_path / "straight" / "final" / "encoder" / "adapter.safetensors"))
    eb = load_file(str(tmp_path / "killed" / "final" / "encoder" / "adapter.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    # a checkpoint resumes only with the number of processes that wrote it (each one's position is in it)
    state = tmp_path / "killed" / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "world_size": 2}))
    with pytest.raises(ResumeError, match=r"written by 2 process\(es\) and this run has 1"):
        train(tiny(2, max_steps=6), shards, tmp_path / "killed", resume="latest", **DINO)


def test_two_stages_end_to_end_with_checkpoints_and_validation(sample_shards, tmp_path):
    from imprint.cli import main

    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    assert main(["train", "--stage", "1", "--config", "stage1-tiny", "--shards", str(sample_shards / "stage1"),
                 "--out", str(run1), "max_steps=2", "log_with=tensorboard"]) == 0
    assert (run1 / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert list((run1 / "validation").glob("step-*.png"))
    assert list((run1 / "logs").rglob("events.out.tfevents*"))
    enc = ImageEncoder.from_pretrained(run1 / "encoder")
    assert json.loads((run1 / "encoder" / "config.json").read_text())["stage"] == 1
    assert main(["train", "--stage", "2", "--config", "stage2-tiny", "--shards", str(sample_shards / "stage2"),
                 "--out", str(run2), "--encoder", str(run1 / "encoder"), "max_steps=2", "checkpoints_total_limit=1",
                 "checkpoint_every=1"]) == 0
    # stage 2 starts from the stage-1 encoder: its DINOv2 is the exported one and stays frozen
    enc2 = ImageEncoder.from_pretrained(run2 / "final" / "encoder")
    for (k, v), (_, w) in zip(enc.dinov2.state_dict().items(), enc2.dinov2.state_dict().items()):
        assert torch.equal(v, w), k
    assert [p.name for p in (run2 / "checkpoints").iterdir() if not p.name.startswith(".")] == ["checkpoint-2"]
    final = json.loads((run2 / "final" / "config.json").read_text())
    assert final["type"] == "imprint-compositor" and (run2 / "final" / "vae").is_dir()


def test_components_load_through_from_pretrained_like_a_hub_id(tmp_path):
    """A tiny SD-layout folder and DINOv2 folder load through the same code as stabilityai/… ids."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = tiny(2)
    unet, vae, scheduler = load_components(tiny(1))
    unet.save_pretrained(tmp_path / "sd" / "unet")
    vae.save_pretrained(tmp_path / "sd" / "vae")
    scheduler.save_pretrained(tmp_path / "sd" / "scheduler")
    Dinov2Model(Dinov2Config(**cfg.encoder_config)).save_pretrained(tmp_path / "dino")
    cfg = tiny(2, pretrained=str(tmp_path / "sd"), encoder=str(tmp_path / "dino"))
    unet2, vae2, _ = load_components(cfg)
    assert unet2.conv_in.in_channels == 9
    assert torch.equal(unet2.conv_in.weight[:, :4], unet.conv_in.weight)
    assert ImageEncoder.build(cfg, 32)(torch.rand(1, 3, 56, 56)).shape == (1, 17, 32)


def test_bad_inputs_say_what_to_do(sample_shards, tmp_path, monkeypatch):
    with pytest.raises(TrainError, match="manifest"):
        train(tiny(1), tmp_path, tmp_path / "r")
    with pytest.raises(TrainError, match="stage-1 pairs"):
        train(tiny(2), sample_shards / "stage1", tmp_path / "r", **DINO)
    with pytest.raises(ResumeError, match="no finished checkpoint"):
        train(tiny(1), sample_shards / "stage1", tmp_path / "fresh", resume="latest")
    with pytest.raises(ResumeError, match="not a finished checkpoint"):
        train(tiny(1), sample_shards / "stage1", tmp_path / "fresh", resume=str(tmp_path / "nope"))
    monkeypatch.setattr("imprint.train.loop.diffusion_loss", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(TrainError, match=r"loss is nan at step 0 .* on pairs \["):
        train(tiny(1), sample_shards / "stage1", tmp_path / "nan")


def test_epoch_plan_agrees_on_the_fewest_steps_and_locates_steps():
    from imprint.train.epochs import EpochPlan

    per_rank = {0: [7, 5], 1: [9, 4], 2: [6, 6]}  # epoch -> batches of rank 0 and rank 1
    gathered = []

    def gather(n):  # what an all-gather returns to rank 0: every rank's count, in rank order
        gathered.append(n)
        return per_rank[len(gathered) - 1]

    plan = EpochPlan(lambda epoch: per_rank[epoch][0], gather, accumulation=2, batch_size=4)
    assert [plan.steps_in(e) for e in range(3)] == [2, 2, 3]  # min over ranks, in whole accumulations
    assert plan.total(3) == 7 and len(gathered) == 3  # gathered once per epoch
    assert [plan.locate(s) for s in (0, 1, 2, 3, 4, 6)] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 2)]
    assert plan.batches_in(1) == 4
    short = EpochPlan(lambda epoch: 3, lambda n: [n, 1], accumulation=2, batch_size=4)
    with pytest.raises(TrainError, match="rank 1 of 2 give"):
        short.steps_in(0)


def test_stage2_needs_the_stage1_encoder_or_an_explicit_from_dinov2(sample_shards, tmp_path, capsys):
    from imprint.cli import main

    args = ["train", "--stage", "2", "--config", "stage2-tiny", "--shards", str(sample_shards / "stage2"),
            "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert "pass --encoder RUN1/encoder" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--from-dinov2 is for stage 2"):
        train(tiny(1), sample_shards / "stage1", tmp_path / "r", from_dinov2=True)
    assert not (tmp_path / "r").exists()


def test_a_pretrained_model_offline_is_one_line(sample_shards, tmp_path, capsys, monkeypatch):
    from imprint.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "--stage", "2", "--config", "stage2-sd21", "--shards", str(sample_shards / "stage2"),
                 "--out", str(tmp_path / "r"), "--from-dinov2"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("imprint train: ")]
    assert len(lines) == 1 and "stabilityai/stable-diffusion-2-1-base" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert "Traceback" not in err


def test_validation_masks_the_latent_as_training_does(sample_shards, monkeypatch):
    """The latent mask is the max-pool of the pixel mask (a cell with any masked pixel is in), as the loader
    and the compositing pipeline make it; nearest-neighbour sampling would drop thin parts of the mask."""
    from imprint.shards.loader import latent_mask
    from imprint.train import validate

    cfg = tiny(2)
    enc, unet, vae, scheduler = models(cfg)
    examples = validate.load_examples(sample_shards / "stage2", 2, cfg.object_size, cfg.resolution)
    mask = torch.zeros_like(examples["mask"])
    mask[:, :, 9, 20:43] = 1  # a one-pixel line: nearest sampling at factor 8 misses row 9
    examples["mask"] = mask
    seen = {}

    def denoise(unet, scheduler, cond, uncond, shape, steps, guidance, generator, extra):
        seen["extra"] = extra
        return torch.zeros(shape)

    monkeypatch.setattr(validate, "denoise", denoise)
    validate.render_validation(2, examples, enc.eval(), unet, vae, scheduler, 1, 0)
    expected = torch.from_numpy(latent_mask(mask[0, 0].numpy().astype(bool), 8)).float()
    assert expected.sum() == 4 and all(torch.equal(seen["extra"][i, 0], expected) for i in range(2))


def test_without_guidance_dropout_the_null_embedding_does_not_train():
    enc, unet, vae, _ = models(tiny(2))
    groups = set_trainable(2, enc, unet, vae, null_embedding=False)
    assert not enc.null_embedding.requires_grad
    assert all(p is not enc.null_embedding for ps in groups.values() for p in ps)
