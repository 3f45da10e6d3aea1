"""Storage URIs: where a version's files come from, resolved to a local path.

Only local paths and ``file://`` are resolved today; ``s3://``, ``models:/`` (MLflow),
``runs:/`` and ``http(s)://`` are recognised and refused with a clear message until their
source lands. Each source is one function from URI to local path.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from modelrouter.errors import ConfigError

PLANNED_SCHEMES = ("s3://", "gs://", "models:/", "runs:/", "http://", "https://")


def resolve_storage_uri(uri: str, base_dir: Path) -> Path:
    """A local path for ``uri``; relative paths resolve against ``base_dir``, the config's
    folder."""
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URI {uri!r} names a host; use file:///absolute/path")
        path = Path(unquote(parsed.path))
    elif uri.startswith(PLANNED_SCHEMES):
        scheme = uri.split(":", 1)[0]
        raise ConfigError(f"storageUri scheme '{scheme}' is not supported yet: {uri!r}")
    elif "://" in uri:
        raise ConfigError(f"unknown storageUri scheme in {uri!r}")
    else:
        path = Path(uri).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return path
