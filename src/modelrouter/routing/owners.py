"""Who owns each rule of a model's live route: the config file, an admin actor, or a rollout.

A routing document in the store may carry ``owners``: ``{rule name: owner}``, where an owner is
``config-file``, ``rollout/<name>`` or ``admin/<actor>``. A name that is no longer among the
rules but still has an owner was removed by that owner (so the file does not bring it back).
When ``owners`` is absent, every rule (present or removed) belongs to the document's writer.

Pure functions: :func:`stamp` gives the owners after a write by an actor, :func:`merge_file`
decides what a config-file import may change. The I/O (the store, the active rollouts) is the
caller's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FILE = "config-file"
"""The owner (and actor) of rules that come from the config file."""

Rule = dict[str, Any]

ACTIVE_PHASES = frozenset({"Progressing", "Paused", "Promoting"})
"""Rollout phases in which the rollout holds its rule (it has written weights, not ended)."""


def owner_of(actor: str) -> str:
    """The owner a write by ``actor`` gives the rules it changes."""
    if actor == FILE or actor.startswith("rollout/"):
        return actor
    return f"admin/{actor}"


def stored_owners(document: Mapping[str, Any]) -> dict[str, str] | None:
    """The recorded ``{rule: owner}`` of a stored document, or None when not recorded (then
    every rule, present or removed, is the writer's)."""
    found = document.get("owners")
    if isinstance(found, Mapping):
        return {str(k): str(v) for k, v in found.items()}
    return None


def owner(owners: Mapping[str, str] | None, actor: str, rule: str) -> str:
    """The owner of ``rule`` in a document written by ``actor``. With recorded owners, a rule
    nobody recorded is nobody's yet: the file may add it."""
    if owners is None:
        return owner_of(actor)
    return owners.get(rule, FILE)


def stamp(
    before: Sequence[Rule] | None,
    before_owners: Mapping[str, str] | None,
    before_actor: str,
    after: Sequence[Rule],
    actor: str,
    file_rules: Sequence[Rule],
) -> dict[str, str]:
    """The owners after ``actor`` replaced the rules ``before`` with ``after``.

    An unchanged rule keeps its owner; a changed or new one becomes ``actor``'s, unless it is
    exactly the config file's version of that rule, which gives it back to the file. A rule
    that ``actor`` removed stays ``actor``'s (a tombstone) so a file import does not restore it.
    """
    old = {str(r["name"]): r for r in before or []}
    files = {str(r["name"]): r for r in file_rules}
    mine = owner_of(actor)
    out: dict[str, str] = {}
    for k, v in (before_owners or {}).items():
        if k not in old:
            out[k] = v  # an earlier removal
    for r in after:
        name = str(r["name"])
        if name in old and old[name] == r:
            out[name] = owner(before_owners, before_actor, name)
        elif files.get(name) == r:
            out[name] = FILE
        else:
            out[name] = mine
    names = {str(r["name"]) for r in after}
    for name in old:
        if name not in names:
            out[name] = mine
    return out


def compact(owners: Mapping[str, str], actor: str) -> dict[str, str] | None:
    """``owners`` as stored: None (omitted) when the file wrote a document it wholly owns."""
    if actor == FILE and all(v == FILE for v in owners.values()):
        return None
    return dict(owners)


@dataclass(frozen=True, slots=True)
class LeftAlone:
    """A rule a config-file import did not change because another owner holds it."""

    rule: str
    owner: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "owner": self.owner, "why": self.why}


@dataclass(frozen=True, slots=True)
class Merge:
    rules: list[Rule]
    owners: dict[str, str]
    left_alone: list[LeftAlone]


def merge_file(
    current: Sequence[Rule] | None,
    current_owners: Mapping[str, str] | None,
    current_actor: str,
    file_rules: Sequence[Rule],
    active: Mapping[str, str],
) -> Merge:
    """What the live rules become when the config file says ``file_rules``.

    The file changes only the rules it owns (and adds rules nobody holds). A rule held by an
    admin actor or a rollout (``active``: rule -> the rollout running on it, which holds it
    whoever wrote last) stays as it is, present or removed, and is reported in ``left_alone``
    when the file's version differs. Order: the file's, with kept rules the file does not have
    after the rule that preceded them.
    """
    if current is None:
        return Merge([copy.deepcopy(r) for r in file_rules], {}, [])
    live = {str(r["name"]): r for r in current}
    files = {str(r["name"]): r for r in file_rules}
    owners: dict[str, str] = {}
    left: list[LeftAlone] = []

    def holder(name: str) -> str:
        return active.get(name) or owner(current_owners, current_actor, name)

    out: list[Rule] = []
    for r in file_rules:
        name = str(r["name"])
        who = holder(name)
        if who == FILE:
            owners[name] = FILE
            out.append(copy.deepcopy(r))
            continue
        owners[name] = who
        if name in live:
            out.append(copy.deepcopy(live[name]))
        if live.get(name) != r:
            why = "an active rollout runs on it" if name in active else f"{who} set it"
            left.append(LeftAlone(name, who, why))
    for i, r in enumerate(current):
        name = str(r["name"])
        if name in files or holder(name) == FILE:
            continue  # the file's, or the file dropped it
        owners[name] = holder(name)
        before = {str(x["name"]) for x in current[:i]}
        at = 0
        for j, x in enumerate(out):
            if str(x["name"]) in before:
                at = j + 1
        out.insert(at, copy.deepcopy(r))
    for name, who in (current_owners or {}).items():
        if name not in live and name not in files and who != FILE:
            owners[name] = who  # removals the file does not undo
    return Merge(out, owners, left)
