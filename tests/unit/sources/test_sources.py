"""Storage URIs: parsing, local paths, the download cache, HTTP single files (a local HTTP
server), MLflow flavor selection, and source facts in model metadata."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from modelrouter.config.loader import parse_config
from modelrouter.config.schema import VersionSpec
from modelrouter.errors import ConfigError, ModelLoadError, UpstreamError
from modelrouter.runtime.base import LocalRuntime
from modelrouter.runtime.mlflow import select_flavor
from modelrouter.runtime.registry import create_runtime
from modelrouter.sources import Sources, is_local_uri, resolve_storage_uri
from modelrouter.sources.cache import COMPLETE, cached_dir, size_on_disk
from modelrouter.sources.mlflow import MlflowRegistry, MlflowTarget, parse_mlflow_uri
from modelrouter.sources.s3 import parse_s3_uri
from support import free_port

# --------------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn/3", MlflowTarget("models:/churn/3", "churn", version="3")),
        (
            "models:/churn@champion",
            MlflowTarget("models:/churn@champion", "churn", alias="champion"),
        ),
        (
            "runs:/abc123/model",
            MlflowTarget("runs:/abc123/model", run_id="abc123", path="model"),
        ),
        (
            "runs:/abc123/sub/model/",
            MlflowTarget("runs:/abc123/sub/model/", run_id="abc123", path="sub/model"),
        ),
    ],
)
def test_parse_mlflow_uri(uri: str, expected: MlflowTarget) -> None:
    assert parse_mlflow_uri(uri) == expected


@pytest.mark.parametrize("uri", ["models:/", "models:/churn", "models:/a/b/c", "runs:/abc"])
def test_bad_mlflow_uri(uri: str) -> None:
    with pytest.raises(ConfigError, match="invalid MLflow URI"):
        parse_mlflow_uri(uri)


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ConfigError):
        parse_s3_uri("s3:///x")


def test_local_uris(tmp_path: Path) -> None:
    assert is_local_uri("./m")
    assert is_local_uri("file:///m")
    assert not is_local_uri("s3://b/m")
    assert not is_local_uri("models:/m/1")
    assert resolve_storage_uri("m/v1", tmp_path) == tmp_path / "m" / "v1"
    assert resolve_storage_uri("file:///abs/m", tmp_path) == Path("/abs/m")
    with pytest.raises(ConfigError, match="names a host"):
        resolve_storage_uri("file://host/m", tmp_path)
    with pytest.raises(ConfigError, match="scheme 'gs' is not supported"):
        resolve_storage_uri("gs://b/m", tmp_path)
    with pytest.raises(ConfigError, match="unknown storageUri scheme"):
        resolve_storage_uri("ftp://h/m", tmp_path)
    with pytest.raises(ConfigError, match="not a local path"):
        resolve_storage_uri("s3://b/m", tmp_path)


def test_local_fetch_and_check(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "m" / "sub").mkdir()
    (tmp_path / "m" / "sub" / "b.bin").write_bytes(b"y" * 5)
    sources = Sources(tmp_path, tmp_path / "cache")
    fetched = sources.fetch_sync("./m")
    assert fetched.path == tmp_path / "m"
    assert fetched.size == 15
    assert fetched.info == {}
    sources.check("./m")
    with pytest.raises(ModelLoadError, match="does not exist"):
        sources.check("./missing")


def test_settings(tmp_path: Path) -> None:
    config = parse_config(
        "server:\n  cacheDir: ./cache\n  mlflow: {trackingUri: 'http://mlflow:5000'}\n"
        "  modelMemoryBudget: 2GiB\n  lazyLoading: true\nmodels: {}\n"
    )
    assert config.server.modelMemoryBudget == 2 * 1024**3
    assert config.server.mlflow.pollInterval == 30.0
    sources = Sources.from_settings(config.server, tmp_path)
    assert sources.cache_dir == tmp_path / "cache"
    assert sources.mlflow_tracking_uri == "http://mlflow:5000"
    assert Sources(tmp_path).cache_dir == Path("~/.cache/modelrouter").expanduser()


def test_mlflow_needs_a_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        MlflowRegistry(None, tmp_path)


# --------------------------------------------------------------------------- cache


def test_cached_dir_is_written_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def fill(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "f").write_text("data")

    target = tmp_path / "c" / "v1"
    assert cached_dir(target, fill) == target
    assert cached_dir(target, fill) == target
    assert len(calls) == 1
    assert (target / COMPLETE).is_file()
    assert (target / "f").read_text() == "data"
    assert size_on_disk(target) == 4


def test_cached_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    def fill(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise UpstreamError("connection reset")

    with pytest.raises(UpstreamError):
        cached_dir(tmp_path / "c" / "v1", fill)
    assert list((tmp_path / "c").iterdir()) == []


# --------------------------------------------------------------------------- HTTP


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP server over a folder; yields its URL, the folder, and the request log."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(_Handler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} {self.headers.get('If-Modified-Since') is not None}")
            super().do_GET()

    port = free_port()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", root, seen
    finally:
        server.shutdown()
        server.server_close()


def test_http_single_file(tmp_path: Path, http_root: tuple[str, Path, list[str]]) -> None:
    url, root, seen = http_root
    x = np.arange(10, dtype=np.float64).reshape(-1, 1)
    joblib.dump(LinearRegression().fit(x, 3 * x.ravel()), root / "model.joblib")
    sources = Sources(tmp_path, tmp_path / "cache")
    fetched = sources.fetch_sync(f"{url}/model.joblib")
    assert fetched.path.name == "model.joblib"
    assert fetched.size == (root / "model.joblib").stat().st_size
    assert fetched.info == {"source": "http", "uri": f"{url}/model.joblib"}
    again = sources.fetch_sync(f"{url}/model.joblib")
    assert again.path == fetched.path
    assert seen[-1] == "/model.joblib True", "the second fetch is conditional"
    spec = VersionSpec(storageUri=f"{url}/model.joblib", modelFormat="sklearn")
    runtime = create_runtime("m", "v1", spec, tmp_path, fetched.path, fetched.info)
    runtime.load()
    assert isinstance(runtime, LocalRuntime)
    assert runtime.signature().extra == fetched.info
    sources.check(f"{url}/model.joblib")
    with pytest.raises(ModelLoadError, match="answered 404"):
        sources.check(f"{url}/missing.onnx")
    with pytest.raises(ModelLoadError, match="answered 404"):
        sources.fetch_sync(f"{url}/missing.onnx")
    dead = f"http://127.0.0.1:{free_port()}/m.onnx"
    with pytest.raises(UpstreamError, match="unreachable"):
        sources.fetch_sync(dead)


# --------------------------------------------------------------------------- MLflow flavors


def mlmodel(folder: Path, flavors: str, signature: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(f"flavors:\n{flavors}{signature}")
    for name in ("model.onnx", "model.ubj", "model.xgb", "model.lgb", "model.pkl", "m.skops"):
        (folder / name).write_bytes(b"")
    return folder


PYFUNC = "  python_function: {loader_module: mlflow.sklearn}\n"


@pytest.mark.parametrize(
    ("flavors", "expected"),
    [
        ("  onnx: {data: model.onnx}\n", ("onnx", "model.onnx")),
        ("  xgboost: {data: model.ubj, model_format: ubj}\n", ("xgboost", "model.ubj")),
        ("  xgboost: {data: model.xgb, model_format: xgb}\n", ("mlflow", "")),
        ("  lightgbm: {data: model.lgb}\n", ("lightgbm", "model.lgb")),
        ("  lightgbm: {data: model.pkl}\n", ("mlflow", "")),
        (
            "  sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle}\n",
            ("sklearn", "model.pkl"),
        ),
        ("  sklearn: {pickled_model: m.skops, serialization_format: skops}\n", ("mlflow", "")),
        ("  sklearn: {pickled_model: gone.pkl, serialization_format: pickle}\n", ("mlflow", "")),
        ("", ("mlflow", "")),
    ],
)
def test_select_flavor(tmp_path: Path, flavors: str, expected: tuple[str, str]) -> None:
    folder = mlmodel(tmp_path / "m", PYFUNC + flavors)
    fmt, path = select_flavor(folder)
    assert (fmt, path) == (expected[0], folder / expected[1] if expected[1] else folder)


def test_named_columns_mean_pyfunc(tmp_path: Path) -> None:
    flavors = PYFUNC + "  sklearn: {pickled_model: model.pkl, serialization_format: pickle}\n"
    columns = 'signature:\n  inputs: \'[{"type": "double", "name": "tenure", "required": true}]\'\n'
    tensors = (
        "signature:\n"
        '  inputs: \'[{"type": "tensor", "tensor-spec": {"dtype": "float64", '
        '"shape": [-1, 1]}}]\'\n'
    )
    assert select_flavor(mlmodel(tmp_path / "a", flavors, columns))[0] == "mlflow"
    assert select_flavor(mlmodel(tmp_path / "b", flavors, tensors))[0] == "sklearn"


def test_not_an_mlflow_model(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("just: text\n")
    with pytest.raises(ModelLoadError, match="no flavors"):
        select_flavor(tmp_path)


def test_model_format_mlflow_forces_pyfunc(tmp_path: Path) -> None:
    folder = mlmodel(
        tmp_path / "m",
        PYFUNC + "  sklearn: {pickled_model: model.pkl, serialization_format: pickle}\n",
    )
    forced = VersionSpec(storageUri="models:/m/1", modelFormat="mlflow")
    runtime = create_runtime("m", "v1", forced, tmp_path, folder)
    assert runtime.format == "mlflow"
    chosen = create_runtime("m", "v1", VersionSpec(storageUri="models:/m/1"), tmp_path, folder)
    assert chosen.format == "sklearn"
    assert chosen.path == folder / "model.pkl"
