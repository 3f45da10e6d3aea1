"""The ``modelrouter`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import yaml

from modelrouter._version import __version__
from modelrouter.cli_audit import audit
from modelrouter.cli_rollout import rollout
from modelrouter.config.loader import LoadedConfig, line_of, load_config
from modelrouter.errors import ConfigError, ModelRouterError
from modelrouter.runtime.custom import import_object
from modelrouter.runtime.registry import runtime_class
from modelrouter.sources import Sources
from modelrouter.traffic import traffic


def check_sources(loaded: LoadedConfig) -> list[ConfigError]:
    """Problems a schema cannot see: unknown formats, missing packages, custom classes that do
    not import, missing model files, and remote sources that cannot be fetched (an MLflow
    version or alias that does not exist, an unreachable tracking server, an empty S3 prefix, a
    URL that does not answer)."""
    problems: list[ConfigError] = []
    sources = Sources.from_settings(loaded.config.server, loaded.base_dir)
    node = (
        yaml.compose(loaded.source.read_text(), Loader=yaml.SafeLoader) if loaded.source else None
    )
    for model, spec in loaded.config.models.items():
        for version, vs in spec.versions.items():
            loc = ["models", model, "versions", version]
            try:
                runtime_class(vs.format)
            except ConfigError as exc:
                field = [*loc, "modelFormat"]
                problems.append(ConfigError(exc.detail, ".".join(field), line_of(node, field)))
                continue
            if vs.implementation is not None:
                field = [*loc, "implementation"]
                try:
                    import_object(vs.implementation)
                except ConfigError as exc:
                    problems.append(ConfigError(exc.detail, ".".join(field), line_of(node, field)))
            if vs.storageUri is None:
                continue
            field = [*loc, "storageUri"]
            try:
                sources.check(vs.storageUri)
            except ModelRouterError as exc:
                detail = exc.detail if isinstance(exc, ConfigError) else exc.message
                problems.append(ConfigError(detail, ".".join(field), line_of(node, field)))
    return problems


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelrouter")
def main() -> None:
    """modelrouter: serve many ML models and route every request between their versions.

    \b
    Quick start:
      modelrouter validate examples/churn/modelrouter.yaml
      modelrouter serve examples/churn/modelrouter.yaml
      curl -s localhost:8080/v2/models/churn/infer \\
           -d @examples/churn/requests/churn-v2.json
    """


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def validate(config: Path) -> None:
    """Check CONFIG: schema, rules, formats and model files. Exit 0 when all is well."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        click.echo(f"{config}: {exc.message}", err=True)
        sys.exit(1)
    problems = check_sources(loaded)
    for p in problems:
        click.echo(f"{config}: {p.message}", err=True)
    if problems:
        sys.exit(1)
    c = loaded.config
    n_versions = sum(len(m.versions) for m in c.models.values())
    click.echo(f"{config}: OK ({len(c.models)} models, {n_versions} versions)")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", help="Address to bind (default: server.http.host).")
@click.option("--port", type=int, help="Port to bind (default: server.http.port).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much the server logs.",
)
def serve(config: Path, host: str | None, port: int | None, log_level: str) -> None:
    """Serve the models of CONFIG over HTTP.

    KServe v1 (/v1/models/NAME:predict) and Open Inference Protocol v2 REST
    (/v2/models/NAME/infer). Every version loads before the server answers (or on its first
    request with server.lazyLoading); a version that fails to load is reported not ready and
    the others serve.
    """
    import uvicorn

    from modelrouter.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        click.echo(f"{config}: {exc.message}", err=True)
        sys.exit(1)
    http = loaded.config.server.http
    app = create_app(loaded)
    uvicorn.run(
        app,
        host=host or http.host,
        port=http.port if port is None else port,
        log_level=log_level,
        access_log=http.accessLog,
        loop="auto",
        http="auto",
        lifespan="on",
        # open connections (a dashboard's event stream never ends by itself) get this long
        # after a signal, then they are closed
        timeout_graceful_shutdown=5,
    )


main.add_command(audit)
main.add_command(rollout)
main.add_command(traffic)


if __name__ == "__main__":  # pragma: no cover
    main()
