"""Where signed audit checkpoints are kept, outside the store: a file or an S3 object.

A sink appends one line per checkpoint and reads them back in order, as a stream (verification
never holds a whole sink in memory). The I/O blocks: callers run it in a thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from modelrouter.errors import ConfigError, StoreError


class Sink(Protocol):
    """Where checkpoints go: appended one line each, read back in order. Blocking I/O."""

    target: str

    def append(self, line: str) -> None: ...

    def lines(self) -> Iterator[str]: ...


class FileSink:
    """A local file, appended to (``O_APPEND``, one ``write`` per line, fsync'd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = str(path)

    def append(self, line: str) -> None:
        data = (line + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"checkpoint sink {self.path}: {exc.strerror or exc}") from None

    def lines(self) -> Iterator[str]:
        try:
            with self.path.open("r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    yield line.rstrip("\n")
        except FileNotFoundError:
            raise ConfigError(f"checkpoint sink {self.path} does not exist") from None
        except OSError as exc:
            raise StoreError(f"checkpoint sink {self.path}: {exc.strerror or exc}") from None


class S3Sink:
    """One S3 object of JSON lines. S3 cannot append: each checkpoint reads the object, adds
    its line and writes it back, keeping the newest ``keep`` lines (the object stays bounded).
    Two writers racing may lose a line; the lease makes that rare and it loses no evidence
    a later checkpoint does not also give."""

    def __init__(self, uri: str, keep: int = 10_000, client: Any = None) -> None:
        from modelrouter.sources.s3 import parse_s3_uri

        self.bucket, self.key = parse_s3_uri(uri)
        if not self.key:
            raise ConfigError(f"checkpoint sink {uri!r}: name an object (s3://bucket/key)")
        if keep < 1:
            raise ConfigError("checkpoint sink: keep must be at least 1")
        self.target = uri
        self.keep = keep
        self._client = client

    def _s3(self) -> Any:
        if self._client is None:
            from modelrouter.sources.s3 import S3Source

            self._client = S3Source(Path(".")).client()
        return self._client

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StoreError(f"checkpoint sink {self.target}: S3 error {code}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"checkpoint sink {self.target}: S3 unreachable: {exc}") from None

    def _read(self) -> list[str]:
        found = self._call(self._s3().get_object)
        if found is None:
            return []
        text: str = found["Body"].read().decode("utf-8", errors="replace")
        return [line for line in text.split("\n") if line]

    def append(self, line: str) -> None:
        kept = [*self._read(), line][-self.keep :]
        body = ("\n".join(kept) + "\n").encode()
        self._call(self._s3().put_object, Body=body, ContentType="application/x-ndjson")

    def lines(self) -> Iterator[str]:
        found = self._call(self._s3().get_object)
        if found is None:
            raise ConfigError(f"checkpoint sink {self.target} does not exist")
        for raw in found["Body"].iter_lines():
            yield raw.decode("utf-8", errors="replace")


def open_sink(target: str, base_dir: Path | None = None, keep: int = 10_000) -> Sink:
    """A sink from ``s3://bucket/key`` or a file path (relative: against ``base_dir``)."""
    if not target:
        raise ConfigError("checkpoint sink: give a file path or s3://bucket/key")
    if target.startswith("s3://"):
        return S3Sink(target, keep)
    if "://" in target:
        raise ConfigError(f"checkpoint sink {target!r}: use a file path or s3://bucket/key")
    path = Path(target).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return FileSink(path)
