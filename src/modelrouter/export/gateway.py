"""The gateway's own objects: ConfigMap, Deployment, Service, PodDisruptionBudget, HPA.

The admin token and the store URL reach the pods from Secrets by reference (``secretKeyRef``);
no credential is ever written into a manifest. Stopping a pod: a ``preStop`` sleep of the
drain (Kubernetes takes the pod out of the Service's endpoints while it still answers), then
SIGTERM, on which the gateway drains again by itself (``server.shutdown.drain``: readiness
503, still serving, for clients that hold connections) and gives requests in flight
``server.shutdown.timeout``; ``terminationGracePeriodSeconds`` covers all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelrouter.export.yamlio import Manifest

CONFIG_DIR = "/etc/modelrouter"
CONFIG_FILE = "modelrouter.yaml"
CACHE_DIR = "/var/cache/modelrouter"
DATA_DIR = "/var/lib/modelrouter"
STORE_ENV = "MODELROUTER_STORE"


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    name: str
    namespace: str
    replicas: int
    image: str
    http_port: int
    grpc_port: int | None
    admin_token_env: str
    store_secret: bool
    """The store URL comes from the Secret ``<name>-store`` (key ``url``)."""
    drain: float
    shutdown_timeout: float
    config_hash: str
    memory_request: str = "512Mi"
    max_replicas: int | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "modelrouter", "app.kubernetes.io/instance": self.name}

    @property
    def admin_secret(self) -> str:
        return f"{self.name}-admin-token"

    @property
    def store_secret_name(self) -> str:
        return f"{self.name}-store"

    @property
    def grace_period(self) -> int:
        """preStop (the drain) + the gateway's own drain and in-flight time after SIGTERM + a
        margin."""
        return math.ceil(2 * self.drain + self.shutdown_timeout) + 5


def _meta(plan: GatewayPlan, name: str | None = None) -> dict[str, Any]:
    return {"name": name or plan.name, "namespace": plan.namespace, "labels": plan.labels}


def config_map(plan: GatewayPlan, config_text: str) -> Manifest:
    return Manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(plan, f"{plan.name}-config"),
            "data": {CONFIG_FILE: config_text},
        },
        "The gateway's config, rewritten for the cluster (listen on all addresses, the store\n"
        "URL from a Secret, models at their cluster addresses).",
    )


def _env(plan: GatewayPlan) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {
            "name": plan.admin_token_env,
            "valueFrom": {"secretKeyRef": {"name": plan.admin_secret, "key": "token"}},
        },
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if plan.store_secret:
        env.append(
            {
                "name": STORE_ENV,
                "valueFrom": {"secretKeyRef": {"name": plan.store_secret_name, "key": "url"}},
            }
        )
    return env


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(plan: GatewayPlan) -> Manifest:
    ports: list[dict[str, Any]] = [
        {"name": "http", "containerPort": plan.http_port, "protocol": "TCP"}
    ]
    if plan.grpc_port is not None:
        ports.append({"name": "grpc", "containerPort": plan.grpc_port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": "gateway",
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["modelrouter"],
        "args": ["serve", f"{CONFIG_DIR}/{CONFIG_FILE}", "--host", "0.0.0.0"],
        "ports": ports,
        "env": _env(plan),
        "resources": {
            "requests": {"cpu": "500m", "memory": plan.memory_request},
            "limits": {"memory": plan.memory_request},
        },
        # every version loads (or, for KServe, answers its metadata) before the pod is
        # started; one that is not there in 5 minutes restarts the container, which loads again
        # (InferenceServices that came up after the gateway are found then)
        "startupProbe": _probe("/v2/health/ready", "http", 5, 60),
        "livenessProbe": _probe("/v2/health/live", "http", 10, 3),
        "readinessProbe": _probe("/v2/health/ready", "http", 5, 2),
        "lifecycle": {"preStop": {"sleep": {"seconds": max(1, math.ceil(plan.drain))}}},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # the root filesystem is read-only
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(plan),
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": plan.labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": plan.labels,
                    # a changed config rolls the pods (the ConfigMap's content, hashed)
                    "annotations": {
                        "modelrouter.io/config-sha256": plan.config_hash,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(plan.http_port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": plan.grace_period,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{plan.name}-config"}},
                        {"name": "cache", "emptyDir": {}},
                        {"name": "data", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    return Manifest(
        doc,
        f"The gateway. Needs the Secret {plan.admin_secret} (key token)"
        + (f" and the Secret {plan.store_secret_name} (key url)" if plan.store_secret else "")
        + f".\npreStop sleeps {plan.drain:g}s (the drain); on SIGTERM the gateway drains"
        f" {plan.drain:g}s more and\ngives in-flight requests {plan.shutdown_timeout:g}s:"
        f" terminationGracePeriodSeconds {plan.grace_period}.",
    )


def service(plan: GatewayPlan) -> Manifest:
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "http", "protocol": "TCP"},
    ]
    if plan.grpc_port is not None:
        ports.insert(1, {"name": "grpc", "port": plan.grpc_port, "targetPort": "grpc"})
    return Manifest(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(plan),
            "spec": {"type": "ClusterIP", "selector": plan.labels, "ports": ports},
        },
        "Clients call http://NAME.NAMESPACE/v2/models/MODEL/infer; Prometheus scrapes the"
        " metrics port\n(the gateway's /metrics).",
    )


def disruption_budget(plan: GatewayPlan) -> Manifest:
    return Manifest(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(plan),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": plan.labels}},
        }
    )


def autoscaler(plan: GatewayPlan) -> Manifest:
    top = plan.max_replicas or max(plan.replicas * 3, plan.replicas + 2)
    return Manifest(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(plan),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": plan.name,
                },
                "minReplicas": plan.replicas,
                "maxReplicas": top,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        },
        "Scales on CPU: every replica shares the PostgreSQL store, so any number agree.",
    )
