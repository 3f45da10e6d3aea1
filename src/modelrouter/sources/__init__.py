"""Storage URIs: where a version's files come from, resolved to a local path.

=========================  ==================================================================
``./path``, ``file://``    a local file or folder (relative to the config file's folder)
``s3://bucket/prefix``     downloaded through boto3 (:mod:`.s3`); ``AWS_ENDPOINT_URL`` for
                           S3-compatible stores
``http(s)://host/file``    one model file (:mod:`.http`)
``models:/name/version``   the MLflow Model Registry (:mod:`.mlflow`); ``models:/name@alias``
``runs:/run_id/path``      follows the alias, ``runs:/`` a run's artifact
=========================  ==================================================================

:class:`Sources` is the one entry point: :meth:`Sources.fetch` gives a :class:`Fetched` (the
local path, the bytes it takes on disk, and facts for model metadata), :meth:`Sources.check`
says whether a URI can be fetched without downloading it (``modelrouter validate``). Remote
sources download into a cache folder (``server.cacheDir``, default ``~/.cache/modelrouter``).
Errors are modelrouter's: :class:`~modelrouter.errors.ModelLoadError` when the thing named does
not exist, :class:`~modelrouter.errors.UpstreamError` when the store cannot be reached.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelrouter.errors import ConfigError
from modelrouter.sources.cache import DEFAULT_CACHE_DIR, size_on_disk
from modelrouter.sources.local import check_local, local_path
from modelrouter.sources.mlflow import is_mlflow_uri, parse_mlflow_uri

if TYPE_CHECKING:
    from modelrouter.config.schema import ServerSettings
    from modelrouter.sources.http import HttpSource
    from modelrouter.sources.mlflow import MlflowRegistry
    from modelrouter.sources.s3 import S3Source

__all__ = ["Fetched", "Sources", "is_local_uri", "resolve_storage_uri"]

UNSUPPORTED_SCHEMES = ("gs://",)
REMOTE_SCHEMES = ("s3://", "http://", "https://", "models:/", "runs:/")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A version's files on local disk."""

    path: Path
    size: int
    """Bytes on disk: what the memory budget charges the version."""
    info: dict[str, Any] = field(default_factory=dict)
    """Shown in model metadata: the resolved MLflow version, its tags, the source URI."""
    mlflow_version: str | None = None
    """The registered version an MLflow URI resolved to (what the alias watcher compares)."""


def is_local_uri(uri: str) -> bool:
    return not uri.startswith((*REMOTE_SCHEMES, *UNSUPPORTED_SCHEMES)) and (
        uri.startswith("file://") or "://" not in uri
    )


def resolve_storage_uri(uri: str, base_dir: Path) -> Path:
    """A local path for a local ``uri`` (a path or ``file://``); relative paths resolve against
    ``base_dir``, the config's folder. Remote URIs are fetched with :class:`Sources`."""
    _refuse_unknown(uri)
    if not is_local_uri(uri):
        raise ConfigError(f"{uri!r} is not a local path: it is downloaded, not resolved")
    return local_path(uri, base_dir)


def _refuse_unknown(uri: str) -> None:
    if uri.startswith(UNSUPPORTED_SCHEMES):
        scheme = uri.split(":", 1)[0]
        raise ConfigError(f"storageUri scheme '{scheme}' is not supported: {uri!r}")
    if "://" in uri and not uri.startswith(("file://", *REMOTE_SCHEMES)):
        raise ConfigError(f"unknown storageUri scheme in {uri!r}")


class Sources:
    """Fetches storage URIs for one gateway; each remote adapter is created on first use."""

    def __init__(
        self,
        base_dir: Path,
        cache_dir: Path | None = None,
        mlflow_tracking_uri: str | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.cache_dir = (cache_dir or DEFAULT_CACHE_DIR).expanduser()
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self._mlflow: MlflowRegistry | None = None
        self._s3: S3Source | None = None
        self._http: HttpSource | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, server: ServerSettings, base_dir: Path) -> Sources:
        cache = None
        if server.cacheDir:
            cache = Path(server.cacheDir).expanduser()
            if not cache.is_absolute():
                cache = base_dir / cache
        return cls(base_dir, cache, server.mlflow.trackingUri)

    # ------------------------------------------------------------------ adapters

    def mlflow(self) -> MlflowRegistry:
        with self._lock:
            if self._mlflow is None:
                from modelrouter.sources.mlflow import MlflowRegistry

                self._mlflow = MlflowRegistry(self.mlflow_tracking_uri, self.cache_dir)
            return self._mlflow

    def s3(self) -> S3Source:
        with self._lock:
            if self._s3 is None:
                from modelrouter.sources.s3 import S3Source

                self._s3 = S3Source(self.cache_dir)
            return self._s3

    def http(self) -> HttpSource:
        with self._lock:
            if self._http is None:
                from modelrouter.sources.http import HttpSource

                self._http = HttpSource(self.cache_dir)
            return self._http

    # ------------------------------------------------------------------ fetch and check

    def fetch_sync(self, uri: str) -> Fetched:
        """Download (or find in the cache) what ``uri`` names. Blocks."""
        _refuse_unknown(uri)
        if is_mlflow_uri(uri):
            registry = self.mlflow()
            resolved = registry.resolve(parse_mlflow_uri(uri))
            path = registry.download(resolved)
            return Fetched(path, size_on_disk(path), resolved.info(), resolved.version)
        if uri.startswith("s3://"):
            path = self.s3().download(uri)
            return Fetched(path, size_on_disk(path), {"source": "s3", "uri": uri})
        if uri.startswith(("http://", "https://")):
            path = self.http().download(uri)
            return Fetched(path, size_on_disk(path), {"source": "http", "uri": uri})
        path = local_path(uri, self.base_dir)
        return Fetched(path, size_on_disk(path))

    async def fetch(self, uri: str) -> Fetched:
        """:meth:`fetch_sync` off the event loop."""
        if is_local_uri(uri):
            return self.fetch_sync(uri)
        return await asyncio.to_thread(self.fetch_sync, uri)

    def check(self, uri: str) -> None:
        """Raise what :meth:`fetch` would, without downloading: the MLflow version or alias
        resolves, the S3 prefix has objects, the URL answers, the local path exists."""
        _refuse_unknown(uri)
        if is_mlflow_uri(uri):
            self.mlflow().resolve(parse_mlflow_uri(uri))
        elif uri.startswith("s3://"):
            self.s3().check(uri)
        elif uri.startswith(("http://", "https://")):
            self.http().check(uri)
        else:
            check_local(local_path(uri, self.base_dir))
