"""Generators to compare: Ophora and the baselines (Endora, Bora) by name.

Videos from official code are read by :mod:`ophora.data.external`; ``python -m baselines.external check DIR``
validates such a folder.

``baselines.get(name)`` returns a :class:`~baselines.registry.VideoGenerator`; ``baselines.names()`` lists them.

Endora (``endora``) and Bora (``bora``, with Open-Sora 1.0's STDiT in ``stdit`` and its checkpoints in
``opensora``) share the latent-video machinery: ``presets`` (YAML -> spec dataclasses), ``clips`` (training clips
and the latent cache), ``frozen`` (VAE, pretrained parts by registry name or path), ``recipe`` (what each baseline
supplies), ``diffusion`` (IDDPM's loss maths), ``training`` (the recipe's step on :mod:`ophora.training.loop`, the
model folder) and ``sampling`` (sampler, decoding, the video folder).
"""
from baselines.registry import VideoGenerator, get, names, register

__all__ = ["VideoGenerator", "get", "names", "register"]
