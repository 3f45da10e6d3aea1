"""The floor for a Python server: Starlette + orjson + ``model.predict``, nothing else.

It speaks just enough Open Inference Protocol v2 for bench/serving.py: a readiness probe and
``POST /v2/models/{name}/infer`` with one numeric tensor, answering ``predict``. No validation
beyond what numpy does, no routing, no middleware: what modelrouter costs on top of this is its
overhead.

    BARE_MODEL=path/to/model.joblib BARE_MODEL_NAME=bench \\
        .venv/bin/uvicorn --app-dir bench bare_app:app --port 8090 --no-access-log
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MODEL_PATH = os.environ.get("BARE_MODEL", "")
MODEL_NAME = os.environ.get("BARE_MODEL_NAME", "model")

_model: Any = joblib.load(MODEL_PATH) if MODEL_PATH else None
_DATATYPES = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status, media_type="application/json")


async def ready(request: Request) -> Response:
    ok = _model is not None and request.path_params.get("name", MODEL_NAME) == MODEL_NAME
    return _json({"ready": ok}, 200 if ok else 503)


async def infer(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    tensor = doc["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    y = _model.predict(x)
    out = {
        "model_name": MODEL_NAME,
        "outputs": [
            {
                "name": "predict",
                "datatype": _DATATYPES.get(y.dtype.kind, "FP64"),
                "shape": list(y.shape),
                "data": y.tolist(),
            }
        ],
    }
    if "id" in doc:
        out["id"] = doc["id"]
    return _json(out)


app = Starlette(
    routes=[
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    ]
)
