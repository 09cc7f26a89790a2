"""Moved to :mod:`lam_envs.utils.flags` (flags generated from configuration dataclasses,
for every command of both packages); the names stay importable from here."""

from lam_envs.utils.flags import *  # noqa: F403
from lam_envs.utils.flags import __all__  # noqa: F401
