from __future__ import annotations

import pytest
from starlette.requests import Request

from modelrouter.api.auth import bearer_matches, check_token
from modelrouter.errors import Unauthorized


def request(authorization: bytes | None) -> Request:
    headers = [(b"authorization", authorization)] if authorization is not None else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (b"Bearer s3cret", True),
        (b"bearer s3cret ", True),
        (b"Bearer wrong", False),
        (b"Basic s3cret", False),
        (b"s3cret", False),
        ("Bearer säcret".encode("latin-1"), False),  # non-ASCII: a 401, never a 500
        (None, False),
    ],
)
def test_bearer_matches(header: bytes | None, ok: bool) -> None:
    assert bearer_matches(request(header), "s3cret") is ok


def test_a_non_ascii_token_works_when_sent_as_utf8() -> None:
    assert bearer_matches(request("Bearer jäger".encode()), "jäger")


def test_check_token() -> None:
    check_token(request(None), None, "open when no token is configured")
    check_token(request(b"Bearer t"), "t", "x")
    with pytest.raises(Unauthorized, match=r"feedback needs the token \(Authorization"):
        check_token(request(b"Bearer nope"), "t", "feedback needs the token")
