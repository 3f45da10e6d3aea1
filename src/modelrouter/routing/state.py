"""The live routing table of a gateway, kept in step with the shared store.

The store holds each model's routing document (``{"http": [rules]}``), versioned. A gateway
seeds the store from its config file for models that have no document yet, builds an
immutable :class:`RoutingTable` from the store, and swaps it atomically whenever the store
says something changed (any process, through :meth:`Store.watch`). Every document is
validated against the model's versions before it is written, so an invalid change is refused
and the old table keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelrouter.config.loader import config_error
from modelrouter.config.schema import Config, ModelSpec
from modelrouter.errors import ConfigError, Conflict, InvalidInput, ModelNotFound
from modelrouter.routing.table import RoutingTable, compile_model, rules_document
from modelrouter.store.base import RoutingRecord, Store

log = logging.getLogger(__name__)


CONFIG_ACTORS = frozenset({"config-file"})
"""Actors of documents that came from a config file rather than from a person."""


def routing_document(spec: ModelSpec) -> dict[str, Any]:
    return {"http": rules_document(spec)}


class RoutingState:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.file_config = config
        """The config file as last read: a reload writes only the rules that changed in it."""
        self.store = store
        self.specs: dict[str, ModelSpec] = dict(config.models)
        self.records: dict[str, RoutingRecord] = {}
        self.table = RoutingTable(
            0, {name: compile_model(name, spec) for name, spec in self.specs.items()}
        )
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ validation

    def validate(self, model: str, document: Any) -> ModelSpec:
        """The model with ``document``'s rules, or :class:`ConfigError` naming the field."""
        base = self.config.models.get(model)
        if base is None:
            raise ModelNotFound(model)
        if not isinstance(document, Mapping) or not isinstance(document.get("http"), list):
            raise InvalidInput("the routing document must be an object with an 'http' list")
        unknown = set(document) - {"http"}
        if unknown:
            raise InvalidInput(f"unknown field {sorted(unknown)[0]!r} in the routing document")
        data = base.model_dump(exclude={"http"})
        data["http"] = document["http"]
        try:
            return ModelSpec.model_validate(data)
        except ValidationError as exc:
            err = config_error(exc)
            raise ConfigError(err.detail, field=err.field) from None

    # ------------------------------------------------------------------ store sync

    async def start(self) -> None:
        """Seed the store from the config file, then load the table from the store.

        A model with no document gets the file's rules. A document last written from a config
        file that now differs (the file was edited while no gateway ran) is replaced by the
        file's rules. A document written through the admin API wins over the file (logged).
        """
        records = await self.store.get_routing()
        for model, spec in self.config.models.items():
            doc = routing_document(spec)
            rec = records.get(model)
            if rec is not None and rec.document == doc:
                continue
            if rec is not None and rec.actor not in CONFIG_ACTORS:
                log.warning(
                    "routing of %s was set by %s (version %d) and overrides the config file",
                    model,
                    rec.actor,
                    rec.version,
                )
                continue
            with contextlib.suppress(Conflict):  # another gateway got there first
                await self.store.put_routing(
                    model,
                    doc,
                    "config-file",
                    "rules from the config file",
                    expected_version=rec.version if rec is not None else 0,
                )
        await self.refresh()

    async def reseed(self) -> list[str]:
        """After the store lost its state (see :mod:`modelrouter.store_guard`): write the config
        file's rules (as last read) for every model that has no document in the store any more,
        then reload. Returns the models seeded here (another gateway may have done the rest)."""
        records = await self.store.get_routing()
        seeded = []
        for model, spec in self.file_config.models.items():
            if model in records or model not in self.config.models:
                continue
            with contextlib.suppress(Conflict):  # another gateway got there first
                await self.store.put_routing(
                    model,
                    routing_document(spec),
                    "config-file",
                    "rules from the config file: the store had lost them",
                    expected_version=0,
                )
                seeded.append(model)
        await self.refresh()
        return seeded

    async def refresh(self) -> None:
        """Rebuild the table from the store's documents (called on every change)."""
        async with self._lock:
            revision = await self.store.revision()
            records = await self.store.get_routing()
            specs = dict(self.specs)
            for model, record in records.items():
                if model not in self.config.models:
                    continue
                try:
                    specs[model] = self.validate(model, record.document)
                except (ConfigError, InvalidInput) as exc:
                    # written by a gateway with other versions: keep what we have
                    log.error("routing of %s v%d is invalid here: %s", model, record.version, exc)
                    continue
            self._swap(specs, records, revision)

    def _swap(
        self, specs: dict[str, ModelSpec], records: Mapping[str, RoutingRecord], revision: int
    ) -> None:
        models = {name: compile_model(name, spec) for name, spec in specs.items()}
        self.specs = specs
        self.records = dict(records)
        self.table = RoutingTable(revision, models)

    async def update(
        self,
        model: str,
        document: Any,
        actor: str,
        reason: str,
        expected_version: int | None = None,
    ) -> RoutingRecord:
        """Validate, write to the store (audited there), and serve the new table at once."""
        spec = self.validate(model, document)
        record = await self.store.put_routing(
            model, routing_document(spec), actor, reason, expected_version
        )
        await self.refresh()
        return record

    def document(self, model: str) -> dict[str, Any]:
        spec = self.specs.get(model)
        if spec is None:
            raise ModelNotFound(model)
        record = self.records.get(model)
        return {
            "model": model,
            "version": record.version if record else 0,
            "updatedAt": record.updated_at if record else None,
            "actor": record.actor if record else None,
            "tableVersion": self.table.version,
            **routing_document(spec),
        }

    async def apply_config(self, config: Config, actor: str = "config-file") -> list[str]:
        """A changed config file: write the rules that differ from the file's previous
        contents to the store; return those models. New or changed versions need a restart."""
        changed = []
        for model, spec in config.models.items():
            base = self.config.models.get(model)
            if base is None or list(base.versions) != list(spec.versions):
                log.warning("model %s: new or changed versions apply after a restart", model)
                continue
            old = self.file_config.models.get(model)
            if old is None or rules_document(spec) != rules_document(old):
                await self.update(model, routing_document(spec), actor, "config file changed")
                changed.append(model)
        self.file_config = config
        return changed
