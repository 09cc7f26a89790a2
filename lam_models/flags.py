"""Command-line flags generated from configuration dataclasses.

A configuration field declared with :func:`option` carries its help text; :func:`add_flags`
turns every field of a dataclass into a flag (``latent_dim`` -> ``--latent-dim``), with the
default shown in ``--help``, and :func:`from_flags` builds the dataclass back from the parsed
arguments, so a run's configuration and its command line are one definition:

    @dataclass
    class VQConfig:
        steps: int = option(16_000, "Adam updates")

Types understood: int, float, str, bool (``--x`` / ``--no-x``), ``X | None`` (the flag
takes an X; absent means None), ``dict[str, ...]`` (repeatable ``KEY=VALUE``, values read as
JSON when they parse), and ``tuple[int, ...]`` (one or more values). Values are validated by
the dataclass itself, so a bad value is the same one-line error from the command line and
from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from lam_envs.utils.cli import parse_value

__all__ = ["add_flags", "flag_names", "from_flags", "given_flags", "option"]


def option(default: Any, help: str, *, flags: tuple[str, ...] = ()) -> Any:
    """A dataclass field with help text. ``default`` may be a type (``dict``, ``list``) for
    a fresh empty value; ``flags`` replaces the generated flag names (e.g. ``("--env-kwarg",
    "-k")``)."""
    metadata = {"help": help, "flags": flags}
    if default in (dict, list):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(hint))
    return hint, False


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
        hint, optional = _base_type(hints[f.name])
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
        text = f"{f.metadata.get('help', '')} (default: {_show(default)})".strip()
        dest = prefix.replace("-", "_") + f.name
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": text}
        origin = typing.get_origin(hint) or hint
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is dict:
            kwargs.update(action="append", metavar="KEY=VALUE", type=_key_value)
        elif origin is tuple:
            item = typing.get_args(hint)[0] if typing.get_args(hint) else str
            kwargs.update(nargs="+", type=item, metavar=f.name.upper())
        elif hint in (int, float, str):
            kwargs["type"] = hint
            kwargs["metavar"] = {"int": "N", "float": "X", "str": "TEXT"}[hint.__name__]
            if optional and hint is not str:
                kwargs["type"] = _optional(hint)
        target.add_argument(*names[f.name], **kwargs)


def _optional(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, parse_value(value)


def given_flags(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` whose flags were given in ``args`` (KEY=VALUE pairs as dicts)."""
    out = {}
    for f in dataclasses.fields(cls):
        dest = prefix.replace("-", "_") + f.name
        if hasattr(args, dest):
            value = getattr(args, dest)
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                value = dict(value)
            out[f.name] = value
    return out


def from_flags(cls: type, args: argparse.Namespace, base: Any = None, **fixed: Any) -> Any:
    """An instance of ``cls``: the flags given in ``args`` over ``base`` (an instance, or
    the defaults), and ``fixed`` over both. Validation is the dataclass's own."""
    values = dataclasses.asdict(base) if base is not None else {}
    names = {f.name for f in dataclasses.fields(cls)}
    for name in names:
        if hasattr(args, name):
            value = getattr(args, name)
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                value = {**values.get(name, {}), **dict(value)}  # KEY=VALUE pairs
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
