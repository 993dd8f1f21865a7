"""The training objective: the reference v-prediction loss, its epsilon form, stratified timesteps."""
from __future__ import annotations

import pytest
import torch

from ophora.training.objective import diffusion_loss, latents_from_moments, sample_timesteps

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def parts():
    from diffusers import CogVideoXDPMScheduler, CogVideoXTransformer3DModel

    from ophora.configs import load_preset

    model = load_preset("tiny").model
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(**model.transformer).eval(), CogVideoXDPMScheduler(**model.scheduler)


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(3, 3, 4, 4, 4, generator=g)  # [B, T', C, H', W']
    embeds, noise = torch.randn(3, 32, 32, generator=g), torch.randn(3, 3, 4, 4, 4, generator=g)
    return latents, embeds, torch.tensor([5, 480, 990]), noise


def test_v_prediction_loss_is_the_reference_formula(parts):
    transformer, scheduler = parts
    latents, embeds, t, noise = _batch()
    with torch.no_grad():
        loss = diffusion_loss(transformer, scheduler, latents, embeds, t, noise, "v_prediction")
        a = scheduler.alphas_cumprod[t].float().reshape(-1, 1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        v = transformer(hidden_states=noisy, encoder_hidden_states=embeds, timestep=t, return_dict=False)[0]
        x0 = a.sqrt() * noisy - (1 - a).sqrt() * v
        expected = (((x0 - latents) ** 2) / (1 - a)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_epsilon_loss_is_the_same_objective_reweighted_by_alpha(parts):
    transformer, scheduler = parts
    latents, embeds, t, noise = _batch(2)
    with torch.no_grad():
        for i in range(3):  # per sample: eps error = -sqrt(a / (1 - a)) x0 error, so eps-MSE = a * v-loss
            one = (latents[i:i + 1], embeds[i:i + 1], t[i:i + 1], noise[i:i + 1])
            v_loss = diffusion_loss(transformer, scheduler, *one[:3], one[3], "v_prediction")
            eps_loss = diffusion_loss(transformer, scheduler, *one[:3], one[3], "epsilon")
            assert eps_loss.item() == pytest.approx(scheduler.alphas_cumprod[t[i]].item() * v_loss.item(), rel=1e-4)
    with pytest.raises(ValueError, match="unknown loss"):
        diffusion_loss(transformer, scheduler, latents, embeds, t, noise, "l1")


def test_stratified_timesteps_give_each_sample_of_the_global_batch_its_own_subinterval():
    world, batch, total = 4, 2, 1000
    for step in range(5):
        drawn = torch.cat([sample_timesteps(batch, rank, world, total, True,
                                            torch.Generator().manual_seed(step),
                                            torch.Generator().manual_seed(100 * step + rank))
                           for rank in range(world)])
        assert sorted((drawn // (total // (world * batch))).tolist()) == list(range(world * batch))
        assert drawn.min() >= 0 and drawn.max() < total
    first = [sample_timesteps(batch, 0, world, total, True, torch.Generator().manual_seed(s),
                              torch.Generator().manual_seed(9)) for s in range(6)]
    assert len({tuple(t.tolist()) for t in first}) > 1  # the sub-intervals are dealt out afresh each step


def test_uniform_timesteps_ignore_the_other_processes():
    drawn = torch.cat([sample_timesteps(2, 0, 4, 1000, False, torch.Generator().manual_seed(0),
                                        torch.Generator().manual_seed(s)) for s in range(50)])
    assert drawn.min() >= 0 and drawn.max() < 1000 and drawn.unique().numel() > 80


def test_latents_sample_the_posterior_in_the_transformer_layout():
    mean = torch.randn(2, 4, 3, 4, 4)
    narrow = latents_from_moments(mean, torch.full_like(mean, -30.0), 1.15, torch.Generator().manual_seed(0))
    assert narrow.shape == (2, 3, 4, 4, 4)
    assert torch.allclose(narrow, 1.15 * mean.permute(0, 2, 1, 3, 4), atol=1e-5)
    wide = latents_from_moments(mean, torch.zeros_like(mean), 1.0, torch.Generator().manual_seed(0))
    assert (wide - mean.permute(0, 2, 1, 3, 4)).std().item() == pytest.approx(1.0, abs=0.15)
