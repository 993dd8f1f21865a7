"""IDDPM's learned variance (``diffusion.learn_sigma``) in the Endora and Bora baselines.

The VLB term is checked against an independent numpy transcription of IDDPM's formulas (improved-diffusion /
DiT ``gaussian_diffusion.py``: ``q_posterior_mean_variance``, ``p_mean_variance`` with LEARNED_RANGE,
``normal_kl``, ``discretized_gaussian_log_likelihood``, ``_vb_terms_bpd``) and the sampler's learned-range step
against IDDPM's respaced schedule (``SpacedDiffusion``: betas recomputed from the kept steps' alphas_cumprod)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

import baselines
from baselines.bora import _guided, load_bora_spec
from baselines.diffusion import diffusion_loss, vlb_terms
from baselines.endora import load_endora_spec
from baselines.presets import DiffusionSpec, SamplingSpec, spec_fingerprint
from baselines.sampling import sample_latents, sampling_scheduler
from baselines.stdit import STDiT
from baselines.training import INFO_NAME
from ophora.data import manifests
from ophora.data.video import probe, read_video
from ophora.generation.prompts import Prompt
from ophora.training.logs import read_log
from ophora.training.loop import RUN_NAME

pytestmark = pytest.mark.usefixtures("torch_one_thread")

BETAS = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)  # IDDPM's "linear" schedule for 1000 steps
LEARNED = {"diffusion.learn_sigma": True, "vae.fit_steps": 30, "vae.fit_batch_size": 8, "train.batch_size": 4,
           "train.max_steps": 60, "train.checkpoint_every": 60, "sampling.scheduler": "ddpm", "sampling.steps": 8}


# ---------------------------------------------------------------------------------------------------------
# numpy reference (IDDPM's formulas, written from the paper's code independently of baselines.diffusion)


def _np_schedule(betas):
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    return {"betas": betas, "abar": abar, "post_var": post_var,
            "post_logvar_clipped": np.log(np.append(post_var[1], post_var[1:])),
            "c1": betas * np.sqrt(abar_prev) / (1.0 - abar), "c2": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)}


def _np_cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


def _np_vb_bpd(x0, xt, t, eps, v):
    """IDDPM _vb_terms_bpd for one sample (arrays of one sample, t an int), bits per dim."""
    s = _np_schedule(BETAS)
    true_mean = s["c1"][t] * x0 + s["c2"][t] * xt
    true_logvar = s["post_logvar_clipped"][t]
    pred_x0 = np.sqrt(1.0 / s["abar"][t]) * xt - np.sqrt(1.0 / s["abar"][t] - 1.0) * eps
    mean = s["c1"][t] * pred_x0 + s["c2"][t] * xt
    frac = (v + 1.0) / 2.0
    logvar = frac * np.log(BETAS[t]) + (1.0 - frac) * s["post_logvar_clipped"][t]
    if t > 0:
        kl = 0.5 * (-1.0 + logvar - true_logvar + np.exp(true_logvar - logvar)
                    + (true_mean - mean) ** 2 * np.exp(-logvar))
        return kl.mean() / np.log(2.0)
    inv = np.exp(-0.5 * logvar)
    plus, minus = _np_cdf(inv * (x0 - mean + 1 / 255.0)), _np_cdf(inv * (x0 - mean - 1 / 255.0))
    logp = np.where(x0 < -0.999, np.log(np.maximum(plus, 1e-12)),
                    np.where(x0 > 0.999, np.log(np.maximum(1.0 - minus, 1e-12)),
                             np.log(np.maximum(plus - minus, 1e-12))))
    return -logp.mean() / np.log(2.0)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3, 2, 4, 4)
    x0 = torch.rand(shape, generator=g) * 2.4 - 1.2  # some values beyond +-0.999 (the edge bins)
    noise = torch.randn(shape, generator=g)
    eps = noise + 0.3 * torch.randn(shape, generator=g)
    v = torch.rand(shape, generator=g) * 2 - 1
    t = torch.tensor([0, 1, 250, 999])
    abar = torch.from_numpy(np.cumprod(1 - BETAS)).float()[t].view(-1, 1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    return x0, xt, t, eps, v, noise


def test_vlb_terms_equal_iddpm_numpy_formulas():
    x0, xt, t, eps, v, _ = _batch()
    ours = vlb_terms(BETAS, x0, xt, t, eps, v)
    ref = [_np_vb_bpd(x0[i].double().numpy(), xt[i].double().numpy(), int(t[i]), eps[i].double().numpy(),
                      v[i].double().numpy()) for i in range(len(t))]
    assert ours.shape == (4,) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, rtol=2e-4)
    assert ref[0] > 1.0  # t = 0: the decoder NLL in bits (bins of 2/255 are narrow)
    # a scheduler gives the same schedule as its betas (diffusers' float32 linspace vs IDDPM's float64)
    scheduler = DDPMScheduler(**DiffusionSpec(learn_sigma=True).scheduler_config())
    np.testing.assert_allclose(vlb_terms(scheduler, x0, xt, t, eps, v).numpy(), ref, rtol=2e-3)


def test_vlb_is_zero_for_the_true_posterior_and_known_for_the_upper_bound():
    """With the true noise the model mean is the posterior mean: v = -1 (posterior variance) gives KL 0 and v = +1
    (beta_t) gives 0.5 (log(beta/pv) + pv/beta - 1) / ln 2 at every element."""
    x0, xt, t, _, _, noise = _batch(1)
    t = torch.tensor([1, 10, 500, 999])
    abar = torch.from_numpy(np.cumprod(1 - BETAS)).float()[t].view(-1, 1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    low = vlb_terms(BETAS, x0, xt, t, noise, -torch.ones_like(noise))
    high = vlb_terms(BETAS, x0, xt, t, noise, torch.ones_like(noise))
    s = _np_schedule(BETAS)
    pv, beta = s["post_logvar_clipped"][t.numpy()], np.log(BETAS[t.numpy()])
    expected = 0.5 * (beta - pv + np.exp(pv - beta) - 1.0) / np.log(2.0)
    assert np.abs(low.numpy()).max() < 2e-4
    np.testing.assert_allclose(high.numpy(), expected, rtol=2e-3, atol=2e-4)
    # t = 1: beta_1 = 1.1992e-4, posterior variance 5.453e-5 -> 0.1751 bits; at t = 999 the two nearly coincide
    assert high[0].item() == pytest.approx(0.1751, abs=5e-4) and high[3].item() < 1e-4


def test_the_hybrid_loss_is_mse_plus_vlb_and_the_vlb_trains_only_the_variance():
    x0, xt, t, eps, v, noise = _batch(2)
    output = torch.cat([eps, v], dim=1).requires_grad_(True)
    loss, parts = diffusion_loss(output, noise, x0, xt, t, BETAS)
    mse = ((eps - noise) ** 2).reshape(4, -1).mean(1).mean()
    vlb = vlb_terms(BETAS, x0, xt, t, eps, v).mean()
    assert parts == pytest.approx({"mse": mse.item(), "vlb": vlb.item()}, rel=1e-6)
    assert loss.item() == pytest.approx(mse.item() + vlb.item(), rel=1e-6)
    loss.backward()
    grad_eps = output.grad[:, :3]
    assert torch.allclose(grad_eps, 2 * (eps - noise) / eps[0].numel() / 4, atol=1e-7)  # MSE's gradient only
    assert output.grad[:, 3:].abs().sum() > 0  # the VLB reaches v
    fixed, fixed_parts = diffusion_loss(eps, noise, x0, xt, t, BETAS)
    assert fixed.item() == pytest.approx(mse.item()) and set(fixed_parts) == {"mse"}
    with pytest.raises(ValueError, match="denoiser output has 5 channels; expected 3 .* or 6"):
        diffusion_loss(output[:, :5], noise, x0, xt, t, BETAS)


def _respaced(steps: int):
    """diffusers' leading timesteps for ``steps`` and IDDPM's respaced betas and posterior variances there."""
    scheduler = DDPMScheduler(**DiffusionSpec(learn_sigma=True).scheduler_config())
    scheduler = DDPMScheduler.from_config(scheduler.config, timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    kept = sorted(int(t) for t in scheduler.timesteps)
    abar = np.cumprod(1 - BETAS)[kept]
    new_betas = 1 - abar / np.append(1.0, abar[:-1])  # SpacedDiffusion: 1 - abar_t / abar_prev_kept
    return scheduler, kept, new_betas, _np_schedule(new_betas)


def test_learned_range_sampling_step_uses_iddpm_respaced_variances():
    scheduler, kept, new_betas, s = _respaced(100)
    k = 37
    t = kept[k]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 2, 3, 3, generator=g)
    eps = torch.randn(1, 4, 2, 3, 3, generator=g)
    z = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(9))  # the step's noise

    def step(v):
        out = torch.cat([eps, torch.full_like(eps, v)], dim=1)
        return scheduler.step(out, t, x, generator=torch.Generator().manual_seed(9)).prev_sample

    low, high, mid = step(-1.0), step(1.0), step(0.0)
    abar = np.cumprod(1 - BETAS)[t]
    x0 = (x.double().numpy() - np.sqrt(1 - abar) * eps.double().numpy()) / np.sqrt(abar)
    mean = s["c1"][k] * x0 + s["c2"][k] * x.double().numpy()
    for value, sample in ((-1.0, low), (1.0, high), (0.0, mid)):
        logvar = (value + 1) / 2 * np.log(new_betas[k]) + (1 - (value + 1) / 2) * s["post_logvar_clipped"][k]
        expected = mean + np.exp(0.5 * logvar) * z.double().numpy()
        np.testing.assert_allclose(sample.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    # respaced beta at t=370 (prev 360): 1 - abar_370/abar_360 = 0.07140, posterior variance 0.06962
    assert t == 370 and kept[k - 1] == 360
    assert new_betas[k] == pytest.approx(0.07140, abs=1e-5) and s["post_var"][k] == pytest.approx(0.06962, abs=1e-5)
    assert (high - low).abs().max() > 1e-3  # the learned variance changes the sample


def _iddpm_kept_steps(num_timesteps: int, steps: int) -> list[int]:
    """IDDPM's ``space_timesteps(num_timesteps, str(steps))`` for one section (its own accumulation)."""
    stride, cursor, taken = (num_timesteps - 1) / (steps - 1), 0.0, []
    for _ in range(steps):
        taken.append(round(cursor))
        cursor += stride
    return sorted(set(taken))


@pytest.mark.parametrize("steps", [100, 250])
def test_ddpm_sampling_keeps_iddpms_respaced_steps(tmp_path, steps):
    """Bora samples with 100 respaced steps, Endora with 250: the DDPM sampler keeps IDDPM's steps (999, 989, ...
    for 100; not diffusers' default 990, 980, ...) and steps from each to the previous kept one."""
    DDPMScheduler(**DiffusionSpec(learn_sigma=True).scheduler_config()).save_pretrained(tmp_path / "scheduler")
    scheduler = sampling_scheduler(tmp_path, SamplingSpec(scheduler="ddpm", steps=steps))
    scheduler.set_timesteps(steps)
    kept = sorted(int(t) for t in scheduler.timesteps)
    assert kept == _iddpm_kept_steps(1000, steps) and kept[-1] == 999 and len(kept) == steps
    assert [int(scheduler.previous_timestep(torch.tensor(t))) for t in kept[1:4]] == kept[:3]


def test_sample_latents_uses_the_learned_variance_and_ddim_ignores_it():
    def constant(v):
        return lambda x, t: torch.cat([torch.zeros_like(x), torch.full_like(x, v)], dim=1)

    shape = (2, 4, 2, 3, 3)
    runs = {}
    for v in (-1.0, 1.0):
        for repeat in (0, 1):
            scheduler, *_ = _respaced(10)
            gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
            runs[v, repeat] = sample_latents(constant(v), scheduler, 10, shape, gens)
    assert torch.equal(runs[-1.0, 0], runs[-1.0, 1]) and torch.isfinite(runs[1.0, 0]).all()
    assert (runs[-1.0, 0] - runs[1.0, 0]).abs().mean() > 0.01
    assert runs[1.0, 0].std() > runs[-1.0, 0].std()  # the larger variance (beta_t) leaves more noise
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(_respaced(10)[0].config, timestep_spacing="leading")
    a = sample_latents(constant(-1.0), ddim, 5, shape, [torch.Generator().manual_seed(5)] * 2)
    b = sample_latents(constant(1.0), ddim, 5, shape, [torch.Generator().manual_seed(5)] * 2)
    assert torch.equal(a, b)  # deterministic DDIM: the epsilon half only


@torch.no_grad()
def test_guidance_touches_the_first_cfg_channels_and_keeps_the_conditional_variance():
    torch.manual_seed(0)
    model = STDiT(in_channels=4, out_channels=8, input_size=(4, 4), num_frames=2, hidden_size=16, depth=1,
                  num_heads=2, mlp_ratio=2.0, caption_channels=8, model_max_length=5).eval()
    for p in model.parameters():
        p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 4, 2, 4, 4, generator=g), torch.tensor([500, 20])
    captions, mask = torch.randn(2, 5, 8, generator=g), torch.ones(2, 5)
    cond = model(x, t, captions, mask)
    uncond = model(x, t, model.null_caption[None].expand_as(captions), mask)
    assert cond.shape == (2, 8, 2, 4, 4)
    for channels, limit in ((None, 4), (3, 3)):
        out = _guided(model, captions, mask, 7.0, channels)(x, t)
        torch.testing.assert_close(out[:, :limit], uncond[:, :limit] + 7.0 * (cond - uncond)[:, :limit])
        torch.testing.assert_close(out[:, limit:], cond[:, limit:])


def test_presets_learn_sigma_in_paper_and_not_in_tiny():
    for load in (load_endora_spec, load_bora_spec):
        assert load("paper").diffusion.learn_sigma is True and load("tiny").diffusion.learn_sigma is False
        tiny = load("tiny")
        # the fixed-variance fingerprint is the one from before the option existed
        assert spec_fingerprint(tiny) != spec_fingerprint(load("tiny", {"diffusion.learn_sigma": True}))
    earlier = {"data.window": "first", "data.flip": False, "train.ema_decay": None}  # the tiny preset before issue 17
    assert "learn_sigma" not in json.dumps(_fingerprint_payload(load_bora_spec("tiny", earlier)))


def _fingerprint_payload(spec):
    import dataclasses
    import hashlib

    payload = dataclasses.asdict(spec)
    payload["diffusion"].pop("learn_sigma")
    for key in ("window", "flip", "image_num", "max_window_starts"):  # options added later, at their earlier value
        payload["data"].pop(key)
    payload["train"].pop("ema_decay")
    payload.pop("sampling")
    payload["train"] = {k: v for k, v in payload["train"].items()
                        if k not in ("max_steps", "checkpoint_every", "checkpoints_kept")}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert digest == spec_fingerprint(spec)
    return payload


# ---------------------------------------------------------------------------------------------------------
# tiny runs with learn_sigma


@pytest.mark.parametrize("name", ["endora", "bora"])
def test_a_tiny_learned_variance_run_trains_records_and_samples(name, four_clip_world, tmp_path):
    generator = baselines.get(name)
    out = tmp_path / "run"
    model = generator.train(four_clip_world[1], out, overrides=LEARNED)
    losses = [row["loss"] for row in read_log(out)]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    run = json.loads((out / RUN_NAME).read_text())
    info = json.loads((model / INFO_NAME).read_text())
    assert run["learn_sigma"] is True and info["learn_sigma"] is True and info["variance"] == "learned_range"
    assert info["config"]["diffusion"]["learn_sigma"] is True
    assert json.loads((model / "scheduler" / "scheduler_config.json").read_text())["variance_type"] == "learned_range"
    config = json.loads((model / "transformer" / "config.json").read_text())
    assert config["out_channels"] == 2 * config["in_channels"] == 8
    prompts = [Prompt(0, "phacoemulsification"), Prompt(1, "capsulorhexis")]
    written = generator.generate(model, prompts, tmp_path / "a", videos_per_prompt=1, seed=3)
    again = generator.generate(model, prompts, tmp_path / "b", videos_per_prompt=1, seed=3)
    meta = probe(written[0])
    assert (meta.num_frames, meta.height, meta.width) == (16, 32, 32)
    first_video = read_video(written[0])
    assert first_video.shape == (16, 32, 32, 3) and first_video.std() > 1
    assert np.array_equal(read_video(again[0]), first_video)  # same seed and batch, same video
    assert not np.array_equal(read_video(written[1]), first_video)  # another seed (and prompt), another video
    settings = manifests.read_generated(tmp_path / "a")[0].settings
    assert settings["variance"] == "learned_range" and settings["scheduler"] == "ddpm"
