"""Kubernetes object names and in-cluster addresses."""

from __future__ import annotations

import hashlib
import re

_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(*parts: str, limit: int = 63) -> str:
    """A DNS-1035 label (what Services and InferenceServices need) made of ``parts``: lower
    case, ``-`` for anything else, starting with a letter, at most ``limit`` characters (a long
    name keeps a hash of the whole so two long names stay apart)."""
    raw = "-".join(parts)
    name = _INVALID.sub("-", raw.lower()).strip("-")
    name = re.sub("-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    if len(name) > limit:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-')}-{digest}"
    return name


def service_host(name: str, namespace: str) -> str:
    """The cluster DNS name of Service ``name``."""
    return f"{name}.{namespace}.svc.cluster.local"


def predictor_service(isvc: str) -> str:
    """The Service KServe puts in front of an InferenceService's predictor (both deployment
    modes)."""
    return f"{isvc}-predictor"


def isvc_of_host(host: str) -> str:
    """The InferenceService a destination host names: ``x-predictor[.ns.svc...]``, ``x-predictor-
    default``, ``x.ns.svc.cluster.local`` or ``x.ns.example.com`` all give ``x``."""
    first = host.split(".", 1)[0]
    for suffix in ("-predictor-default", "-predictor"):
        if first.endswith(suffix):
            return first[: -len(suffix)]
    return first
