"""The one parser of an image size given as an int (square) or [height, width]."""

from __future__ import annotations

from numbers import Integral
from typing import Any

__all__ = ["parse_size", "size_or_none"]


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def parse_size(value: Any, option: str = "image_size") -> tuple[int, int]:
    """(height, width) from an int or a [height, width] pair; ValueError naming `option` otherwise."""
    if _is_int(value):
        pair: tuple[Any, Any] = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (value[0], value[1])
    else:
        raise ValueError(f"{option}: expected a positive int or [height, width], got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{option}: must be positive, got {value!r}")
    return int(pair[0]), int(pair[1])


def size_or_none(value: Any) -> tuple[int, int] | None:
    """`parse_size`, or None where `value` is not a size (optional config entries)."""
    try:
        return parse_size(value)
    except ValueError:
        return None
