"""The shadow worker process imports only what a prediction needs (issue 11, item 5).

The gateway runs as the ``modelrouter`` console script, whose first line imports
``modelrouter.cli``; the worker is spawned, and ``spawn`` re-runs the parent's main file in the
child. So the probe below is a script file that starts the same way, predicts a real shadow
call in a real worker through :class:`ProcessShadows`, then asks the worker for its
``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import EXAMPLE_MODELS

pytestmark = pytest.mark.integration

NOT_IN_WORKER = (
    "starlette",
    "httpx",
    "uvicorn",
    "grpc",
    "pandas",  # hidden: scikit-learn imports it only when present
    "pyarrow",
    "prometheus_client",
    "modelrouter.app",
    "modelrouter.cli.serve",
    "modelrouter.store",
    "modelrouter.shadow.runner",
)

PROBE = """
from modelrouter.cli import main  # the console script's first line; spawn re-runs it

if __name__ == "__main__":
    import asyncio
    import json
    import os
    from pathlib import Path

    import numpy as np

    from modelrouter.config.schema import VersionSpec
    from modelrouter.protocol.types import InferenceRequest, Tensor
    from modelrouter.runtime.registry import create_runtime
    from modelrouter.shadow.process import ProcessShadows
    from modelrouter.shadow.worker import loaded_modules

    files = Path({files!r})
    spec = VersionSpec(storageUri=str(files), modelFormat="sklearn")
    runtime = create_runtime("churn", "v3", spec, files, files)
    runtime.load()
    x = np.ones((2, 10))
    request = InferenceRequest([Tensor("input-0", "FP64", [2, 10], x)])

    async def probe() -> dict[str, object]:
        shadows = ProcessShadows(files)
        try:
            outputs = await shadows.run(runtime, request)
            loop = asyncio.get_running_loop()
            pool = shadows._executor()
            modules = await loop.run_in_executor(pool, loaded_modules)
            worker = await loop.run_in_executor(pool, os.getpid)
        finally:
            await shadows.close()
        return {{
            "predicted": outputs[0].data.tolist(),
            "local": runtime.run(request)[0].data.tolist(),
            "modules": modules,
            "worker": worker,
            "gateway": os.getpid(),
        }}

    print(json.dumps(asyncio.run(probe())))
"""


def test_the_shadow_worker_does_not_import_the_web_stack(tmp_path: Path) -> None:
    script = tmp_path / "console_script.py"
    script.write_text(PROBE.format(files=str(EXAMPLE_MODELS / "churn" / "v3")))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["worker"] != doc["gateway"]  # it did run in another process
    assert doc["predicted"] == doc["local"]
    modules = set(doc["modules"])
    assert "sklearn" in modules  # the model loaded there
    assert "modelrouter.shadow.worker" in modules
    loaded = [
        m for m in NOT_IN_WORKER if m in modules or any(n.startswith(m + ".") for n in modules)
    ]
    assert loaded == []
