"""Text-to-video generation with a trained Ophora model: prompt files in, a self-describing folder out.

``prompts`` reads prompt files (text, Ophora-160K CSV, phase_prompts.csv); ``sampler`` makes the videos and
their ``manifest.jsonl`` (``python -m ophora.generate``).
"""
from ophora.generation.prompts import Prompt, PromptFileError, read_prompts
from ophora.generation.sampler import GENERATOR, Job, generate, plan_jobs, settings_of

__all__ = ["Prompt", "PromptFileError", "read_prompts", "GENERATOR", "Job", "generate", "plan_jobs", "settings_of"]
