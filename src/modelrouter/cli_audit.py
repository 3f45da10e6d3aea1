"""``modelrouter audit``: read, explain, verify and prune the audit log of a store.

Every command takes ``--store URL`` (or ``$MODELROUTER_STORE``) or ``--config FILE`` (its
``server.store``). Attach with ``main.add_command(audit)``.
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

import click

from modelrouter.audit.explain import explain as explain_record
from modelrouter.audit.explain import iso_time, summarize
from modelrouter.audit.gaps import gap_summaries
from modelrouter.config.durations import parse_duration, parse_time
from modelrouter.errors import ModelRouterError
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


def _when_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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
    """Open the store, run ``body(store)``, close it; store errors become a clean exit 1."""

    async def main() -> T:
        async with open_store(url) as store:
            return await body(store)

    try:
        return asyncio.run(main())
    except ModelRouterError as exc:
        raise click.ClickException(exc.message) from None


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
@with_store
@click.option("--model", help="Only records of this model.")
@click.option("--version", "version", help="Only decisions served by this model version.")
@click.option("--rule", help="Only decisions made by this rule.")
@click.option("--kind", help="decision, change, admin or rollout.")
@click.option("--request-id", help="Only the records of this request.")
@click.option("--since", callback=_when_option, help="ISO time, or a duration ago (10m, 2h, 1d).")
@click.option("--until", callback=_when_option, help="ISO time, or a duration ago.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="desc",
    show_default=True,
    help="By seq: desc lists the newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def query(
    url: str,
    model: str | None,
    version: str | None,
    rule: str | None,
    kind: str | None,
    request_id: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    order: str,
    as_json: bool,
) -> None:
    """Records matching every filter given."""

    async def body(store: Store) -> list[dict[str, Any]]:
        return await store.query_audit(
            model=model,
            version=version,
            rule=rule,
            kind=kind,
            request_id=request_id,
            since=since,
            until=until,
            limit=limit,
            order="asc" if order == "asc" else "desc",
        )

    _emit(run(url, body), as_json)


@audit.command()
@with_store
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON as well.")
def explain(url: str, request_id: str, as_json: bool) -> None:
    """Why REQUEST_ID was routed the way it was, in words."""

    async def body(store: Store) -> dict[str, Any] | None:
        return await store.get_decision(request_id)

    record = run(url, body)
    if record is None:
        raise click.ClickException(f"no decision recorded for request id {request_id!r}")
    click.echo(explain_record(record))
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False, sort_keys=True, indent=2))


@audit.command()
@with_store
def verify(url: str) -> None:
    """Check the hash chain: exit 0 if no record was edited, deleted or reordered."""

    async def body(store: Store) -> Any:
        return await store.verify_audit(), await store.audit_bounds(), await store.audit_gaps()

    result, bounds, gaps = run(url, body)
    for gap in gap_summaries(gaps):
        click.echo(f"GAP: {gap['explanation']}")
    if result.ok:
        since = (
            f" (from seq {bounds.anchor.seq + 1}; older ones {'lost' if gaps else 'pruned'})"
            if bounds.anchor.seq
            else ""
        )
        lost = f"; {len(gaps)} gap(s) in the log, explained above" if gaps else ""
        click.echo(f"OK: {result.checked} records verified{since}{lost}")
        return
    click.echo(
        f"FAILED at seq {result.first_bad_seq}: {result.reason} "
        f"({result.checked} records verified before it)",
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
