"""Open-Sora 1.0 STDiT checkpoints -> the suite's :class:`baselines.stdit.STDiT` (Bora starts from them).

Open-Sora 1.0 (hpcaitech/Open-Sora, ``opensora/models/stdit/stdit.py`` and ``opensora/models/layers/blocks.py``)
names its STDiT parameters as below; the right column is this suite's :class:`~baselines.stdit.STDiT`
(D width, C latent channels, p patch size, Dc caption width, L caption tokens, H MLP width)::

    x_embedder.proj.{weight [D,C,1,p,p], bias}      x_embedder (Conv2d [D,C,p,p]; kernel's time axis dropped)
    t_embedder.mlp.0 / mlp.2                        t_embedder.linear_1 / linear_2
    t_block.1                                       t_block.1
    y_embedder.y_proj.fc1 / fc2                     y_embedder.0 / y_embedder.2
    y_embedder.y_embedding [L, Dc] (buffer)         null_caption
    blocks.N.attn.qkv [3D, D] (rows q, k, v)        blocks.N.attn.q [D] + blocks.N.attn.kv [2D] (rows k, v)
    blocks.N.attn_temp.qkv                          blocks.N.attn_temp.q + kv (same split)
    blocks.N.attn.proj, attn_temp.proj              same names
    blocks.N.cross_attn.q_linear / kv_linear / proj blocks.N.cross_attn.q / kv / proj (kv rows k, v both)
    blocks.N.mlp.fc1 / fc2                          blocks.N.mlp.0 / mlp.2
    blocks.N.scale_shift_table [6, D]               same
    final_layer.linear [p*p*2C, D]                  final_linear [p*p*2C, D] with learn_sigma (as is), else
                                                    [p*p*C, D] (the epsilon half, see below)
    final_layer.scale_shift_table [2, D]            final_table
    pos_embed, pos_embed_temporal (buffers)         ignored: fixed sin-cos tables, recomputed for the geometry

Both unpatchify the output features as (T_p=1, H_p, W_p, C_out): Open-Sora's ``learn_sigma`` head has
C_out = 2C (epsilon channels first, then the variance interpolation ``v``, IDDPM's ``split(C, dim=1)``), so
its rows are ``(hp, wp, c_out)``. A suite STDiT with ``out_channels`` = 2C (``diffusion.learn_sigma``) has
the same head and layout and takes every row as is; one with C outputs (fixed variance) keeps the rows with
``c_out < C`` and the variance rows are dropped. A null caption of another length is cut or extended with its
last row, as Open-Sora's own loader (``ckpt_utils.reparameter``) does. Attention heads do not show in any shape: a
checkpoint trained with another head count loads but computes something else (STDiT-XL/2 has 16).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from baselines.frozen import resolve_weights
from ophora import weights

__all__ = ["OPENSORA_CHECKPOINTS", "convert_opensora_stdit", "load_opensora_checkpoint", "resolve_opensora",
           "missing_opensora", "init_stdit_from_opensora", "OpenSoraCheckpointError"]

# weights-registry names of the released Open-Sora 1.0 STDiT-XL/2 checkpoints (ophora/weights.py)
OPENSORA_CHECKPOINTS = ("opensora-v1-hq-16x256x256", "opensora-v1-hq-16x512x512", "opensora-v1-16x256x256")
IGNORED = ("pos_embed", "pos_embed_temporal")  # fixed sin-cos buffers Open-Sora saves; not parameters
NESTING = ("ema", "model", "state_dict", "module")  # Open-Sora's find_model prefers "ema"
_FLAT = {  # Open-Sora name -> suite name, copied as is
    "t_embedder.mlp.0.weight": "t_embedder.linear_1.weight", "t_embedder.mlp.0.bias": "t_embedder.linear_1.bias",
    "t_embedder.mlp.2.weight": "t_embedder.linear_2.weight", "t_embedder.mlp.2.bias": "t_embedder.linear_2.bias",
    "t_block.1.weight": "t_block.1.weight", "t_block.1.bias": "t_block.1.bias",
    "y_embedder.y_proj.fc1.weight": "y_embedder.0.weight", "y_embedder.y_proj.fc1.bias": "y_embedder.0.bias",
    "y_embedder.y_proj.fc2.weight": "y_embedder.2.weight", "y_embedder.y_proj.fc2.bias": "y_embedder.2.bias",
    "x_embedder.proj.bias": "x_embedder.bias",
    "final_layer.scale_shift_table": "final_table",
}
_BLOCK = {  # per block, copied as is
    "attn.proj.weight": "attn.proj.weight", "attn.proj.bias": "attn.proj.bias",
    "attn_temp.proj.weight": "attn_temp.proj.weight", "attn_temp.proj.bias": "attn_temp.proj.bias",
    "cross_attn.q_linear.weight": "cross_attn.q.weight", "cross_attn.q_linear.bias": "cross_attn.q.bias",
    "cross_attn.kv_linear.weight": "cross_attn.kv.weight", "cross_attn.kv_linear.bias": "cross_attn.kv.bias",
    "cross_attn.proj.weight": "cross_attn.proj.weight", "cross_attn.proj.bias": "cross_attn.proj.bias",
    "mlp.fc1.weight": "mlp.0.weight", "mlp.fc1.bias": "mlp.0.bias",
    "mlp.fc2.weight": "mlp.2.weight", "mlp.fc2.bias": "mlp.2.bias",
    "scale_shift_table": "scale_shift_table",
}
_FUSED = ("attn.qkv", "attn_temp.qkv")  # per block: split into <attn>.q and <attn>.kv


class OpenSoraCheckpointError(ValueError):
    """A state dict that is not an Open-Sora 1.0 STDiT of the model's geometry (names the keys and shapes)."""


def _expected_shapes(args: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Open-Sora key -> shape for a suite STDiT built with ``args`` (its config; the learned-sigma head's rows
    are checked separately)."""
    d, c, p = args["hidden_size"], args["in_channels"], args["patch_size"]
    dc, hidden = args["caption_channels"], int(args["hidden_size"] * args["mlp_ratio"])
    shapes = {"x_embedder.proj.weight": (d, c, 1, p, p), "x_embedder.proj.bias": (d,),
              "t_embedder.mlp.0.weight": (d, 256), "t_embedder.mlp.0.bias": (d,),
              "t_embedder.mlp.2.weight": (d, d), "t_embedder.mlp.2.bias": (d,),
              "t_block.1.weight": (6 * d, d), "t_block.1.bias": (6 * d,),
              "y_embedder.y_proj.fc1.weight": (d, dc), "y_embedder.y_proj.fc1.bias": (d,),
              "y_embedder.y_proj.fc2.weight": (d, d), "y_embedder.y_proj.fc2.bias": (d,),
              "final_layer.scale_shift_table": (2, d)}
    block = {"attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,), "attn.proj.weight": (d, d),
             "attn.proj.bias": (d,), "cross_attn.q_linear.weight": (d, d), "cross_attn.q_linear.bias": (d,),
             "cross_attn.kv_linear.weight": (2 * d, d), "cross_attn.kv_linear.bias": (2 * d,),
             "cross_attn.proj.weight": (d, d), "cross_attn.proj.bias": (d,), "mlp.fc1.weight": (hidden, d),
             "mlp.fc1.bias": (hidden,), "mlp.fc2.weight": (d, hidden), "mlp.fc2.bias": (d,),
             "scale_shift_table": (6, d)}
    block.update({k.replace("attn.", "attn_temp.", 1): v for k, v in block.items() if k.startswith("attn.")})
    for i in range(args["depth"]):
        shapes.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    return shapes


def _describe(state: Mapping[str, torch.Tensor]) -> str:
    """The checkpoint's geometry as far as its shapes tell (for error messages)."""
    parts = []
    conv = state.get("x_embedder.proj.weight")
    if conv is not None and conv.ndim == 5:
        parts.append(f"hidden_size {conv.shape[0]}, in_channels {conv.shape[1]}, patch {tuple(conv.shape[2:])}")
    depths = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if depths:
        parts.append(f"depth {max(depths) + 1}")
    fc1 = state.get("y_embedder.y_proj.fc1.weight")
    if fc1 is not None and fc1.ndim == 2:
        parts.append(f"caption_channels {fc1.shape[1]}")
    mlp = state.get("blocks.0.mlp.fc1.weight")
    if mlp is not None and conv is not None:
        parts.append(f"mlp_ratio {mlp.shape[0] / conv.shape[0]:g}")
    return "; ".join(parts) or "no STDiT keys recognised"


def _names(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _check_keys(state: Mapping[str, torch.Tensor], args: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Raise :class:`OpenSoraCheckpointError` on missing/unexpected keys or wrong shapes; returns the shapes."""
    shapes = _expected_shapes(args)
    head = {"final_layer.linear.weight", "final_layer.linear.bias", "y_embedder.y_embedding"}
    wanted = set(shapes) | head
    given = set(state) - set(IGNORED)
    geometry = (f"(checkpoint: {_describe(state)}; model: hidden_size {args['hidden_size']}, in_channels "
                f"{args['in_channels']}, patch {args['patch_size']}, depth {args['depth']}, caption_channels "
                f"{args['caption_channels']}, mlp_ratio {args['mlp_ratio']})")
    if wanted - given:
        raise OpenSoraCheckpointError(f"Open-Sora STDiT checkpoint lacks {len(wanted - given)} key(s): "
                                      f"{_names(wanted - given)} {geometry}")
    if given - wanted:
        raise OpenSoraCheckpointError(f"Open-Sora STDiT checkpoint has {len(given - wanted)} unexpected key(s): "
                                      f"{_names(given - wanted)} {geometry}")
    for key, shape in shapes.items():
        if tuple(state[key].shape) != shape:
            raise OpenSoraCheckpointError(f"{key}: checkpoint shape {tuple(state[key].shape)}, expected {shape} "
                                          f"{geometry}")
    return shapes


def _final_rows(state: Mapping[str, torch.Tensor], args: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The final linear layer's rows the model holds: all of them (weight [p*p*2C, D], bias [p*p*2C]) when its
    ``out_channels`` is 2C (learned variance), else the epsilon rows ([p*p*C, D], [p*p*C]); and the number of
    channels dropped."""
    weight, bias = state["final_layer.linear.weight"], state["final_layer.linear.bias"]
    d, c, p = args["hidden_size"], args["in_channels"], args["patch_size"]
    rows = weight.shape[0]
    if weight.ndim != 2 or weight.shape[1] != d or rows % (p * p) or (rows // (p * p)) not in (c, 2 * c) \
            or tuple(bias.shape) != (rows,):
        raise OpenSoraCheckpointError(
            f"final_layer.linear: checkpoint weight {tuple(weight.shape)}, bias {tuple(bias.shape)}; expected "
            f"[{p * p * 2 * c}, {d}] (learned sigma: {p}x{p} patch x {2 * c} channels) or [{p * p * c}, {d}]")
    c_out, keep = rows // (p * p), args.get("out_channels") or c
    if keep == c_out:
        return weight, bias, 0
    if keep > c_out:
        raise OpenSoraCheckpointError(
            f"final_layer.linear: checkpoint weight {tuple(weight.shape)} has {c_out} output channels (no learned "
            f"variance); the model (learn_sigma) needs {keep}: expected [{p * p * keep}, {d}]")
    weight = weight.reshape(p * p, c_out, d)[:, :keep].reshape(p * p * keep, d)
    return weight, bias.reshape(p * p, c_out)[:, :keep].reshape(p * p * keep), c_out - keep


def _null_caption(table: torch.Tensor, args: Mapping[str, Any]) -> torch.Tensor:
    """``y_embedding`` [L', Dc] fitted to ``model_max_length`` rows like Open-Sora's loader (cut, or extended
    with copies of its last row)."""
    rows, dc = args["model_max_length"], args["caption_channels"]
    if table.ndim != 2 or table.shape[1] != dc or table.shape[0] < 1:
        raise OpenSoraCheckpointError(f"y_embedder.y_embedding: checkpoint shape {tuple(table.shape)}, expected "
                                      f"[tokens, {dc}] (the null caption of {dc}-wide T5 embeddings)")
    if table.shape[0] >= rows:
        return table[:rows]
    return torch.cat([table, table[-1:].expand(rows - table.shape[0], dc)])


def convert_opensora_stdit(state: Mapping[str, torch.Tensor], model_args: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map an Open-Sora 1.0 STDiT state dict onto the state dict of ``STDiT(**model_args)`` (its config:
    ``hidden_size``, ``depth``, ``patch_size``, ``in_channels``, ``caption_channels``, ``mlp_ratio``,
    ``model_max_length``, ``out_channels``: 2C keeps the learned-variance rows). Raises
    :class:`OpenSoraCheckpointError` naming missing or unexpected keys and shape mismatches (a checkpoint of
    another width, depth, patch or caption width)."""
    _check_keys(state, model_args)
    d = model_args["hidden_size"]
    out = {ours: state[theirs] for theirs, ours in _FLAT.items()}
    out["x_embedder.weight"] = state["x_embedder.proj.weight"][:, :, 0]
    for i in range(model_args["depth"]):
        for theirs, ours in _BLOCK.items():
            out[f"blocks.{i}.{ours}"] = state[f"blocks.{i}.{theirs}"]
        for fused in _FUSED:
            attn = fused.rsplit(".", 1)[0]
            for kind in ("weight", "bias"):
                qkv = state[f"blocks.{i}.{fused}.{kind}"]
                out[f"blocks.{i}.{attn}.q.{kind}"], out[f"blocks.{i}.{attn}.kv.{kind}"] = qkv[:d], qkv[d:]
    out["final_linear.weight"], out["final_linear.bias"], _ = _final_rows(state, model_args)
    out["null_caption"] = _null_caption(state["y_embedder.y_embedding"], model_args)
    return {k: v.contiguous() for k, v in out.items()}


def load_opensora_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of an Open-Sora checkpoint file: ``.pth``/``.pt``/``.bin``/``.ckpt`` (read with
    ``torch.load(weights_only=True)``) or ``.safetensors``; weights nested under ``ema``/``model``/
    ``state_dict``/``module`` (first found, in that order) are unwrapped, other entries beside them dropped,
    and a ``module.`` prefix (DDP) removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Open-Sora checkpoint not found: expected a file at {path.resolve()}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    elif path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"{path}: unknown checkpoint format {path.suffix!r}; expected .pth, .pt, .bin, .ckpt "
                         f"(torch.save) or .safetensors")
    while isinstance(state, Mapping):  # a training checkpoint: the weights under one of NESTING
        inner = next((k for k in NESTING if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = state[inner]
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        found = sorted(state)[:8] if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"{path}: no state dict found ({found}); expected a mapping of tensors, possibly nested "
                         f"under one of {list(NESTING)}")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def resolve_opensora(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file: a weights-registry name (``OPENSORA_CHECKPOINTS``; found and checked by
    :func:`ophora.weights.resolve`) or a path to an existing file."""
    return resolve_weights(name_or_path, OPENSORA_CHECKPOINTS, "Open-Sora checkpoint", "a registered checkpoint",
                           "file", is_file=True)


def missing_opensora(name_or_path: str | os.PathLike | None) -> list[tuple[str, str, str]]:
    """[(asset, expected at, how to get it)] when ``name_or_path`` names a checkpoint that is not here."""
    if not name_or_path:
        return []
    text = os.fspath(name_or_path)
    try:
        resolve_opensora(text)
        return []
    except (FileNotFoundError, RuntimeError):
        if text in weights.REGISTRY:
            return [(f"Open-Sora STDiT weights ({text})", str(weights.candidate_paths(text)[-1]),
                     f"python -m ophora.weights fetch {text}  (or put the file in $OPHORA_WEIGHTS_DIR)")]
        return [(f"Open-Sora STDiT weights ({text})", str(Path(text).expanduser().resolve()),
                 f"an Open-Sora 1.0 STDiT checkpoint file, e.g. python -m ophora.weights fetch "
                 f"{OPENSORA_CHECKPOINTS[0]}")]


def init_stdit_from_opensora(model, path: str | os.PathLike) -> dict[str, Any]:
    """Load the Open-Sora checkpoint at ``path`` into ``model`` (a :class:`baselines.stdit.STDiT`) strictly;
    returns a record: file, sha256 (first 16 hex), keys converted and ignored, variance channels dropped,
    null-caption rows (checkpoint -> model)."""
    path = Path(path)
    state = load_opensora_checkpoint(path)
    args = dict(model.config)
    converted = convert_opensora_stdit(state, args)
    model.load_state_dict(converted, strict=True)  # every parameter, nothing else
    kept, p = args.get("out_channels") or args["in_channels"], args["patch_size"]
    return {"file": str(path.resolve()), "sha256": weights.file_sha256(path)[:16],
            "keys_converted": len(state) - sum(k in state for k in IGNORED),
            "keys_ignored": sorted(k for k in IGNORED if k in state),
            "channels_dropped": state["final_layer.linear.weight"].shape[0] // (p * p) - kept,
            "null_caption_rows": [int(state["y_embedder.y_embedding"].shape[0]), int(args["model_max_length"])]}
