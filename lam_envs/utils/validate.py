"""Argument checks shared by environments, policies and the collector.

Every check raises ``ValueError`` naming the parameter, the value given and what is allowed,
so a bad configuration fails at the boundary with a message a user can act on. The checks
return the value in its canonical Python type (``int`` or ``float``): numpy scalars
(``np.int64(16)``, ``np.float32(0.5)``) are numbers like any other, and an integral float
(``16.0``) given where an integer is expected is converted, so nothing downstream ever sees
a numpy scalar or a float shape.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

#: The largest finite float32: the bound of every value an observation (float32) holds.
FLOAT32_MAX = 3.4028234663852886e38


def _is_number(value: Any) -> bool:
    # numbers.Real covers int, float and numpy's integer and floating scalars; bool (and
    # numpy's bool_) are numbers to Python but never what a parameter means.
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and (type(value).__name__ != "bool_")
    )


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int``; integral floats are converted, anything else is refused."""
    if not _is_number(value) or not math.isfinite(value) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_range_text(low, high)}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
) -> float:
    """``value`` as a finite ``float`` (inf and NaN are refused) within [low, high] and
    (above, below)."""
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
        or (below is not None and value >= below)
    ):
        raise ValueError(f"{name} must be {_range_text(low, high, above, below)}, got {value}")
    return value


def check_fraction(name: str, value: Any) -> float:
    return check_float(name, value, 0.0, 1.0)


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return value


def check_seed(name: str, value: Any) -> int | None:
    """A reset seed: ``None`` or a non-negative integer (numpy integers too; not 1.5)."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
    return check_int(name, value, low=0)


def check_keys(what: str, given: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = sorted(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )


def _range_text(low, high, above=None, below=None) -> str:
    """ "in [0, 1]", ">= 1", "> 0", "< 1", "in (0, 1)", "in (0, 1]"."""
    lower = f"({above}" if above is not None else None if low is None else f"[{low}"
    upper = f"{below})" if below is not None else None if high is None else f"{high}]"
    if lower is not None and upper is not None:
        return f"in {lower}, {upper}"
    if lower is not None:
        return f"> {above}" if above is not None else f">= {low}"
    return f"< {below}" if below is not None else f"<= {high}"
