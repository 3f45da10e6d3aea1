"""``modelrouter traffic``: requests and simulated feedback, so a rollout has something to judge.

Rows come from the example's data generator (``examples/build_models.py``: ``churn_data``), so
the ground truth of every row is known; each request goes to ``/v2/models/MODEL/infer`` with an
``x-user-id`` (sticky splits), and its ``x-request-id`` is then posted to
``/api/v1/feedback`` with the truth (and, with ``reward``, 1 for a right answer, 0 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np

from modelrouter.errors import ConfigError

DataFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def load_generator(path: Path) -> DataFn:
    """``churn_data(n, seed)`` from the example's build script."""
    if not path.is_file():
        raise ConfigError(f"{path}: no data generator here (run from the repository's root)")
    spec = importlib.util.spec_from_file_location("modelrouter_example_data", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn: DataFn = module.churn_data
    return fn


@dataclass
class TrafficStats:
    requests: int = 0
    errors: int = 0
    feedback: int = 0
    feedback_errors: int = 0
    last_error: str = ""
    versions: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        split = ", ".join(f"{v} {n}" for v, n in sorted(self.versions.items()))
        return f"{self.requests} requests ({self.errors} errors), {self.feedback} feedback; {split}"


async def send_traffic(
    client: httpx.AsyncClient,
    data: DataFn,
    *,
    model: str = "churn",
    token: str | None = None,
    duration: float | None = None,
    requests: int | None = None,
    rows: int = 1,
    concurrency: int = 4,
    users: int = 1000,
    feedback: bool = True,
    reward: bool = False,
    seed: int = 0,
    rate: float | None = None,
    stats: TrafficStats | None = None,
) -> TrafficStats:
    """Send requests until ``duration`` seconds pass or ``requests`` were sent (``client``
    has the gateway's base URL); each carries ``rows`` rows."""
    stats = stats or TrafficStats()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    end = None if duration is None else time.monotonic() + duration
    counter = iter(range(10**12))
    delay = 0.0 if not rate else concurrency / rate

    def more(i: int) -> bool:
        if requests is not None and i >= requests:
            return False
        return end is None or time.monotonic() < end

    async def worker(w: int) -> None:
        while more(i := next(counter)):
            x, y = data(rows, seed * 1_000_003 + i)
            user = f"user-{(seed * 7919 + i * 31) % users}"
            body = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": list(x.shape),
                        "datatype": "FP64",
                        "data": x.tolist(),
                    }
                ],
                "outputs": [{"name": "predict"}],
            }
            try:
                resp = await client.post(
                    f"/v2/models/{model}/infer", json=body, headers={"x-user-id": user}
                )
            except httpx.HTTPError:
                stats.errors += 1
                continue
            stats.requests += 1
            if resp.status_code != 200:
                stats.errors += 1
                continue
            stats.versions[resp.headers.get("x-model-version", "?")] += 1
            if feedback:
                predicted = resp.json()["outputs"][0]["data"]
                doc: dict[str, Any] = {
                    "request_id": resp.headers["x-request-id"],
                    "truth": [int(v) for v in y],
                }
                if reward:
                    doc["reward"] = float(np.mean(np.asarray(predicted) == y))
                fb = await client.post("/api/v1/feedback", json=doc, headers=headers)
                if fb.status_code < 300:
                    stats.feedback += 1
                else:
                    stats.feedback_errors += 1
                    stats.last_error = f"feedback {fb.status_code}: {fb.text[:200]}"
            if delay:
                await asyncio.sleep(delay)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return stats


@click.command()
@click.option("--url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--token", envvar="MODELROUTER_ADMIN_TOKEN", help="For feedback (admin token).")
@click.option("--model", default="churn", show_default=True)
@click.option("--duration", type=float, default=None, help="Seconds to run (default: forever).")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Requests per second.")
@click.option(
    "--rows", type=int, default=5, show_default=True, help="Rows per request (at most 16)."
)
@click.option("--no-feedback", is_flag=True, help="Send requests only.")
@click.option("--reward", is_flag=True, help="Also send a reward (1 right, 0 wrong).")
@click.option(
    "--generator",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("examples/build_models.py"),
    show_default=True,
)
@click.option("--seed", type=int, default=1, show_default=True)
def traffic(
    url: str,
    token: str | None,
    model: str,
    duration: float | None,
    rate: float,
    rows: int,
    no_feedback: bool,
    reward: bool,
    generator: Path,
    seed: int,
) -> None:
    """Send requests and simulated feedback.

    Requests carry an x-user-id; feedback gives the ground truth of each row."""
    try:
        data = load_generator(generator)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None

    async def main() -> TrafficStats:
        stats = TrafficStats()

        async def report() -> None:
            while True:
                await asyncio.sleep(5)
                click.echo(stats.line())

        reporter = asyncio.create_task(report())
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                return await send_traffic(
                    client,
                    data,
                    model=model,
                    token=token,
                    duration=duration,
                    rows=rows,
                    feedback=not no_feedback,
                    reward=reward,
                    seed=seed,
                    rate=rate,
                    stats=stats,
                )
        finally:
            reporter.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        click.echo(asyncio.run(main()).line())
