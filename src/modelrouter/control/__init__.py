"""The control-plane service: every state change and control read, for every transport."""

from modelrouter.control.audit import AUDIT_KINDS, AuditFilter, AuditReads, VerifyReport
from modelrouter.control.service import ControlPlane

__all__ = ["AUDIT_KINDS", "AuditFilter", "AuditReads", "ControlPlane", "VerifyReport"]
