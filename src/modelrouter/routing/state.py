"""The live routing table of a gateway, kept in step with the shared store.

The store holds each model's routing document (``{"http": [rules], "owners": {...}}``),
versioned. A gateway imports its config file into the store (only the rules the file owns, see
:mod:`modelrouter.routing.owners`; a compare-and-set on the document's version, so with
several gateways one of them writes and the others find nothing left to do), builds an
immutable :class:`RoutingTable` from the store, and swaps it atomically whenever the store
says something changed (any process, through :meth:`Store.watch`). Every document is
validated against the model's versions before it is written, so an invalid change is refused
and the old table keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelrouter.audit import records as audit_records
from modelrouter.config.loader import config_error
from modelrouter.config.schema import Config, ModelSpec
from modelrouter.errors import ConfigError, Conflict, InvalidInput, ModelNotFound, RolloutConflict
from modelrouter.routing.owners import (
    ACTIVE_PHASES,
    FILE,
    LeftAlone,
    compact,
    merge_file,
    owner,
    stamp,
    stored_owners,
)
from modelrouter.routing.table import RoutingTable, compile_model, rules_document
from modelrouter.store.base import RolloutWrite, RoutingRecord, Store

log = logging.getLogger(__name__)

IMPORT_ATTEMPTS = 5
REPORT_LEASE = 30.0


def routing_document(spec: ModelSpec) -> dict[str, Any]:
    return {"http": rules_document(spec)}


def stored_document(rules: list[dict[str, Any]], owners: dict[str, str] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"http": rules}
    if owners is not None:
        doc["owners"] = owners
    return doc


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
        self.left_alone: dict[str, list[LeftAlone]] = {}
        """Per model: the rules the last config-file import left to another owner."""
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

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
        """Import the config file into the store, then load the table from the store.

        A model with no document gets the file's rules; otherwise the file changes only the
        rules it owns (a document written through the admin API or by a rollout keeps those
        rules, logged and reported). Several gateways starting together write once.
        """
        for model, spec in self.config.models.items():
            await self.import_model(model, spec, self.config)
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
            # the file's import, as at start: a compare-and-set, so several gateways write once
            if await self.import_model(model, spec, self.file_config):
                seeded.append(model)
        await self.refresh()
        return seeded

    async def active_rollouts(self, config: Config, model: str) -> dict[str, str]:
        """``{rule: "rollout/<name>"}`` of the rollouts of ``config`` now running on ``model``
        (read from the store: every gateway sees the same)."""
        out: dict[str, str] = {}
        for name, spec in config.rollouts.items():
            if spec.model != model:
                continue
            rec = await self.store.get_rollout(name)
            if rec is not None and rec.state.get("phase") in ACTIVE_PHASES:
                out[spec.rule] = f"rollout/{name}"
        return out

    async def import_model(self, model: str, spec: ModelSpec, config: Config) -> bool:
        """Write what the config file owns of ``model``'s routing; True when this gateway
        wrote a new version. A compare-and-set on the stored version: when several gateways
        import the same edit, one writes and the others then find nothing to change."""
        file_rules = rules_document(spec)
        for _ in range(IMPORT_ATTEMPTS):
            rec = (await self.store.get_routing()).get(model)
            active = await self.active_rollouts(config, model)
            if rec is None:
                merge = merge_file(None, None, FILE, file_rules, active)
            else:
                current = rec.document.get("http")
                try:
                    self.validate(model, {"http": current})
                except (ConfigError, InvalidInput) as exc:
                    # written by a gateway with other versions: leave it, serve the file's
                    log.error("routing of %s v%d is invalid here: %s", model, rec.version, exc)
                    return False
                merge = merge_file(
                    current, stored_owners(rec.document), rec.actor, file_rules, active
                )
            self.left_alone[model] = merge.left_alone
            for left in merge.left_alone:
                log.warning(
                    "config file: rule %s of %s left alone: held by %s (%s)",
                    left.rule,
                    model,
                    left.owner,
                    left.why,
                )
            checked = routing_document(self.validate(model, {"http": merge.rules}))
            doc = stored_document(checked["http"], compact(merge.owners, FILE))
            if rec is not None and rec.document.get("http") == doc["http"]:
                # the file's rules are live already, or held by others: nothing to write
                await self._report(model, file_rules, merge.left_alone)
                return False
            reason = "rules from the config file"
            if merge.left_alone:
                reason += "; left alone: " + ", ".join(
                    f"{x.rule} (held by {x.owner})" for x in merge.left_alone
                )
            try:
                await self.store.put_routing(
                    model, doc, FILE, reason, expected_version=rec.version if rec else 0
                )
            except Conflict:
                continue  # another gateway (or an admin) wrote meanwhile: merge again
            await self._report(model, file_rules, merge.left_alone)
            return True
        raise Conflict(f"routing of {model} keeps changing; the config file import will retry")

    async def _report(
        self, model: str, file_rules: list[dict[str, Any]], left: list[LeftAlone]
    ) -> None:
        """One ``admin`` audit record per file edit that left rules to other owners, however
        many gateways import it: under a lease, and only if the newest such record of the
        model is not about the same file rules."""
        if not left:
            return
        digest = content_hash(file_rules)
        lease = f"config-import/{model}"
        if not await self.store.try_lock(lease, self.owner_id, REPORT_LEASE):
            return  # another gateway is reporting this very import
        try:
            recent = await self.store.query_audit(kind="admin", model=model, limit=50)
            last = next((r for r in recent if r.get("action") == "config-import"), None)
            if last is not None and last.get("fileRules") == digest:
                return
            await self.store.append_audit(
                [
                    audit_records.config_import(
                        actor=FILE,
                        model=model,
                        file_rules=digest,
                        left_alone=[x.to_json() for x in left],
                        reason="the config file's version of "
                        + ", ".join(f"{x.rule} (held by {x.owner}: {x.why})" for x in left)
                        + " was not applied",
                    )
                ]
            )
        finally:
            await self.store.release_lock(lease, self.owner_id)

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
                    specs[model] = self.validate(model, {"http": record.document.get("http")})
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
        rollout: RolloutWrite | None = None,
    ) -> RoutingRecord:
        """Validate, write to the store (audited there), and serve the new table at once.

        ``rollout``: a rollout state written in the same transaction (a step's weights and
        state are one change); its stale version raises
        :class:`~modelrouter.errors.RolloutConflict` at once, and nothing is written."""
        spec = self.validate(model, document)
        rules = routing_document(spec)["http"]
        file_spec = self.file_config.models.get(model)
        file_rules = rules_document(file_spec) if file_spec else []
        for attempt in range(IMPORT_ATTEMPTS):
            before = (await self.store.get_routing()).get(model)
            expected = expected_version
            if expected is None:
                # owners are computed from ``before``: write only over that version
                expected = before.version if before else 0
            owners = stamp(
                before.document.get("http") if before else None,
                stored_owners(before.document) if before else None,
                before.actor if before else FILE,
                rules,
                actor,
                file_rules,
            )
            try:
                record = await self.store.put_routing(
                    model,
                    stored_document(rules, compact(owners, actor)),
                    actor,
                    reason,
                    expected,
                    rollout,
                )
                break
            except RolloutConflict:
                raise  # the rollout moved on: its controller decides again
            except Conflict:
                if expected_version is not None or attempt == IMPORT_ATTEMPTS - 1:
                    raise
        await self.refresh()
        return record

    def document(self, model: str) -> dict[str, Any]:
        spec = self.specs.get(model)
        if spec is None:
            raise ModelNotFound(model)
        record = self.records.get(model)
        rules = routing_document(spec)
        recorded = stored_owners(record.document) if record else None
        actor = record.actor if record else FILE
        return {
            "model": model,
            "version": record.version if record else 0,
            "updatedAt": record.updated_at if record else None,
            "actor": record.actor if record else None,
            "tableVersion": self.table.version,
            **rules,
            "owners": {
                str(r["name"]): owner(recorded, actor, str(r["name"])) for r in rules["http"]
            },
            "leftAlone": [x.to_json() for x in self.left_alone.get(model, [])],
        }

    async def apply_config(self, config: Config) -> list[str]:
        """A changed config file: import the models whose rules differ from the file's
        previous contents (only what the file owns, see :meth:`import_model`); return the
        models this gateway wrote. New or changed versions need a restart."""
        changed = []
        for model, spec in config.models.items():
            base = self.config.models.get(model)
            if base is None or list(base.versions) != list(spec.versions):
                log.warning("model %s: new or changed versions apply after a restart", model)
                continue
            old = self.file_config.models.get(model)
            if old is None or rules_document(spec) != rules_document(old):
                self.validate(model, routing_document(spec))
                if await self.import_model(model, spec, config):
                    changed.append(model)
        self.file_config = config
        await self.refresh()
        return changed


def content_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
