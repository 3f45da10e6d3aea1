"""``s3://bucket/prefix`` through boto3; ``AWS_ENDPOINT_URL`` points it at an S3-compatible
store (MinIO, Ceph, moto). Credentials come from boto3's usual chain.

A prefix that is one object downloads as that file; otherwise every object under
``prefix/`` downloads with its relative path. The cache folder is named after the bucket,
prefix and every object's ETag, so a changed object is downloaded again and an unchanged one
is not.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelrouter.errors import ConfigError, ModelLoadError, UpstreamError
from modelrouter.sources.cache import cached_dir, digest

_MISSING_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    etag: str
    size: int


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"invalid S3 URI {uri!r}: use s3://bucket/prefix")
    return bucket, prefix.strip("/")


class S3Source:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir / "s3"
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import boto3
                except ImportError as exc:
                    raise ConfigError(
                        f"s3:// URIs need boto3 ({exc}): pip install 'modelrouter[s3]'"
                    ) from None
                self._client = boto3.session.Session().client("s3")
            return self._client

    def _call(self, uri: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` with botocore's exceptions translated."""
        client = self.client()
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ModelLoadError(f"{uri} does not exist ({code})") from None
            if code in _DENIED_CODES:
                raise ModelLoadError(f"{uri}: access denied ({code})") from None
            raise UpstreamError(f"{uri}: S3 error {code}: {exc}") from None
        except NoCredentialsError:
            raise ModelLoadError(
                f"{uri}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or a profile)"
            ) from None
        except BotoCoreError as exc:
            endpoint = getattr(client.meta, "endpoint_url", "")
            raise UpstreamError(f"{uri}: S3 at {endpoint} is unreachable: {exc}") from None

    def list(self, uri: str) -> tuple[str, str, list[S3Object]]:
        """The objects ``uri`` names: the one object, or every object under ``prefix/``."""
        bucket, prefix = parse_s3_uri(uri)
        client = self.client()
        objects: list[S3Object] = []
        token: str | None = None
        folder = f"{prefix}/" if prefix else ""
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(uri, client.list_objects_v2, **kwargs)
            for item in page.get("Contents", []):
                key = item["Key"]
                if (key == prefix or key.startswith(folder)) and not key.endswith("/"):
                    objects.append(S3Object(key, str(item.get("ETag", "")), item["Size"]))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        if not objects:
            raise ModelLoadError(f"{uri}: no objects at s3://{bucket}/{prefix}")
        return bucket, prefix, objects

    def check(self, uri: str) -> None:
        self.list(uri)

    def download(self, uri: str) -> Path:
        bucket, prefix, objects = self.list(uri)
        single = len(objects) == 1 and objects[0].key == prefix
        key = digest(bucket, prefix, *(f"{o.key}:{o.etag}" for o in objects))
        client = self.client()

        def fill(tmp: Path) -> None:
            for o in objects:
                rel = Path(o.key).name if single else o.key[len(prefix) :].lstrip("/")
                dest = (tmp / rel).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise ModelLoadError(f"{uri}: object key {o.key!r} escapes its folder")
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._call(f"s3://{bucket}/{o.key}", client.download_file, bucket, o.key, str(dest))

        folder = cached_dir(self.cache_dir / key, fill)
        return folder / Path(objects[0].key).name if single else folder
