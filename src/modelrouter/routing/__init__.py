"""Routing: rules compiled into an immutable table, and the pure ``decide()``."""

from modelrouter.routing.decide import Decision, RequestContext, decide, pinned, sticky_bucket
from modelrouter.routing.table import (
    BUCKETS,
    CompiledRule,
    ModelRoutes,
    RoutingTable,
    compile_model,
    compile_table,
    rules_document,
)

__all__ = [
    "BUCKETS",
    "CompiledRule",
    "Decision",
    "ModelRoutes",
    "RequestContext",
    "RoutingTable",
    "compile_model",
    "compile_table",
    "decide",
    "pinned",
    "rules_document",
    "sticky_bucket",
]
