"""``http(s)://`` single-file models (an ``.onnx``, a ``.joblib``, a booster file).

The file is kept under the cache folder named after its URL; a later load asks the server with
``If-None-Match`` / ``If-Modified-Since`` and downloads again only when it changed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from modelrouter.errors import ModelLoadError, UpstreamError
from modelrouter.sources.cache import digest

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _file_name(url: str) -> str:
    name = Path(unquote(urlparse(url).path)).name
    return name or "model"


class HttpSource:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir / "http"

    def check(self, url: str) -> None:
        try:
            with (
                httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                _raise_for(url, response)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{url} is unreachable: {type(exc).__name__}: {exc}") from None

    def download(self, url: str) -> Path:
        folder = self.cache_dir / digest(url)
        target = folder / _file_name(url)
        meta_file = folder / ".meta.json"
        headers: dict[str, str] = {}
        if target.is_file() and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(name)
        try:
            with (
                httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code == 304 and target.is_file():
                    tmp.unlink(missing_ok=True)
                    return target
                _raise_for(url, response)
                with tmp.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                meta = {
                    "etag": response.headers.get("etag"),
                    "last_modified": response.headers.get("last-modified"),
                }
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise UpstreamError(f"{url} is unreachable: {type(exc).__name__}: {exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
        meta_file.write_text(json.dumps(meta))
        return target


def _raise_for(url: str, response: httpx.Response) -> None:
    if response.status_code in (401, 403, 404, 410):
        raise ModelLoadError(f"{url} answered {response.status_code}: no model file there")
    if response.status_code >= 400:
        raise UpstreamError(f"{url} answered {response.status_code}")
