"""``modelrouter import FILE...``: KServe, Istio, Flagger and Seldon manifests as one config.

InferenceServices give versions; a VirtualService that splits between InferenceServices makes
them versions of one model (named after it) with its routes as rules; a DestinationRule's
consistent hash becomes the sticky key of that model's weighted rules; a Flagger Canary a
rollout; a Seldon Core 2 Experiment a weighted rule over its candidates. The result is
validated as a modelrouter config. Everything not carried over is a note, never dropped
silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelrouter.config.loader import parse_config
from modelrouter.errors import ConfigError
from modelrouter.export import import_flagger, import_istio, import_kserve, import_seldon
from modelrouter.export.draft import Draft, Source, combine, safe_name
from modelrouter.export.names import isvc_of_host
from modelrouter.export.yamlio import dump

KINDS = {
    ("serving.kserve.io", "InferenceService"): "isvc",
    ("networking.istio.io", "VirtualService"): "vs",
    ("networking.istio.io", "DestinationRule"): "dr",
    ("flagger.app", "Canary"): "canary",
    ("flagger.app", "MetricTemplate"): "template",
    ("mlops.seldon.io", "Experiment"): "experiment",
    ("mlops.seldon.io", "Model"): "seldon-model",
}


@dataclass(slots=True)
class ImportResult:
    config: dict[str, Any]
    text: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Doc:
    kind: str
    origin: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name") or "unnamed")


def read_documents(paths: Iterable[Path], notes: list[str]) -> list[_Doc]:
    out = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            raw = list(yaml.safe_load_all(text))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        items: list[Any] = []
        for doc in raw:
            if isinstance(doc, dict) and doc.get("kind") == "List":
                items += doc.get("items") or []
            elif doc is not None:
                items.append(doc)
        for doc in items:
            if not isinstance(doc, dict) or "kind" not in doc:
                notes.append(f"{path}: a document that is not a Kubernetes object is skipped")
                continue
            group = str(doc.get("apiVersion", "")).split("/", 1)[0]
            kind = KINDS.get((group, str(doc["kind"])))
            meta = doc.get("metadata") or {}
            name = meta.get("name", "?") if isinstance(meta, dict) else "?"
            origin = f"{path.name} {doc['kind']}/{name}"
            for part in ("metadata", "spec"):
                if kind is not None and not isinstance(doc.get(part) or {}, dict):
                    raise ConfigError(f"{origin}: {part} must be a mapping")
            if kind is None:
                notes.append(f"{origin}: {doc.get('apiVersion')} {doc['kind']} is not imported")
                continue
            out.append(_Doc(kind, origin, doc))
    return out


@contextlib.contextmanager
def _reading(origin: str) -> Iterator[None]:
    """A manifest of the wrong shape (a list where a mapping belongs, a weight that is not a
    number) is refused, naming it, instead of failing with a traceback."""
    try:
        yield
    except ConfigError:
        raise
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise ConfigError(
            f"{origin}: not a well-formed manifest ({type(exc).__name__}: {exc})"
        ) from None


def import_manifests(paths: Iterable[Path]) -> ImportResult:
    draft = Draft()
    docs = read_documents(paths, draft.notes)
    sources: dict[str, list[Source]] = {}
    for d in docs:
        if d.kind == "isvc":
            with _reading(d.origin):
                sources[d.name] = import_kserve.isvc_sources(d.body, d.origin, draft.notes)
    batchers: dict[str, dict[str, Any]] = {}
    for d in docs:
        if d.kind == "vs":
            with _reading(d.origin):
                _virtual_service(d, draft, sources, batchers)
    for name, srcs in sources.items():
        if name not in draft.where:
            with _reading(f"InferenceService/{name}"):
                _standalone(name, srcs, docs, draft, batchers)
    for model, batcher in batchers.items():
        if batcher:
            draft.models[model]["batcher"] = batcher
    seldon: dict[str, dict[str, Any]] = {}
    templates: dict[str, str] = {}
    for d in docs:
        with _reading(d.origin):
            if d.kind == "dr":
                _destination_rule(d, draft)
            elif d.kind == "seldon-model":
                spec = import_seldon.seldon_model_spec(d.body)
                if spec is None:
                    draft.note(d.origin, "no storageUri with a format modelrouter runs")
                else:
                    seldon[d.name] = spec
            elif d.kind == "template":
                templates[d.name] = str((d.body.get("spec") or {}).get("query", ""))
    for d in docs:
        with _reading(d.origin):
            if d.kind == "experiment":
                import_seldon.import_experiment(d.body, d.origin, draft, seldon)
            elif d.kind == "canary":
                import_flagger.import_canary(d.body, d.origin, draft, templates)
    config = draft.config()
    if not config["models"]:
        raise ConfigError("no InferenceService, VirtualService or Experiment to import")
    text = dump(config)
    try:
        parse_config(text)
    except ConfigError as exc:
        raise ConfigError(f"the imported config does not validate: {exc.message}") from None
    return ImportResult(config, text, draft.notes)


def _version_names(isvc: str, srcs: list[Source], prefix: str) -> list[str]:
    base = (
        isvc[len(prefix) :]
        if prefix and isvc.startswith(prefix) and len(isvc) > len(prefix)
        else isvc
    )
    if len(srcs) == 1:
        return [safe_name(base)]
    return [safe_name(base if i == 0 else f"{base}-{s.version}") for i, s in enumerate(srcs)]


def _place_isvc(
    model: str,
    isvc: str,
    srcs: list[Source],
    draft: Draft,
    batchers: dict[str, dict[str, Any]],
    names: list[str],
) -> list[tuple[str, int]]:
    placed = []
    for i, (src, vname) in enumerate(zip(srcs, names, strict=True)):
        got = draft.place(model, vname, src.spec, isvc if i == 0 else f"{isvc}#{i}")
        placed.append((got, src.percent))
        if src.batcher:
            batchers.setdefault(model, src.batcher)
    return placed


def _virtual_service(
    d: _Doc,
    draft: Draft,
    sources: dict[str, list[Source]],
    batchers: dict[str, dict[str, Any]],
) -> None:
    spec = d.body.get("spec") or {}
    model = safe_name(d.name)
    prefix = f"{d.name}-"
    for key in sorted(set(spec) - {"hosts", "http", "gateways"}):
        draft.note(d.origin, f"spec.{key}: not carried (modelrouter routes HTTP)")
    if spec.get("gateways"):
        draft.note(d.origin, "spec.gateways: the ingress is left to the cluster")
    addresses: dict[str, list[tuple[str, int]]] = {}

    def versions_at(host: str, port: Any) -> list[tuple[str, int]]:
        isvc = isvc_of_host(host)
        if isvc in addresses:
            return addresses[isvc]
        if isvc in sources and isvc not in draft.where:
            names = _version_names(isvc, sources[isvc], prefix)
            addresses[isvc] = _place_isvc(model, isvc, sources[isvc], draft, batchers, names)
        elif isvc in draft.where:
            other, version = draft.where[isvc]
            if other != model:
                draft.note(d.origin, f"{host} is already version {version} of model {other}")
            addresses[isvc] = [(version, 100)]
        else:
            url = f"http://{host}" + (f":{port}" if port else "")
            draft.note(
                d.origin,
                f"{host} is no InferenceService among the files: a remote version at {url}"
                f" (remoteName {model}; check the name its server knows)",
            )
            v = draft.place(model, safe_name(isvc), {"endpoint": url, "remoteName": model}, isvc)
            addresses[isvc] = [(v, 100)]
        return addresses[isvc]

    # the versions in the order of their InferenceServices (the first one is the default)
    named = {
        isvc_of_host(str((dst.get("destination") or {}).get("host")))
        for route in spec.get("http") or []
        for dst in route.get("route") or []
    }
    for isvc in sources:
        if isvc in named:
            versions_at(isvc, None)
    rules: list[dict[str, Any]] = []
    http = spec.get("http") or []
    if http and http[-1].get("match"):
        draft.note(
            d.origin,
            "Istio answers 404 when no route matches; modelrouter sends those requests to the"
            " model's first version",
        )
    for i, route in enumerate(http):
        name = safe_name(str(route.get("name") or f"route-{i}"))
        while any(r["name"] == name for r in rules):
            name = f"{name}-{i}"
        origin = f"{d.origin} spec.http.{i}"
        if "route" not in route:
            draft.note(origin, "a route without destinations (redirect, delegate) is not carried")
            continue
        rule: dict[str, Any] = {"name": name}
        if route.get("match"):
            rule["match"] = import_istio.match_blocks(route["match"], origin, draft.notes)
        dests: list[tuple[str, int]] = []
        for dst in route["route"]:
            target = dst.get("destination") or {}
            if "subset" in target:
                draft.note(
                    origin,
                    f"subset {target['subset']} of {target.get('host')}: modelrouter addresses"
                    " each version on its own; the subset's version gets the host's address",
                )
            weight = int(dst.get("weight", 100 if len(route["route"]) == 1 else 0))
            for version, share in versions_at(
                str(target.get("host")), (target.get("port") or {}).get("number")
            ):
                dests.append((version, weight * share))
            if "headers" in dst:
                draft.note(origin, "destination headers are not carried")
        weights = combine([w for _, w in dests])
        if len(dests) == 1:
            rule["route"] = [{"destination": dests[0][0]}]
        else:
            rule["route"] = [
                {"destination": v, "weight": w} for (v, _), w in zip(dests, weights, strict=True)
            ]
        mirror = route.get("mirror")
        if isinstance(mirror, dict) and "host" in mirror:
            (mv, _), *_ = versions_at(str(mirror["host"]), (mirror.get("port") or {}).get("number"))
            rule["mirror"] = {"destination": mv}
            pct = route.get("mirrorPercentage", route.get("mirrorPercent"))
            if pct is not None:
                rule["mirrorPercentage"] = {"value": import_istio.percent(pct)}
        mirrors = []
        for m in route.get("mirrors") or []:
            host = (m.get("destination") or {}).get("host")
            if host:
                (mv, _), *_ = versions_at(str(host), None)
                mirrors.append(
                    {
                        "destination": mv,
                        "percentage": {"value": import_istio.percent(m.get("percentage", 100))},
                    }
                )
        if mirrors:
            rule["mirrors"] = mirrors
        rule.update(import_istio.route_extras(route, origin, draft.notes))
        rules.append(rule)
    if rules:
        draft.model(model).setdefault("http", []).extend(rules)
    for h in spec.get("hosts") or []:
        draft.note(
            d.origin,
            f"clients called {h}; through the gateway they call /v2/models/{model}/infer",
        )


def _standalone(
    name: str,
    srcs: list[Source],
    docs: list[_Doc],
    draft: Draft,
    batchers: dict[str, dict[str, Any]],
) -> None:
    """An InferenceService no VirtualService names: a model of its own (or a version of the
    model its ``modelrouter.io/model`` annotation names), canaries as a weighted rule."""
    body = next(d.body for d in docs if d.kind == "isvc" and d.name == name)
    annotations = body.get("metadata", {}).get("annotations", {}) or {}
    model = safe_name(str(annotations.get("modelrouter.io/model") or name))
    main = annotations.get("modelrouter.io/version")
    names = [safe_name(str(main or ("primary" if len(srcs) > 1 else "v1")))]
    names += [safe_name(s.version) for s in srcs[1:]]
    placed = _place_isvc(model, name, srcs, draft, batchers, names)
    if len(placed) > 1:
        weights = combine([p for _, p in placed])
        draft.model(model).setdefault("http", []).append(
            {
                "name": "canary",
                "route": [
                    {"destination": v, "weight": w}
                    for (v, _), w in zip(placed, weights, strict=True)
                ],
            }
        )


def _destination_rule(d: _Doc, draft: Draft) -> None:
    spec = d.body.get("spec") or {}
    host = str(spec.get("host", ""))
    placed = draft.where.get(isvc_of_host(host))
    sticky = import_istio.sticky_of(d.body, d.origin, draft.notes)
    if spec.get("subsets"):
        draft.note(d.origin, "spec.subsets: versions are addressed one by one, not by subset")
    if sticky is None:
        return
    if placed is None:
        draft.note(d.origin, f"{host} is no version among the files: its sticky key is not used")
        return
    model, _ = placed
    changed = False
    for rule in draft.models[model].get("http", []):
        if len(rule["route"]) > 1 and "sticky" not in rule:
            rule["sticky"] = dict(sticky)
            changed = True
    if changed:
        draft.note(
            d.origin,
            f"the consistent hash pinned pods; modelrouter keeps each {next(iter(sticky.values()))}"
            " on one version (monotone cohorts) instead",
        )
