"""Argument checks shared by environments, policies and the collector.

Every check raises ``ValueError`` naming the parameter, the value given and what is allowed,
so a bad configuration fails at the boundary with a message a user can act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_range_text(low, high)}, got {value}")
    return value


def check_float(
    name: str, value: Any, low: float | None = None, high: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_range_text(low, high)}, got {value}")
    return value


def check_fraction(name: str, value: Any) -> float:
    return check_float(name, value, 0.0, 1.0)


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return value


def check_keys(what: str, given: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = sorted(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None:
        return f">= {low}"
    return f"<= {high}"
