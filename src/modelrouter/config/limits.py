"""Bounds on what a routing table may hold, checked wherever rules are written (the config
file and ``PUT /api/v1/models/{m}/routing`` validate through the same schema)."""

from __future__ import annotations

MAX_RULES = 256
"""Rules (``http`` entries) of one model."""
MAX_MATCH_BLOCKS = 16
"""``match`` blocks of one rule (they are ORed)."""
MAX_CONDITIONS = 64
"""Conditions of one rule, over all its blocks (headers, withoutHeaders, queryParams, body)."""
MAX_PATTERN_LENGTH = 1024
"""Characters of one ``exact``, ``prefix`` or ``regex`` value, and of one header, query
parameter or body path name."""
MAX_PATH_DEPTH = 16
"""Segments of a dotted body path (``user.segment`` has 2)."""
MAX_LIST = 16
"""Entries of ``mirrors`` and ``fallback`` of one rule."""


def check_body_path(path: str) -> str:
    """A dotted path into the JSON body; ValueError naming what is wrong.

    A segment that is a number indexes a list; only ASCII digits count (``²`` passes
    ``str.isdigit`` but is no number ``int`` reads)."""
    if not isinstance(path, str) or not path:
        raise ValueError("body path: must be a non-empty dotted path such as user.segment")
    if len(path) > MAX_PATTERN_LENGTH:
        raise ValueError(f"body path: {len(path)} characters; at most {MAX_PATTERN_LENGTH}")
    parts = path.split(".")
    if len(parts) > MAX_PATH_DEPTH:
        raise ValueError(
            f"body path {path[:80]!r}: {len(parts)} segments; at most {MAX_PATH_DEPTH}"
        )
    for part in parts:
        if not part:
            raise ValueError(f"body path {path!r}: empty segment (two dots, or a leading dot)")
        if part.isdigit() and not part.isascii():
            raise ValueError(
                f"body path {path!r}: segment {part!r} is not a list index (use ASCII digits 0-9)"
            )
    return path
