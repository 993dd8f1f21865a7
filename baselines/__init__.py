"""Generators to compare: Ophora and the baselines (Endora, Bora) by name, and videos from official code.

``baselines.get(name)`` returns a :class:`~baselines.registry.VideoGenerator`; ``baselines.names()`` lists them.
"""
from baselines.external import ExternalVideos, ExternalVideosError
from baselines.registry import VideoGenerator, get, names, register

__all__ = ["ExternalVideos", "ExternalVideosError", "VideoGenerator", "get", "names", "register"]
