"""A KServe ModelServer serving a scikit-learn joblib file, as a KServe user writes one.

Run with the kserve virtualenv's Python: ``python kserve_sklearn_server.py --http_port P
--grpc_port G`` (KServe parses its own arguments); the model file and name come from the
environment (``PEER_MODEL_FILE``, ``PEER_MODEL_NAME``). It answers ``predict`` (INT64) and,
when asked, ``predict_proba`` (FP64).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import joblib
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class SklearnModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.model: Any = None
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        assert isinstance(payload, InferRequest)
        x = payload.inputs[0].as_numpy()
        wanted = (
            [o.name for o in payload.request_outputs] if payload.request_outputs else ["predict"]
        )
        outputs = []
        for name in wanted:
            y = self.model.predict(x) if name == "predict" else self.model.predict_proba(x)
            out = InferOutput(name, list(y.shape), "INT64" if name == "predict" else "FP64")
            out.set_data_from_numpy(y, binary_data=False)
            outputs.append(out)
        # KServe's response needs an id; a request without one (the v2 spec makes it optional)
        # gets a fresh one, as KServe's own servers do
        rid = payload.id or uuid.uuid4().hex
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=rid)


if __name__ == "__main__":
    model = SklearnModel(os.environ["PEER_MODEL_NAME"], os.environ["PEER_MODEL_FILE"])
    ModelServer().start([model])
