"""The routing table: rules compiled once into immutable, fast-to-evaluate objects.

A table is built from the models' ``http`` rules (config file or admin API), and swapped
atomically as a whole; :func:`~modelrouter.routing.decide.decide` only reads it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelrouter.config.schema import ModelSpec, RouteRule, StringMatch

if TYPE_CHECKING:
    from modelrouter.routing.decide import RequestContext

BUCKETS = 10_000
"""Sticky keys hash into this many buckets; a weight share maps to a range of them."""

Matcher = Callable[[str], bool]
Check = Callable[["RequestContext", dict[tuple[str, ...], str | None]], bool]
"""A condition: the request, and the body fields its model's rules use (extracted once)."""


def compile_matcher(m: StringMatch) -> Matcher:
    if m.exact is not None:
        return m.exact.__eq__
    if m.prefix is not None:
        return _startswith(m.prefix)
    assert m.regex is not None
    return _fullmatch(re.compile(m.regex))


def _startswith(prefix: str) -> Matcher:
    def match(value: str) -> bool:
        return value.startswith(prefix)

    return match


def _fullmatch(pattern: re.Pattern[str]) -> Matcher:
    def match(value: str) -> bool:
        return pattern.fullmatch(value) is not None

    return match


def _describe(source: str, key: str, m: StringMatch) -> str:
    kind = "exact" if m.exact is not None else "prefix" if m.prefix is not None else "regex"
    value = m.exact if m.exact is not None else m.prefix if m.prefix is not None else m.regex
    return f"{source} {key} {kind} {value!r}"


def _check(source: str, key: str, m: StringMatch) -> Check:
    """One closure per condition, specialised by where the value comes from and by the kind
    of match: the hot loop of ``decide`` makes one call per condition."""
    test = compile_matcher(m)
    exact, prefix = m.exact, m.prefix
    if source == "header":
        if exact is not None:
            return lambda ctx, f: ctx.headers.get(key) == exact
        if prefix is not None:
            return lambda ctx, f: (v := ctx.headers.get(key)) is not None and v.startswith(prefix)
        return lambda ctx, f: (v := ctx.headers.get(key)) is not None and test(v)
    if source == "without_header":
        return lambda ctx, f: (v := ctx.headers.get(key)) is None or not test(v)
    if source == "query":
        return lambda ctx, f: (v := ctx.query.get(key)) is not None and test(v)
    path = tuple(key.split("."))
    if exact is not None:
        return lambda ctx, f: f[path] == exact
    if prefix is not None:
        return lambda ctx, f: (v := f[path]) is not None and v.startswith(prefix)
    return lambda ctx, f: (v := f[path]) is not None and test(v)


def body_value(body: Mapping[str, Any] | None, path: tuple[str, ...]) -> str | None:
    """The value at a dotted path of a JSON document, as a string; None when absent.

    Exact ``type`` tests first: ``isinstance`` against ``Mapping`` costs more than the rest of
    a condition on the hot path."""
    node: Any = body
    for part in path:
        t = type(node)
        if t is dict or (t is not list and isinstance(node, Mapping)):
            node = node.get(part)
        elif t is list and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    t = type(node)
    if t is str:
        return node  # type: ignore[no-any-return]
    if t is bool:
        return "true" if node else "false"
    if t is int or t is float:
        return str(node)
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    check: Check
    text: str


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    blocks: tuple[tuple[tuple[Check, ...], tuple[str, ...]], ...]
    """OR of blocks, each an AND of checks with their descriptions; empty: always matches."""
    destinations: tuple[str, ...]
    bounds: tuple[int, ...]
    """Cumulative upper bucket bound of each destination: v1 90, v2 10 -> (9000, 10000)."""
    weights: Mapping[str, int]
    sticky_source: str | None
    sticky_key: str | tuple[str, ...] | None
    salt: bytes
    mirrors: tuple[tuple[str, float], ...]
    """(version, percentage 0-100)."""
    timeout: float | None
    attempts: int
    per_try_timeout: float | None
    fallback: tuple[str, ...]
    fault_delay: tuple[float, float] | None
    """(seconds, percentage)."""
    fault_abort: tuple[int, float] | None
    """(HTTP status, percentage)."""

    always_mirrors: tuple[str, ...] | None
    """The mirror destinations when every one is at 100% (no draw needed), else None."""

    def pick(self, bucket: int) -> str:
        return self.destinations[min(bisect_right(self.bounds, bucket), len(self.bounds) - 1)]


@dataclass(frozen=True, slots=True)
class ModelRoutes:
    model: str
    default_version: str
    versions: frozenset[str]
    rules: tuple[CompiledRule, ...]
    body_paths: tuple[tuple[str, ...], ...] = ()
    """Every body field a condition reads, extracted once per request."""


@dataclass(frozen=True, slots=True)
class RoutingTable:
    version: int
    models: Mapping[str, ModelRoutes]


def _path(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def compile_rule(model: str, rule: RouteRule) -> CompiledRule:
    blocks = []
    for block in rule.match:
        conds: list[Condition] = []
        for name, m in block.headers.items():
            key = name.lower()
            conds.append(Condition(_check("header", key, m), _describe("header", key, m)))
        for name, m in block.withoutHeaders.items():
            key = name.lower()
            conds.append(
                Condition(_check("without_header", key, m), "not " + _describe("header", key, m))
            )
        for name, m in block.queryParams.items():
            conds.append(Condition(_check("query", name, m), _describe("query", name, m)))
        for name, m in block.body.items():
            conds.append(Condition(_check("body", name, m), _describe("body", name, m)))
        blocks.append((tuple(c.check for c in conds), tuple(c.text for c in conds)))
    weights = [d.weight if d.weight is not None else 100 for d in rule.route]
    total = sum(weights)
    bounds = []
    acc = 0
    for w in weights:
        acc += w
        bounds.append(round(acc * BUCKETS / total))
    sticky_source: str | None = None
    sticky_key: str | tuple[str, ...] | None = None
    if rule.sticky is not None:
        s = rule.sticky
        if s.header:
            sticky_source, sticky_key = "header", s.header.lower()
        elif s.cookie:
            sticky_source, sticky_key = "cookie", s.cookie
        elif s.queryParam:
            sticky_source, sticky_key = "query", s.queryParam
        elif s.body:
            sticky_source, sticky_key = "body", _path(s.body)
    mirrors: list[tuple[str, float]] = []
    if rule.mirror is not None:
        pct = rule.mirrorPercentage.value if rule.mirrorPercentage is not None else 100.0
        mirrors.append((rule.mirror.destination, pct))
    mirrors.extend((m.destination, m.percentage.value) for m in rule.mirrors)
    fault = rule.fault
    return CompiledRule(
        name=rule.name,
        blocks=tuple(blocks),
        destinations=tuple(d.destination for d in rule.route),
        bounds=tuple(bounds),
        weights={d.destination: w for d, w in zip(rule.route, weights, strict=True)},
        sticky_source=sticky_source,
        sticky_key=sticky_key,
        salt=(rule.salt or f"{model}/{rule.name}").encode(),
        mirrors=tuple(mirrors),
        always_mirrors=tuple(v for v, pct in mirrors)
        if all(p >= 100 for _, p in mirrors)
        else None,
        timeout=rule.timeout,
        attempts=1 + (rule.retries.attempts if rule.retries else 0),
        per_try_timeout=rule.retries.perTryTimeout if rule.retries else None,
        fallback=tuple(rule.fallback),
        fault_delay=(fault.delay.fixedDelay, fault.delay.percentage.value)
        if fault and fault.delay
        else None,
        fault_abort=(fault.abort.httpStatus, fault.abort.percentage.value)
        if fault and fault.abort
        else None,
    )


def compile_model(model: str, spec: ModelSpec) -> ModelRoutes:
    paths = {_path(k) for r in spec.http for b in r.match for k in b.body}
    return ModelRoutes(
        model=model,
        default_version=spec.default_version,
        versions=frozenset(spec.versions),
        rules=tuple(compile_rule(model, r) for r in spec.http),
        body_paths=tuple(sorted(paths)),
    )


def compile_table(models: Mapping[str, ModelSpec], version: int = 0) -> RoutingTable:
    return RoutingTable(version, {name: compile_model(name, spec) for name, spec in models.items()})


def rules_document(spec: ModelSpec) -> list[dict[str, Any]]:
    """The model's rules as JSON, in the shape the config file and the admin API use."""
    return [r.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for r in spec.http]
