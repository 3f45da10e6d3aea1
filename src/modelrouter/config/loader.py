"""Loading the config file, with errors that name the field and the line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelrouter.config.foreign import foreign_message
from modelrouter.config.schema import Config
from modelrouter.errors import ConfigError

_EMBEDDED_PATH = re.compile(
    r"^(?:Value error, )?([A-Za-z0-9_]+(?:\.[A-Za-z0-9_\-]+)*): (.*)$", re.S
)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config and the file it came from (relative storage URIs resolve against it)."""

    config: Config
    source: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()


def load_config(path: str | Path) -> LoadedConfig:
    p = Path(path)
    return LoadedConfig(parse_config(read_config_text(p)), p.resolve())


def read_config_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None


def check_config_file(path: str | Path) -> tuple[LoadedConfig | None, list[ConfigError]]:
    """Like :func:`load_config`, but every schema problem of the file rather than the first."""
    p = Path(path)
    try:
        text = read_config_text(p)
    except ConfigError as exc:
        return None, [exc]
    config, problems = check_config_text(text)
    return (LoadedConfig(config, p.resolve()) if config is not None else None), problems


def parse_config(text: str) -> Config:
    """Validate YAML text into a :class:`Config`; raise :class:`ConfigError` at the first
    problem."""
    config, problems = check_config_text(text)
    if problems:
        raise problems[0]
    assert config is not None
    return config


def check_config_text(text: str) -> tuple[Config | None, list[ConfigError]]:
    """The config of YAML ``text``, or every problem the schema finds in it (a YAML syntax
    error or a duplicate key is one problem: nothing after it can be trusted; so is a
    Kubernetes manifest given where a config belongs)."""
    foreign = foreign_message(text)
    if foreign is not None:
        return None, [ConfigError(foreign, line=1)]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None and mark.line >= len(text.splitlines()):
            # the text ended inside something left open: point at where it opened
            mark = getattr(exc, "context_mark", None) or mark
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and opened is not None and opened.line + 1 != line:
            problem += f" ({context} that starts on line {opened.line + 1})"
        return None, [ConfigError(f"invalid YAML: {problem}", line=line)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [ConfigError("the config must be a mapping with server and models", line=1)]
    duplicate = duplicate_key(node)
    if duplicate is not None:
        dup_loc, dup_line = duplicate
        return None, [
            ConfigError(
                f"duplicate key {dup_loc[-1]!r} (YAML would silently keep only the last one)",
                field=".".join(dup_loc),
                line=dup_line,
            )
        ]
    try:
        return Config.model_validate(data), []
    except ValidationError as exc:
        return None, config_errors(exc, node)


def config_errors(
    exc: ValidationError, node: Any = None, prefix: tuple[str, ...] = ()
) -> list[ConfigError]:
    """Every problem of a pydantic error, as :func:`config_error` words the first."""
    return [_one_error(err, node, prefix) for err in exc.errors()]


def config_error(
    exc: ValidationError, node: Any = None, prefix: tuple[str, ...] = ()
) -> ConfigError:
    """The first problem of a pydantic error as a :class:`ConfigError` naming the dotted field
    (under ``prefix``) and, when the YAML ``node`` is given, the line."""
    return _one_error(exc.errors()[0], node, prefix)


def _one_error(err: Any, node: Any, prefix: tuple[str, ...]) -> ConfigError:
    # an invalid dict key is reported at ``(..., key, "[key]")``: name the key itself
    loc = [*prefix, *(str(part) for part in err["loc"] if part != "[key]")]
    msg = err["msg"]
    m = _EMBEDDED_PATH.match(msg)
    if m and err["type"] == "value_error":
        loc += m.group(1).split(".")
        msg = m.group(2)
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}"
    return ConfigError(msg, field=".".join(loc) or None, line=line_of(node, loc))


def duplicate_key(node: Any, loc: tuple[str, ...] = ()) -> tuple[list[str], int] | None:
    """The path and 1-based line of the first key given twice in one YAML mapping."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen and name != "<<":
                return [*loc, name], key.start_mark.line + 1
            seen.add(name)
            found = duplicate_key(value, (*loc, name))
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = duplicate_key(item, (*loc, str(i)))
            if found is not None:
                return found
    return None


def line_of(node: Any, loc: list[str]) -> int | None:
    """The 1-based line of the deepest YAML node on ``loc`` that exists."""
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == part:
                    # a missing-value error points at the key, others at the value
                    line = key.start_mark.line + 1
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
