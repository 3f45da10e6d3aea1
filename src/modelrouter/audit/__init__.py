"""The audit log: record constructors, hash chain, batched writer, queries and explanations.

Records are stored by :mod:`modelrouter.store`; this package holds what does not depend on where.
The functions a transport (REST, CLI, the control-plane service) calls take plain values and
return plain results: :class:`AuditQuery` and :func:`run_query`, :func:`explain_request`,
``Store.verify_audit`` (and :func:`modelrouter.audit.checkpoints.verify_checkpoints`).
"""

from modelrouter.audit import records
from modelrouter.audit.chain import (
    GENESIS,
    GENESIS_HASH,
    ChainPoint,
    ChainVerifier,
    VerifyResult,
    canonical_json,
    record_hash,
    verify,
)
from modelrouter.audit.explain import explain, summarize
from modelrouter.audit.query import AuditQuery, RequestExplanation, explain_request, run_query
from modelrouter.audit.writer import AuditWriter

__all__ = [
    "GENESIS",
    "GENESIS_HASH",
    "AuditQuery",
    "AuditWriter",
    "ChainPoint",
    "ChainVerifier",
    "RequestExplanation",
    "VerifyResult",
    "canonical_json",
    "explain",
    "explain_request",
    "record_hash",
    "records",
    "run_query",
    "summarize",
    "verify",
]
