"""Fit the tiny preset's random VAE to clips, so that the demo's latents carry the picture.

CogVideoX-2b comes with a trained VAE; the tiny preset's VAE is random, so its decoder turns any latent into
noise and a demo model, however well trained, would "generate" noise. ``python -m ophora.prepare --fit-vae-steps N``
first trains the tiny VAE as an autoencoder on the manifest's clips (MSE reconstruction + a small KL term), then
freezes it like the real one, with its ``scaling_factor`` set so that scaled latents have unit standard deviation.
The VAE is a frozen component, so its fingerprint follows it to every latent and
model made with it.
"""
from __future__ import annotations

import torch

__all__ = ["fit_vae"]


def fit_vae(vae, clips: torch.Tensor, steps: int, learning_rate: float = 3e-3, batch_size: int = 4,
            kl_weight: float = 1e-4, seed: int = 0) -> list[float]:
    """Train ``vae`` in place on ``clips`` (float [N, 3, T, H, W] in [-1, 1]) for ``steps`` AdamW steps.

    Returns the reconstruction MSE of every step. The batch order and the posterior samples come from a
    generator seeded with ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    vae.train()
    losses = []
    for _ in range(steps):
        batch = clips[torch.randint(0, len(clips), (min(batch_size, len(clips)),), generator=generator)]
        dist = vae.encode(batch).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator)
        reconstruction = vae.decode(dist.mean + dist.std * noise).sample
        mse = torch.nn.functional.mse_loss(reconstruction, batch)
        kl = 0.5 * (dist.mean ** 2 + dist.var - 1.0 - dist.logvar).mean()
        (mse + kl_weight * kl).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(mse.item())
    vae.eval().requires_grad_(False)
    _unit_scaling(vae, clips)
    return losses


@torch.no_grad()
def _unit_scaling(vae, clips: torch.Tensor) -> None:
    """Set ``scaling_factor`` so that scaled latents of ``clips`` have unit standard deviation (as Stable
    Diffusion and CogVideoX chose theirs)."""
    means = torch.cat([vae.encode(clips[i:i + 8]).latent_dist.mean for i in range(0, len(clips), 8)])
    vae.register_to_config(scaling_factor=float(1.0 / means.std()))
