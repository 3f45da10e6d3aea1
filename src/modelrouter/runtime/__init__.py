"""Model runtimes behind one interface, chosen by ``modelFormat``, and the repository."""

from modelrouter.runtime.base import LocalRuntime, ModelRuntime
from modelrouter.runtime.registry import create_runtime, known_formats

__all__ = ["LocalRuntime", "ModelRuntime", "create_runtime", "known_formats"]
