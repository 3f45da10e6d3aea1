"""``modelrouter validate`` and ``modelrouter serve``: check a config, serve it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import yaml

from modelrouter.audit.checkpoints import configured_signer
from modelrouter.config.loader import LoadedConfig, check_config_file, line_of, load_config
from modelrouter.errors import ConfigError, ModelRouterError
from modelrouter.runtime.custom import import_object
from modelrouter.runtime.probe import Probe, probe_versions
from modelrouter.runtime.registry import runtime_class
from modelrouter.sources import Sources, is_local_uri


def check_sources(loaded: LoadedConfig, offline: bool = False) -> list[ConfigError]:
    """Problems a schema cannot see: unknown formats, missing packages, custom classes that do
    not import, missing model files, and remote sources that cannot be fetched (an MLflow
    version or alias that does not exist, an unreachable tracking server, an empty S3 prefix, a
    URL that does not answer); ``offline`` leaves storage, registries and endpoints alone.
    Then every local version that passed is loaded in a child process, as ``serve`` would."""
    problems: list[ConfigError] = []
    sources = Sources.from_settings(loaded.config.server, loaded.base_dir)
    node = (
        yaml.compose(loaded.source.read_text(), Loader=yaml.SafeLoader) if loaded.source else None
    )
    loadable: list[Probe] = []
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
                    continue
            if vs.storageUri is None:
                if not vs.is_remote:
                    loadable.append((model, version, vs))
                continue
            local = is_local_uri(vs.storageUri)
            if offline and not local:
                continue
            field = [*loc, "storageUri"]
            try:
                sources.check(vs.storageUri)
            except ModelRouterError as exc:
                detail = exc.detail if isinstance(exc, ConfigError) else exc.message
                problems.append(ConfigError(detail, ".".join(field), line_of(node, field)))
                continue
            if local:
                loadable.append((model, version, vs))
    for (model, version), why in probe_versions(loadable, loaded.base_dir).items():
        vs = loaded.config.models[model].versions[version]
        field = ["models", model, "versions", version]
        field.append("storageUri" if vs.storageUri is not None else "implementation")
        problems.append(
            ConfigError(
                f"does not load as {vs.format}: {why}", ".".join(field), line_of(node, field)
            )
        )
    return sorted(problems, key=lambda p: p.line or 0)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--offline",
    is_flag=True,
    help="Leave storage, registries and endpoints alone (local files are still loaded).",
)
def validate(config: Path, offline: bool) -> None:
    """Check CONFIG: schema, rules, formats and model files.

    Each local version is loaded in a child process, as serve would load it; every problem is
    printed with its field and line. Exit 0 when all is well."""
    loaded, problems = check_config_file(config)
    if loaded is not None:
        try:
            configured_signer(loaded.config.server.audit.checkpoints, loaded.base_dir)
        except ConfigError as exc:
            problems.append(exc)
        problems = [*problems, *check_sources(loaded, offline)]
    for p in problems:
        click.echo(f"{config}: {p.message}", err=True)
    if problems or loaded is None:
        sys.exit(1)
    c = loaded.config
    n_versions = sum(len(m.versions) for m in c.models.values())
    click.echo(f"{config}: OK ({len(c.models)} models, {n_versions} versions)")


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", help="Address to bind (default: server.http.host).")
@click.option("--port", type=int, help="Port to bind (default: server.http.port).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Gateway processes on the one port (default: server.workers).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much the server logs.",
)
def serve(
    config: Path, host: str | None, port: int | None, workers: int | None, log_level: str
) -> None:
    """Serve the models of CONFIG over HTTP.

    KServe v1 (/v1/models/NAME:predict) and Open Inference Protocol v2 REST
    (/v2/models/NAME/infer). Every version loads before the server answers (or on its first
    request with server.lazyLoading); a version that fails to load is reported not ready and
    the others serve. SIGTERM drains: readiness turns 503, requests are served for
    server.shutdown.drain, then those in flight finish and the process exits 0.
    """
    from modelrouter.server import REUSE_PORT, Gateway, bind
    from modelrouter.workers import Supervisor

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        loaded = load_config(config)
        configured_signer(loaded.config.server.audit.checkpoints, loaded.base_dir)
        store = loaded.config.server.store_location()
        server = loaded.config.server
        host = host or server.http.host
        n = workers or server.workers
        if n > 1 and store.startswith("memory://"):
            raise ConfigError(
                f"{n} workers need a store they share (sqlite:///path or postgresql://...): "
                "a memory:// store is one per process",
                field="server.store",
            )
        reuse = n > 1 and REUSE_PORT
        sock = bind(
            host, server.http.port if port is None else port, reuse_port=reuse, listen=not reuse
        )
    except ConfigError as exc:
        click.echo(f"{config}: {exc.message}", err=True)
        sys.exit(1)
    if n > 1:
        sys.exit(Supervisor(loaded, sock, n, host, log_level, share=not reuse).run())
    try:
        code = Gateway(loaded, host, sock=sock, log_level=log_level).run()
    except ModelRouterError as exc:
        click.echo(f"{config}: {exc.message}", err=True)
        sys.exit(1)
    sys.exit(code)
