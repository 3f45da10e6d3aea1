"""Helpers shared by the benchmarks in bench/: ports, server processes, peer virtualenvs, the
``hey`` and ``h2load`` load generators, statistics and tables.

Nothing here imports modelrouter: a benchmark may run peers (MLServer, KServe) that must not share
a Python process with it. Each helper is usable on its own; see bench/serving.py for a full run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = ROOT / ".venv" / "bin"
PEERS = BENCH / ".peers"
RESULTS = BENCH / "results"


class BenchError(RuntimeError):
    """A benchmark cannot go on: a server failed to start, answered wrongly, a tool is missing."""


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- ports, processes


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (another process may still take it before we bind)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports: all sockets stay bound until every port is picked."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def http_post_json(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a JSON POST; status 0 when nothing answers."""
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


@dataclass
class ServerProcess:
    """A server started in its own session (so its process group holds it and every child it
    forks), with stdout and stderr in ``log_path``. Stop it with :meth:`stop`, or use
    :func:`serve` which always does."""

    name: str
    argv: list[str]
    log_path: Path
    ready_url: str
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env={**os.environ, **(self.env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll ``ready_url`` until it answers 200; fail early if the process exits."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise BenchError(
                    f"{self.name} exited with {code} before it was ready; log {self.log_path}:\n"
                    f"{self.tail()}"
                )
            status, _ = http_get(self.ready_url, timeout=1.0)
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} not ready at {self.ready_url} after {timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after ``grace`` seconds."""
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        # Children (worker processes) may outlive the leader: kill whatever is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None


@contextlib.contextmanager
def serve(server: ServerProcess, timeout: float = 120.0) -> Iterator[ServerProcess]:
    """Start ``server``, wait until ready, yield it, and stop its process group on the way out
    (also on errors and Ctrl-C)."""
    try:
        server.start()
        server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (which stop servers) run."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# ----------------------------------------------------------------------------- peer environments


def ensure_venv(path: Path, requirements: Sequence[str], python: str | None = None) -> Path:
    """A virtualenv at ``path`` with ``requirements`` installed; made (or remade) when missing or
    when the requirement list changed since it was made. Returns its ``bin`` folder."""
    stamp = path / ".bench-requirements.json"
    wanted = sorted(requirements)
    bin_dir = path / "bin"
    if (bin_dir / "python").exists() and stamp.exists():
        with contextlib.suppress(ValueError):
            if json.loads(stamp.read_text()) == wanted:
                return bin_dir
    python = python or shutil.which("python3") or sys.executable
    log(f"creating {path} with {' '.join(wanted)} (once; takes a minute or two)")
    if not (bin_dir / "python").exists():
        subprocess.run([python, "-m", "venv", str(path)], check=True)
    pip = [str(bin_dir / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    result = subprocess.run(
        [*pip, "install", "-q", *wanted], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if result.returncode != 0:
        raise BenchError(
            f"pip install into {path} failed:\n{result.stdout.decode(errors='replace')[-3000:]}"
        )
    stamp.write_text(json.dumps(wanted))
    return bin_dir


def venv_package_version(bin_dir: Path, package: str) -> str:
    """The installed version of ``package`` in another environment."""
    out = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({package!r}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# ----------------------------------------------------------------------------- hey


def ensure_tool(command: str, package: str | None = None) -> str:
    """Path of ``command``; its Debian package (``apt-get install PACKAGE``) is installed when
    it is missing and we are root."""
    found = shutil.which(command)
    if found:
        return found
    package = package or command
    if os.geteuid() != 0:
        raise BenchError(f"{command} is not installed: run `sudo apt-get install -y {package}`")
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BenchError(f"apt-get install {package} failed:\n{result.stderr[-2000:]}")
    found = shutil.which(command)
    if not found:
        raise BenchError(f"{command} is still not on PATH after apt-get install {package}")
    return found


def ensure_hey() -> str:
    """Path of ``hey`` (Debian's package when missing)."""
    return ensure_tool("hey")


def ensure_h2load() -> str:
    """Path of nghttp2's ``h2load`` (Debian's ``nghttp2-client`` when missing; ``make h2load``)."""
    return ensure_tool("h2load", "nghttp2-client")


def h2load_version(h2load: str = "h2load") -> str:
    out = subprocess.run([h2load, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().split("\n")[0] if out.returncode == 0 else "unknown"


KSERVE_VERSION = "0.21.0"
"""The KServe SDK of the peer environment (``bench/.peers/kserve``), shared with the tests."""

KSERVE_SERVER = ROOT / "tests" / "peer_scripts" / "kserve_sklearn_server.py"
"""A ``kserve.Model`` serving a joblib file, as KServe's sklearn server does (tests use it too)."""


def same_model_stack() -> list[str]:
    """The scikit-learn and joblib of .venv, so every peer loads the same model files."""
    import importlib.metadata

    return [
        f"scikit-learn=={importlib.metadata.version('scikit-learn')}",
        f"joblib=={importlib.metadata.version('joblib')}",
    ]


def kserve_requirements() -> list[str]:
    return [f"kserve=={KSERVE_VERSION}", *same_model_stack()]


MLSERVER_VERSION = "1.7.1"
UVLOOP_FOR_MLSERVER = "0.21.0"
"""MLServer 1.7.1 fails to start with uvloop 0.22 or newer (see shared/PERFORMANCE.md)."""


def mlserver_requirements() -> list[str]:
    """MLServer + mlserver-sklearn with the same scikit-learn and joblib as .venv (the same
    model file loads in both); ``bench/.peers/mlserver``, shared with the tests."""
    return [
        f"mlserver=={MLSERVER_VERSION}",
        f"mlserver-sklearn=={MLSERVER_VERSION}",
        f"uvloop=={UVLOOP_FOR_MLSERVER}",
        *same_model_stack(),
    ]


def warn_if_busy(threshold: float = 0.5) -> float:
    """The 1-minute load average; warns when other work would skew the figures."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > threshold:
        log(f"warning: load average {load:.2f}: the machine is busy, figures will be noisy")
    return load


def git_revision() -> str:
    """``git describe --always --dirty`` of the repo: which code the figures are for."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def hey_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "hey"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


@dataclass
class LoadResult:
    """One run of the load generator."""

    requests: int
    concurrency: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    status: dict[int, int]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = {str(k): v for k, v in self.status.items()}
        return d


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Percentile ``q`` (0-100) of sorted data, linear between closest ranks."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def parse_hey_csv(text: str, concurrency: int) -> LoadResult:
    """A :class:`LoadResult` from ``hey -o csv`` output: one row per request that got an answer
    (hey leaves out requests that failed at the connection level). Times have 0.1 ms resolution.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise BenchError(f"hey printed no results:\n{text[-2000:]}")
    lats = sorted(float(r["response-time"]) * 1000.0 for r in rows)
    ends = [float(r["offset"]) + float(r["response-time"]) for r in rows]
    starts = [float(r["offset"]) for r in rows]
    seconds = max(ends) - min(0.0, min(starts))
    status: dict[int, int] = {}
    for r in rows:
        code = int(r["status-code"])
        status[code] = status.get(code, 0) + 1
    return LoadResult(
        requests=len(rows),
        concurrency=concurrency,
        seconds=seconds,
        rps=len(rows) / seconds if seconds > 0 else math.nan,
        p50_ms=percentile(lats, 50),
        p90_ms=percentile(lats, 90),
        p99_ms=percentile(lats, 99),
        mean_ms=statistics.fmean(lats),
        max_ms=lats[-1],
        status=status,
    )


def hey_count(requests: int, concurrency: int) -> int:
    """How many requests ``hey -n requests -c concurrency`` sends: each of the ``c`` workers
    sends ``n // c``."""
    return (requests // concurrency) * concurrency


def run_hey(
    url: str,
    body_file: Path,
    requests: int,
    concurrency: int,
    *,
    hey: str = "hey",
    method: str = "POST",
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    timeout_s: int = 20,
    expect_status: int | None = 200,
) -> LoadResult:
    """Send ``requests`` copies of the body in ``body_file`` to ``url`` from ``concurrency``
    keep-alive connections. Raises :class:`BenchError` if any request failed or, with
    ``expect_status``, got another status: a wrong server must fail, not be timed."""
    n = max(hey_count(requests, concurrency), concurrency)
    argv = [hey, "-n", str(n), "-c", str(concurrency), "-m", method, "-t", str(timeout_s)]
    argv += ["-T", content_type, "-D", str(body_file), "-o", "csv"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"hey exited with {proc.returncode}: {proc.stderr[-2000:]}")
    result = parse_hey_csv(proc.stdout, concurrency)
    if result.requests != n:
        raise BenchError(
            f"{url}: {n - result.requests} of {n} requests failed at the connection level "
            f"(c={concurrency})"
        )
    if expect_status is not None and set(result.status) != {expect_status}:
        raise BenchError(f"{url}: expected only {expect_status}, got statuses {result.status}")
    return result


@dataclass
class H2loadRun:
    """One h2load run: the timing (a :class:`LoadResult`) and the bytes of response bodies
    (DATA frames) it received, which a caller checks against what correct answers make."""

    result: LoadResult
    data_bytes: int


def run_h2load(
    url: str,
    body_file: Path,
    requests: int,
    concurrency: int,
    *,
    h2load: str = "h2load",
    h1: bool = False,
    headers: Mapping[str, str] | None = None,
    timeout_s: int = 20,
) -> H2loadRun:
    """POST ``requests`` copies of ``body_file`` to ``url`` with nghttp2's ``h2load``.

    HTTP/2 (``h1`` false) opens ``max(1, concurrency // 8)`` connections with the rest of the
    concurrency as streams on each, as a gRPC client multiplexes calls on one channel; HTTP/1.1
    (``--h1``) opens ``concurrency`` keep-alive connections, as hey does. Latencies come from
    h2load's per-request log (microsecond resolution). Raises :class:`BenchError` when a
    request failed, errored or timed out, or got another status than 200. h2load does not read
    gRPC trailers: a gRPC caller must prove the calls succeeded otherwise (``data_bytes``, the
    server's own counters)."""
    if h1:
        conns, streams = concurrency, 1
    else:
        conns = max(1, concurrency // 8)
        streams = max(1, concurrency // conns)
    n = max(requests, concurrency)
    with tempfile_path("h2load-", ".log") as log_file:
        argv = [h2load, "-n", str(n), "-c", str(conns), "-m", str(streams), "-d", str(body_file)]
        argv += ["-T", str(timeout_s), "-N", str(timeout_s), f"--log-file={log_file}"]
        argv += ["--h1"] if h1 else []
        for k, v in (headers or {}).items():
            argv += ["-H", f"{k}: {v}"]
        argv.append(url)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BenchError(f"h2load exited with {proc.returncode}: {proc.stderr[-2000:]}")
        rows = [line.split("\t") for line in log_file.read_text().splitlines() if line.strip()]
    out = proc.stdout
    done = _h2load_field(out, r"(\d+) succeeded")
    failed = _h2load_field(out, r"(\d+) failed") + _h2load_field(out, r"(\d+) errored")
    failed += _h2load_field(out, r"(\d+) timeout")
    seconds = _h2load_seconds(out)
    if failed or done != n or len(rows) != n:
        raise BenchError(f"{url}: h2load: {done} of {n} requests succeeded:\n{out[-2000:]}")
    status: dict[int, int] = {}
    for r in rows:
        status[int(r[1])] = status.get(int(r[1]), 0) + 1
    if set(status) != {200}:
        raise BenchError(f"{url}: expected only 200, got statuses {status}")
    lats = sorted(int(r[2]) / 1000.0 for r in rows)
    result = LoadResult(
        requests=n,
        concurrency=concurrency,
        seconds=seconds,
        rps=n / seconds,
        p50_ms=percentile(lats, 50),
        p90_ms=percentile(lats, 90),
        p99_ms=percentile(lats, 99),
        mean_ms=statistics.fmean(lats),
        max_ms=lats[-1],
        status=status,
    )
    return H2loadRun(result, _h2load_field(out, r"\((\d+)\) data"))


@contextlib.contextmanager
def tempfile_path(prefix: str, suffix: str) -> Iterator[Path]:
    """A fresh file path, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _h2load_field(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    if found is None:
        raise BenchError(f"h2load output has no {pattern!r}:\n{text[-2000:]}")
    return int(found.group(1))


def _h2load_seconds(text: str) -> float:
    found = re.search(r"finished in ([0-9.]+)(us|ms|s)\b", text)
    if found is None:
        raise BenchError(f"h2load output has no duration:\n{text[-2000:]}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[found.group(2)]
    return float(found.group(1)) * scale


# ----------------------------------------------------------------------------- tables


def median_result(results: Sequence[LoadResult]) -> LoadResult:
    """Per-field median of repeated runs of the same cell (status counts are added up)."""
    if len(results) == 1:
        return results[0]
    status: dict[int, int] = {}
    for r in results:
        for k, v in r.status.items():
            status[k] = status.get(k, 0) + v

    def med(get: Callable[[LoadResult], float]) -> float:
        return float(statistics.median(get(r) for r in results))

    return LoadResult(
        requests=sum(r.requests for r in results),
        concurrency=results[0].concurrency,
        seconds=sum(r.seconds for r in results),
        rps=med(lambda r: r.rps),
        p50_ms=med(lambda r: r.p50_ms),
        p90_ms=med(lambda r: r.p90_ms),
        p99_ms=med(lambda r: r.p99_ms),
        mean_ms=med(lambda r: r.mean_ms),
        max_ms=max(r.max_ms for r in results),
        status=status,
    )


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A plain-text table; ``align`` has one of ``l``/``r`` per column (default: text left,
    numbers right). Floats are printed as given: format them first."""
    cells = [[str(c) for c in row] for row in rows]
    if align is None:
        align = "".join(
            "r" if rows and isinstance(rows[0][i], int | float) else "l"
            for i in range(len(headers))
        )
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if a == "r" else v.ljust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def print_block(title: str, body: str, file: TextIO | None = None) -> None:
    print(f"\n{title}\n{body}", file=file or sys.stdout, flush=True)


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class Target:
    """A ratio to display with a pass/fail verdict: ``value op bound``."""

    label: str
    value: float
    op: str  # ">=" or "<"
    bound: float
    unit: str = "x"

    @property
    def ok(self) -> bool | None:
        if math.isnan(self.value):
            return None
        return self.value >= self.bound if self.op == ">=" else self.value < self.bound

    def row(self) -> list[str]:
        """label, value, target, verdict (PASS, FAIL, or n/a when the value is missing)."""
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.ok]
        suffix = "x" if self.unit == "x" else f" {self.unit}"
        value = "n/a" if math.isnan(self.value) else f"{self.value:.2f}{suffix}"
        return [self.label, value, f"{self.op} {self.bound:g}{suffix}", verdict]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": None if math.isnan(self.value) else round(self.value, 4),
            "op": self.op,
            "bound": self.bound,
            "unit": self.unit,
            "ok": self.ok,
        }
