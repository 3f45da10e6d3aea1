"""``modelrouter export kubernetes``: every shape's manifests validate against the official
schemas (KServe and Istio CRDs from ../shared/schemas, Kubernetes' own kinds with
kubernetes-validate), render with ``kubectl kustomize``, carry no credential, and hold a gateway
config that loads. kubectl must be installed (``make kubectl``): the test fails without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from modelrouter.cli import main
from modelrouter.config.loader import parse_config
from support import EXAMPLE_MODELS

pytestmark = pytest.mark.integration

SCHEMAS = Path("/work/shared/schemas")
PASSWORD = "s3cr3t-pw"

CONFIG = f"""\
server:
  name: Churn Gateway
  store: postgresql://router:{PASSWORD}@db.internal:5432/router
  grpc: {{port: 8081}}
  prometheus: {{url: http://127.0.0.1:9090}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS}/churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: {EXAMPLE_MODELS}/churn/v2, modelFormat: sklearn}}
      v3: {{storageUri: "s3://bucket/churn/v3", modelFormat: sklearn}}
    batcher: {{maxBatchSize: 32, maxLatency: 5ms}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}, {{body: {{user.region: {{exact: eu}}}}}}]
        route: [{{destination: v2}}]
        fallback: [v1]
      - name: vip
        match: [{{body: {{segment: {{exact: vip}}}}}}]
        route: [{{destination: v2}}]
      - name: default
        route:
          - {{destination: v1, weight: 2}}
          - {{destination: v2, weight: 1}}
        sticky: {{header: x-user-id}}
        mirror: {{destination: v3}}
        mirrorPercentage: {{value: 25}}
        timeout: 250ms
        retries: {{attempts: 2, perTryTimeout: 100ms}}
        fault: {{delay: {{fixedDelay: 10ms, percentage: {{value: 1}}}}}}
  ltv:
    versions:
      v1: {{storageUri: "models:/ltv@champion", modelFormat: mlflow}}
    http:
      - name: only
        match: [{{headers: {{x-beta: {{exact: "1"}}}}}}]
        route: [{{destination: v1}}]
rollouts:
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    analysis:
      interval: 30s
      threshold: 3
      stepWeights: [10, 25, 50]
      metrics:
        - {{name: request-success-rate, thresholdRange: {{min: 99}}}}
        - {{name: request-duration, thresholdRange: {{max: 250}}}}
        - name: error-ratio
          provider: prometheus
          query: >-
            sum(rate(errors{{{{model="{{{{ model }}}}",version="{{{{ version }}}}"}}}}
            [{{{{ interval }}}}]))
          thresholdRange: {{max: 0.01}}
    webhooks: [{{type: confirm-promotion, url: "http://approver.internal/ok"}}]
  ltv-quality:
    model: ltv
    rule: only
    primary: v1
    canary: v1b
    strategy: abtest
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    # ltv needs a second version for its (abtest) rollout
    text = text.replace(
        '      v1: {storageUri: "models:/ltv@champion", modelFormat: mlflow}\n',
        '      v1: {storageUri: "models:/ltv@champion", modelFormat: mlflow}\n'
        '      v1b: {storageUri: "models:/ltv@challenger", modelFormat: mlflow}\n',
    ).replace(
        "        route: [{destination: v1}]\nrollouts:",
        "        route: [{destination: v1, weight: 50}, {destination: v1b, weight: 50}]\nrollouts:",
    )
    path = tmp_path / "modelrouter.yaml"
    path.write_text(text)
    parse_config(text)
    return path


def export(config: Path, out: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["export", "kubernetes", str(config), "--out", str(out), *args])


def documents(folder: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@cache
def crd_validator(name: str) -> Any:
    """A validator per schema, built once (checking the large CRD schemas is slow)."""
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


CRDS = {
    "InferenceService": "kserve.inferenceservice.v1beta1.json",
    "VirtualService": "istio.virtualservice.v1.json",
    "DestinationRule": "istio.destinationrule.v1.json",
}
CORE = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        kind = doc["kind"]
        if kind in CRDS:
            crd_validator(CRDS[kind]).validate(doc)
        elif kind in CORE:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        else:
            assert kind in ("Canary", "MetricTemplate"), kind


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is not installed: run `make kubectl`"
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_gateway_in_front_of_kserve(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = export(_config(tmp_path), out, "--namespace", "ml", "--storage-prefix", "s3://up/models")
    assert r.exit_code == 0, r.output
    docs = documents(out)
    validate_all(docs)
    rendered = kustomize(out)
    assert sorted(d["kind"] for d in rendered) == sorted(d["kind"] for d in docs)
    assert all(d["metadata"]["namespace"] == "ml" for d in rendered)
    # no credential anywhere in what was written
    for path in out.iterdir():
        assert PASSWORD not in path.read_text(), path
    assert PASSWORD not in r.output

    isvcs = {d["metadata"]["name"]: d for d in by_kind(docs, "InferenceService")}
    assert sorted(isvcs) == ["churn-v1", "churn-v2", "churn-v3", "ltv-v1", "ltv-v1b"]
    pred = isvcs["churn-v1"]["spec"]["predictor"]
    assert pred["model"]["modelFormat"] == {"name": "sklearn"}
    assert pred["model"]["storageUri"] == "s3://up/models/churn/v1"
    assert pred["batcher"] == {"maxBatchSize": 32, "maxLatency": 5}
    assert isvcs["churn-v3"]["spec"]["predictor"]["model"]["storageUri"] == "s3://bucket/churn/v3"
    assert isvcs["ltv-v1"]["spec"]["predictor"]["model"]["storageUri"] == "models:/ltv@champion"
    # the files to upload are listed, one line each, for both local versions
    for v in ("v1", "v2"):
        assert (
            f"{EXAMPLE_MODELS}/churn/{v}/model.joblib -> s3://up/models/churn/{v}/model.joblib"
            in r.output
        )

    (cm,) = by_kind(docs, "ConfigMap")
    gateway = parse_config(cm["data"]["modelrouter.yaml"])
    assert gateway.server.http.host == "0.0.0.0"
    assert gateway.server.storeEnv == "MODELROUTER_STORE"
    v1 = gateway.models["churn"].versions["v1"]
    assert v1.endpoint == "http://churn-v1-predictor.ml.svc.cluster.local"
    assert v1.remoteName == "churn-v1"
    assert v1.outputNames == {"output-0": "predict"}  # the gateway's clients keep `predict`
    assert gateway.models["churn"].batcher is None  # it moved to the InferenceServices
    assert [r.name for r in gateway.models["churn"].http] == ["eu", "vip", "default"]
    assert "churn-v2" in gateway.rollouts  # the gateway runs its rollouts itself

    (dep,) = by_kind(docs, "Deployment")
    assert dep["metadata"]["name"] == "churn-gateway"
    assert dep["spec"]["replicas"] == 2  # PostgreSQL store: two by default
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    # preStop 5s + the gateway's own drain 5s + 20s in flight + 5s: server.shutdown's defaults
    assert pod["terminationGracePeriodSeconds"] == 5 + 5 + 20 + 5
    env = {e["name"]: e for e in c["env"]}
    assert env["MODELROUTER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "churn-gateway-admin-token",
        "key": "token",
    }
    assert env["MODELROUTER_STORE"]["valueFrom"]["secretKeyRef"] == {
        "name": "churn-gateway-store",
        "key": "url",
    }
    assert all("value" not in e for e in c["env"])
    assert {p["name"] for p in c["ports"]} == {"http", "grpc"}
    (svc,) = by_kind(docs, "Service")
    assert {p["name"] for p in svc["spec"]["ports"]} == {"http", "grpc", "metrics"}
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 2
    assert by_kind(docs, "PodDisruptionBudget")
    assert "create secret generic churn-gateway-store" in r.output
    # what is left to the user is said
    assert "server.prometheus.url" in r.stderr


def test_local_models_without_a_storage_prefix_are_refused(tmp_path: Path) -> None:
    r = export(_config(tmp_path), tmp_path / "out")
    assert r.exit_code == 1
    assert "models.churn.versions.v1.storageUri" in r.stderr
    assert "--storage-prefix" in r.stderr
    assert not (tmp_path / "out").exists()


def test_several_replicas_need_postgresql(tmp_path: Path) -> None:
    text = CONFIG.replace(
        f"postgresql://router:{PASSWORD}@db.internal:5432/router", "sqlite:///./mr.db"
    )
    config = _config(tmp_path, text)
    r = export(config, tmp_path / "out", "--replicas", "3", "--storage-prefix", "s3://x")
    assert r.exit_code == 1
    assert "server.store" in r.stderr
    assert "3 replicas" in r.stderr
    # one replica is fine, said to be ephemeral, and has no autoscaler
    r = export(config, tmp_path / "one", "--storage-prefix", "s3://x")
    assert r.exit_code == 0, r.output
    docs = documents(tmp_path / "one")
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    assert "SQLite lives in the pod" in r.stderr


def test_gateway_with_in_process_models(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = export(_config(tmp_path), out, "--models", "in-process", "--storage-prefix", "s3://up")
    assert r.exit_code == 0, r.output
    docs = documents(out)
    validate_all(docs)
    kustomize(out)
    assert not by_kind(docs, "InferenceService")
    (cm,) = by_kind(docs, "ConfigMap")
    gateway = parse_config(cm["data"]["modelrouter.yaml"])
    churn = gateway.models["churn"]
    assert churn.versions["v1"].storageUri == "s3://up/churn/v1"
    assert churn.versions["v3"].storageUri == "s3://bucket/churn/v3"
    assert churn.batcher is not None


def test_mesh_only_with_flagger(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = export(
        _config(tmp_path),
        out,
        "--namespace",
        "ml",
        "--storage-prefix",
        "s3://up",
        "--mesh",
        "istio",
        "--rollouts",
        "flagger",
    )
    assert r.exit_code == 0, r.output
    docs = documents(out)
    validate_all(docs)
    kustomize(out)
    assert not by_kind(docs, "Deployment")  # no gateway in this shape
    for isvc in by_kind(docs, "InferenceService"):
        # every version answers under its model's name: the mesh does not rewrite paths
        model = isvc["metadata"]["annotations"]["modelrouter.io/model"]
        assert isvc["spec"]["predictor"]["model"]["args"] == [f"--model_name={model}"]
    # churn is Flagger's (its rollout); ltv's abtest cannot be, so ltv has a VirtualService
    (canary,) = by_kind(docs, "Canary")
    assert canary["spec"]["targetRef"]["name"] == "churn-v1-predictor"
    analysis = canary["spec"]["analysis"]
    assert analysis["stepWeights"] == [10, 25, 50]
    assert analysis["threshold"] == 3
    assert [m["name"] for m in analysis["metrics"]] == [
        "request-success-rate",
        "request-duration",
        "error-ratio",
    ]
    (template,) = by_kind(docs, "MetricTemplate")
    assert 'model="churn",version="v2"' in template["spec"]["query"]
    assert "{{ interval }}" in template["spec"]["query"]
    assert analysis["metrics"][2]["templateRef"]["name"] == template["metadata"]["name"]
    assert "rollouts.ltv-quality: not exported to Flagger: strategy abtest" in r.stderr
    assert "rollouts.churn-v2: Flagger writes the VirtualService of churn" in r.stderr
    (vs,) = by_kind(docs, "VirtualService")
    assert vs["metadata"]["name"] == "ltv"
    routes = vs["spec"]["http"]
    assert [x["name"] for x in routes] == ["only", "default-version"]
    assert [d["weight"] for d in routes[0]["route"]] == [50, 50]


def test_mesh_only_rules(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, CONFIG.split("rollouts:")[0])
    r = export(config, out, "--storage-prefix", "s3://up", "--mesh", "istio")
    assert r.exit_code == 0, r.output
    docs = documents(out)
    validate_all(docs)
    kustomize(out)
    vs = next(d for d in by_kind(docs, "VirtualService") if d["metadata"]["name"] == "churn")
    routes = {x["name"]: x for x in vs["spec"]["http"]}
    # the body-only rule cannot be in the mesh; the eu rule keeps its header block only
    assert list(routes) == ["eu", "default"]
    assert routes["eu"]["match"] == [{"headers": {"x-region": {"exact": "eu"}}}]
    d = routes["default"]
    assert [x["weight"] for x in d["route"]] == [67, 33]
    host = "churn-v1-predictor.default.svc.cluster.local"
    assert d["route"][0]["destination"] == {"host": host, "port": {"number": 80}}
    assert d["route"][0]["headers"]["response"]["set"] == {"x-model-version": "v1"}
    assert d["mirror"]["host"] == "churn-v3-predictor.default.svc.cluster.local"
    assert d["mirrorPercentage"] == {"value": 25.0}
    assert d["timeout"] == "0.25s"
    assert d["retries"]["attempts"] == 2
    assert d["retries"]["perTryTimeout"] == "0.1s"
    assert d["fault"]["delay"] == {"fixedDelay": "0.01s", "percentage": {"value": 1.0}}
    # the comment above the VirtualService lists what only the gateway does, rule by rule
    text = (out / "istio.yaml").read_text()
    head = text[: text.index("kind: VirtualService\nmetadata:\n  name: churn")]
    comment = head[head.rindex("---") :]
    assert "#   default: monotone sticky cohorts" in comment
    assert "compared shadows" in comment
    assert "the fallback chain (v1)" in comment
    assert "#   vip: matches on fields of the request body" in comment
    drs = {x["metadata"]["name"]: x for x in by_kind(docs, "DestinationRule")}
    lb = drs["churn-v1-predictor"]["spec"]["trafficPolicy"]["loadBalancer"]
    assert lb == {"consistentHash": {"httpHeaderName": "x-user-id"}}
    assert "models.churn.http.vip: the mesh cannot do the whole rule" in r.stderr
    assert "rollouts" not in r.stderr


def test_options_that_do_not_go_together(tmp_path: Path) -> None:
    config = _config(tmp_path)
    r = export(config, tmp_path / "a", "--mesh", "istio", "--models", "in-process")
    assert r.exit_code == 1
    assert "--mesh" in r.stderr
    r = export(config, tmp_path / "b", "--rollouts", "flagger", "--storage-prefix", "s3://x")
    assert r.exit_code == 1
    assert "--rollouts" in r.stderr
    r = export(config, tmp_path / "c", "--replicas", "0")
    assert r.exit_code == 1
    assert "--replicas" in r.stderr
    r = export(config, tmp_path / "d", "--models", "in-process", "--storage-prefix", "gs://x")
    assert r.exit_code == 1
    assert "--storage-prefix" in r.stderr


def test_export_then_import_gives_the_routing_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, CONFIG.split("rollouts:")[0])
    r = export(config, out, "--storage-prefix", "s3://up", "--mesh", "istio")
    assert r.exit_code == 0, r.output
    back = CliRunner().invoke(
        main, ["import", str(out / "inferenceservices.yaml"), str(out / "istio.yaml")]
    )
    assert back.exit_code == 0, back.output
    imported = parse_config(back.stdout)
    churn = imported.models["churn"]
    assert list(churn.versions) == ["v1", "v2", "v3"]
    assert churn.versions["v1"].storageUri == "s3://up/churn/v1"
    assert churn.versions["v1"].outputNames == {"predict": "output-0"}
    default = next(x for x in churn.http if x.name == "default")
    assert [(d.destination, d.weight) for d in default.route] == [("v1", 67), ("v2", 33)]
    assert default.sticky is not None
    assert default.sticky.header == "x-user-id"
    assert default.mirror is not None
    assert default.mirror.destination == "v3"
    assert default.timeout == 0.25
    assert imported.models["ltv"].versions["v1"].storageUri == "models:/ltv@champion"


def test_the_checks_catch_a_wrong_manifest(tmp_path: Path) -> None:
    """The validation above can fail: a wrong field type, an unknown core field, bad YAML."""
    out = tmp_path / "out"
    r = export(_config(tmp_path), out, "--storage-prefix", "s3://up")
    assert r.exit_code == 0, r.output
    docs = documents(out)
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    isvc["spec"]["predictor"]["batcher"]["maxLatency"] = "5ms"
    with pytest.raises(jsonschema.ValidationError):
        validate_all([isvc])
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["readyProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all([dep])
    (out / "gateway.yaml").write_text("kind: [")
    with pytest.raises(AssertionError):
        kustomize(out)


def test_two_versions_whose_names_meet_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        "models:\n"
        "  a.b:\n    versions:\n      c: {storageUri: 's3://x/1', modelFormat: sklearn}\n"
        "  a:\n    versions:\n      b-c: {storageUri: 's3://x/2', modelFormat: sklearn}\n"
    )
    r = export(config, tmp_path / "out")
    assert r.exit_code == 1
    assert "models.a.versions.b-c: its InferenceService would be named 'a-b-c'" in r.stderr
    assert "models.a.b.versions.c" in r.stderr


def test_long_names_stay_short_and_apart(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    long = "customer-lifetime-value-regression-model"
    config.write_text(
        f"models:\n  {long}:\n    versions:\n"
        "      2024-01-champion: {storageUri: 's3://x/1', modelFormat: sklearn}\n"
        "      2024-02-challenger: {storageUri: 's3://x/2', modelFormat: sklearn}\n"
    )
    r = export(config, tmp_path / "out")
    assert r.exit_code == 0, r.output
    names = [d["metadata"]["name"] for d in documents(tmp_path / "out")]
    isvcs = [n for n in names if n.startswith("customer")]
    assert len(set(isvcs)) == 2
    assert all(len(n) <= 45 for n in isvcs)
    validate_all(documents(tmp_path / "out"))


def test_an_unwritable_out_is_a_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = export(_config(tmp_path), blocker / "out", "--storage-prefix", "s3://x")
    assert r.exit_code == 1
    assert "--out: cannot write" in r.stderr


def test_the_pods_stop_as_server_shutdown_says(tmp_path: Path) -> None:
    text = CONFIG.replace("  grpc: {port: 8081}\n", "  shutdown: {drain: 3s, timeout: 10s}\n")
    r = export(_config(tmp_path, text), tmp_path / "out", "--storage-prefix", "s3://x")
    assert r.exit_code == 0, r.output
    (dep,) = by_kind(documents(tmp_path / "out"), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}
    assert pod["terminationGracePeriodSeconds"] == 3 + 3 + 10 + 5


def test_a_remote_version_keeps_its_port_in_the_mesh(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        "models:\n  churn:\n    versions:\n"
        "      v1: {storageUri: 's3://x/1', modelFormat: sklearn}\n"
        "      ext: {endpoint: 'http://triton.models.svc:9000', remoteName: churn}\n"
        "    http:\n      - name: split\n"
        "        route: [{destination: v1, weight: 50}, {destination: ext, weight: 50}]\n"
    )
    r = export(config, tmp_path / "out", "--mesh", "istio")
    assert r.exit_code == 0, r.output
    docs = documents(tmp_path / "out")
    validate_all(docs)
    (vs,) = by_kind(docs, "VirtualService")
    dests = [d["destination"] for d in vs["spec"]["http"][0]["route"]]
    assert dests[1] == {"host": "triton.models.svc", "port": {"number": 9000}}
    hosts = {d["spec"]["host"] for d in by_kind(docs, "DestinationRule")}
    assert "triton.models.svc" in hosts
    assert "no path rewrite to its remoteName" in r.stderr
