"""Moved to :mod:`lam_envs.utils.flags` (flags generated from configuration dataclasses,
for every command of both packages); the names stay importable from here."""

from lam_envs.utils.flags import (
    add_flags,
    add_runtime_flags,
    flag_names,
    from_flags,
    given_flags,
    integer,
    option,
)

__all__ = [
    "add_flags",
    "add_runtime_flags",
    "flag_names",
    "from_flags",
    "given_flags",
    "integer",
    "option",
]
