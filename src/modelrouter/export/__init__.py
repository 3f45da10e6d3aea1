"""Kubernetes: a modelrouter config as the manifests a cluster runs, and their manifests as a
modelrouter config.

:func:`export_kubernetes` writes the gateway (Deployment, Service, ConfigMap, PDB, HPA), a KServe
InferenceService per version, Istio VirtualServices and DestinationRules, Flagger Canaries, and
a ``kustomization.yaml``; :func:`import_manifests` reads InferenceServices, VirtualServices,
DestinationRules, Flagger Canaries and Seldon Core 2 Experiments back into a config. Both say
what they could not carry over instead of dropping it.
"""

from modelrouter.export.importer import ImportResult, import_manifests
from modelrouter.export.kubernetes import ExportOptions, ExportResult, export_kubernetes

__all__ = [
    "ExportOptions",
    "ExportResult",
    "ImportResult",
    "export_kubernetes",
    "import_manifests",
]
