"""``/metrics`` of a gateway run as N worker processes: the sum over all of them.

A scrape through the shared port reaches one worker at random; each must answer for all.
Every worker writes a snapshot of its registry to a file of its slot in a folder the
supervisor made (``PUBLISH_INTERVAL``, and once more when it stops), and a scrape merges its
own fresh samples with the other slots' files: counters and histograms are summed sample by
sample; a gauge (load state, resident bytes, rollout phase) is the answering worker's own, or
the first other worker's when it has none (the rollout gauges are set by the one worker that
holds the rollout's lease).

Chosen over prometheus_client's multiprocess mode, which replaces every metric by mmap-backed
values with a lock per update (the hot path counts in plain Python, see
:class:`~modelrouter.telemetry.metrics.RequestStats`) and knows nothing of custom collectors.
The price is that other workers' counts may lag by up to ``PUBLISH_INTERVAL``. A worker that
is restarted in a slot carries on from that slot's last snapshot, so the sums never go back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from modelrouter.telemetry.metrics import render

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 1.0
"""Seconds between two snapshots of a worker's metrics."""

SUMMED = frozenset({"counter", "histogram", "summary"})

Family = dict[str, Any]
"""``{"name", "type", "doc", "samples": [[sample name, {labels}, value], ...]}``."""


def snapshot(registry: CollectorRegistry) -> list[Family]:
    """Every family of ``registry`` as plain data (``_created`` samples left out: a sum of
    creation times means nothing)."""
    out: list[Family] = []
    for metric in registry.collect():
        samples = [
            [s.name, dict(s.labels), s.value]
            for s in metric.samples
            if not s.name.endswith("_created")
        ]
        out.append(
            {
                "name": metric.name,
                "type": metric.type,
                "doc": metric.documentation,
                "samples": samples,
            }
        )
    return out


def read_snapshot(path: Path) -> list[Family]:
    """A slot's snapshot; nothing when the file is missing or half written."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    return doc if isinstance(doc, list) else []


def _key(sample: list[Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample[0], tuple(sorted(sample[1].items()))


def merge(own: list[Family], others: Iterable[list[Family]]) -> list[Family]:
    """``own`` with ``others``: summed families added sample by sample, gauges kept from the
    first snapshot that has samples for them (``own`` first)."""
    families: dict[str, Family] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
    for snap in (own, *others):
        for fam in snap:
            name = fam["name"]
            found = families.get(name)
            if found is None:
                found = families[name] = {**fam, "samples": []}
                sums[name] = {}
            if found["type"] in SUMMED:
                acc = sums[name]
                for s in fam["samples"]:
                    k = _key(s)
                    if k in acc:
                        acc[k][2] += s[2]
                    else:
                        acc[k] = [s[0], s[1], s[2]]
            elif not found["samples"]:
                found["samples"] = list(fam["samples"])
    for name, acc in sums.items():
        if families[name]["type"] in SUMMED:
            families[name]["samples"] = list(acc.values())
    return list(families.values())


class _Frozen(Collector):
    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for fam in self.families:
            metric = Metric(fam["name"], fam["doc"], fam["type"])
            for name, labels, value in fam["samples"]:
                metric.add_sample(name, labels, value)
            yield metric

    def describe(self) -> Iterable[Metric]:
        return []


def exposition(families: list[Family]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Frozen(families))
    return render(registry)


class WorkerMetrics:
    """One worker's side: publish its snapshot, and render the sum of all workers."""

    def __init__(self, registry: CollectorRegistry, directory: Path, slot: int) -> None:
        self.registry = registry
        self.directory = directory
        self.slot = slot
        self.path = directory / f"slot-{slot}.json"
        # a worker restarted in this slot carries on from the last counts of the one before
        self.carried = [f for f in read_snapshot(self.path) if f["type"] in SUMMED]

    def own(self) -> list[Family]:
        fresh = snapshot(self.registry)
        return merge(fresh, [self.carried]) if self.carried else fresh

    def publish(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(self.own()))
        os.replace(tmp, self.path)  # readers see the old file or the new, never half of one

    def others(self) -> list[list[Family]]:
        out = []
        for path in sorted(self.directory.glob("slot-*.json")):
            if path != self.path:
                out.append(read_snapshot(path))
        return out

    def render(self) -> bytes:
        return exposition(merge(self.own(), self.others()))

    async def run(self, interval: float = PUBLISH_INTERVAL) -> None:
        """Publish every ``interval`` seconds until cancelled, and once more then."""
        try:
            while True:
                try:
                    self.publish()
                except OSError as exc:
                    log.warning("worker metrics: cannot write %s: %s", self.path, exc)
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(OSError):
                self.publish()
