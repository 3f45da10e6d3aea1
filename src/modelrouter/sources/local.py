"""Local paths and ``file://`` URIs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from modelrouter.errors import ConfigError, ModelLoadError


def local_path(uri: str, base_dir: Path) -> Path:
    """The path ``uri`` names; relative paths resolve against ``base_dir``, the config's folder."""
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URI {uri!r} names a host; use file:///absolute/path")
        path = Path(unquote(parsed.path))
    else:
        path = Path(uri).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return path


def check_local(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist")
