"""Model folders on disk: diffusers CogVideoX pipeline directories plus ``ophora_model.json``.

Every model folder the suite writes loads with ``CogVideoXPipeline.from_pretrained(DIR)`` and carries
``ophora_model.json``: the preset (name, fingerprint, full config), the stage that made it (``base``, ``tpt``,
``p2ft``), the step, and the fingerprint of the frozen components (VAE, T5, tokenizer). Latents prepared with one
set of frozen components can only train a transformer whose folder has the same frozen fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ophora.data.atomic import atomic_write_text
from ophora.hashing import update_from_file

__all__ = ["INFO_NAME", "FROZEN", "ModelNotFoundError", "read_model_info", "write_model_info",
           "frozen_fingerprint", "transformer_sha256", "check_model_dir", "resolve_model_dir"]

INFO_NAME = "ophora_model.json"
FROZEN = ("tokenizer", "text_encoder", "vae")
PIPELINE_PARTS = ("model_index.json", "transformer", "vae", "text_encoder", "tokenizer", "scheduler")
_EDGE = 1 << 20  # bytes hashed at each end of a frozen weight file


class ModelNotFoundError(FileNotFoundError):
    """A model folder or Hub id that cannot be found or is not a CogVideoX pipeline directory."""


def check_model_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` if it is a diffusers CogVideoX pipeline folder, else raise naming what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ModelNotFoundError(f"model folder not found: expected a diffusers CogVideoX directory at "
                                 f"{path.resolve()} (model_index.json, transformer/, vae/, text_encoder/, "
                                 f"tokenizer/, scheduler/)")
    missing = [part for part in PIPELINE_PARTS if not (path / part).exists()]
    if missing:
        raise ModelNotFoundError(f"{path.resolve()} is not a complete CogVideoX pipeline folder: missing {missing}")
    return path


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local pipeline folder, or a Hub id (``THUDM/CogVideoX-2b``) found in the local Hugging Face cache."""
    text = os.fspath(name_or_path)
    local = Path(text).expanduser()
    if local.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        return check_model_dir(local)
    try:
        from huggingface_hub import snapshot_download

        return check_model_dir(snapshot_download(text, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - any cache miss becomes one clear message
        raise ModelNotFoundError(
            f"CogVideoX weights {text!r} are not in the local Hugging Face cache and no folder {local.resolve()} "
            f"exists. On a machine with network run `huggingface-cli download {text} --local-dir DIR`, copy DIR "
            f"here and pass --set model.pretrained=DIR ({type(err).__name__})") from None


def read_model_info(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``ophora_model.json`` of a model folder, or None for folders the suite did not write."""
    path = Path(model_dir) / INFO_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_model_info(model_dir: str | os.PathLike, info: dict[str, Any]) -> Path:
    return atomic_write_text(Path(model_dir) / INFO_NAME, json.dumps(info, indent=2, default=str) + "\n")


def _hash_file(digest, path: Path, full: bool) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    if full or size <= 2 * _EDGE:
        update_from_file(digest, path)
        return
    with open(path, "rb") as handle:
        digest.update(handle.read(_EDGE))
        handle.seek(-_EDGE, os.SEEK_END)
        digest.update(handle.read(_EDGE))


def frozen_fingerprint(model_dir: str | os.PathLike) -> str:
    """Fingerprint of the frozen components: every file's name and size, and its first and last MiB."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for part in FROZEN:
        for path in sorted((root / part).rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(root).as_posix().encode())
                _hash_file(digest, path, full=False)
    return digest.hexdigest()[:16]


def transformer_sha256(model_dir: str | os.PathLike) -> str:
    """SHA-256 over the transformer's weight file(s) (sorted by name): the checkpoint hash of a generation."""
    files = sorted((Path(model_dir) / "transformer").glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"no transformer weights: expected {Path(model_dir) / 'transformer'}/*.safetensors")
    digest = hashlib.sha256()
    for path in files:
        update_from_file(digest, path)
    return digest.hexdigest()


