"""Hostile inputs against a real gateway: each is a 4xx naming what is wrong, the gateway
keeps serving, nothing internal leaks to anonymous callers, and memory stays bounded.

One case per finding of issue #9; each test ends by checking the gateway still answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from modelrouter.app import create_app
from support import (
    EXAMPLE_MODELS,
    gateway_subprocess,
    loaded_from_yaml,
    running_server,
)

pytestmark = pytest.mark.integration

TOKEN_ENV = "HOSTILE_ADMIN_TOKEN"
TOKEN = "hostile-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
SHORT = "load failed; see the server log"
ROWS = [[12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]]

UPSTREAM = f"""\
server: {{store: "memory://", watchConfig: false}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS}/churn/v1, modelFormat: sklearn}}
"""

CONFIG = """\
server:
  store: "memory://"
  watchConfig: false
  auth: {adminTokenEnv: HOSTILE_ADMIN_TOKEN}
  audit: {flushInterval: 10ms}
models:
  churn:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./churn/v2, modelFormat: sklearn}
    http:
      - name: default
        route: [{destination: v2}]
  echo:
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
    http:
      - name: default
        route: [{destination: v1}]
        retries: {attempts: 2}
        fallback: [v1]
  lenient:
    allowNonFinite: true
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
  proxied:
    versions:
      remote: {endpoint: "UPSTREAM", remoteName: churn, remoteVersion: v1, timeout: 5s}
  broken:
    versions:
      ok: {storageUri: ./churn/v1, modelFormat: sklearn}
      missing: {storageUri: ./no/such/dir, modelFormat: sklearn}
      corrupt: {storageUri: "CORRUPT", modelFormat: sklearn}
      down: {endpoint: "http://127.0.0.1:DEADPORT", timeout: 1s}
"""


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def corrupt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corrupt")
    (folder / "model.joblib").write_bytes(b"\x89PNG\r\n\x1a\nSECRET-BYTES" + bytes(range(256)))
    return folder


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    app = create_app(loaded_from_yaml(UPSTREAM, EXAMPLE_MODELS))
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def gw(upstream: str, corrupt_model: Path) -> Iterator[httpx.Client]:
    text = (
        CONFIG.replace("UPSTREAM", upstream)
        .replace("CORRUPT", str(corrupt_model))
        .replace("DEADPORT", str(dead_port()))
    )
    os.environ[TOKEN_ENV] = TOKEN
    try:
        app = create_app(loaded_from_yaml(text, EXAMPLE_MODELS))
    finally:
        del os.environ[TOKEN_ENV]
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def infer_body(rows: list[list[float]] = ROWS, **extra: Any) -> dict[str, Any]:
    shape = [len(rows), len(rows[0])]
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": shape, "data": rows}]} | (
        extra
    )


def error_of(r: httpx.Response, status: int, *fragments: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert list(doc) == ["error"]
    message: str = doc["error"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def assert_serves(gw: httpx.Client) -> None:
    r = gw.post("/v2/models/churn/infer", json=infer_body())
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "v2"


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([0, 2**63], "describes more than"),
        ([0, 10**12, 10**12, 10**12], "describes more than"),
        ([1] * 100, "100 dimensions"),
    ],
)
def test_absurd_shape_is_a_400(gw: httpx.Client, shape: list[int], fragment: str) -> None:
    body = {"inputs": [{"name": "wide", "datatype": "FP64", "shape": shape, "data": []}]}
    for path in ("/v2/models/churn/infer", "/v2/models/churn/versions/v1/infer"):
        error_of(gw.post(path, json=body), 400, "input 'wide'", fragment)
    assert_serves(gw)


# --------------------------------------------------------------------------- non-finite


def binary_request(values: list[float], datatype: str = "FP32") -> tuple[bytes, dict[str, str]]:
    raw = np.asarray([values], dtype={"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}[datatype])
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "signal",
                    "datatype": datatype,
                    "shape": list(raw.shape),
                    "parameters": {"binary_data_size": raw.nbytes},
                }
            ]
        }
    )
    return head + raw.tobytes(), {
        "inference-header-content-length": str(len(head)),
        "content-type": "application/octet-stream",
    }


def wait_for_decision(gw: httpx.Client, rid: str) -> None:
    deadline = time.monotonic() + 10
    while gw.get(f"/api/v1/decisions/{rid}", headers=ADMIN).status_code != 200:
        assert time.monotonic() < deadline, f"no decision record for {rid}"
        time.sleep(0.02)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_non_finite_binary_input_is_a_400_before_routing(
    gw: httpx.Client, bad: float, datatype: str
) -> None:
    body, headers = binary_request([1.0, bad], datatype)
    rid = f"nonfinite-{datatype}-{bad}".replace("-inf", "-minf")
    r = gw.post("/v2/models/echo/infer", content=body, headers={**headers, "x-request-id": rid})
    error_of(r, 400, "input 'signal'", "NaN or infinite", "allowNonFinite")
    # refused at the protocol edge: no decision (routing, retries, fallback) happened at all
    gw.post(
        "/v2/models/echo/infer",
        content=binary_request([1.0])[0],
        headers={**binary_request([1.0])[1], "x-request-id": rid + "-ok"},
    )
    wait_for_decision(gw, rid + "-ok")
    records = gw.get("/api/v1/audit", params={"request_id": rid}, headers=ADMIN).json()
    assert records == {"records": []}
    # a model that allows them gets them
    ok = gw.post("/v2/models/lenient/infer", content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert_serves(gw)


# --------------------------------------------------------------------------- headers


def test_huge_user_id_header_is_a_431(gw: httpx.Client) -> None:
    r = gw.post("/v2/models/churn/infer", json=infer_body(), headers={"x-user-id": "u" * 2**20})
    error_of(r, 431, "header 'x-user-id'", "at most 8192")
    assert re_id(r)
    assert_serves(gw)


def re_id(r: httpx.Response) -> bool:
    rid = r.headers.get("x-request-id", "")
    return len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)


def test_ten_thousand_headers_is_a_431(gw: httpx.Client) -> None:
    headers = [(f"x-h{i}", "1") for i in range(10_000)]
    r = gw.post("/v2/models/churn/infer", json=infer_body(), headers=headers)
    error_of(r, 431, "headers: 10", "at most 100")
    assert_serves(gw)


def test_all_headers_together_are_bounded(gw: httpx.Client) -> None:
    headers = [(f"x-part-{i}", "v" * 6000) for i in range(8)]  # each fine, 48 KB in all
    r = gw.post("/v2/models/churn/infer", json=infer_body(), headers=headers)
    error_of(r, 431, "bytes in all", "at most 32768")
    assert_serves(gw)


@pytest.mark.parametrize(
    "rid", ["r" * 129, "r" * (8 * 2**10 - 20), "has space", "semi;colon", "caf\u00e9", "a/b"]
)
def test_bad_request_id_is_a_400_and_not_echoed(gw: httpx.Client, rid: str) -> None:
    r = gw.post(
        "/v2/models/churn/infer",
        json=infer_body(),
        headers={"x-request-id": rid.encode("utf-8")},  # type: ignore[dict-item]
    )
    error_of(r, 400, "x-request-id", "1-128 characters")
    assert re_id(r)  # a fresh id, not the caller's
    assert_serves(gw)


def test_good_request_id_is_echoed_and_audited(gw: httpx.Client) -> None:
    rid = "trace-42:span_7.a+b=c"
    r = gw.post("/v2/models/churn/infer", json=infer_body(), headers={"x-request-id": rid})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    wait_for_decision(gw, rid)


# --------------------------------------------------------------------------- upstream ids


@pytest.mark.parametrize("rid", ["line\r\nx-injected: 1", "caf\u00e9-\u4e2d", "x" * 5000])
def test_request_id_forwarded_to_a_remote_version_safely(gw: httpx.Client, rid: str) -> None:
    r = gw.post("/v2/models/proxied/infer", json=infer_body(id=rid))
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "remote"
    assert r.json()["id"] == rid
    assert_serves(gw)


# --------------------------------------------------------------------------- routing rules


def put_rules(gw: httpx.Client, model: str, rules: list[dict[str, Any]]) -> httpx.Response:
    return gw.put(f"/api/v1/models/{model}/routing", json={"http": rules}, headers=ADMIN)


def rule(name: str = "r", **match: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "route": [{"destination": "v2"}]}
    if match:
        doc["match"] = [match]
    return doc


@pytest.mark.parametrize("path", ["inputs.\u00b2", "inputs.\u0663", "a..b", ".x"])
def test_body_path_is_validated_when_written(gw: httpx.Client, path: str) -> None:
    before = gw.get("/api/v1/models/churn/routing", headers=ADMIN).json()
    r = put_rules(gw, "churn", [rule(body={path: {"exact": "1"}}), rule("default")])
    error_of(r, 400, "http.0.match.0.body", "body path")
    after = gw.get("/api/v1/models/churn/routing", headers=ADMIN).json()
    assert after["version"] == before["version"]
    assert_serves(gw)


def test_too_many_rules_is_a_400(gw: httpx.Client) -> None:
    rules = [rule(f"r{i}", headers={"x-k": {"exact": str(i)}}) for i in range(10_000)]
    error_of(put_rules(gw, "churn", rules), 400, "http", "at most 256")
    assert_serves(gw)


def test_too_many_conditions_is_a_400(gw: httpx.Client) -> None:
    headers = {f"x-h{i}": {"exact": "1"} for i in range(65)}
    error_of(put_rules(gw, "churn", [rule(headers=headers)]), 400, "match", "at most 64")
    blocks = [{"headers": {"x": {"exact": str(i)}}} for i in range(17)]
    bad = {"name": "r", "match": blocks, "route": [{"destination": "v2"}]}
    error_of(put_rules(gw, "churn", [bad]), 400, "http.0.match", "at most 16")
    assert_serves(gw)


def test_long_pattern_is_a_400(gw: httpx.Client) -> None:
    r = put_rules(gw, "churn", [rule(headers={"x-k": {"prefix": "p" * 1025}})])
    error_of(r, 400, "http.0.match.0.headers.x-k.prefix", "at most 1024")
    assert_serves(gw)


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)a", "(?<!b)a"])
def test_backtracking_only_regex_is_refused(gw: httpx.Client, pattern: str) -> None:
    r = put_rules(gw, "churn", [rule(headers={"x-k": {"regex": pattern}})])
    error_of(r, 400, "http.0.match.0.headers.x-k.regex", "RE2 syntax")
    assert_serves(gw)


def test_catastrophic_regex_matches_in_linear_time(gw: httpx.Client) -> None:
    """``(a+)+b`` is accepted (RE2 runs it in linear time) and matched against the largest
    header allowed; the gateway answers, routing by it, and keeps serving."""
    r = put_rules(
        gw, "churn", [rule("evil", headers={"x-k": {"regex": "(a+)+b"}}), rule("default")]
    )
    assert r.status_code == 200, r.text
    try:
        r = gw.post("/v2/models/churn/infer", json=infer_body(), headers={"x-k": "a" * 8000})
        assert (r.status_code, r.headers["x-model-version"]) == (200, "v2")
        assert_serves(gw)
    finally:
        assert put_rules(gw, "churn", [rule("default")]).status_code == 200


# --------------------------------------------------------------------------- feedback


def test_deep_truth_is_a_400(gw: httpx.Client) -> None:
    deep = b'{"request_id": "x", "truth": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}"
    r = gw.post("/api/v1/feedback", content=deep, headers=ADMIN)
    error_of(r, 400, "truth", "nested more than 8")
    r = gw.post(
        "/api/v1/feedback", json={"request_id": "x", "truth": list(range(5000))}, headers=ADMIN
    )
    error_of(r, 400, "truth", "more than 1024 values")
    r = gw.post("/api/v1/feedback", json={"request_id": "x", "reward": [[1]] * 50}, headers=ADMIN)
    error_of(r, 400, "reward", "finite number")
    assert_serves(gw)


# --------------------------------------------------------------------------- leaks


LEAKS = ("/", "no/such/dir", "SECRET", "PNG", "127.0.0.1", "http://")


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text.replace("/v2/", "").replace("/api/", ""), (leak, text)


@pytest.mark.parametrize("version", ["missing", "corrupt", "down"])
def test_load_errors_are_short_for_anonymous_callers(gw: httpx.Client, version: str) -> None:
    ready = gw.get(f"/v2/models/broken/versions/{version}/ready")
    assert ready.status_code == 503
    assert ready.json()["error"] == SHORT
    meta = error_of(gw.get(f"/v2/models/broken/versions/{version}"), 503, SHORT)
    rid = f"leak-{version}"
    infer = error_of(
        gw.post(
            f"/v2/models/broken/versions/{version}/infer",
            json=infer_body(),
            headers={"x-request-id": rid},
        ),
        503,
        SHORT,
    )
    index = {(m["name"], m["version"]): m for m in gw.get("/v2/repository/index").json()}
    assert index["broken", version]["reason"] == SHORT
    for text in (ready.json()["error"], meta, infer):
        assert_no_leak(text.split(": ", 1)[-1])

    # the admin gets the whole reason, on the admin API and with the token on the data plane
    models = gw.get("/api/v1/models", headers=ADMIN).json()["models"]
    full = next(
        v["reason"]
        for m in models
        if m["name"] == "broken"
        for v in m["versions"]
        if v["name"] == version
    )
    assert full != SHORT
    expected = {"missing": "no/such/dir", "corrupt": "Unpickling", "down": "http://127.0.0.1:"}
    assert expected[version] in full
    index = {
        (m["name"], m["version"]): m for m in gw.get("/v2/repository/index", headers=ADMIN).json()
    }
    assert index["broken", version]["reason"] == full
    ready = gw.get(f"/v2/models/broken/versions/{version}/ready", headers=ADMIN)
    assert ready.json()["error"] == full
    wait_for_decision(gw, rid)  # the audit log (admin only) keeps the whole reason
    record = gw.get(f"/api/v1/decisions/{rid}", headers=ADMIN).json()["record"]
    assert full in record["error"]
    assert gw.post("/v2/models/broken/versions/ok/infer", json=infer_body()).status_code == 200
    assert_serves(gw)


# --------------------------------------------------------------------------- encoded slash


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/churn%2Fversions%2Fv1/infer",
        "/v2/models/churn%2fversions%2fv1/infer",
        "/v2/models/churn/versions/v1%2F..%2Fv2/infer",
        "/api/v1/decisions/a%2Fb",
    ],
)
def test_encoded_slash_in_a_name_is_a_400(gw: httpx.Client, path: str) -> None:
    r = gw.post(path, json=infer_body(), headers=ADMIN)
    error_of(r, 400, "path", "%2F")
    assert "x-model-version" not in r.headers
    assert_serves(gw)


def test_overlong_query_string_is_a_414(gw: httpx.Client) -> None:
    r = gw.post("/v2/models/churn/infer", params={"q": "x" * 40_000}, json=infer_body())
    error_of(r, 414, "path:", "at most 32768")
    assert_serves(gw)


# --------------------------------------------------------------------------- memory


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def raw_request(url: str, head_extra: bytes) -> bytes:
    """One request over a plain socket (httpx refuses some of these headers)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        body = orjson.dumps(infer_body())
        head = (
            b"POST /v2/models/churn/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
            b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n" + head_extra + b"\r\n"
        )
        # the server may answer and close once the head is refused, before it is all sent:
        # stop sending then, and read the answer
        with contextlib.suppress(OSError):
            for i in range(0, len(head), 65536):
                s.sendall(head[i : i + 65536])
            s.sendall(body)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and out.split(b"\r\n\r\n", 1)[1]:
                break
        return out


def test_oversized_headers_leave_memory_bounded(tmp_path: Path) -> None:
    """300 requests with a 256 KiB ``x-request-id`` or ``x-user-id`` (the issue's case: +156
    MiB that stayed) against ``modelrouter serve``: each a 431, and the gateway's resident
    memory ends within 20 MiB of where it started."""
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        "server: {store: 'memory://', watchConfig: false}\n"
        f"models:\n  churn:\n    versions:\n      v1: {{storageUri: {EXAMPLE_MODELS}/churn/v1, "
        "modelFormat: sklearn}\n"
    )
    with gateway_subprocess(config) as (url, pid), httpx.Client(base_url=url) as client:
        for _ in range(20):  # warm up: first requests allocate caches
            assert client.post("/v2/models/churn/infer", json=infer_body()).status_code == 200
        before = vm_rss(pid)
        statuses = set()
        for i in range(300):
            name = b"x-request-id" if i % 2 else b"x-user-id"
            answer = raw_request(url, name + b": " + b"r" * (256 * 1024) + b"\r\n")
            statuses.add(answer.split(b" ", 2)[1])
        after = vm_rss(pid)
        assert statuses == {b"431"}
        assert after - before < 20 * 2**20, (before, after)
        # the parser stops reading a head past the limit (the message says so)
        answer = raw_request(url, b"x-user-id: " + b"u" * (2 * 2**20) + b"\r\n")
        assert b" 431 " in answer.split(b"\r\n", 1)[0]
        assert b"refused before it is read whole" in answer
        assert client.post("/v2/models/churn/infer", json=infer_body()).status_code == 200
