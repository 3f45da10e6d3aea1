"""Linear-time regular expressions for routing rules: RE2, the syntax Istio uses.

Python's ``re`` backtracks: ``(a+)+b`` held the event loop for most of a second on one
header. RE2 matches in time linear in the text, whatever the pattern, and refuses what it
cannot do in linear time (backreferences, lookaround) when the rule is written.

The public ``re2`` API builds a match object per call (10 µs); rules only need a yes or no,
so :func:`fullmatcher` calls the compiled program directly when the binding offers it
(1.2 µs), and falls back to the public API otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

MAX_PROGRAM_MEMORY = 1 << 20
"""Bytes RE2 may use for one compiled pattern; a larger one (``(a{100}){100}``) is refused."""

_OPTIONS = re2.Options()
_OPTIONS.never_capture = True
_OPTIONS.log_errors = False
_OPTIONS.max_mem = MAX_PROGRAM_MEMORY


class RegexError(ValueError):
    """The pattern is not valid RE2 syntax, or too large."""


def compile_regex(pattern: str) -> Any:
    """The compiled pattern; :class:`RegexError` with RE2's reason when it cannot be used."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(
            f"invalid regex {pattern[:80]!r}: {reason} (RE2 syntax: no backreferences or "
            "lookaround)"
        ) from None


def fullmatcher(pattern: str) -> Callable[[str], bool]:
    """A function telling whether a whole string matches ``pattern``."""
    compiled = compile_regex(pattern)
    program = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "ANCHOR_BOTH", None)
    match = getattr(program, "Match", None)
    if match is None or anchor is None:  # pragma: no cover - another binding
        public = compiled.fullmatch
        return lambda text: public(text) is not None

    def fast(text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(match(anchor, data, 0, len(data))[0][0] >= 0)

    return fast
