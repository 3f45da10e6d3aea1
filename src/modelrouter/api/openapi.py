"""``GET /openapi.json``: an OpenAPI 3.1 document of everything the gateway serves.

The document is maintained here, next to the routes, as one table of operations keyed by
(method, path). :func:`openapi_document` builds it for the routes an app really serves and
refuses (at app creation) a served route that has no entry, so the document cannot silently
fall behind the code; a test checks the other direction and runs schemathesis against a real
gateway with it.

Every error is ``{"error": "..."}`` (the ``default`` response of each operation), with the
status of :data:`modelrouter.errors.STATUS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelrouter._version import __version__
from modelrouter.api.edge import MAX_REQUEST_ID

Schema = dict[str, Any]

OBJ: Schema = {"type": "object"}
STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: Iterable[str] = (), **props: Schema) -> Schema:
    doc: Schema = {"type": "object", "properties": props}
    req = list(required)
    if req:
        doc["required"] = req
    return doc


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


TENSOR = _obj(
    ["name", "datatype", "shape"],
    name=STR,
    datatype={
        "type": "string",
        "enum": [
            "BOOL",
            "INT8",
            "INT16",
            "INT32",
            "INT64",
            "UINT8",
            "UINT16",
            "UINT32",
            "UINT64",
            "FP16",
            "FP32",
            "FP64",
            "BYTES",
        ],
    },
    shape={"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 32},
    parameters=OBJ,
    data={"type": "array"},
)

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": False,
    },
    "Tensor": TENSOR,
    "InferenceRequest": _obj(
        ["inputs"],
        id=STR,
        parameters=OBJ,
        inputs={"type": "array", "items": _ref("Tensor"), "minItems": 1},
        outputs={"type": "array", "items": _obj(["name"], name=STR, parameters=OBJ)},
    ),
    "InferenceResponse": _obj(
        ["model_name", "outputs"],
        model_name=STR,
        model_version=STR,
        id=STR,
        parameters=OBJ,
        outputs={"type": "array", "items": _ref("Tensor")},
    ),
    "TensorMetadata": _obj(
        ["name", "datatype", "shape"],
        name=STR,
        datatype=STR,
        shape={"type": "array", "items": INT},
    ),
    "ModelMetadata": _obj(
        ["name", "versions", "platform", "inputs", "outputs"],
        name=STR,
        versions={"type": "array", "items": STR},
        platform=STR,
        inputs={"type": "array", "items": _ref("TensorMetadata")},
        outputs={"type": "array", "items": _ref("TensorMetadata")},
        parameters=OBJ,
    ),
    "ModelReady": _obj(["name", "ready"], name=STR, ready=BOOL, error=STR),
    "VersionState": _obj(["version", "state"], version=STR, state=STR, reason=_nullable(STR)),
    "RoutingDocument": _obj(
        ["model", "version", "http"],
        model=STR,
        version=INT,
        updatedAt=_nullable(NUM),
        actor=_nullable(STR),
        tableVersion=INT,
        http={"type": "array", "items": OBJ},
    ),
    "Rollout": _obj(["name", "model"], name=STR, model=STR, state=STR),
}

ERROR = {
    "description": "an error naming what is wrong (status from the error table)",
    "content": {"application/json": {"schema": _ref("Error")}},
}


def _json(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str = "path", schema: Schema = STR, **extra: Any) -> Schema:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


NAME = _param("name", description="model name")
VERSION = _param("version", description="version name")
ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]

Op = dict[str, Any]


def _op(
    summary: str,
    ok: dict[str, Any],
    params: list[Schema] | None = None,
    body: Schema | None = None,
    *,
    admin: bool = False,
    tag: str = "data plane",
    more: dict[str, Any] | None = None,
    body_required: bool = True,
) -> Op:
    op: Op = {"summary": summary, "tags": [tag], "responses": {"200": ok, **(more or {})}}
    op["responses"]["default"] = ERROR
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    if admin:
        op["security"] = ADMIN
    return op


_INFER_OK = {
    "description": "the outputs; binary tensor data when asked for it",
    "content": {
        "application/json": {"schema": _ref("InferenceResponse")},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_INFER_HEADER = _param(
    "Inference-Header-Content-Length",
    "header",
    {"type": "string", "pattern": "^[0-9]+$"},
    description="binary tensor data extension: length of the JSON part of the body",
)
_READY_503 = {"503": _json("not ready, with the reason", _ref("ModelReady"))}
_INDEX = {
    "type": "array",
    "items": _obj(["name", "version", "state"], name=STR, version=STR, state=STR, reason=STR),
}
_REPOSITORY_BODY = _obj(parameters=OBJ)
_REPOSITORY_OK = _json(
    "the versions acted on",
    _obj(["name", "versions"], name=STR, versions={"type": "array", "items": _ref("VersionState")}),
)
_LOAD_OK = _json(
    "the version's new state",
    _obj(["name", "version", "state"], name=STR, version=STR, state=STR, reason=_nullable(STR)),
)
_AUDIT_PARAMS = [
    _param(k, "query")
    for k in ("model", "version", "rule", "kind", "request_id", "since", "until", "order")
] + [_param("limit", "query", INT), _param("after_seq", "query", INT)]
_GAP = _obj(
    ["seq", "explanation"],
    seq=INT,
    time=NUM,
    cause=STR,
    lostFirst=INT,
    lostLast=INT,
    seenSeq=INT,
    seenHash=STR,
    explanation=STR,
)
_VERIFY = _obj(
    ["ok", "checked"],
    ok=BOOL,
    checked=INT,
    firstBadSeq=_nullable(INT),
    reason=_nullable(STR),
    anchorSeq=INT,
    gaps={"type": "array", "items": _GAP},
)
_STORE_STATUS = _obj(
    ["url", "reachable", "faults", "audit"],
    url=STR,
    reachable=BOOL,
    faults={"type": "array", "items": OBJ},
    audit=OBJ,
)

OPERATIONS: dict[tuple[str, str], Op] = {
    ("POST", "/v2/models/{name}/infer"): _op(
        "routed inference (Open Inference Protocol v2)",
        _INFER_OK,
        [NAME, _INFER_HEADER],
        _ref("InferenceRequest"),
    ),
    ("POST", "/v2/models/{name}/versions/{version}/infer"): _op(
        "inference pinned to one version (bypasses routing)",
        _INFER_OK,
        [NAME, VERSION, _INFER_HEADER],
        _ref("InferenceRequest"),
    ),
    ("POST", "/v1/models/{name}:predict"): _op(
        "KServe v1 prediction, routed",
        _json("one prediction per instance", _obj(["predictions"], predictions={"type": "array"})),
        [NAME],
        _obj(["instances"], instances={"type": "array", "minItems": 1}, parameters=OBJ, id=STR),
    ),
    ("GET", "/v2/health/live"): _op("liveness", _json("live", _obj(["live"], live=BOOL))),
    ("GET", "/v2/health/ready"): _op(
        "readiness: every version ready",
        _json("ready", _obj(["ready"], ready=BOOL)),
        more={"503": _json("not ready", _obj(["ready"], ready=BOOL))},
    ),
    ("GET", "/v2"): _op(
        "server metadata",
        _json(
            "name, version, extensions",
            _obj(
                ["name", "version", "extensions"],
                name=STR,
                version=STR,
                extensions={"type": "array", "items": STR},
            ),
        ),
    ),
    ("GET", "/v2/repository/index"): _op(
        "every version with its state (load errors in full only with the admin token)",
        _json("the index", _INDEX),
    ),
    ("POST", "/v2/repository/index"): _op(
        "every version with its state (Triton's repository index)", _json("the index", _INDEX)
    ),
    ("GET", "/v2/models/{name}"): _op(
        "model metadata of the default version",
        _json("metadata", _ref("ModelMetadata")),
        [NAME],
    ),
    ("GET", "/v2/models/{name}/ready"): _op(
        "readiness of the default version",
        _json("ready", _ref("ModelReady")),
        [NAME],
        more=_READY_503,
    ),
    ("GET", "/v2/models/{name}/versions/{version}"): _op(
        "model metadata of one version",
        _json("metadata", _ref("ModelMetadata")),
        [NAME, VERSION],
    ),
    ("GET", "/v2/models/{name}/versions/{version}/ready"): _op(
        "readiness of one version",
        _json("ready", _ref("ModelReady")),
        [NAME, VERSION],
        more=_READY_503,
    ),
    ("GET", "/v1/models"): _op(
        "KServe v1 model list",
        _json("names", _obj(["models"], models={"type": "array", "items": STR})),
    ),
    ("GET", "/v1/models/{name}"): _op(
        "KServe v1 model readiness",
        _json("ready", _obj(["name", "ready"], name=STR, ready=BOOL)),
        [NAME],
    ),
    ("GET", "/metrics"): _op(
        "Prometheus metrics",
        {"description": "text exposition format", "content": {"text/plain": {"schema": STR}}},
        tag="monitoring",
    ),
    ("GET", "/openapi.json"): _op("this document", _json("OpenAPI 3.1", OBJ), tag="monitoring"),
    # -------------------------------------------------------------------- repository extension
    ("POST", "/v2/repository/models/{name}/load"): _op(
        "load every version of a model (needs the admin token when one is configured)",
        _REPOSITORY_OK,
        [NAME],
        _REPOSITORY_BODY,
        tag="repository",
        body_required=False,
    ),
    ("POST", "/v2/repository/models/{name}/unload"): _op(
        "unload every version of a model",
        _REPOSITORY_OK,
        [NAME],
        _REPOSITORY_BODY,
        tag="repository",
        body_required=False,
    ),
    ("POST", "/v2/repository/models/{name}/versions/{version}/load"): _op(
        "load one version",
        _REPOSITORY_OK,
        [NAME, VERSION],
        _REPOSITORY_BODY,
        tag="repository",
        body_required=False,
    ),
    ("POST", "/v2/repository/models/{name}/versions/{version}/unload"): _op(
        "unload one version",
        _REPOSITORY_OK,
        [NAME, VERSION],
        _REPOSITORY_BODY,
        tag="repository",
        body_required=False,
    ),
    # -------------------------------------------------------------------- admin API
    ("GET", "/api/v1/models"): _op(
        "models and versions with state and full load errors",
        _json(
            "models",
            _obj(
                ["models", "tableVersion"], models={"type": "array", "items": OBJ}, tableVersion=INT
            ),
        ),
        admin=True,
        tag="admin",
    ),
    ("GET", "/api/v1/models/{name}/routing"): _op(
        "the live rules of a model",
        _json("the routing document", _ref("RoutingDocument")),
        [NAME],
        admin=True,
        tag="admin",
    ),
    ("PUT", "/api/v1/models/{name}/routing"): _op(
        "replace the rules of a model (validated, versioned, audited)",
        _json("the new routing document", _ref("RoutingDocument")),
        [NAME],
        _obj(
            ["http"],
            http={"type": "array", "items": OBJ, "maxItems": 256},
            reason=STR,
            expectedVersion={"type": "integer", "minimum": 0},
        ),
        admin=True,
        tag="admin",
    ),
    ("GET", "/api/v1/models/{name}/shadow"): _op(
        "shadow comparison per (primary, shadow) pair",
        _json("pairs", _obj(["model", "pairs"], model=STR, pairs={"type": "array", "items": OBJ})),
        [NAME],
        admin=True,
        tag="admin",
    ),
    ("POST", "/api/v1/models/{name}/versions/{version}/load"): _op(
        "load a version (audited)", _LOAD_OK, [NAME, VERSION], admin=True, tag="admin"
    ),
    ("POST", "/api/v1/models/{name}/versions/{version}/unload"): _op(
        "unload a version (audited)", _LOAD_OK, [NAME, VERSION], admin=True, tag="admin"
    ),
    ("GET", "/api/v1/audit"): _op(
        "audit records matching the filters",
        _json("records", _obj(["records"], records={"type": "array", "items": OBJ})),
        _AUDIT_PARAMS,
        admin=True,
        tag="admin",
    ),
    ("GET", "/api/v1/audit/verify"): _op(
        "verify the audit hash chain",
        _json("the chain is intact", _VERIFY),
        admin=True,
        tag="admin",
        more={"409": _json("the first bad record", _VERIFY)},
    ),
    ("GET", "/api/v1/store"): _op(
        "this gateway's view of the store: reachable, faults handled, audit writer counters",
        _json("the store's status", _STORE_STATUS),
        admin=True,
        tag="admin",
    ),
    ("GET", "/api/v1/decisions/{request_id}"): _op(
        "the decision record of a request, explained",
        _json("record and explanation", _obj(["record", "explanation"], record=OBJ)),
        [_param("request_id", schema={"type": "string", "maxLength": MAX_REQUEST_ID})],
        admin=True,
        tag="admin",
    ),
    ("POST", "/api/v1/feedback"): _op(
        "ground truth or a reward for a request (needs the admin token when one is configured)",
        _json(
            "the feedback joined to its prediction",
            _obj(
                ["request_id", "model", "version"],
                request_id=STR,
                model=STR,
                version=STR,
                labels=INT,
                correct=INT,
                values=INT,
                abs_error=NUM,
                reward=NUM,
            ),
        ),
        body=_obj(["request_id"], request_id=STR, truth={}, reward=NUM),
        admin=True,
        tag="admin",
    ),
    ("GET", "/api/v1/rollouts"): _op(
        "every rollout with its state",
        _json("rollouts", _obj(["rollouts"], rollouts={"type": "array", "items": _ref("Rollout")})),
        admin=True,
        tag="admin",
    ),
    ("GET", "/api/v1/rollouts/{name}"): _op(
        "one rollout with its history",
        _json("the rollout", _ref("Rollout")),
        [_param("name", description="rollout name"), _param("limit", "query", INT)],
        admin=True,
        tag="admin",
    ),
    ("POST", "/api/v1/rollouts/{name}/{action}"): _op(
        "pause, resume, promote or abort a rollout",
        _json("the command's outcome", OBJ),
        [
            _param("name", description="rollout name"),
            _param(
                "action", schema={"type": "string", "enum": ["pause", "resume", "promote", "abort"]}
            ),
        ],
        admin=True,
        tag="admin",
    ),
}
OPERATIONS[("GET", "/v2/")] = OPERATIONS[("GET", "/v2")]


def _page(summary: str, params: list[Schema] | None = None) -> Op:
    """A page or asset of the dashboard (not JSON); it asks for the token in the browser."""
    op: Op = {
        "summary": summary,
        "tags": ["dashboard"],
        "responses": {
            "200": {"description": summary, "content": {"text/html": {"schema": STR}}},
            "default": ERROR,
        },
    }
    if params:
        op["parameters"] = params
    return op


OPERATIONS.update(
    {
        ("GET", "/api/v1/models/{name}/versions"): _op(
            "per version: state, weight per rule, mirrors, and the window's figures from the "
            "store (every gateway)",
            _json(
                "versions",
                _obj(
                    ["model", "versions"],
                    model=STR,
                    since=NUM,
                    until=NUM,
                    versions={"type": "array", "items": OBJ},
                ),
            ),
            [NAME, _param("window", "query", STR)],
            admin=True,
            tag="admin",
        ),
        ("GET", "/api/v1/events"): {
            "summary": "the dashboard's live state as server-sent events: hello, then traffic "
            "every second and models, routing, rollouts, figures on a change (see "
            "docs/dashboard.md); at most 32 streams at once (429), 503 while draining",
            "tags": ["admin"],
            "security": ADMIN,
            "x-stream": True,
            "responses": {
                "200": {
                    "description": "text/event-stream",
                    "content": {"text/event-stream": {"schema": STR}},
                },
                "default": ERROR,
            },
        },
        ("GET", "/"): {
            "summary": "redirects to the dashboard",
            "tags": ["dashboard"],
            "responses": {"307": {"description": "to /ui"}, "default": ERROR},
        },
        ("GET", "/ui"): _page("the dashboard"),
        ("GET", "/ui/"): _page("the dashboard"),
        ("GET", "/ui/{file}"): _page(
            "a file of the dashboard (script, style sheet)",
            [_param("file", description="file name")],
        ),
    }
)


def openapi_document(served: Iterable[tuple[str, str]], title: str = "modelrouter") -> Schema:
    """The document for the ``(method, path)`` pairs an app serves; ValueError for a pair
    without an entry in :data:`OPERATIONS` (a route added without documenting it)."""
    paths: dict[str, dict[str, Op]] = {}
    missing = []
    for method, path in served:
        op = OPERATIONS.get((method, path))
        if op is None:
            missing.append(f"{method} {path}")
            continue
        paths.setdefault(path, {})[method.lower()] = op
    if missing:
        raise ValueError(f"routes without an OpenAPI entry: {', '.join(sorted(missing))}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "Open Inference Protocol v2 and KServe v1 data plane, the model "
            "repository extension, and the admin API (bearer token). Every error is "
            '{"error": "..."}.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
