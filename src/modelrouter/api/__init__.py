"""Transports over the data plane: REST (KServe v1, Open Inference Protocol v2)."""
