"""The MLflow Model Registry: ``models:/name/version``, ``models:/name@alias``, ``runs:/id/path``.

Every MLflow call goes through :class:`MlflowRegistry`, which translates MLflow's exceptions
into modelrouter's: a name, version, alias or run that does not exist is a
:class:`~modelrouter.errors.ModelLoadError` saying which; a tracking server that cannot be
reached (or answers 5xx) is an :class:`~modelrouter.errors.UpstreamError`. The calls block;
callers on the event loop run them in a thread.

MLflow resolves ``models:/`` and ``runs:/`` artifacts through its process-wide tracking and
registry URIs, so the registry sets both to its tracking URI (a gateway talks to one tracking
server). MLflow retries unreachable servers for minutes by default; unless the environment says
otherwise, the registry turns off MLflow's usage telemetry (a gateway should not phone home;
offline, its failing thread also races other threads on ``os.environ``) and lowers retries
to one quick retry (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=1``,
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1``, ``MLFLOW_HTTP_REQUEST_TIMEOUT=20``): the alias
watcher polls again anyway, and :func:`MlflowRegistry.set_alias` retries on its own.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelrouter.errors import ConfigError, ModelLoadError, ModelRouterError, UpstreamError
from modelrouter.sources.cache import cached_dir, digest

_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))/?$")
_RUNS = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+?)/?$")
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})
_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
PROMOTED_TAG = "modelrouter.promoted"
"""The model version tag :meth:`MlflowRegistry.set_alias` writes: the alias and the time."""


@dataclass(frozen=True, slots=True)
class MlflowTarget:
    """A parsed ``models:/`` or ``runs:/`` URI: exactly one of version, alias, run is set."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None

    @property
    def is_alias(self) -> bool:
        return self.alias is not None


@dataclass(frozen=True, slots=True)
class ResolvedVersion:
    """What a target means now: the registered version (None for ``runs:/``) and its tags."""

    target: MlflowTarget
    version: str | None
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """The fields shown in model metadata (``parameters``)."""
        out: dict[str, Any] = {"source": "mlflow", "mlflow_uri": self.target.uri}
        if self.target.name is not None:
            out["mlflow_model"] = self.target.name
        if self.version is not None:
            out["mlflow_version"] = self.version
        if self.target.alias is not None:
            out["mlflow_alias"] = self.target.alias
        if self.run_id:
            out["mlflow_run_id"] = self.run_id
        if self.tags:
            out["mlflow_tags"] = dict(self.tags)
        return out


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/"))


def parse_mlflow_uri(uri: str) -> MlflowTarget:
    """``models:/name/3``, ``models:/name@champion`` or ``runs:/<run id>/model``."""
    m = _MODELS.match(uri)
    if m:
        return MlflowTarget(uri, m["name"], m["version"], m["alias"])
    m = _RUNS.match(uri)
    if m:
        return MlflowTarget(uri, run_id=m["run"], path=m["path"])
    raise ConfigError(
        f"invalid MLflow URI {uri!r}: use models:/name/version, models:/name@alias or "
        "runs:/run_id/path"
    )


class MlflowRegistry:
    """One tracking server. ``tracking_uri`` None means ``MLFLOW_TRACKING_URI``."""

    def __init__(self, tracking_uri: str | None, cache_dir: Path) -> None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ConfigError(
                "models:/ and runs:/ URIs need an MLflow tracking server: set "
                "server.mlflow.trackingUri or the MLFLOW_TRACKING_URI environment variable"
            )
        self.tracking_uri = uri
        self.cache_dir = cache_dir / "mlflow" / digest(uri)
        self._client: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ MLflow, translated

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                for key, value in _ENV_DEFAULTS.items():
                    os.environ.setdefault(key, value)
                try:
                    import mlflow
                    from mlflow import MlflowClient
                except ImportError as exc:
                    raise ConfigError(
                        f"models:/ and runs:/ URIs need mlflow ({exc}): "
                        "pip install 'modelrouter[mlflow]'"
                    ) from None
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.tracking_uri)
                self._client = MlflowClient(self.tracking_uri, self.tracking_uri)
            return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` with MLflow's exceptions translated; ``what`` names the object."""
        self.client()
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            raise self._translate(exc, what) from None
        except OSError as exc:  # requests' connection errors, or a local artifact store
            raise UpstreamError(
                f"MLflow at {self.tracking_uri}: {what}: {type(exc).__name__}: {exc}"
            ) from None

    def _translate(self, exc: Any, what: str) -> ModelRouterError:
        code = str(getattr(exc, "error_code", ""))
        message = str(getattr(exc, "message", exc))
        if code in _NOT_FOUND_CODES:
            return ModelLoadError(f"{what} does not exist in MLflow at {self.tracking_uri}")
        if (
            "Max retries exceeded" in message
            or "Connection" in message
            or code
            in (
                "INTERNAL_ERROR",
                "TEMPORARILY_UNAVAILABLE",
            )
        ):
            return UpstreamError(
                f"the MLflow tracking server at {self.tracking_uri} is unreachable or failing "
                f"({what}): {_short(message)}"
            )
        return ModelLoadError(f"MLflow at {self.tracking_uri}: {what}: {_short(message)}")

    # ------------------------------------------------------------------ resolution

    def resolve(self, target: MlflowTarget) -> ResolvedVersion:
        """The registered version a target means now, with its tags."""
        client = self.client()
        if target.run_id is not None:
            run = self._call(f"run '{target.run_id}'", client.get_run, target.run_id)
            return ResolvedVersion(target, None, run.info.run_id, {})
        assert target.name is not None
        if target.alias is not None:
            what = f"alias '{target.alias}' of registered model '{target.name}'"
            mv = self._call(what, client.get_model_version_by_alias, target.name, target.alias)
        else:
            what = f"version '{target.version}' of registered model '{target.name}'"
            mv = self._call(what, client.get_model_version, target.name, target.version)
        return ResolvedVersion(target, str(mv.version), mv.run_id or None, dict(mv.tags or {}))

    def alias_version(self, name: str, alias: str) -> str:
        """The version ``name@alias`` points at now."""
        target = MlflowTarget(f"models:/{name}@{alias}", name, alias=alias)
        version = self.resolve(target).version
        assert version is not None
        return version

    def download(self, resolved: ResolvedVersion) -> Path:
        """The model's folder (with its ``MLmodel``), downloaded once per version: a registered
        version's files never change, so ``<cache>/mlflow/<server>/<name>/<version>`` is reused."""
        target = resolved.target
        if target.run_id is not None:
            assert target.path is not None
            dest = self.cache_dir / "runs" / target.run_id / digest(target.path)
            uri = target.uri
            what = f"artifact '{target.path}' of run '{target.run_id}'"
        else:
            assert target.name is not None
            assert resolved.version is not None
            dest = self.cache_dir / "models" / target.name / resolved.version
            uri = f"models:/{target.name}/{resolved.version}"
            what = f"files of version '{resolved.version}' of registered model '{target.name}'"

        def fill(tmp: Path) -> None:
            import mlflow.artifacts

            self.client()
            self._call(
                what,
                mlflow.artifacts.download_artifacts,
                artifact_uri=uri,
                dst_path=str(tmp),
                tracking_uri=self.tracking_uri,
            )

        folder = cached_dir(dest, fill)
        return _model_root(folder, resolved)

    # ------------------------------------------------------------------ writes (rollouts)

    def set_alias(
        self, name: str, alias: str, version: str, attempts: int = 3, backoff: float = 0.5
    ) -> None:
        """Point ``name@alias`` at ``version`` and tag that version
        ``modelrouter.promoted = <alias> <ISO time>``. An unreachable server is retried
        ``attempts`` times; a missing model or version is not.

        The tag is written first: a gateway watching the alias resolves the version (and
        reads its tags) as soon as the alias moves, so it must find the tag already there."""
        client = self.client()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        what = f"version '{version}' of registered model '{name}'"
        for attempt in range(attempts):
            try:
                self._call(
                    what,
                    client.set_model_version_tag,
                    name,
                    version,
                    PROMOTED_TAG,
                    f"{alias} {stamp}",
                )
                self._call(what, client.set_registered_model_alias, name, alias, version)
                return
            except UpstreamError:
                if attempt + 1 >= attempts:
                    raise
                time.sleep(backoff * 2**attempt)


def _model_root(folder: Path, resolved: ResolvedVersion) -> Path:
    """The folder holding ``MLmodel``: the download itself, or its one subfolder."""
    if (folder / "MLmodel").is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and (p / "MLmodel").is_file()]
    if len(subs) == 1:
        return subs[0]
    raise ModelLoadError(
        f"{resolved.target.uri}: the downloaded artifact has no MLmodel file, so it is not an "
        "MLflow model"
    )


def _short(message: str) -> str:
    return message if len(message) <= 300 else message[:300] + "..."
