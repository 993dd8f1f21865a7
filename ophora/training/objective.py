"""The training objective: timestep sampling, the noised input and the loss.

Reference loss (diffusers examples/cogvideo, cogvideox-factory, uni-medical/Ophora): CogVideoX predicts v;
``x0_hat = scheduler.get_velocity(v_hat, x_t, t)`` (= sqrt(a) x_t - sqrt(1 - a) v_hat) and
``loss = mean(1 / (1 - a_t) * (x0_hat - x0)^2)`` with a_t = alphas_cumprod[t]. The ``epsilon`` option is the
plain epsilon-MSE the poster writes, ``mean((eps_hat - eps)^2)`` with eps_hat = sqrt(a) v_hat + sqrt(1 - a) x_t;
the two differ only by a per-timestep weight (a_t / (1 - a_t) vs 1 / (1 - a_t) on the x0 error).

Stratified timesteps ("timestep sub-interval sampling across GPUs"): [0, T) is cut into one sub-interval per
sample of the global batch; a permutation shared by all processes deals the sub-intervals out, and each sample
draws uniformly inside its own. Every global batch then covers the whole noise range.
"""
from __future__ import annotations

import torch

__all__ = ["LOSSES", "sample_timesteps", "diffusion_loss", "latents_from_moments"]

LOSSES = ("v_prediction", "epsilon")


def sample_timesteps(batch: int, rank: int, world: int, num_train_timesteps: int, stratified: bool,
                     shared: torch.Generator, local: torch.Generator) -> torch.Tensor:
    """Timesteps (int64 [batch]) for this process. ``shared`` must be seeded identically on every process,
    ``local`` per process."""
    total = batch * world
    if not stratified:
        return torch.randint(0, num_train_timesteps, (batch,), generator=local)
    strata = torch.randperm(total, generator=shared)[rank * batch:(rank + 1) * batch]
    offsets = torch.rand(batch, generator=local, dtype=torch.float64)
    t = ((strata.double() + offsets) * num_train_timesteps / total).floor().long()
    return t.clamp_(0, num_train_timesteps - 1)


def latents_from_moments(mean: torch.Tensor, logvar: torch.Tensor, scaling_factor: float,
                         generator: torch.Generator) -> torch.Tensor:
    """Sample the VAE posterior and scale it: [B, C, T', H', W'] moments -> [B, T', C, H', W'] latents (the
    transformer's layout)."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    sample = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
    return (sample * scaling_factor).permute(0, 2, 1, 3, 4).contiguous()


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def diffusion_loss(transformer, scheduler, latents: torch.Tensor, prompt_embeds: torch.Tensor,
                   timesteps: torch.Tensor, noise: torch.Tensor, kind: str = "v_prediction") -> torch.Tensor:
    """Scalar loss of one batch. ``latents`` [B, T', C, H', W'] (scaled), ``prompt_embeds`` [B, L, D],
    ``timesteps`` int64 [B], ``noise`` like ``latents``. ``transformer`` predicts v (v_prediction schedule)."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
    noisy = scheduler.add_noise(latents, noise, timesteps)
    v_hat = transformer(hidden_states=noisy, encoder_hidden_states=prompt_embeds, timestep=timesteps,
                        return_dict=False)[0].float()
    alpha = scheduler.alphas_cumprod.to(latents.device)[timesteps]
    if kind == "v_prediction":
        x0_hat = scheduler.get_velocity(v_hat, noisy.float(), timesteps)
        error = _expand(1.0 / (1.0 - alpha), x0_hat) * (x0_hat - latents.float()) ** 2
    else:
        eps_hat = _expand(alpha.sqrt(), v_hat) * v_hat + _expand((1 - alpha).sqrt(), v_hat) * noisy.float()
        error = (eps_hat - noise.float()) ** 2
    return error.reshape(error.shape[0], -1).mean(dim=1).mean()
