"""The audit log: hash chain, batched writer, explanations in words.

Records are stored by :mod:`modelrouter.store`; this package holds what does not depend on where.
"""

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
from modelrouter.audit.writer import AuditWriter

__all__ = [
    "GENESIS",
    "GENESIS_HASH",
    "AuditWriter",
    "ChainPoint",
    "ChainVerifier",
    "VerifyResult",
    "canonical_json",
    "explain",
    "record_hash",
    "summarize",
    "verify",
]
