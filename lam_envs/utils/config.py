"""Configuration dataclasses whose fields carry their help text and their bounds.

A field declared with :func:`option` says what it means and what it accepts, in one place::

    @dataclass
    class TrainerConfig(Checked):
        steps: int = option(1500, "Adam updates", low=1)
        lr: float = option(3e-2, "Adam learning rate", above=0)
        schedule: str = option("cosine", "how the rate decays", choices=("cosine", "constant"))

:class:`Checked` (or :func:`check_fields`, from a ``__post_init__``) validates every declared
field with the checks of :mod:`lam_envs.utils.validate`, so the message a user sees names the
field, the value and what is allowed ("steps must be >= 1, got 0"), and stores the value in
its canonical type (``16.0`` given for an ``int`` becomes ``16``). Fields annotated ``bool``
must be ``True`` or ``False``. :mod:`lam_envs.utils.flags` turns the same fields into
command-line flags.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from lam_envs.utils.validate import check_choice, check_float, check_int

__all__ = ["Checked", "base_type", "check_fields", "option"]


def option(
    default: Any,
    help: str | Callable[[], str],
    *,
    flags: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
    check: Callable[[str, Any], Any] | None = None,
    cli: dict[str, Any] | None = None,
) -> Any:
    """A dataclass field with help text and bounds.

    ``default`` may be a type (``dict``, ``list``) for a fresh empty value. ``help`` may be
    a function (help that lists what is registered when the parser is built). ``flags``
    replaces the generated flag names (e.g. ``("--env-kwarg", "-k")``). ``low``/``high``:
    inclusive bounds; ``above``/``below``: exclusive ones; ``choices``: the allowed strings
    (or a function returning them); ``check(name, value) -> value``: a check (or conversion)
    of the field's own, run before the bounds. ``None`` passes for an ``X | None`` field.
    ``cli``: ``argparse`` keywords of the field's flag beyond the generated ones (``nargs``).
    """
    metadata = {"help": help, "flags": flags}
    for key, value in (
        ("low", low),
        ("high", high),
        ("above", above),
        ("below", below),
        ("choices", choices),
        ("check", check),
        ("cli", cli),
    ):
        if value is not None:
            metadata[key] = value
    if default in (dict, list):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def base_type(hint: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(hint))
    return hint, False


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_field(name: str, value: Any, hint: Any, metadata: Any) -> Any:
    """``value`` of the field ``name`` (type ``hint``, declared ``metadata``), checked and in
    its canonical type."""
    kind, optional = base_type(hint)
    if value is None and optional:
        return value
    if "check" in metadata:
        value = metadata["check"](name, value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return value
    if "choices" in metadata:
        choices = metadata["choices"]
        return check_choice(name, value, choices() if callable(choices) else choices)
    low, high = metadata.get("low"), metadata.get("high")
    above, below = metadata.get("above"), metadata.get("below")
    if kind is int and (low is not None or high is not None):
        return check_int(name, value, low, high)
    if kind is float and any(b is not None for b in (low, high, above, below)):
        value = check_float(name, value, low, high, above=above, below=below)
    return value


def check_fields(config: Any) -> None:
    """Check every field of the dataclass instance ``config`` against its declaration
    (:func:`option`'s bounds, choices and check; ``bool`` annotations), in field order, and
    store each value in its canonical type (frozen dataclasses too)."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        checked = check_field(f.name, value, hints[f.name], f.metadata)
        if checked is not value:
            object.__setattr__(config, f.name, checked)


class Checked:
    """A base for configuration dataclasses: ``__post_init__`` checks every declared field
    (:func:`check_fields`). A subclass with checks of its own (between fields) overrides
    ``__post_init__`` and calls ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        check_fields(self)
