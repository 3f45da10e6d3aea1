"""``decide(table, model, context) -> Decision``: the routing decision, a pure function.

No I/O, no clock, no randomness but the ``rand`` the context carries. First matching rule wins;
with a sticky key, ``bucket = hash(salt, key) mod 10000`` picks the destination whose cumulative
weight range holds the bucket, so raising a canary's weight only moves users onto it (the
canary's range grows downward into the primary's; nobody leaves the canary).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
from types import MappingProxyType
from typing import Any

from modelrouter.errors import ModelNotFound
from modelrouter.routing.table import (
    BUCKETS,
    CompiledRule,
    ModelRoutes,
    RoutingTable,
    body_value,
)

log = logging.getLogger(__name__)

_EMPTY_WEIGHTS: Mapping[str, int] = MappingProxyType({})


@dataclass(slots=True)
class RequestContext:
    """What a rule can look at. Header names are lower-case."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    rand: Callable[[], float] = field(default=random.random)
    """Uniform draws in [0, 1) for key-less splits, mirror and fault percentages."""


@dataclass(slots=True)
class Decision:
    """Where one request goes and why. Read-only by convention (not frozen: a frozen dataclass
    costs a microsecond more to build, on every request). The rule's static settings
    (weights, fallback, timeout, retries) are reached through ``rule``."""

    model: str
    version: str
    rule: CompiledRule | None
    matched: tuple[str, ...]
    bucket: int | None
    sticky: bool
    mirrors: tuple[str, ...]
    delay: float | None
    abort: int | None
    table_version: int

    @property
    def rule_name(self) -> str | None:
        return self.rule.name if self.rule is not None else None

    @property
    def weights(self) -> Mapping[str, int]:
        return self.rule.weights if self.rule is not None else _EMPTY_WEIGHTS

    @property
    def fallback(self) -> tuple[str, ...]:
        return self.rule.fallback if self.rule is not None else ()

    @property
    def timeout(self) -> float | None:
        return self.rule.timeout if self.rule is not None else None

    @property
    def attempts(self) -> int:
        return self.rule.attempts if self.rule is not None else 1

    @property
    def per_try_timeout(self) -> float | None:
        return self.rule.per_try_timeout if self.rule is not None else None


@lru_cache(maxsize=65536)
def sticky_bucket(salt: bytes, key: str) -> int:
    """Stable across processes and restarts (unlike ``hash()``), uniform over the buckets.
    Cached: the same users come back, and a hit costs a tenth of the hash."""
    digest = blake2b(salt + b"\0" + key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _value(ctx: RequestContext, source: str, key: Any) -> str | None:
    if source == "header":
        return ctx.headers.get(key)
    if source == "query":
        return ctx.query.get(key)
    if source == "cookie":
        return ctx.cookies.get(key)
    return body_value(ctx.body, key)


_NO_FIELDS: dict[tuple[str, ...], str | None] = {}


def fields_of(
    body: Mapping[str, Any] | None, paths: tuple[tuple[str, ...], ...]
) -> dict[tuple[str, ...], str | None]:
    """The body fields a model's rules read, each extracted once per request (read-only)."""
    return {p: body_value(body, p) for p in paths} if paths else _NO_FIELDS


_failed_tables: set[tuple[str, int]] = set()
"""(model, id of its routes) whose rules raised, so each is logged once (bounded by the
number of tables ever built with a faulty rule, which validation makes none)."""


def _match(routes: ModelRoutes, ctx: RequestContext) -> tuple[int, int] | None:
    """The first matching (rule, block). Conditions are validated when written and cannot
    raise; should one ever do, the request is routed as if no rule matched (the default
    version), never failed, and the error is logged once per model and table."""
    try:
        return routes.match(ctx, fields_of(ctx.body, routes.body_paths))
    except Exception:
        key = (routes.model, id(routes))
        if key not in _failed_tables:
            _failed_tables.add(key)
            log.exception("routing rules of model %s raised; routing to its default", routes.model)
        return None


def decide(table: RoutingTable, model: str, ctx: RequestContext) -> Decision:
    routes = table.models.get(model)
    if routes is None:
        raise ModelNotFound(model)
    hit = _match(routes, ctx) if routes.rules else None
    if hit is not None:
        rule = routes.rules[hit[0]]
        matched = rule.block_texts[hit[1]] if hit[1] >= 0 else ()
        key = None
        source = rule.sticky_source
        if source == "header":
            key = ctx.headers.get(rule.sticky_key)  # type: ignore[arg-type]
        elif source is not None:
            key = _value(ctx, source, rule.sticky_key)
        if len(rule.destinations) == 1:
            bucket = None
            version = rule.destinations[0]
        else:
            bucket = sticky_bucket(rule.salt, key) if key else int(ctx.rand() * BUCKETS)
            version = rule.pick(bucket)
        mirrors = rule.always_mirrors
        if mirrors is None:
            mirrors = tuple(v for v, pct in rule.mirrors if ctx.rand() * 100 < pct)
        if rule.mirrors_routed and version in mirrors:
            mirrors = tuple(v for v in mirrors if v != version)
        delay = abort = None
        if rule.fault_delay is not None:
            seconds, pct = rule.fault_delay
            if pct >= 100 or ctx.rand() * 100 < pct:
                delay = seconds
        if rule.fault_abort is not None:
            status, pct = rule.fault_abort
            if pct >= 100 or ctx.rand() * 100 < pct:
                abort = status
        return Decision(
            model, version, rule, matched, bucket, bool(key), mirrors, delay, abort, table.version
        )
    return Decision(
        model, routes.default_version, None, (), None, False, (), None, None, table.version
    )


def pinned(table: RoutingTable, model: str, version: str) -> Decision:
    """The decision for a call that names its version: no rule, no mirror, no fallback."""
    return Decision(model, version, None, (), None, False, (), None, None, table.version)
