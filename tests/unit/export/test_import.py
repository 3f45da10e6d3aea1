"""``modelrouter import``: their manifests as one modelrouter config on stdout, and on stderr
everything that could not be carried over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelrouter.cli import main
from modelrouter.config.loader import parse_config
from modelrouter.config.schema import Config

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: {name}, namespace: ml}}
spec:
  predictor:
    minReplicas: 2
    model:
      modelFormat: {{name: sklearn}}
      storageUri: s3://models/{name}
"""

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: churn, namespace: ml}
spec:
  hosts: [churn.ml.svc.cluster.local]
  http:
  - name: eu
    match: [{headers: {x-region: {exact: eu}}, uri: {prefix: /v2}}]
    route: [{destination: {host: churn-v2-predictor.ml.svc.cluster.local}}]
    timeout: 500ms
    fault: {abort: {httpStatus: 503, percentage: {value: 0.5}}}
  - route:
    - {destination: {host: churn-v1-predictor.ml.svc.cluster.local, port: {number: 80}}, weight: 90}
    - {destination: {host: churn-v2-predictor}, weight: 10}
    mirror: {host: churn-v3-predictor.ml.svc.cluster.local}
    mirrorPercentage: {value: 5}
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: 5xx}
"""

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: churn-v1}
spec:
  host: churn-v1-predictor.ml.svc.cluster.local
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user-id}}
    connectionPool: {tcp: {maxConnections: 10}}
"""


def run(tmp_path: Path, **files: str) -> Any:
    paths = []
    for name, text in files.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        paths.append(str(p))
    return CliRunner().invoke(main, ["import", *paths])


def config_of(result: Any) -> Config:
    assert result.exit_code == 0, result.output
    return parse_config(result.stdout)


def test_two_inference_services_and_a_90_10_split_are_one_model(tmp_path: Path) -> None:
    isvcs = "---\n".join(ISVC.format(name=n) for n in ("churn-v1", "churn-v2", "churn-v3"))
    r = run(tmp_path, isvcs=isvcs, vs=VS, dr=DR)
    c = config_of(r)
    assert list(c.models) == ["churn"]
    churn = c.models["churn"]
    assert list(churn.versions) == ["v1", "v2", "v3"]
    v1 = churn.versions["v1"]
    assert (v1.storageUri, v1.modelFormat) == ("s3://models/churn-v1", "sklearn")
    assert v1.outputNames == {"predict": "output-0"}  # KServe's clients keep output-0
    eu, split = churn.http
    assert eu.name == "eu"
    assert eu.match[0].headers["x-region"].exact == "eu"
    assert [d.destination for d in eu.route] == ["v2"]
    assert eu.timeout == 0.5
    assert eu.fault is not None
    assert eu.fault.abort is not None
    assert eu.fault.abort.httpStatus == 503
    assert [(d.destination, d.weight) for d in split.route] == [("v1", 90), ("v2", 10)]
    assert split.mirror is not None
    assert split.mirror.destination == "v3"
    assert split.mirrorPercentage is not None
    assert split.mirrorPercentage.value == 5
    assert split.retries is not None
    assert (split.retries.attempts, split.retries.perTryTimeout) == (2, 1.0)
    assert split.sticky is not None
    assert split.sticky.header == "x-user-id"
    # nothing dropped silently
    err = r.stderr
    assert "spec.predictor.minReplicas: not carried" in err
    assert "spec.http.0.match.0.uri: not carried" in err
    assert "retries.retryOn: not carried" in err
    assert "trafficPolicy.connectionPool: not carried" in err
    assert "pinned pods" in err


def test_the_named_canary_list_of_newer_kserve(tmp_path: Path) -> None:
    isvc = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: fraud}
spec:
  predictor:
    model: {modelFormat: {name: xgboost}, storageUri: s3://m/fraud/1}
    batcher: {maxBatchSize: 16, maxLatency: 20}
  canary:
  - trafficPercent: 20
    predictor:
      model: {modelFormat: {name: xgboost}, storageUri: s3://m/fraud/2}
  - trafficPercent: 5
    predictor:
      model: {modelFormat: {name: tensorflow}, storageUri: gs://m/fraud/3}
"""
    r = run(tmp_path, isvc=isvc)
    c = config_of(r)
    fraud = c.models["fraud"]
    assert list(fraud.versions) == ["primary", "canary-1", "canary-2"]
    assert fraud.versions["canary-1"].storageUri == "s3://m/fraud/2"
    # tensorflow has no in-process runtime: proxied to the InferenceService
    tf = fraud.versions["canary-2"]
    assert tf.endpoint == "http://fraud-predictor.default.svc.cluster.local"
    assert "modelFormat tensorflow has no in-process runtime" in r.stderr
    (rule,) = fraud.http
    assert [(d.destination, d.weight) for d in rule.route] == [
        ("primary", 75),
        ("canary-1", 20),
        ("canary-2", 5),
    ]
    assert fraud.batcher is not None
    assert (fraud.batcher.maxBatchSize, fraud.batcher.maxLatency) == (16, 0.02)


def test_canary_traffic_percent_is_said_not_guessed(tmp_path: Path) -> None:
    isvc = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: sklearn-iris}
spec:
  predictor:
    canaryTrafficPercent: 10
    sklearn: {storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"}
  transformer: {containers: [{name: t, image: x}]}
"""
    r = run(tmp_path, isvc=isvc)
    c = config_of(r)
    v = c.models["sklearn-iris"].versions["v1"]
    assert v.modelFormat == "sklearn"
    assert "canaryTrafficPercent: 10% goes to this revision and 90% to the previous" in r.stderr
    assert "modelrouter cannot read gs://" in r.stderr
    assert "spec.transformer: not carried" in r.stderr


def test_a_flagger_canary_becomes_a_rollout(tmp_path: Path) -> None:
    isvcs = "---\n".join(ISVC.format(name=n) for n in ("churn-v1", "churn-v2"))
    vs = VS.split("  - route:")[0].replace("churn-v2-predictor", "churn-v1-predictor")
    vs = vs.replace("    match: [{headers: {x-region: {exact: eu}}, uri: {prefix: /v2}}]\n", "")
    vs += (
        "  - route: [{destination: {host: churn-v2-predictor}, weight: 0},"
        " {destination: {host: churn-v1-predictor}, weight: 100}]\n"
    )
    canary = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: churn-rollout}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: churn-v1-predictor}
  progressDeadlineSeconds: 60
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}
    - {name: latency, templateRef: {name: latency}, thresholdRange: {max: 0.5}}
    - {name: missing, templateRef: {name: nowhere}, thresholdRange: {max: 1}}
    webhooks:
    - {name: gate, type: confirm-promotion, url: "http://gate/approve"}
    - {name: more, type: confirm-traffic-increase, url: "http://gate/more"}
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: latency}
spec:
  provider: {type: prometheus, address: "http://prometheus:9090"}
  query: histogram_quantile(0.99, sum(rate(x{target="{{ target }}"}[{{ interval }}])) by (le))
"""
    r = run(tmp_path, isvcs=isvcs, vs=vs, canary=canary)
    c = config_of(r)
    ro = c.rollouts["churn-rollout"]
    assert (ro.model, ro.primary, ro.canary, ro.strategy) == ("churn", "v1", "v2", "canary")
    assert ro.analysis.interval == 60
    assert (ro.analysis.threshold, ro.analysis.stepWeight, ro.analysis.maxWeight) == (5, 10, 50)
    assert [m.name for m in ro.analysis.metrics] == ["request-success-rate", "latency"]
    assert ro.analysis.metrics[1].provider == "prometheus"
    assert [w.type for w in ro.webhooks] == ["confirm-promotion"]
    assert "MetricTemplate 'nowhere' is not among the files" in r.stderr
    assert "confirm-traffic-increase" in r.stderr
    assert "{{ target }}" in r.stderr
    assert "spec.progressDeadlineSeconds: not carried" in r.stderr


def test_a_seldon_experiment(tmp_path: Path) -> None:
    docs = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris-a}
spec: {storageUri: "s3://seldon/iris-a", requirements: [sklearn]}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Experiment
metadata: {name: iris-ab}
spec:
  default: iris-a
  candidates:
  - {name: iris-a, weight: 50}
  - {name: iris-b, weight: 50}
  mirror: {name: iris-c, percent: 10}
"""
    r = run(tmp_path, seldon=docs)
    c = config_of(r)
    m = c.models["iris-a"]
    assert m.versions["iris-a"].storageUri == "s3://seldon/iris-a"
    assert m.versions["iris-b"].endpoint == "http://seldon-mesh.default.svc.cluster.local"
    (rule,) = m.http
    assert [(d.destination, d.weight) for d in rule.route] == [("iris-a", 50), ("iris-b", 50)]
    assert rule.mirror is not None
    assert rule.mirror.destination == "iris-c"
    assert "model 'iris-b' is not among the files" in r.stderr


def test_other_kinds_are_listed_and_nothing_to_import_fails(tmp_path: Path) -> None:
    dep = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    r = run(tmp_path, dep=dep, isvc=ISVC.format(name="ltv"))
    c = config_of(r)
    assert list(c.models) == ["ltv"]
    assert "Deployment/web: apps/v1 Deployment is not imported" in r.stderr
    r = run(tmp_path, dep=dep)
    assert r.exit_code == 1
    assert "no InferenceService, VirtualService or Experiment" in r.stderr
    r = run(tmp_path, bad="kind: [")
    assert r.exit_code == 1
    assert "invalid YAML" in r.stderr


def test_validate_names_a_manifest_and_checks_offline(tmp_path: Path) -> None:
    isvc = tmp_path / "isvc.yaml"
    isvc.write_text(ISVC.format(name="churn-v1"))
    r = CliRunner().invoke(main, ["validate", str(isvc)])
    assert r.exit_code == 1
    assert "this is a KServe InferenceService" in r.stderr
    assert "modelrouter import" in r.stderr
    assert "unknown field" not in r.stderr
    imported = CliRunner().invoke(main, ["import", str(isvc)])
    config = tmp_path / "modelrouter.yaml"
    config.write_text(imported.stdout)
    r = CliRunner().invoke(main, ["validate", "--offline", str(config)])
    assert r.exit_code == 0, r.output
    assert "OK (1 models, 1 versions)" in r.stdout


MALFORMED = [
    ("metadata: just-a-name", "metadata must be a mapping"),
    ("spec: [1, 2]", "spec must be a mapping"),
    ("spec: {predictor: {model: {modelFormat: sklearn}}}", "not a well-formed manifest"),
    ("spec: {predictor: {canaryTrafficPercent: lots}}", "not a well-formed manifest"),
]


@pytest.mark.parametrize(("change", "says"), MALFORMED)
def test_a_malformed_manifest_is_refused_by_name(tmp_path: Path, change: str, says: str) -> None:
    key = change.split(":", 1)[0]
    lines = ISVC.format(name="churn-v1").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines)
    )
    text = "\n".join([*lines[:start], change, *lines[end:]]) + "\n"
    r = run(tmp_path, isvc=text)
    assert r.exit_code == 1, r.output
    assert says in r.stderr
    assert "InferenceService/" in r.stderr
    assert "Traceback" not in r.output


def test_weights_that_are_not_numbers_are_refused(tmp_path: Path) -> None:
    isvcs = "---\n".join(ISVC.format(name=n) for n in ("churn-v1", "churn-v2"))
    r = run(tmp_path, isvcs=isvcs, vs=VS.replace("weight: 90", "weight: ninety"))
    assert r.exit_code == 1
    assert "VirtualService/churn: not a well-formed manifest" in r.stderr
