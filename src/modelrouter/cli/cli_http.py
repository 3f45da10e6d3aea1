"""How the CLI calls a gateway's control API: one client, one mapping of failures to exits.

A 400 from the gateway is a usage error (exit 2, as click's own), any other failure exit 1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import httpx


def call(
    url: str,
    token: str | None,
    method: str,
    path: str,
    params: Mapping[str, str] | None = None,
    ok: tuple[int, ...] = (),
) -> Any:
    """``method path`` on the gateway at ``url``; the JSON body, or a click error. Statuses in
    ``ok`` are answers (e.g. verify's 409), not failures."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30) as c:
            resp = c.request(method, path, params=dict(params or {}))
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}: {exc}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text}
    if resp.status_code >= 400 and resp.status_code not in ok:
        message = body.get("error", body) if isinstance(body, dict) else body
        if resp.status_code == 400:
            raise click.UsageError(str(message))
        raise click.ClickException(f"{resp.status_code}: {message}")
    return body
