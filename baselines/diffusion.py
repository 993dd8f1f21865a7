"""IDDPM's diffusion maths as the baselines train it: epsilon MSE, and with a learned variance the VLB term.

Both released repositories (Endora via Latte, Bora via Open-Sora 1.0) use IDDPM's code: a linear 1000-step beta
schedule and, with ``diffusion.learn_sigma``, the denoiser's second C channels interpolate the log variance
between the posterior's and beta's (LEARNED_RANGE), trained by the VLB with the mean detached
(:func:`diffusion_loss`, :func:`vlb_terms`, checked against a numpy transcription of IDDPM's formulas in
``tests/test_baselines_learned_variance.py``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["epsilon_mse", "diffusion_loss", "vlb_terms", "learned_log_variance"]


def epsilon_mse(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted noise (per sample mean, then batch mean)."""
    error = (prediction.float() - noise.float()) ** 2
    return error.reshape(error.shape[0], -1).mean(dim=1).mean()


def diffusion_loss(output: torch.Tensor, noise: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor,
                   timesteps: torch.Tensor, scheduler) -> tuple[torch.Tensor, dict[str, float]]:
    """The denoising loss of a batch and its parts. ``output`` [B, C, ...]: epsilon MSE; ``output``
    [B, 2C, ...] (learned variance): IDDPM's hybrid loss (LossType.MSE with LEARNED_RANGE, as Latte, DiT and
    Open-Sora 1.0 train): ``mean_b(mse_b + vlb_b)`` with the VLB in bits per dim on the epsilon half detached,
    so it trains the variance only."""
    channels = noise.shape[1]
    if output.shape[1] == channels:
        mse = epsilon_mse(output, noise)
        return mse, {"mse": mse.item()}
    if output.shape[1] != 2 * channels:
        raise ValueError(f"denoiser output has {output.shape[1]} channels; expected {channels} (epsilon) or "
                         f"{2 * channels} (epsilon + learned variance)")
    eps, v = output[:, :channels], output[:, channels:]
    mse = epsilon_mse(eps, noise)
    vlb = vlb_terms(scheduler, x_start, x_t, timesteps, eps.detach(), v).mean()
    return mse + vlb, {"mse": mse.item(), "vlb": vlb.item()}


def _diffusion_arrays(scheduler_or_betas) -> dict[str, np.ndarray]:
    """IDDPM's float64 schedule arrays for ``betas`` [N] (or a diffusers scheduler's ``betas``)."""
    betas = getattr(scheduler_or_betas, "betas", scheduler_or_betas)
    betas = np.asarray(betas.double().cpu() if isinstance(betas, torch.Tensor) else betas, dtype=np.float64)
    alphas = 1.0 - betas
    cumprod = np.cumprod(alphas)
    prev = np.append(1.0, cumprod[:-1])
    posterior = betas * (1.0 - prev) / (1.0 - cumprod)
    return {"betas": betas, "cumprod": cumprod, "posterior_log_variance_clipped":
            np.log(np.append(posterior[1], posterior[1:])) if len(betas) > 1 else np.log(betas),
            "coef_start": betas * np.sqrt(prev) / (1.0 - cumprod),
            "coef_t": (1.0 - prev) * np.sqrt(alphas) / (1.0 - cumprod)}


def learned_log_variance(scheduler_or_betas, timesteps: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IDDPM's LEARNED_RANGE log variance: ``frac * log(beta_t) + (1 - frac) * log(posterior variance_t)``
    (clipped at t = 0), ``frac = (v + 1) / 2``; ``v`` [B, ...], ``timesteps`` [B] -> like ``v``."""
    return _learned_log_variance(_diffusion_arrays(scheduler_or_betas), timesteps, v)


def _learned_log_variance(arrays: dict[str, np.ndarray], timesteps: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    min_log = _gather(arrays["posterior_log_variance_clipped"], timesteps, v)
    max_log = _gather(np.log(arrays["betas"]), timesteps, v)
    frac = (v.float() + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def _gather(array: np.ndarray, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``array[timesteps]`` as float32 shaped [B, 1, ...] to broadcast against ``like``."""
    values = torch.from_numpy(array).to(like.device)[timesteps.long()].float()
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _discretized_gaussian_log_likelihood(x, means, log_scales) -> torch.Tensor:
    """log P(x) of x (data in [-1, 1], bins of 2/255) under N(means, e^(2 log_scales)), elementwise, in nats;
    the edge bins take the tails (IDDPM's decoder at t = 0)."""
    centered, inv_std = x - means, torch.exp(-log_scales)
    cdf_plus = _approx_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vlb_terms(scheduler_or_betas, x_start: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor,
              mean_eps: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IDDPM's ``_vb_terms_bpd`` per sample, in bits per dim: [B].

    ``x_start``, ``x_t``, ``mean_eps`` (the predicted epsilon that sets the model mean; pass it detached to
    train only the variance, as IDDPM's ``frozen_out``) and ``v`` (the variance interpolation in [-1, 1]) are
    [B, C, ...]; ``timesteps`` [B] index the schedule (``betas`` [N] or a scheduler's). t > 0: KL(q(x_{t-1} |
    x_t, x_0) || p(x_{t-1} | x_t)); t == 0: the discretized Gaussian NLL of ``x_start`` (bins 2/255)."""
    arrays = _diffusion_arrays(scheduler_or_betas)
    x_start, x_t, mean_eps = x_start.float(), x_t.float(), mean_eps.float()
    cumprod = _gather(arrays["cumprod"], timesteps, x_t)
    coef_start, coef_t = _gather(arrays["coef_start"], timesteps, x_t), _gather(arrays["coef_t"], timesteps, x_t)
    true_mean = coef_start * x_start + coef_t * x_t
    true_log_variance = _gather(arrays["posterior_log_variance_clipped"], timesteps, x_t)
    pred_start = torch.sqrt(1.0 / cumprod) * x_t - torch.sqrt(1.0 / cumprod - 1.0) * mean_eps
    model_mean = coef_start * pred_start + coef_t * x_t
    model_log_variance = _learned_log_variance(arrays, timesteps, v)
    kl = _normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)
    nll = -_discretized_gaussian_log_likelihood(x_start, model_mean, 0.5 * model_log_variance)
    per_dim = torch.where(timesteps.reshape(-1, *([1] * (x_t.ndim - 1))) == 0, nll, kl)
    return per_dim.reshape(per_dim.shape[0], -1).mean(dim=1) / math.log(2.0)

