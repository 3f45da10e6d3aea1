"""The routing table: rules compiled once into immutable, fast-to-evaluate objects.

A table is built from the models' ``http`` rules (config file or admin API), and swapped
atomically as a whole; :func:`~modelrouter.routing.decide.decide` only reads it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelrouter.config.regex import fullmatcher
from modelrouter.config.schema import MatchBlock, ModelSpec, RouteRule, StringMatch

if TYPE_CHECKING:
    from modelrouter.routing.decide import RequestContext

BUCKETS = 10_000
"""Sticky keys hash into this many buckets; a weight share maps to a range of them."""

MatchFn = Callable[["RequestContext", dict[tuple[str, ...], str | None]], tuple[int, int] | None]
"""A model's whole rule chain: (request, body fields) -> (rule index, block index) of the first
match (block -1: a rule without ``match``), or None."""


def _describe(source: str, key: str, m: StringMatch) -> str:
    kind = "exact" if m.exact is not None else "prefix" if m.prefix is not None else "regex"
    value = m.exact if m.exact is not None else m.prefix if m.prefix is not None else m.regex
    return f"{source} {key} {kind} {value!r}"


def _path(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


class _MatchCompiler:
    """Generates one Python function for a model's rule chain.

    A chain of closures costs a call per condition (18 calls, ~8 µs, for ten rules of two
    blocks); one generated function with the conditions inline costs a fraction of that. User
    values never appear in the source: every key, value and compiled regex is a constant in
    ``C`` referenced by index, so no rule can inject code.
    """

    def __init__(self) -> None:
        self.consts: list[Any] = []

    def const(self, value: Any) -> str:
        self.consts.append(value)
        return f"C[{len(self.consts) - 1}]"

    def test(self, m: StringMatch) -> str:
        """An expression true when the string ``x`` matches ``m``."""
        if m.exact is not None:
            return f"x == {self.const(m.exact)}"
        if m.prefix is not None:
            return f"x.startswith({self.const(m.prefix)})"
        assert m.regex is not None
        return f"{self.const(fullmatcher(m.regex))}(x)"

    def condition(self, source: str, m: StringMatch, negate: bool = False) -> str:
        if negate:
            return f"((x := {source}) is None or not ({self.test(m)}))"
        if m.exact is not None:
            return f"{source} == {self.const(m.exact)}"
        return f"((x := {source}) is not None and {self.test(m)})"

    def block(self, block: MatchBlock) -> str:
        conds = [
            self.condition(f"h.get({self.const(k.lower())})", m) for k, m in block.headers.items()
        ]
        conds += [
            self.condition(f"h.get({self.const(k.lower())})", m, negate=True)
            for k, m in block.withoutHeaders.items()
        ]
        conds += [
            self.condition(f"q.get({self.const(k)})", m) for k, m in block.queryParams.items()
        ]
        conds += [self.condition(f"f[{self.const(_path(k))}]", m) for k, m in block.body.items()]
        return " and ".join(conds) or "True"

    def compile(self, rules: Sequence[RouteRule]) -> MatchFn:
        lines = ["def match(ctx, f):", "    h = ctx.headers", "    q = ctx.query"]
        for ri, rule in enumerate(rules):
            if not rule.match:
                lines.append(f"    return ({ri}, -1)")
                break
            for bi, block in enumerate(rule.match):
                lines.append(f"    if {self.block(block)}:")
                lines.append(f"        return ({ri}, {bi})")
        lines.append("    return None")
        namespace: dict[str, Any] = {"C": tuple(self.consts)}
        exec(compile("\n".join(lines), "<modelrouter routing rules>", "exec"), namespace)
        fn: MatchFn = namespace["match"]
        return fn


def compile_match(rules: Sequence[RouteRule]) -> MatchFn:
    return _MatchCompiler().compile(rules)


def body_value(body: Mapping[str, Any] | None, path: tuple[str, ...]) -> str | None:
    """The value at a dotted path of a JSON document, as a string; None when absent.

    Exact ``type`` tests first: ``isinstance`` against ``Mapping`` costs more than the rest of
    a condition on the hot path. ``isdecimal``, not ``isdigit``: every decimal character is
    one ``int`` reads (``²`` is a digit but no number), so no path can raise here."""
    node: Any = body
    for part in path:
        t = type(node)
        if t is dict or (t is not list and isinstance(node, Mapping)):
            node = node.get(part)
        elif t is list and part.isdecimal() and int(part) < len(node):
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
class CompiledRule:
    name: str
    block_texts: tuple[tuple[str, ...], ...]
    """The conditions of each ``match`` block, in words, for the decision's ``matched``."""
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
    mirrors_routed: bool = False
    """A mirror is also a destination ("shadow the canary"): it is left out of the mirrors of
    the requests the split sends to it."""

    def pick(self, bucket: int) -> str:
        return self.destinations[min(bisect_right(self.bounds, bucket), len(self.bounds) - 1)]


@dataclass(frozen=True, slots=True)
class ModelRoutes:
    model: str
    default_version: str
    versions: frozenset[str]
    rules: tuple[CompiledRule, ...]
    match: MatchFn
    body_paths: tuple[tuple[str, ...], ...] = ()
    """Every body field a condition reads, extracted once per request."""


@dataclass(frozen=True, slots=True)
class RoutingTable:
    version: int
    models: Mapping[str, ModelRoutes]


def compile_rule(model: str, rule: RouteRule) -> CompiledRule:
    texts = []
    for block in rule.match:
        text = [_describe("header", k.lower(), m) for k, m in block.headers.items()]
        text += [
            "not " + _describe("header", k.lower(), m) for k, m in block.withoutHeaders.items()
        ]
        text += [_describe("query", k, m) for k, m in block.queryParams.items()]
        text += [_describe("body", k, m) for k, m in block.body.items()]
        texts.append(tuple(text))
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
        block_texts=tuple(texts),
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
        mirrors_routed=any(v in {d.destination for d in rule.route} for v, _ in mirrors),
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
        match=compile_match(spec.http),
        body_paths=tuple(sorted(paths)),
    )


def compile_table(models: Mapping[str, ModelSpec], version: int = 0) -> RoutingTable:
    return RoutingTable(version, {name: compile_model(name, spec) for name, spec in models.items()})


def rules_document(spec: ModelSpec) -> list[dict[str, Any]]:
    """The model's rules as JSON, in the shape the config file and the admin API use."""
    return [r.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for r in spec.http]


def routed_versions(routes: ModelRoutes) -> frozenset[str]:
    """The versions a request to the model can be served by: each reachable rule's
    destinations with a positive weight and its fallbacks, and the default version when some
    request matches no rule. Mirror-only versions are not among them: a shadow never answers."""
    out: set[str] = set()
    for rule in routes.rules:
        out.update(v for v in rule.destinations if rule.weights.get(v, 0) > 0)
        out.update(rule.fallback)
        if not rule.block_texts:
            return frozenset(out)  # a rule without match: the rules after it are unreachable
    out.add(routes.default_version)
    return frozenset(out)
