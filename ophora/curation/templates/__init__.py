"""Versioned prompt templates of the openai rewrite and vlm privacy backends (YAML package data)."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

__all__ = ["PromptTemplate", "load_template"]


@dataclass(frozen=True)
class PromptTemplate:
    """A system prompt, few-shot examples (input, answer) and the user message with a ``{caption}`` slot."""

    version: str
    system: str
    user: str
    examples: tuple[tuple[str, str], ...] = ()

    def messages(self, user_content) -> list[dict]:
        """Chat messages: system, each example as a user/assistant pair, then ``user_content``."""
        out = [{"role": "system", "content": self.system.strip()}]
        for question, answer in self.examples:
            out += [{"role": "user", "content": self.user.format(caption=question)},
                    {"role": "assistant", "content": answer}]
        return out + [{"role": "user", "content": user_content}]


def load_template(name: str) -> PromptTemplate:
    """A packaged template by name (``rewrite_v1``) or a YAML file path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files(__package__) / f"{name}.yaml"
        if not resource.is_file():
            known = sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))
            raise FileNotFoundError(f"no prompt template {name!r}; packaged templates: {known}, or pass a .yaml path")
        text = resource.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    examples = tuple((e["input"], e["output"]) for e in data.get("examples", []))
    return PromptTemplate(str(data["version"]), data["system"], data["user"], examples)
