"""What a request id becomes on its way to a remote version."""

from __future__ import annotations

import pytest

from modelrouter.runtime.remote import header_id


@pytest.mark.parametrize("rid", ["abc", "req-42", "a.b_c:d+e=f", "x" * 128])
def test_safe_ids_travel_as_they_are(rid: str) -> None:
    assert header_id(rid) == rid


@pytest.mark.parametrize("rid", ["a\r\nx-injected: 1", "café", "中", "a b", "a/b", "x" * 129, ""])
def test_other_ids_travel_as_a_stable_digest(rid: str) -> None:
    out = header_id(rid)
    assert out.startswith("sha256-")
    assert len(out) == 39
    assert out == header_id(rid)
    assert out.isascii()
    assert "\r" not in out
    assert "\n" not in out
