"""``modelrouter audit``: read, explain, verify and prune the audit log.

``query``, ``explain`` and ``verify`` ask a gateway's control API with ``--url URL`` (and
``--token`` or ``$MODELROUTER_ADMIN_TOKEN``), as ``modelrouter rollout`` does; or, offline, read
the store itself with ``--store URL`` (or ``$MODELROUTER_STORE``) or ``--config FILE`` (its
``server.store``). Both ways run the same control-plane code
(:class:`~modelrouter.control.AuditReads`: the same filters, the same refusals). ``tail`` and
``prune`` work on the store. Attach with ``main.add_command(audit)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from modelrouter.audit.explain import iso_time, summarize
from modelrouter.cli_http import call
from modelrouter.config.durations import parse_duration, parse_time
from modelrouter.control.audit import AUDIT_KINDS, AuditFilter, AuditReads
from modelrouter.errors import InvalidInput, ModelRouterError
from modelrouter.store import Store, open_store

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def parse_age(text: str) -> float:
    """Seconds from ``30d``, ``2w``, ``12h``, ``90m``."""
    return parse_duration(text)


def parse_when(text: str, now: float | None = None) -> float:
    """Epoch seconds from an ISO time (no zone means UTC), epoch seconds, or a duration
    meaning "that long ago" (``10m``, ``2h``, ``1d``)."""
    return parse_time(text, time.time() if now is None else now)


def _age_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def store_url(store: str | None, config: Path | None) -> str:
    """The store URL from ``--store`` or from the config's ``server.store``."""
    if store and config:
        raise click.UsageError("give --store or --config, not both")
    if store:
        url = store
    elif config:
        from modelrouter.app import store_url as resolve_store_url
        from modelrouter.config.loader import load_config

        try:
            loaded = load_config(config)
            url = resolve_store_url(loaded.config.server.store, loaded.base_dir)
        except ModelRouterError as exc:
            raise click.ClickException(f"{config}: {exc.message}") from None
    else:
        raise click.UsageError("give --store URL (or set MODELROUTER_STORE) or --config FILE")
    if url.startswith("sqlite:"):
        from modelrouter.store.sqlite import sqlite_path

        try:
            path = sqlite_path(url)
        except ModelRouterError as exc:
            raise click.ClickException(exc.message) from None
        if not path.exists():
            raise click.ClickException(f"no store at {path} (from {url})")
    return url


def with_store(fn: F) -> F:
    """Add ``--store``/``--config`` to a command; it receives ``url``."""

    @click.option(
        "--store",
        "store",
        envvar="MODELROUTER_STORE",
        metavar="URL",
        help="Store URL: sqlite:///path.db or postgresql://user@host:port/db[?schema=s].",
    )
    @click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Config file whose server.store to use.",
    )
    @functools.wraps(fn)
    def wrapper(store: str | None, config: Path | None, **kwargs: Any) -> Any:
        return fn(url=store_url(store, config), **kwargs)

    return wrapper  # type: ignore[return-value]


def run(url: str, body: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Open the store, run ``body(store)``, close it; a bad filter is a usage error (exit 2),
    store errors a clean exit 1."""

    async def main() -> T:
        async with open_store(url) as store:
            return await body(store)

    try:
        return asyncio.run(main())
    except InvalidInput as exc:
        raise click.UsageError(exc.message) from None
    except ModelRouterError as exc:
        raise click.ClickException(exc.message) from None


class Target:
    """Where a read goes: a gateway's control API (``gateway``) or a store (``store``)."""

    def __init__(self, gateway: str | None, token: str | None, store: str | None) -> None:
        self.gateway = gateway
        self.token = token
        self.store = store

    def reads(self, body: Callable[[AuditReads], Coroutine[Any, Any, T]]) -> T:
        assert self.store is not None
        return run(self.store, lambda store: body(AuditReads(store)))

    def get(self, path: str, params: dict[str, str] | None = None, ok: tuple[int, ...] = ()) -> Any:
        assert self.gateway is not None
        return call(self.gateway, self.token, "GET", path, params, ok)


def with_target(fn: F) -> F:
    """Add ``--url``/``--token`` (a gateway) and ``--store``/``--config`` (offline); the
    command receives ``target``."""

    @click.option("--url", "gateway", metavar="URL", help="A gateway (its control API).")
    @click.option(
        "--token", envvar="MODELROUTER_ADMIN_TOKEN", help="Admin token for --url (or the env var)."
    )
    @click.option(
        "--store",
        "store",
        envvar="MODELROUTER_STORE",
        metavar="URL",
        help="Offline: store URL, sqlite:///path.db or postgresql://user@host:port/db[?schema=s].",
    )
    @click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Offline: the config file whose server.store to use.",
    )
    @functools.wraps(fn)
    def wrapper(
        gateway: str | None,
        token: str | None,
        store: str | None,
        config: Path | None,
        **kwargs: Any,
    ) -> Any:
        if gateway is not None:
            if config is not None:
                raise click.UsageError("give --url or --store/--config, not both")
            return fn(target=Target(gateway, token, None), **kwargs)
        return fn(target=Target(None, None, store_url(store, config)), **kwargs)

    return wrapper  # type: ignore[return-value]


def _line(record: dict[str, Any]) -> str:
    return (
        f"{record.get('seq', '?'):>8}  {iso_time(record.get('time'))}  "
        f"{record.get('kind', '?'):<8}  {summarize(record)}"
    )


def _emit(records: list[dict[str, Any]], as_json: bool) -> None:
    for r in records:
        click.echo(json.dumps(r, ensure_ascii=False, sort_keys=True) if as_json else _line(r))


@click.group(short_help="Read, explain, verify and prune the audit log.")
def audit() -> None:
    """Read, explain, verify and prune the audit log (routing decisions and changes)."""


@audit.command()
@with_store
@click.option("-n", "count", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--interval", type=float, default=0.5, show_default=True, help="Seconds between polls."
)
def tail(url: str, count: int, follow: bool, as_json: bool, interval: float) -> None:
    """Print the newest N records, oldest first; with --follow, keep printing new ones."""

    async def body(store: Store) -> None:
        newest = await store.query_audit(limit=count, order="desc")
        newest.reverse()
        _emit(newest, as_json)
        if not follow:
            return
        last = newest[-1]["seq"] if newest else (await store.audit_bounds()).head.seq
        while True:
            await asyncio.sleep(interval)
            fresh = await store.query_audit(limit=1000, order="asc", after_seq=last)
            if fresh:
                _emit(fresh, as_json)
                sys.stdout.flush()
                last = fresh[-1]["seq"]

    with contextlib.suppress(KeyboardInterrupt):
        run(url, body)


@audit.command()
@with_target
@click.option("--model", help="Only records of this model.")
@click.option("--version", "version", help="Only decisions served by this model version.")
@click.option("--rule", help="Only decisions made by this rule.")
@click.option("--kind", help=f"One of {', '.join(AUDIT_KINDS)}.")
@click.option("--request-id", help="Only the records of this request.")
@click.option("--since", help="ISO time, epoch seconds, or a duration ago (10m, 2h, 1d).")
@click.option("--until", help="ISO time, epoch seconds, or a duration ago.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="desc",
    show_default=True,
    help="By seq: desc lists the newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def query(target: Target, as_json: bool, **options: Any) -> None:
    """Records matching every filter given."""
    params = {k: str(v) for k, v in options.items() if v is not None}
    if target.gateway is not None:
        records = target.get("/api/v1/audit", params)["records"]
    else:
        try:
            filters = AuditFilter.parse(params)
        except InvalidInput as exc:
            raise click.UsageError(exc.message) from None
        records = target.reads(lambda reads: reads.query(filters))
    _emit(records, as_json)


@audit.command()
@with_target
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON as well.")
def explain(target: Target, request_id: str, as_json: bool) -> None:
    """Why REQUEST_ID was routed the way it was, in words."""
    if target.gateway is not None:
        doc = target.get(f"/api/v1/decisions/{quote(request_id, safe='')}")
    else:
        doc = target.reads(lambda reads: reads.explain(request_id))
    click.echo(doc["explanation"])
    if as_json:
        click.echo(json.dumps(doc["record"], ensure_ascii=False, sort_keys=True, indent=2))


@audit.command()
@with_target
def verify(target: Target) -> None:
    """Check the hash chain: exit 0 if no record was edited, deleted or reordered."""
    if target.gateway is not None:
        doc = target.get("/api/v1/audit/verify", ok=(409,))
    else:
        doc = target.reads(lambda reads: reads.verify()).to_json()
    if doc["ok"]:
        anchor = doc.get("anchorSeq") or 0
        since = f" (from seq {anchor + 1}; older ones pruned)" if anchor else ""
        click.echo(f"OK: {doc['checked']} records verified{since}")
        return
    click.echo(
        f"FAILED at seq {doc['firstBadSeq']}: {doc['reason']} "
        f"({doc['checked']} records verified before it)",
        err=True,
    )
    sys.exit(1)


@audit.command()
@with_store
@click.option("--max-age", callback=_age_option, help="Delete records older than this (30d, 12h).")
@click.option("--max-count", type=click.IntRange(min=0), help="Keep only the newest N records.")
@click.option("--actor", default="cli", show_default=True, help="Who prunes (on the record).")
def prune(url: str, max_age: float | None, max_count: int | None, actor: str) -> None:
    """Delete the oldest records; the chain stays verifiable from the first one kept."""
    if max_age is None and max_count is None:
        raise click.UsageError("give --max-age and/or --max-count")

    async def body(store: Store) -> int:
        return await store.prune_audit(max_age=max_age, max_count=max_count, actor=actor)

    deleted = run(url, body)
    click.echo(f"pruned {deleted} records")
