"""Istio VirtualService routes as modelrouter rules, DestinationRule hashes as sticky keys."""

from __future__ import annotations

from typing import Any

from modelrouter.config.durations import parse_duration

MATCH_KEYS = {"headers", "queryParams", "withoutHeaders", "name"}
ROUTE_KEYS = {
    "name",
    "match",
    "route",
    "mirror",
    "mirrorPercentage",
    "mirrorPercent",
    "mirrors",
    "timeout",
    "retries",
    "fault",
}


def _string_match(m: Any) -> dict[str, str] | None:
    if not isinstance(m, dict):
        return None
    found = {k: str(m[k]) for k in ("exact", "prefix", "regex") if k in m}
    return found if len(found) == 1 else None


def match_blocks(
    matches: list[dict[str, Any]], origin: str, notes: list[str]
) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(matches):
        block: dict[str, Any] = {}
        for key in ("headers", "queryParams", "withoutHeaders"):
            conditions = {}
            for name, cond in (m.get(key) or {}).items():
                sm = _string_match(cond)
                if sm is None:
                    notes.append(
                        f"{origin}.match.{i}.{key}.{name}: not a single exact, prefix or regex"
                    )
                    continue
                conditions[name] = sm
            if conditions:
                block[key] = conditions
        for key in sorted(set(m) - MATCH_KEYS):
            notes.append(
                f"{origin}.match.{i}.{key}: not carried (modelrouter matches headers, query"
                " parameters and body fields); the rule now matches more requests"
            )
        out.append(block)
    return out


def duration(value: Any, origin: str, notes: list[str]) -> float | None:
    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        notes.append(f"{origin}: {value!r} is not a duration")
        return None


def percent(value: Any) -> float:
    if isinstance(value, dict):
        return float(value.get("value", 100))
    return float(value)


def route_extras(route: dict[str, Any], origin: str, notes: list[str]) -> dict[str, Any]:
    """timeout, retries and fault of an HTTPRoute, as a rule's fields."""
    out: dict[str, Any] = {}
    for key in sorted(set(route) - ROUTE_KEYS):
        notes.append(f"{origin}.{key}: not carried")
    if "timeout" in route:
        t = duration(route["timeout"], f"{origin}.timeout", notes)
        if t is not None:
            out["timeout"] = t
    r = route.get("retries")
    if isinstance(r, dict) and "attempts" in r:
        retries: dict[str, Any] = {"attempts": int(r["attempts"])}
        if "perTryTimeout" in r:
            t = duration(r["perTryTimeout"], f"{origin}.retries.perTryTimeout", notes)
            if t is not None:
                retries["perTryTimeout"] = t
        for key in sorted(set(r) - {"attempts", "perTryTimeout"}):
            notes.append(
                f"{origin}.retries.{key}: not carried (modelrouter retries any failure of"
                " the version)"
            )
        out["retries"] = retries
    f = route.get("fault")
    if isinstance(f, dict):
        fault: dict[str, Any] = {}
        d = f.get("delay")
        if isinstance(d, dict) and "fixedDelay" in d:
            fault["delay"] = {
                "fixedDelay": duration(d["fixedDelay"], f"{origin}.fault.delay", notes) or 0,
                "percentage": {"value": percent(d.get("percentage", d.get("percent", 100)))},
            }
        a = f.get("abort")
        if isinstance(a, dict) and "httpStatus" in a:
            fault["abort"] = {
                "httpStatus": int(a["httpStatus"]),
                "percentage": {"value": percent(a.get("percentage", a.get("percent", 100)))},
            }
        elif isinstance(a, dict):
            notes.append(f"{origin}.fault.abort: only httpStatus aborts are carried")
        if fault:
            out["fault"] = fault
    return out


def sticky_of(dr: dict[str, Any], origin: str, notes: list[str]) -> dict[str, str] | None:
    """The sticky key a DestinationRule's consistent hash names."""
    policy = (dr.get("spec") or {}).get("trafficPolicy") or {}
    for key in sorted(set(policy) - {"loadBalancer"}):
        notes.append(f"{origin}.spec.trafficPolicy.{key}: not carried (the gateway's own pool)")
    ch = (policy.get("loadBalancer") or {}).get("consistentHash") or {}
    if "httpHeaderName" in ch:
        return {"header": str(ch["httpHeaderName"])}
    if isinstance(ch.get("httpCookie"), dict) and "name" in ch["httpCookie"]:
        return {"cookie": str(ch["httpCookie"]["name"])}
    if "httpQueryParameterName" in ch:
        return {"queryParam": str(ch["httpQueryParameterName"])}
    if ch:
        notes.append(f"{origin}: consistentHash {sorted(ch)} has no sticky equivalent")
    return None
