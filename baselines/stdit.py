"""Open-Sora 1.0's spatio-temporal DiT (STDiT), the denoiser Bora fine-tunes (``opensora/models/stdit/stdit.py``).

Patch embedding (1x2x2) of per-frame latents, fixed sin-cos spatial (``space_scale``) and temporal (``time_scale``)
position embeddings, the temporal one added before the first block's temporal attention; ``depth`` blocks of
adaLN-single modulated spatial self-attention, temporal self-attention (same gate), cross-attention to the caption
tokens (with the T5 padding mask) and a modulated MLP; a T2I final layer. :mod:`baselines.opensora` loads the
released checkpoints into it.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

__all__ = ["STDiT", "STDiTBlock"]



def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[len(positions), dim] sin-cos embedding (MAE/DiT layout: sin half then cos half)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _sincos_2d(dim: int, height: int, width: int, scale: float) -> torch.Tensor:
    """[height*width, dim] 2-D embedding; ``scale`` multiplies the grid (Open-Sora's ``space_scale``)."""
    grid_w, grid_h = np.meshgrid(np.arange(width) / scale, np.arange(height) / scale)
    emb = np.concatenate([_sincos_1d(dim // 2, grid_h), _sincos_1d(dim // 2, grid_w)], axis=1)
    return torch.from_numpy(emb).float()


class _Attention(nn.Module):
    """Multi-head attention over ``x`` [B, N, D] (self) or to ``context`` [B, L, Dc] with a key mask [B, L]."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = None if mask is None else mask[:, None, None, :].bool()
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class STDiTBlock(nn.Module):
    """Spatial attention, temporal attention, cross-attention, MLP (Open-Sora 1.0's STDiTBlock)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.attn_temp = _Attention(dim, heads)
        self.cross_attn = _Attention(dim, heads, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def forward(self, x, y, mask, t6, frames: int, temporal_pos: torch.Tensor | None):
        """``x`` [B, T*S, D], ``y`` [B, L, D], ``mask`` [B, L], ``t6`` [B, 6, D]."""
        b, n, d = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.scale_shift_table[None] + t6).chunk(6, 1)
        x_m = _modulate(self.norm1(x), shift_msa, scale_msa)
        spatial = x_m.reshape(b * frames, n // frames, d)
        x = x + gate_msa * self.attn(spatial).reshape(b, n, d)
        temporal = x.reshape(b, frames, n // frames, d).transpose(1, 2).reshape(-1, frames, d)
        if temporal_pos is not None:
            temporal = temporal + temporal_pos
        temporal = self.attn_temp(temporal).reshape(b, n // frames, frames, d).transpose(1, 2).reshape(b, n, d)
        x = x + gate_msa * temporal
        x = x + self.cross_attn(x, y, mask)
        return x + gate_mlp * self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))


class STDiT(ModelMixin, ConfigMixin):
    """Open-Sora 1.0 STDiT. Input latents [B, C, T, h, w], timesteps [B], caption embeddings [B, L, Dc] with
    mask [B, L] (1: token); output epsilon [B, C, T, h, w], or with ``out_channels`` = 2C (learned variance)
    epsilon then IDDPM's variance interpolation ``v`` [B, 2C, T, h, w] (Open-Sora's learn_sigma head).
    ``null_caption`` holds the learned null caption used for caption dropout and classifier-free guidance."""

    @register_to_config
    def __init__(self, in_channels: int = 4, input_size: tuple = (32, 32), num_frames: int = 16,
                 patch_size: int = 2, hidden_size: int = 1152, depth: int = 28, num_heads: int = 16,
                 mlp_ratio: float = 4.0, caption_channels: int = 4096, model_max_length: int = 120,
                 space_scale: float = 1.0, time_scale: float = 1.0, out_channels: int | None = None):
        super().__init__()
        h, w = input_size
        self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", _sincos_2d(hidden_size, h // patch_size, w // patch_size,
                                                     space_scale)[None], persistent=False)
        temporal = _sincos_1d(hidden_size, np.arange(num_frames) / time_scale)
        self.register_buffer("pos_embed_temporal", torch.from_numpy(temporal).float()[None], persistent=False)
        self.t_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.t_embedder = TimestepEmbedding(256, hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_embedder = nn.Sequential(nn.Linear(caption_channels, hidden_size), nn.GELU(approximate="tanh"),
                                        nn.Linear(hidden_size, hidden_size))
        self.null_caption = nn.Parameter(torch.randn(model_max_length, caption_channels) / caption_channels ** 0.5)
        self.blocks = nn.ModuleList([STDiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size ** 0.5)
        self.out_channels = in_channels if out_channels is None else out_channels
        if self.out_channels not in (in_channels, 2 * in_channels):
            raise ValueError(f"out_channels must be in_channels ({in_channels}) or twice it (learned variance), "
                             f"got {out_channels}")
        self.final_linear = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier linears; zero the temporal and cross-attention outputs and the final layer (Open-Sora)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn_temp.proj, block.cross_attn.proj):
                nn.init.zeros_(proj.weight)
        nn.init.zeros_(self.final_linear.weight)

    def forward(self, latents, timesteps, captions, mask):
        b, c, t, h, w = latents.shape
        p = self.config.patch_size
        x = self.x_embedder(latents.transpose(1, 2).reshape(b * t, c, h, w)).flatten(2).transpose(1, 2)
        x = (x + self.pos_embed).reshape(b, -1, x.shape[-1])  # [B, T*S, D]
        temb = self.t_embedder(self.t_proj(timesteps.reshape(-1).expand(b)).to(x.dtype))
        t6 = self.t_block(temb).reshape(b, 6, -1)
        y = self.y_embedder(captions.to(x.dtype))
        for i, block in enumerate(self.blocks):
            args = (x, y, mask, t6, t, self.pos_embed_temporal if i == 0 else None)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        shift, scale = (self.final_table[None] + temb[:, None]).chunk(2, 1)
        x = self.final_linear(_modulate(self.final_norm(x), shift, scale))  # [B, T*S, p*p*C_out]
        c_out = self.out_channels
        x = x.reshape(b, t, h // p, w // p, p, p, c_out)
        return torch.einsum("bthwpqc->bcthpwq", x).reshape(b, c_out, t, h, w)
