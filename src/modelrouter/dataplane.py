"""The one service layer under every transport: health, metadata, and infer.

REST (and later gRPC) handlers only translate wire formats and call this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelrouter._version import __version__
from modelrouter.config.schema import Config
from modelrouter.protocol.types import InferenceRequest, InferenceResponse
from modelrouter.runtime.repository import ModelRepository

EXTENSIONS = ("binary_tensor_data", "model_repository")


@dataclass(slots=True)
class InferOutcome:
    response: InferenceResponse
    version: str


class DataPlane:
    def __init__(self, config: Config, repository: ModelRepository) -> None:
        self.config = config
        self.repository = repository
        self._defaults = {name: m.default_version for name, m in config.models.items()}

    # ------------------------------------------------------------------ health and metadata

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.all_ready()

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": self.config.server.name,
            "version": __version__,
            "extensions": list(EXTENSIONS),
        }

    def resolve_version(self, model: str, version: str | None) -> str:
        """The version a model-level call means: the one pinned, or the model's default."""
        if version is not None:
            self.repository.entry(model, version)
            return version
        versions = self.repository.versions(model)
        return self._defaults.get(model) or next(iter(versions))

    def model_ready(self, model: str, version: str | None = None) -> tuple[bool, str]:
        v = self.resolve_version(model, version)
        return self.repository.entry(model, v).ready, v

    def not_ready_reason(self, model: str, version: str) -> str:
        """Why a version is not ready: its load error, or the state it is in."""
        e = self.repository.entry(model, version)
        return e.error or f"model '{model}' version '{version}' is {e.state.value}"

    def model_metadata(self, model: str, version: str | None = None) -> tuple[dict[str, Any], str]:
        v = self.resolve_version(model, version)
        runtime = self.repository.runtime(model, v)
        sig = runtime.signature()
        doc: dict[str, Any] = {
            "name": model,
            "versions": list(self.repository.versions(model)),
            "platform": sig.platform or runtime.format,
            "inputs": [s.to_json() for s in sig.inputs],
            "outputs": [s.to_json() for s in sig.outputs],
        }
        if sig.extra:
            doc["parameters"] = dict(sig.extra)
        return doc, v

    def model_index(self) -> list[dict[str, Any]]:
        out = []
        for name, versions in self.repository.models.items():
            for v, e in versions.items():
                item: dict[str, Any] = {"name": name, "version": v, "state": e.state.value}
                if e.error:
                    item["reason"] = e.error
                out.append(item)
        return out

    # ------------------------------------------------------------------ inference

    async def infer(
        self, model: str, request: InferenceRequest, version: str | None = None
    ) -> InferOutcome:
        v = self.resolve_version(model, version)
        runtime = self.repository.runtime(model, v)
        outputs = await runtime.infer(request)
        return InferOutcome(InferenceResponse(model, v, outputs, request.id), v)
