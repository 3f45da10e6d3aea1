"""The admin bearer token, checked the same way by every API that needs it."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from modelrouter.errors import Unauthorized


def bearer_matches(request: Request, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries ``token``, in constant time.

    Compared as bytes: ``compare_digest`` refuses non-ASCII ``str`` (a 500 for a stray byte),
    and header values arrive decoded as latin-1, so encoding back gives the bytes sent."""
    return authorization_matches(request.headers.get("authorization", ""), token)


def authorization_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` value (an HTTP header, gRPC metadata) is ``Bearer <token>``."""
    scheme, _, given = authorization.partition(" ")
    expected = token.encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("latin-1", "replace"), expected
    )


def check_token(request: Request, token: str | None, refusal: str) -> None:
    """401 with ``refusal`` unless the request carries ``token``; no token configured means
    the route is open."""
    if token and not bearer_matches(request, token):
        raise Unauthorized(f"{refusal} (Authorization: Bearer <token>)")
