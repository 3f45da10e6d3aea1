from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _no_admin_token_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own admin token: one exported in the shell must not leak in."""
    monkeypatch.delenv("MODELROUTER_ADMIN_TOKEN", raising=False)
