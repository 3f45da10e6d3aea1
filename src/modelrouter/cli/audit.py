"""``modelrouter audit``: read, explain, verify, prune and checkpoint the audit log.

``query``, ``explain`` and ``verify`` ask a gateway's control API with ``--url URL`` (and
``--token`` or ``$MODELROUTER_ADMIN_TOKEN``), as ``modelrouter rollout`` does; or, offline, read
the store itself with ``--store URL`` (or ``$MODELROUTER_STORE``) or ``--config FILE`` (its
``server.store``). Both ways run the same control-plane code
(:class:`~modelrouter.control.AuditReads`: the same filters, the same refusals). ``tail`` and
``prune`` work on the store, and so do ``keygen``, ``checkpoint`` and ``verify --checkpoints``
(signed checkpoints of the head, kept outside the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from modelrouter.audit.checkpoints import (
    Checkpoint,
    CheckpointResult,
    verify_checkpoints,
    write_checkpoint,
)
from modelrouter.audit.explain import iso_time, summarize
from modelrouter.audit.query import check_kind
from modelrouter.audit.signing import PublicKey, SigningKey, load_public_key, load_signing_key
from modelrouter.audit.sinks import open_sink
from modelrouter.cli.cli_http import call
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
            url = resolve_store_url(loaded.config.server.store_location(), loaded.base_dir)
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
    if "kind" in params:
        try:
            check_kind(params["kind"])
        except InvalidInput as exc:
            raise click.BadParameter(exc.message, param_hint="'--kind'") from None
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
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON as well.")
def explain(target: Target, request_id: str, as_json: bool) -> None:
    """Why REQUEST_ID was routed the way it was, in words.

    Every record with that id is shown (decisions, feedback); when a client reused the id for
    several requests, each of their decisions is, and the first line says so.
    """
    if target.gateway is not None:
        doc = target.get(f"/api/v1/decisions/{quote(request_id, safe='')}")
    else:
        doc = target.reads(lambda reads: reads.explain(request_id))
    if doc.get("note"):
        click.echo(f"Note: {doc['note']}.")
    found = doc.get("records") or [doc["record"]]
    texts = doc.get("explanations") or [doc["explanation"]]
    several = len(found) > 1
    for record, text in zip(found, texts, strict=True):
        click.echo(f"[seq {record.get('seq', '?')}] {text}" if several else text)
    if as_json:
        shown = found if several else found[0]
        click.echo(json.dumps(shown, ensure_ascii=False, sort_keys=True, indent=2))


@audit.command()
@with_target
@click.option(
    "--checkpoints",
    "sink",
    metavar="SINK",
    help="Also check the signed checkpoints in this file or s3://bucket/key (offline only).",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The checkpoints' public key (PEM; a private key file works too).",
)
def verify(target: Target, sink: str | None, public_key: Path | None) -> None:
    """Check the hash chain: exit 0 if no record was edited, deleted, reordered or planted.

    With --checkpoints, also check the signed checkpoints written outside the store: they
    detect a log cut short or rewritten together with its head, which the chain alone cannot.
    """
    if public_key is not None and sink is None:
        raise click.UsageError("--public-key needs --checkpoints SINK")
    if sink is not None:
        if target.store is None:
            raise click.UsageError("--checkpoints reads the store itself: give --store or --config")
        _verify_checkpoints(target.store, sink, public_key)
        return
    if target.gateway is not None:
        doc = target.get("/api/v1/audit/verify", ok=(409,))
    else:
        doc = target.reads(lambda reads: reads.verify()).to_json()
    for gap in doc.get("gaps") or []:  # records a store fault lost, each explained
        click.echo(f"GAP: {gap['explanation']}")
    if doc["ok"]:
        lost = f"; {len(doc['gaps'])} gap(s) in the log, explained above" if doc.get("gaps") else ""
        click.echo(
            f"OK: {doc['checked']} records verified{_pruned(doc.get('anchorSeq') or 0)}{lost}"
        )
        return
    _failed(doc["firstBadSeq"], doc["reason"], doc["checked"])


def _pruned(anchor_seq: int) -> str:
    return f" (from seq {anchor_seq + 1}; older ones pruned)" if anchor_seq else ""


def _failed(seq: int | None, reason: str, checked: int) -> None:
    where = f"at seq {seq}" if seq is not None else "(checkpoints)"
    click.echo(f"FAILED {where}: {reason} ({checked} records verified before it)", err=True)
    sys.exit(1)


def _verify_checkpoints(url: str, target: str, public_key: Path | None) -> None:
    try:
        key = None if public_key is None else load_public_key(public_key)
        sink = open_sink(target)
    except ModelRouterError as exc:
        raise click.ClickException(exc.message) from None

    async def body(store: Store) -> tuple[CheckpointResult, int]:
        result = await verify_checkpoints(store, sink.lines(), key)
        return result, (await store.audit_bounds()).anchor.seq

    result, anchor_seq = run(url, body)
    chain = result.chain
    if not result.ok:
        _failed(result.first_bad_seq, result.reason, chain.checked)
    newest = result.newest
    assert newest is not None  # ok means at least one checkpoint verified
    click.echo(
        f"OK: {chain.checked} records verified{_pruned(anchor_seq)}; "
        f"{result.checkpoints} checkpoints signed by key {PublicKey.from_hex(newest.key).key_id} "
        f"agree (newest: seq {newest.seq} at {iso_time(newest.time)}"
        + (f", {result.pruned} before the pruned part" if result.pruned else "")
        + ")"
    )
    if not result.key_given:
        click.echo(
            "warning: checked against the key inside the checkpoints; give --public-key to "
            "rule out checkpoints forged with another key",
            err=True,
        )


@audit.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to write (the public key goes to OUT.pub).",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen(out: Path, force: bool) -> None:
    """Make an Ed25519 key pair for signed audit checkpoints.

    The private key (OUT, readable by its owner only) goes to the gateways
    (server.audit.checkpoints.keyFile, or its text in the variable named by keyEnv); the
    public key (OUT.pub) goes to whoever runs `audit verify --checkpoints`.
    """
    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists() and not force:
            raise click.ClickException(f"{path} exists (give --force to overwrite it)")
    try:
        key = SigningKey.generate()
    except ModelRouterError as exc:
        raise click.ClickException(exc.message) from None
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.pem())
        os.chmod(out, 0o600)
        pub.write_bytes(key.public.pem())
    except OSError as exc:
        raise click.ClickException(f"cannot write the key: {exc}") from None
    click.echo(f"private key: {out}\npublic key:  {pub}\nkey id:      {key.public.key_id}")


@audit.command()
@with_store
@click.option("--sink", required=True, help="File path or s3://bucket/key to append to.")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private key (PEM).",
)
@click.option("--key-env", metavar="NAME", help="Environment variable holding the private key.")
def checkpoint(url: str, sink: str, key_file: Path | None, key_env: str | None) -> None:
    """Sign the log's head now and append the checkpoint to SINK (what a gateway with
    server.audit.checkpoints does every interval; for cron or before a backup)."""
    if (key_file is None) == (key_env is None):
        raise click.UsageError("give --key-file or --key-env (one of them)")
    try:
        key = load_signing_key(key_file, key_env)
        target = open_sink(sink)
    except ModelRouterError as exc:
        raise click.ClickException(exc.message) from None

    async def body(store: Store) -> Checkpoint:
        return await write_checkpoint(store, target, key)

    c = run(url, body)
    click.echo(f"checkpoint: seq {c.seq} hash {c.hash[:16]}... at {iso_time(c.time)} -> {sink}")


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
