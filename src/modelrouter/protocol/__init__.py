"""Wire formats: Open Inference Protocol v2 (JSON + binary extension) and KServe v1."""

from modelrouter.protocol.types import (
    DTYPES,
    InferenceRequest,
    InferenceResponse,
    ModelSignature,
    RequestedOutput,
    Tensor,
    TensorSpec,
    datatype_of,
)

__all__ = [
    "DTYPES",
    "InferenceRequest",
    "InferenceResponse",
    "ModelSignature",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "datatype_of",
]
