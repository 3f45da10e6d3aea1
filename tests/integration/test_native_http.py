"""The inference routes served by the HTTP protocol (api/native.py), over real sockets: HTTP/1.1
as clients speak it, and the same answers as the ASGI app gives."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from modelrouter.app import create_app
from processes import serving
from support import EXAMPLE_MODELS, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024
SLOW_DELAY = 1.0
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = orjson.dumps(
    {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}
)
CONFIG = f"""\
server:
  store: "memory://"
  watchConfig: false
  http: {{maxRequestSize: {LIMIT}, accessLog: true}}
  shutdown: {{drain: 0s, timeout: 5s}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS}/churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: {EXAMPLE_MODELS}/churn/v2, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1, weight: 50}}, {{destination: v2, weight: 50}}]
  slow:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.routing_models:SlowModel",
           executor: thread, parameters: {{delay: {SLOW_DELAY}}}}}
"""

Response = tuple[int, dict[str, str], bytes]


class Conn:
    """One client connection, reading responses by Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed before a response head: {self.buf!r}"
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} twice"
            headers[name.lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def response(self) -> Response:
        status, headers = self.head()
        n = int(headers["content-length"])
        while len(self.buf) < n:
            assert self._fill(), "connection closed mid-body"
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (nothing more comes)."""
        try:
            return not self._fill()
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def request(
    path: str = "/v2/models/churn/infer",
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    version: str = "1.1",
) -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: test", "Content-Type: application/json"]
    all_headers = {"content-length": str(len(body)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in all_headers.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, int]]:
    """A gateway process: its port, its log file, its pid."""
    folder = tmp_path_factory.mktemp("native")
    config = folder / "modelrouter.yaml"
    config.write_text(CONFIG)
    log = folder / "gateway.log"
    port = free_port()
    with serving(config, port, log=log) as proc:
        yield port, log, proc.pid


@pytest.fixture(scope="module")
def asgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The same config as an ASGI app under plain uvicorn: the reference answers."""
    folder = tmp_path_factory.mktemp("asgi")
    app = create_app(loaded_from_yaml(CONFIG, folder))
    port = free_port()
    with running_server(app, port):
        yield port


def ask(port: int, data: bytes) -> Response:
    conn = Conn(port)
    try:
        conn.send(data)
        return conn.response()
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(native: tuple[int, Path, int]) -> None:
    conn = Conn(native[0])
    ids = set()
    for _ in range(50):
        conn.send(request())
        status, headers, body = conn.response()
        assert status == 200, body
        assert headers["x-model-version"] in ("v1", "v2")
        assert headers["content-type"] == "application/json"
        assert "connection" not in headers
        assert {"date", "server"} <= headers.keys()
        assert orjson.loads(body)["outputs"][0]["shape"] == [1]
        ids.add(headers["x-request-id"])
    assert len(ids) == 50
    conn.close()


def test_pipelined_requests_are_answered_in_order(native: tuple[int, Path, int]) -> None:
    conn = Conn(native[0])
    v1 = orjson.dumps({"instances": [ROW]})
    conn.send(
        request(headers={"x-request-id": "one"})
        + request("/v2/models/nope/infer", headers={"x-request-id": "two"})
        + request("/v1/models/churn:predict", v1, {"x-request-id": "three"})
        + request("/v2/models/churn/versions/v2/infer", headers={"x-request-id": "four"})
    )
    answers = [conn.response() for _ in range(4)]
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [
        (200, "one"),
        (404, "two"),
        (200, "three"),
        (200, "four"),
    ]
    assert "nope" in orjson.loads(answers[1][2])["error"]
    assert orjson.loads(answers[2][2])["predictions"] in ([0], [1])
    assert answers[3][1]["x-model-version"] == "v2"
    conn.close()


def test_connection_close_and_http_1_0_close_after_the_response(
    native: tuple[int, Path, int],
) -> None:
    for data in (request(headers={"connection": "close"}), request(version="1.0")):
        conn = Conn(native[0])
        conn.send(data)
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (200, "close")
        assert conn.closed()
        conn.close()


def test_expect_100_continue_is_answered_before_the_body(native: tuple[int, Path, int]) -> None:
    conn = Conn(native[0])
    whole = request(headers={"expect": "100-continue"})
    head, body = whole.split(b"\r\n\r\n", 1)
    conn.send(head + b"\r\n\r\n")
    assert conn.head() == (100, {})
    conn.send(body)
    status, _, answer = conn.response()
    assert status == 200, answer
    # a body over the limit is refused on its declared length, with no 100 Continue
    conn.send(request(body=b"x" * (LIMIT + 1), headers={"expect": "100-continue"})[: -LIMIT - 1])
    status, _, answer = conn.response()
    assert status == 413, answer
    assert f"request body of {LIMIT + 1} bytes exceeds the limit of {LIMIT}" in answer.decode()
    conn.close()


def test_chunked_and_slow_bodies_are_read_whole(native: tuple[int, Path, int]) -> None:
    conn = Conn(native[0])
    head = "POST /v2/models/churn/infer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.send(head.encode() + chunked([BODY[:10], BODY[10:30], BODY[30:]]))
    status, _, answer = conn.response()
    assert status == 200, answer
    # a declared body arriving in several packets, apart
    data = request()
    for i in range(0, len(data), 40):
        conn.send(data[i : i + 40])
        time.sleep(0.03)
    status, _, answer = conn.response()
    assert status == 200, answer
    conn.close()


def test_a_chunked_body_over_the_limit_is_refused_as_it_grows(
    native: tuple[int, Path, int],
) -> None:
    conn = Conn(native[0])
    head = "POST /v2/models/churn/infer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"x" * 16384
    conn.send(head.encode() + b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(5)))
    status, headers, answer = conn.response()  # answered before the body ends
    assert status == 413, answer
    assert orjson.loads(answer) == {"error": f"request body exceeds the limit of {LIMIT} bytes"}
    assert headers["x-request-id"]
    conn.close()


def test_errors_name_the_field_and_match_the_asgi_app(
    native: tuple[int, Path, int], asgi: int
) -> None:
    bad_type = orjson.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ["a"] * 10}]}
    )
    binary_json = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [1, 10],
                    "parameters": {"binary_data_size": 80},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    binary = binary_json + struct.pack("<10d", *ROW)
    cases = [
        request(body=b"{not json"),
        request(body=bad_type),
        request(body=b"[1]"),
        request("/v2/models/nope/infer"),
        request("/v2/models/churn/versions/v9/infer"),
        request(headers={"content-encoding": "br"}),
        request(headers={"content-length": "abc"}, body=b""),
        request(body=gzip.compress(BODY), headers={"content-encoding": "gzip"}),
        request(body=b"\x1f\x8b junk", headers={"content-encoding": "gzip"}),
        request(body=binary, headers={"inference-header-content-length": str(len(binary_json))}),
        request(body=binary, headers={"inference-header-content-length": "x"}),
        request("/v1/models/churn:predict", b'{"instances": []}'),
        request("/v1/models/churn:predict", orjson.dumps({"instances": [ROW]})),
        request(headers={"x-request-id": "bad id!"}),  # refused by the edge (ASGI)
        request("/v2/models/a%2Fversions%2Fv1/infer"),
    ]
    for data in cases:
        native_status, native_headers, native_body = ask(native[0], data)
        asgi_status, asgi_headers, asgi_body = ask(asgi, data)
        assert native_status == asgi_status, (data[:80], native_body, asgi_body)
        assert native_headers.keys() == asgi_headers.keys(), data[:80]
        for name in ("content-type", "content-length", "inference-header-content-length"):
            assert native_headers.get(name) == asgi_headers.get(name), (name, data[:80])
        if native_status != 200:
            assert native_body == asgi_body, data[:80]
            assert native_status < 500, native_body
        elif "inference-header-content-length" in native_headers:
            n = int(native_headers["inference-header-content-length"])
            doc = orjson.loads(native_body[:n])
            assert doc["outputs"][0]["parameters"]["binary_data_size"] == len(native_body) - n
    status, _headers, body = ask(native[0], request(body=b"{not json"))
    assert status == 400
    assert "malformed JSON body" in orjson.loads(body)["error"]
    status, _, body = ask(native[0], request(body=bad_type))
    assert status == 400
    assert "input-0" in orjson.loads(body)["error"]


def test_a_request_id_is_echoed(native: tuple[int, Path, int]) -> None:
    status, headers, _ = ask(native[0], request(headers={"x-request-id": "abc-123.x:y"}))
    assert (status, headers["x-request-id"]) == (200, "abc-123.x:y")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_client_leaving_mid_body_leaves_nothing_behind(native: tuple[int, Path, int]) -> None:
    port, log, pid = native
    ask(native[0], request())
    before = fds(pid)
    for _ in range(30):
        conn = Conn(port)
        conn.send(request()[:-20])
        conn.close()
    deadline = time.monotonic() + 10
    while fds(pid) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fds(pid) <= before
    assert ask(port, request())[0] == 200
    text = log.read_text()
    assert "Traceback" not in text
    assert " 500" not in text


def test_the_access_log_has_a_line_per_native_request(native: tuple[int, Path, int]) -> None:
    port, log, _ = native
    ask(port, request("/v2/models/churn/infer?probe=access-log-line"))
    deadline = time.monotonic() + 5
    while "access-log-line" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"POST /v2/models/churn/infer?probe=access-log-line HTTP/1.1" 200' in log.read_text()


def test_graceful_shutdown_finishes_a_request_in_flight(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(CONFIG)
    port = free_port()
    slow = orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [2]}]})
    answers: list[Response] = []
    with serving(config, port) as proc:
        conn = Conn(port)
        conn.send(request("/v2/models/slow/infer", slow))
        thread = threading.Thread(target=lambda: answers.append(conn.response()))
        thread.start()
        time.sleep(SLOW_DELAY / 3)
        proc.send_signal(signal.SIGTERM)
        thread.join(15)
        assert proc.wait(15) == 0
        assert conn.closed()
        conn.close()
    assert len(answers) == 1
    status, headers, body = answers[0]
    assert status == 200, body
    assert headers["connection"] == "close"
    assert np.asarray(orjson.loads(body)["outputs"][0]["data"]).tolist() == [2.0]
