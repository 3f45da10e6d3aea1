"""Durations and sizes as users write them in the config file."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ValidationError

from modelrouter.config.durations import (
    ByteSize,
    Duration,
    format_duration,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("100us", 100e-6),
        ("100µs", 100e-6),
        ("0s", 0.0),
        (" 30s ", 30.0),
        ("2m0.5s", 120.5),
    ],
)
def test_duration_text(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize(("value", "seconds"), [(30, 30.0), (0.25, 0.25), (0, 0.0)])
def test_duration_bare_number_is_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text",
    ["", "ms", "30", "5y", "-1s", "1m 30s", "1s30", "30S", "1e3s", "ten seconds", "s30", "1.s"],
)
def test_bad_duration_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "250ms" in str(info.value), "the message shows an example"


@pytest.mark.parametrize("value", [True, None, [1], {"s": 1}, math.nan, math.inf])
def test_bad_duration_type(value: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


def test_negative_duration_number() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(-0.5)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (30.0, "30s"), (90.0, "90s"), (0.0, "0s")]
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("16MiB", 16 * 1024 * 1024),
        ("512k", 512_000),
        ("512KiB", 512 * 1024),
        ("1GB", 1_000_000_000),
        ("1gib", 1024**3),
        ("1000000", 1_000_000),
        ("1.5MiB", 1_572_864),
        ("16 MiB", 16 * 1024 * 1024),
        ("10b", 10),
        (4096, 4096),
        (0, 0),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["-1", "lots", "16XB", "MiB", "", True, 1.5, None, -5])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match=r"not a size|must not be negative"):
        parse_size(value)


class _Holder(BaseModel):
    timeout: Duration
    limit: ByteSize


def test_annotated_types_validate_and_serialize() -> None:
    h = _Holder.model_validate({"timeout": "1m30s", "limit": "2KiB"})
    assert h.timeout == 90.0
    assert h.limit == 2048
    assert h.model_dump() == {"timeout": "90s", "limit": 2048}
    with pytest.raises(ValidationError, match="not a duration"):
        _Holder.model_validate({"timeout": "soon", "limit": 1})


def test_days_and_weeks() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("1d12h") == 36 * 3600


def test_parse_time_forms() -> None:
    from modelrouter.config.durations import parse_time

    assert parse_time("10m", now=1000.0) == 400.0
    assert parse_time("1795429862", now=0.0) == 1795429862.0
    assert parse_time("2026-11-23T10:31:02Z", now=0.0) == 1795429862.0
    assert parse_time("2026-11-23T10:31:02", now=0.0) == 1795429862.0
    for bad in ("nan", "inf", "last tuesday", ""):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad, now=0.0)
