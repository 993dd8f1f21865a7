"""The Ophora model: CogVideoX (diffusers) components for a preset, and the folders they live in.

``build`` makes, loads and saves components (tiny ones from config, CogVideoX-2b from a local folder or the
Hub cache); ``store`` knows the folder layout (diffusers pipeline + ``ophora_model.json``) and its hashes;
``tokenizer`` trains the tiny preset's T5 tokenizer offline.
"""
from ophora.model.build import (
    DTYPES,
    Frozen,
    VaeFit,
    base_model_dir,
    build_tiny_pipeline,
    check_preset_matches,
    load_frozen,
    load_pipeline,
    load_transformer,
    model_info,
    noise_scheduler,
    sampling_scheduler,
    save_base_model,
    save_trained_model,
)
from ophora.model.store import (
    INFO_NAME,
    ModelNotFoundError,
    check_model_dir,
    frozen_fingerprint,
    read_model_info,
    resolve_model_dir,
    transformer_sha256,
)

__all__ = ["DTYPES", "Frozen", "VaeFit", "base_model_dir", "build_tiny_pipeline", "check_preset_matches", "load_frozen",
           "load_pipeline", "load_transformer", "model_info", "noise_scheduler", "sampling_scheduler",
           "save_base_model", "save_trained_model", "INFO_NAME", "ModelNotFoundError", "check_model_dir",
           "frozen_fingerprint", "read_model_info", "resolve_model_dir", "transformer_sha256"]
