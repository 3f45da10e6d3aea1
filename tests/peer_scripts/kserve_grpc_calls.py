"""Run by tests/integration/test_grpc_peers.py with the kserve virtualenv's Python.

Calls a gateway with the KServe SDK's ``InferenceGRPCClient`` and prints what it saw as JSON.
argv: HOST:PORT ROWS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest


async def main(target: str, rows: list[list[float]]) -> dict[str, Any]:
    x = np.array(rows, dtype=np.float64)
    out: dict[str, Any] = {}
    client = InferenceGRPCClient(target, timeout=30, retries=0)

    def request(binary: bool, model: str = "churn", **kw: Any) -> InferRequest:
        inp = InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x, binary_data=binary)
        return InferRequest(model, [inp], **kw)

    async def infer(req: InferRequest, headers: list[tuple[str, str]] | None = None) -> Any:
        resp = await client.infer(req, headers=headers)
        return {
            "model_version": resp.model_version,
            "id": resp.id,
            "outputs": {o.name: o.as_numpy().tolist() for o in resp.outputs},
        }

    out["live"] = await client.is_server_live()
    out["ready"] = await client.is_server_ready()
    out["model_ready"] = await client.is_model_ready("churn")
    out["typed"] = await infer(request(False, request_id="ks-1"))
    out["raw"] = await infer(request(True))
    out["eu"] = (await infer(request(False), [("x-region", "eu")]))["outputs"]
    users = {}
    for i in range(12):
        seen = set()
        for _ in range(3):
            seen.add(json.dumps((await infer(request(True), [("x-user-id", f"u{i}")]))["outputs"]))
        users[f"u{i}"] = len(seen)
    out["sticky_distinct_answers"] = users
    try:
        await client.infer(request(False, model="nope"))
        out["unknown_model"] = "OK"
    except grpc.RpcError as exc:
        out["unknown_model"] = [exc.code().name, exc.details()]
    await client.close()
    return out


print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))))
