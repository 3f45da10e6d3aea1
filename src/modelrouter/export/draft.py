"""The config an import builds up, document by document, and the notes on what it left out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modelrouter.config.schema import NAME_PATTERN


@dataclass(slots=True)
class Source:
    """One version as a manifest describes it: its config, and its share of its address's
    traffic (an InferenceService with canaries splits its own)."""

    version: str
    spec: dict[str, Any]
    percent: int = 100
    batcher: dict[str, Any] | None = None


@dataclass(slots=True)
class Draft:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)
    """InferenceService (or Seldon model) name -> (model, version) once it is placed."""

    def note(self, origin: str, text: str) -> None:
        self.notes.append(f"{origin}: {text}")

    def model(self, name: str) -> dict[str, Any]:
        return self.models.setdefault(name, {"versions": {}})

    def place(self, model: str, version: str, spec: dict[str, Any], key: str | None) -> str:
        """Add ``version`` to ``model`` (a unique name), remembering it under ``key``."""
        versions = self.model(model)["versions"]
        name, n = version, 2
        while name in versions:
            name, n = f"{version}-{n}", n + 1
        versions[name] = spec
        if key is not None:
            self.where[key] = (model, name)
        return name

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"models": self.models}
        if self.rollouts:
            out["rollouts"] = self.rollouts
        return out


def safe_name(raw: str) -> str:
    """A model, version or rule name modelrouter takes (letters, digits, ``_ . -``)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", raw).strip("-") or "unnamed"
    if not re.match(NAME_PATTERN, name):
        name = f"m{name}"
    return name


def combine(weights: list[int]) -> list[int]:
    """Weights given as weight x percent share, back in percent when they divide evenly
    (90*100, 10*100 -> 90, 10), else as they are (still in the same proportions)."""
    if all(w % 100 == 0 for w in weights):
        return [w // 100 for w in weights]
    return weights
