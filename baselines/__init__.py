"""Generators to compare: Ophora and the baselines (Endora, Bora) by name.

Videos from official code are read by :mod:`ophora.data.external`; ``python -m baselines.external check DIR``
validates such a folder.

``baselines.get(name)`` returns a :class:`~baselines.registry.VideoGenerator`; ``baselines.names()`` lists them.
"""
from baselines.registry import VideoGenerator, get, names, register

__all__ = ["VideoGenerator", "get", "names", "register"]
