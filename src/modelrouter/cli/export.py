"""``modelrouter export kubernetes`` and ``modelrouter import``: to and from the manifests of
KServe, Istio, Flagger and Seldon."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modelrouter.errors import ConfigError


@click.group()
def export() -> None:
    """Write a config as another system's files."""


@export.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the manifests and kustomization.yaml.",
)
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--replicas", type=int, help="Gateway pods (default: 2 with a PostgreSQL store, else 1)."
)
@click.option(
    "--storage-prefix",
    help="Where local model files go (e.g. s3://bucket/models); the files to upload are listed.",
)
@click.option(
    "--mesh",
    type=click.Choice(["none", "istio"]),
    default="none",
    show_default=True,
    help="istio: mesh-only, a VirtualService and DestinationRules instead of the gateway.",
)
@click.option(
    "--models",
    type=click.Choice(["kserve", "in-process"]),
    default="kserve",
    show_default=True,
    help="kserve: an InferenceService per version; in-process: the models in the gateway.",
)
@click.option(
    "--rollouts",
    type=click.Choice(["none", "flagger"]),
    default="none",
    show_default=True,
    help="flagger: a Canary for each rollout Flagger can run (with --mesh istio).",
)
@click.option("--image", help="The gateway's container image (default: modelrouter:VERSION).")
def kubernetes(
    config: Path,
    out: Path,
    namespace: str,
    replicas: int | None,
    storage_prefix: str | None,
    mesh: str,
    models: str,
    rollouts: str,
    image: str | None,
) -> None:
    """Write CONFIG as Kubernetes manifests under OUT (apply with `kubectl apply -k OUT`).

    Prints the files to upload and the Secrets to create on stdout; on stderr, what is
    carried over only in part or left to you.
    """
    from modelrouter.config.loader import load_config
    from modelrouter.export.kubernetes import ExportOptions, export_kubernetes

    try:
        loaded = load_config(config)
        opts = ExportOptions(
            namespace=namespace,
            replicas=replicas,
            storage_prefix=storage_prefix,
            mesh=mesh,  # type: ignore[arg-type]
            models=models,  # type: ignore[arg-type]
            rollouts=rollouts,  # type: ignore[arg-type]
            **({"image": image} if image else {}),
        )
        result = export_kubernetes(loaded, opts)
    except ConfigError as exc:
        click.echo(f"{config}: {exc.message}", err=True)
        sys.exit(1)
    try:
        written = result.write(out, namespace)
    except OSError as exc:
        click.echo(f"--out: cannot write {exc.filename or out}: {exc.strerror}", err=True)
        sys.exit(1)
    for path in written:
        click.echo(f"wrote {path}")
    if result.uploads:
        click.echo("upload before applying:")
        for u in result.uploads:
            click.echo(f"  {u.local} -> {u.target}")
    if result.secrets:
        click.echo("create the Secrets it reads:")
        for command in result.secrets:
            click.echo(f"  {command}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


@click.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def import_(files: tuple[Path, ...]) -> None:
    """Turn KServe, Istio, Flagger or Seldon manifests into a config.

    Reads InferenceServices, VirtualServices and DestinationRules, Flagger Canaries (with
    their MetricTemplates) and Seldon Core 2 Experiments (with their Models); prints one
    modelrouter config on stdout, and what cannot be carried over on stderr.
    """
    from modelrouter.export.importer import import_manifests

    try:
        result = import_manifests(files)
    except ConfigError as exc:
        click.echo(f"import: {exc.message}", err=True)
        sys.exit(1)
    click.echo(result.text, nl=False)
    for note in result.notes:
        click.echo(f"not carried: {note}", err=True)
