"""The one interface every model runtime implements, and the helpers in-process ones share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import InferenceFailed, InvalidInput, ModelRouterError, UnknownOutput
from modelrouter.protocol.types import InferenceRequest, ModelSignature, Tensor

if TYPE_CHECKING:
    from modelrouter.runtime.batcher import Batcher


class ModelRuntime(ABC):
    """One loaded version of a model.

    ``load`` runs once before any ``infer``; it may block, and the repository calls it in a
    worker thread. ``infer`` is a coroutine so that a remote runtime can await the network;
    in-process runtimes derive from :class:`LocalRuntime` and implement a plain ``predict``.
    """

    format: ClassVar[str] = ""

    def __init__(self, model: str, version: str, spec: VersionSpec, path: Path | None) -> None:
        self.model = model
        self.version = version
        self.spec = spec
        self.path = path

    @abstractmethod
    def load(self) -> None:
        """Load the model (blocking). Raise with a clear message when it cannot."""

    async def aload(self) -> None:
        """Load off the event loop; runtimes that do network I/O override this."""
        await asyncio.to_thread(self.load)

    @abstractmethod
    def signature(self) -> ModelSignature:
        """Inputs and outputs with datatypes and shapes, for model metadata."""

    @abstractmethod
    async def infer(self, request: InferenceRequest) -> list[Tensor]:
        """Outputs for a request: the requested ones, or the default ones when none are asked."""

    async def close(self) -> None:
        """Release what ``load`` took (clients, sessions)."""
        return None


class LocalRuntime(ModelRuntime):
    """An in-process model whose ``predict`` is synchronous numpy in, numpy out."""

    default_outputs: tuple[str, ...] = ("predict",)
    """Outputs returned when a request names none."""
    row_independent: ClassVar[bool] = False
    """Each output row depends on its input row alone, so requests may share one ``predict``:
    such runtimes are batched by default (``batcher.enabled`` overrides it)."""
    batcher: Batcher | None = None
    """Set by the data plane when the version is batched; lives as long as this runtime."""

    @abstractmethod
    def output_names(self) -> Sequence[str]:
        """Every output the model can produce."""

    @abstractmethod
    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        """Compute ``outputs`` (validated names) from ``inputs``."""

    def _requested(self, request: InferenceRequest) -> Sequence[str]:
        asked = request.output_names
        if asked is None:
            return self.default_outputs
        known = self.output_names()
        for name in asked:
            if name not in known:
                raise UnknownOutput(
                    f"unknown output '{name}' for model '{self.model}' version '{self.version}'"
                    f" (outputs: {', '.join(known)})"
                )
        return asked

    def predict_request(self, request: InferenceRequest, outputs: Sequence[str]) -> list[Tensor]:
        """``predict`` for a whole request; runtimes that use request parameters override it."""
        return self.predict(request.inputs, outputs)

    def run(self, request: InferenceRequest) -> list[Tensor]:
        """Validate the requested outputs and predict; a model's own exception becomes
        :class:`InferenceFailed` with its message."""
        outputs = self._requested(request)
        try:
            return self.predict_request(request, outputs)
        except ModelRouterError:
            raise
        except Exception as exc:
            raise InferenceFailed(
                f"model '{self.model}' version '{self.version}' failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def infer(self, request: InferenceRequest) -> list[Tensor]:
        if self.spec.executor == "thread":
            return await asyncio.to_thread(self.run, request)
        return self.run(request)


def feature_matrix(inputs: list[Tensor], n_features: int | None = None) -> np.ndarray:
    """A 2-D ``[rows, features]`` array from one ``[rows, features]`` tensor, one row given as
    ``[features]``, or several ``[rows]`` / ``[rows, 1]`` column tensors (in request order)."""
    if len(inputs) == 1:
        x = inputs[0].data
        if x.ndim == 2:
            matrix = x
        elif x.ndim == 1:
            matrix = x.reshape(-1, 1) if n_features == 1 else x.reshape(1, -1)
        else:
            raise InvalidInput(
                f"input '{inputs[0].name}' must be 1-D or 2-D [rows, features], has shape "
                f"{inputs[0].shape}"
            )
    else:
        columns = []
        rows = None
        for t in inputs:
            if t.data.ndim > 2 or (t.data.ndim == 2 and t.data.shape[1] != 1):
                raise InvalidInput(
                    f"input '{t.name}': with several inputs each must be one column "
                    f"[rows] or [rows, 1], got shape {t.shape}"
                )
            col = t.data.reshape(-1)
            if rows is not None and col.shape[0] != rows:
                raise InvalidInput(f"input '{t.name}' has {col.shape[0]} rows, others {rows}")
            rows = col.shape[0]
            columns.append(col)
        matrix = np.column_stack(columns)
    if n_features is not None and matrix.shape[1] != n_features:
        raise InvalidInput(
            f"the model expects {n_features} features per row, got {matrix.shape[1]}"
        )
    if matrix.dtype == object:
        raise InvalidInput("this model takes numeric inputs, not BYTES")
    if matrix.shape[0] == 0:
        raise InvalidInput("the request has no rows to predict")
    return matrix


def find_model_file(path: Path, suffixes: Sequence[str], what: str) -> Path:
    """``path`` itself if it is a file, else the one file in it with one of ``suffixes``,
    preferring ``model.<suffix>``."""
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    for suffix in suffixes:
        candidate = path / f"model{suffix}"
        if candidate.is_file():
            return candidate
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"no {what} file ({', '.join(suffixes)}) in {path}")
    raise FileNotFoundError(
        f"several {what} files in {path}: {', '.join(p.name for p in found)}; name one"
    )


def describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
