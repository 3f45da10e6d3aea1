"""Model files on the user's disk, moved under a storage prefix the cluster can read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelrouter.errors import ConfigError

REGISTRY_SCHEMES = ("models:/", "runs:/")


@dataclass(frozen=True, slots=True)
class Upload:
    """A local file and the URI it must be copied to before the manifests are applied."""

    local: Path
    target: str


def is_local(uri: str) -> bool:
    return uri.startswith("file://") or ("://" not in uri and not uri.startswith(REGISTRY_SCHEMES))


def relocate(
    uri: str, base_dir: Path, prefix: str | None, model: str, version: str
) -> tuple[str, list[Upload]]:
    """``uri`` as the cluster will read it, and the uploads that makes necessary.

    Remote URIs (``s3://``, ``gs://``, ``models:/``, ...) are kept. A local path becomes
    ``PREFIX/MODEL/VERSION`` (a folder: KServe's storage initializer and modelrouter's S3
    source both read one), and every file under it is to be uploaded there.
    """
    field = f"models.{model}.versions.{version}.storageUri"
    if not is_local(uri):
        return uri, []
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if prefix is None:
        raise ConfigError(
            f"{uri} is a local path, which the cluster cannot read: give --storage-prefix "
            "(e.g. s3://bucket/models) and upload the files the export lists",
            field=field,
        )
    if not path.exists():
        raise ConfigError(f"{uri} does not exist ({path}), so there is nothing to upload", field)
    target = f"{prefix.rstrip('/')}/{model}/{version}"
    if path.is_file():
        return target, [Upload(path, f"{target}/{path.name}")]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise ConfigError(f"{uri} is an empty folder ({path})", field)
    return target, [Upload(p, f"{target}/{p.relative_to(path).as_posix()}") for p in files]
