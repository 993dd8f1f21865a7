"""Feature detectors behind the metrics: FID Inception, StyleGAN-V I3D, open_clip CLIP, and the surgical-domain
detectors trained on OphSim (:mod:`benchmarks.detectors.surgical`, trained by ``python -m
benchmarks.detectors.train_surgical``).

Each detector loads either the published weights (resolved and verified through :mod:`ophora.weights`)
or a seeded ``random-init`` variant of the same architecture that needs no download. Every loader returns the
module together with a :class:`DetectorInfo` that results record, so two runs can prove they used identical
weights: the file's sha256 for published weights, a sha256 of the state dict's bytes for random weights.
Random-init features are not comparable with published numbers; ``DetectorInfo.comparable`` says so.

A user's own detector file (:class:`CustomWeights`, ``--detector METRIC=PATH``) is loaded for the protocol's
declared architecture without checking it against the registry, and recorded as ``custom:<file name>`` with its
sha256 and ``comparable=False``.

Shared here: :class:`DetectorInfo`, seeded state dicts and state-dict hashing.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ophora.weights import file_sha256, get_entry

__all__ = ["DetectorInfo", "CustomWeights", "seeded_state_dict", "state_dict_sha256", "random_info", "file_info",
           "custom_info", "weights_mode", "read_state_dict"]


@dataclass(frozen=True)
class DetectorInfo:
    """What a result must record about the detector that produced its features.

    ``identifier``: ``"<registry name>:<file>"`` for registered weights, ``"random-init:<arch>:seed=<s>"`` for
    seeded ones, ``"custom:<file name>"`` for a user's own file. ``sha256``: the weight file's digest, or the
    digest of the state dict's bytes for random weights. ``comparable``: True only for published weights
    verified against the registry (never for random-init, surgical or custom detectors).
    """

    detector: str
    identifier: str
    sha256: str
    comparable: bool
    protocol: str
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CustomWeights:
    """A user's own detector file for a protocol: loaded for the protocol's declared architecture, never checked
    against the registry (its sha256 is recorded instead)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser())
        if not self.path.is_file():
            raise FileNotFoundError(f"detector file not found: {self.path} (given as your own detector)")


def weights_mode(weights: str | os.PathLike | CustomWeights) -> str:
    """Classify a ``weights`` argument: ``"random-init"``, ``"pretrained"``, ``"path"`` (a file verified against
    the registry) or ``"custom"`` (:class:`CustomWeights`)."""
    if isinstance(weights, CustomWeights):
        return "custom"
    if isinstance(weights, str) and weights in ("random-init", "pretrained"):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return "path"
    raise TypeError(f"weights must be 'random-init', 'pretrained' or a file path, got {weights!r}")


def seeded_state_dict(template: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic random values for every entry of ``template`` (only names, shapes and dtypes are used).

    Conv kernels (ndim >= 3) get He-normal values (std sqrt(2 / fan_in)), linear weights N(0, 1 / fan_in);
    batch-norm scales and running variances are 1, biases and running means 0, counters 0. Activations then
    keep roughly unit scale through deep ReLU stacks, so random features are neither vanishing nor exploding.
    ``template`` may hold meta tensors.
    """
    generator = torch.Generator().manual_seed(int(seed))
    out = {}
    for key, ref in template.items():
        out[key] = _seeded_value(key, tuple(ref.shape), ref.dtype, generator)
    return out


def _seeded_value(key: str, shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        gain = 2.0 if len(shape) >= 3 else 1.0
        return torch.randn(shape, generator=gen, dtype=torch.float32).mul_(math.sqrt(gain / fan_in)).to(dtype)
    is_scale = key.endswith("running_var") or (key.endswith("weight") and len(shape) == 1)
    return (torch.ones if is_scale else torch.zeros)(shape, dtype=dtype)


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every entry's name, dtype, shape and raw bytes, in the state dict's order."""
    digest = hashlib.sha256()
    for key, value in state_dict.items():
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def random_info(detector: str, arch: str, seed: int, module: torch.nn.Module, protocol: str) -> DetectorInfo:
    """:class:`DetectorInfo` of a seeded random-init module (hash of its state dict)."""
    return DetectorInfo(detector=detector, identifier=f"random-init:{arch}:seed={seed}",
                        sha256=state_dict_sha256(module.state_dict()), comparable=False, protocol=protocol)


def custom_info(detector: str, path: Path, protocol: str) -> DetectorInfo:
    """:class:`DetectorInfo` of a user's own file: ``custom:<file name>``, its sha256, not comparable."""
    path = Path(path)
    return DetectorInfo(detector=detector, identifier=f"custom:{path.name}", sha256=file_sha256(path),
                        comparable=False, protocol=protocol, path=str(path))


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file, or else ``torch.load(weights_only=True)`` (never a pickle of
    code); a TorchScript archive or other content is refused naming the file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        import safetensors.torch

        return safetensors.torch.load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's file's problem
        raise ValueError(f"{path}: not a state dict readable with torch.load(weights_only=True) or safetensors "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (names -> tensors), found {type(state).__name__}")
    return state


def file_info(detector: str, entry_name: str, path: Path, protocol: str) -> DetectorInfo:
    """:class:`DetectorInfo` of a weight file already verified against registry entry ``entry_name``."""
    entry = get_entry(entry_name)
    return DetectorInfo(detector=detector, identifier=f"{entry.name}:{entry.file}", sha256=file_sha256(path),
                        comparable=True, protocol=protocol, path=str(path))
