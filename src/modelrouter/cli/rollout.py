"""``modelrouter rollout status|pause|resume|promote|abort``: the rollouts API of a gateway."""

from __future__ import annotations

import time
from typing import Any

import click

from modelrouter.cli.cli_http import call


def _call(ctx: click.Context, method: str, path: str) -> Any:
    return call(ctx.obj["url"], ctx.obj["token"], method, path)


def _weights(w: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in w.items()) or "-"


def describe(r: dict[str, Any]) -> str:
    lines = [
        f"{r['name']}: {r['strategy']} of {r['model']} rule {r['rule']}: "
        f"{r['primary']} -> {r['canary']}",
        f"  phase {r['phase']}, weights {_weights(r.get('weights') or {})}, "
        f"failed checks {r['failedChecks']}, checks passed {r['iterations']}",
        f"  {r.get('message') or ''}",
    ]
    if r.get("result"):
        lines.append(f"  result: {r['result']}")
    return "\n".join(lines)


def describe_step(h: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(h.get("time", 0)))
    line = f"  {when} {h.get('action'):<10} {h.get('phase', ''):<11} "
    line += f"{_weights(h.get('weights') or {})}  {h.get('reason', '')}"
    for c in h.get("checks") or []:
        mark = {True: "ok", False: "FAIL", None: "n/a"}[c.get("passed")]
        line += f"\n      {mark:<4} {c['reason']}"
    return line


@click.group()
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="The gateway.")
@click.option("--token", envvar="MODELROUTER_ADMIN_TOKEN", help="Admin token (or the env var).")
@click.pass_context
def rollout(ctx: click.Context, url: str, token: str | None) -> None:
    """Watch and steer rollouts."""
    ctx.obj = {"url": url, "token": token}


@rollout.command()
@click.argument("name", required=False)
@click.option("--history", "limit", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, name: str | None, limit: int, as_json: bool) -> None:
    """All rollouts, or NAME with its last steps."""
    import json

    if name is None:
        body = _call(ctx, "GET", "/api/v1/rollouts")
        if as_json:
            click.echo(json.dumps(body, indent=2))
            return
        for r in body["rollouts"]:
            click.echo(describe(r))
        if not body["rollouts"]:
            click.echo("no rollouts")
        return
    body = _call(ctx, "GET", f"/api/v1/rollouts/{name}?limit={limit}")
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(describe(body))
    for h in reversed(body.get("history", [])):
        click.echo(describe_step(h))


def _command(action: str, doc: str) -> click.Command:
    @click.argument("name")
    @click.pass_context
    def run(ctx: click.Context, name: str) -> None:
        click.echo(describe(_call(ctx, "POST", f"/api/v1/rollouts/{name}/{action}")))

    run.__doc__ = doc
    return click.command(action)(run)


rollout.add_command(_command("pause", "Hold NAME where it is."))
rollout.add_command(_command("resume", "Continue a paused NAME."))
rollout.add_command(_command("promote", "Promote NAME's canary now (skips the analysis)."))
rollout.add_command(_command("abort", "Roll NAME back: all traffic to the primary."))
