"""Manifests as YAML files: several documents a file, each with the comment it carries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (the config in the ConfigMap) as literal ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object and the comment written above it (``#`` lines)."""

    doc: Mapping[str, Any]
    comment: str = ""

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.doc.get("metadata", {}).get("name", ""))


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def dump_documents(manifests: Iterable[Manifest]) -> str:
    parts = []
    for m in manifests:
        head = "".join(f"# {line}".rstrip() + "\n" for line in m.comment.splitlines())
        parts.append(head + dump(dict(m.doc)))
    return "---\n".join(parts)


def write_tree(out: Path, files: Mapping[str, list[Manifest]], namespace: str) -> list[Path]:
    """Write each file of ``files`` under ``out`` and a ``kustomization.yaml`` naming them all;
    returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, manifests in files.items():
        path = out / name
        path.write_text(dump_documents(manifests), encoding="utf-8")
        written.append(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": list(files),
    }
    path = out / "kustomization.yaml"
    path.write_text(
        "# Written by `modelrouter export kubernetes`: `kubectl apply -k .` deploys it.\n"
        + dump(kustomization),
        encoding="utf-8",
    )
    written.append(path)
    return written
