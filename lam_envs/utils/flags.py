"""Command-line flags generated from configuration dataclasses.

A configuration field declared with :func:`~lam_envs.utils.config.option` carries its help
text (and its bounds, checked by the dataclass); :func:`add_flags`
turns every field of a dataclass into a flag (``latent_dim`` -> ``--latent-dim``), with the
default shown in ``--help``, and :func:`from_flags` builds the dataclass back from the parsed
arguments, so a run's configuration and its command line are one definition:

    @dataclass
    class VQConfig:
        steps: int = option(16_000, "Adam updates", low=1)

Types understood: int, float, str, bool (``--x`` / ``--no-x``), ``X | None`` (the flag
takes an X; absent means None), ``dict[str, ...]`` (repeatable ``KEY=VALUE``, values read as
JSON when they parse), and ``tuple[int, ...]`` (one or more values). An int flag takes
counts as people write them (``1_000``, ``1e6``); values are validated by the dataclass
itself, so a bad value (``1.5`` steps) is the same one-line error from the command line and
from Python. A help text that states its default ("(default 0.05, ...)") keeps it; any other
gets "(default: X)" appended.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from lam_envs.utils.cli import parse_value
from lam_envs.utils.config import base_type, option

__all__ = [
    "add_flags",
    "add_runtime_flags",
    "flag_names",
    "from_flags",
    "given_flags",
    "integer",
    "option",
]


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return "{}" if not value else " ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def flag_names(cls: type, skip: tuple[str, ...] = (), prefix: str = "") -> dict[str, tuple]:
    """field name -> its flags, for the fields :func:`add_flags` turns into flags."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        own = f.metadata.get("flags") if not prefix else None
        out[f.name] = own or ("--" + prefix + f.name.replace("_", "-"),)
    return out


def add_flags(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    skip: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
    title: str | None = None,
    prefix: str = "",
) -> None:
    """Add a flag for every field of ``cls`` (except ``skip``) to ``parser`` (in an argument
    group titled ``title`` when given). ``defaults`` overrides the defaults shown in help;
    ``prefix`` goes before every flag name (``--lam-steps``) and destination (``lam_steps``).

    Flags default to ``argparse.SUPPRESS``: :func:`from_flags` then knows which were given.
    """
    target = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    names = flag_names(cls, skip, prefix)
    for f in dataclasses.fields(cls):
        if f.name not in names:
            continue
        hint, optional = base_type(hints[f.name])
        if dataclasses.is_dataclass(hint):
            continue
        if defaults and f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        text = f.metadata.get("help", "")
        text = text() if callable(text) else text
        if "(default" not in text:
            text = f"{text} (default: {_show(default)})".strip()
        dest = prefix.replace("-", "_") + f.name
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": text}
        origin = typing.get_origin(hint) or hint
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is dict:
            kwargs.update(action="append", metavar="KEY=VALUE")  # read by given_flags
        elif origin is tuple:
            item = typing.get_args(hint)[0] if typing.get_args(hint) else str
            kwargs.update(nargs="+", type=item, metavar=f.name.upper())
        elif hint in (int, float, str):
            kwargs["type"] = integer if hint is int else hint
            kwargs["metavar"] = {"int": "N", "float": "X", "str": "TEXT"}[hint.__name__]
            if optional and hint is not str:
                kwargs["type"] = _optional(kwargs["type"])
        choices = f.metadata.get("choices")
        if choices is not None and not callable(choices):
            kwargs["metavar"] = "{" + ",".join(choices) + "}"  # checked by the dataclass
        kwargs.update(f.metadata.get("cli", {}))
        target.add_argument(*names[f.name], **kwargs)


def integer(text: str) -> int | float:
    """A count on the command line: '1000', '1_000', '1e6' (a float that is not integral,
    '1.5', is refused by the dataclass's check, naming the field)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


integer.__name__ = "int"  # argparse names the type in its error message: "invalid int value"


def _optional(kind: Any):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _pairs(flag: str, items: list[str]) -> dict[str, Any]:
    """A repeatable ``KEY=VALUE`` flag's values as a dict (values read as JSON when they
    parse); a malformed one is refused naming the flag."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = parse_value(value)
    return out


def given_flags(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` whose flags were given in ``args`` (KEY=VALUE pairs as dicts;
    a malformed pair is a ``ValueError`` naming its flag)."""
    hints = typing.get_type_hints(cls)
    names = flag_names(cls, prefix=prefix)
    out = {}
    for f in dataclasses.fields(cls):
        dest = prefix.replace("-", "_") + f.name
        if hasattr(args, dest):
            value = getattr(args, dest)
            if (typing.get_origin(base_type(hints[f.name])[0]) or hints[f.name]) is dict:
                value = _pairs(names[f.name][0], value)
            out[f.name] = value
    return out


def from_flags(cls: type, args: argparse.Namespace, base: Any = None, **fixed: Any) -> Any:
    """An instance of ``cls``: the flags given in ``args`` over ``base`` (an instance, or
    the defaults; a ``KEY=VALUE`` flag's pairs over the base's), and ``fixed`` over both.
    Validation is the dataclass's own."""
    names = [f.name for f in dataclasses.fields(cls)]
    values = {name: getattr(base, name) for name in names} if base is not None else {}
    for name, value in given_flags(cls, args).items():
        if isinstance(value, dict):
            value = {**values.get(name, {}), **value}
        values[name] = value
    values.update(fixed)
    return cls(**{k: v for k, v in values.items() if k in names})


def add_runtime_flags(parser: argparse.ArgumentParser, overwrite: bool = True) -> None:
    """The flags every training command shares: where it runs and how it reports."""
    group = parser.add_argument_group("running")
    group.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1, fastest for these small models on a busy CPU)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    group.add_argument(
        "--tensorboard",
        type=Path,
        metavar="DIR",
        help="also log the training curves to DIR for TensorBoard (pip install "
        "'lam-envs[tensorboard]')",
    )
    if overwrite:
        group.add_argument(
            "--overwrite", action="store_true", help="write into an --out folder that holds files"
        )
