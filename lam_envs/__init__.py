"""lam-envs: controlled environments for studying what a latent action model's latent captures.

Importing the package registers the environments with Gymnasium:

- ``LinearLAM-v0`` (and presets ``LinearLAM-IID-v0``, ``LinearLAM-OtherAgents-v0``,
  ``LinearLAM-OtherAgentsStrong-v0``): o' = o + X a + ε.
- ``GridLAM-v0`` (low noise) and presets ``GridLAM-NoNoise-v0``, ``GridLAM-LowNoise-v0``,
  ``GridLAM-HighNoise-v0``: a square moved in a 4×4 image above a noise row.
- The distracting grid, 32×32 pixels (8 per cell), no noise row: ``GridLAM-Distracting-v0``
  (every distractor), each distractor alone (``GridLAM-OtherAgents-v0``,
  ``GridLAM-CorrelatedAgents-v0``, ``GridLAM-Background-v0``, ``GridLAM-Shake-v0``,
  ``GridLAM-ColourDrift-v0``) and the control without any, ``GridLAM-Clean-v0``.

Each has a native vector env: ``gym.make_vec(id, num_envs=N)``.
"""

from __future__ import annotations

from lam_envs.utils.cli import quiet_interrupt_during_startup

quiet_interrupt_during_startup()  # first: `python -m lam_envs.X` exits quietly on Ctrl-C

from lam_envs import _moved  # noqa: F401  (old import paths, with a DeprecationWarning)
from lam_envs.envs import DEFAULT_EPISODE_STEPS, EnvFamily, env_ids, family_of, register_family
from lam_envs.envs.grid import (
    DISTRACTOR_SETTINGS,
    GRID_PRESETS,
    GridLAMConfig,
    GridLAMEnv,
    GridLAMVectorEnv,
)
from lam_envs.envs.linear import LINEAR_PRESETS, LinearLAMConfig, LinearLAMEnv, LinearLAMVectorEnv
from lam_envs.policies import make_policy

__version__ = "0.1.1"


def __getattr__(name: str):
    # ENV_IDS is computed, so that a family registered later appears in it
    if name == "ENV_IDS":
        return env_ids()
    raise AttributeError(f"module 'lam_envs' has no attribute {name!r}")


def register_envs() -> None:
    """Kept for compatibility: importing lam_envs registers every family's ids."""


__all__ = [
    "DISTRACTOR_SETTINGS",
    "ENV_IDS",
    "DEFAULT_EPISODE_STEPS",
    "EnvFamily",
    "env_ids",
    "family_of",
    "register_family",
    "GRID_PRESETS",
    "LINEAR_PRESETS",
    "GridLAMConfig",
    "GridLAMEnv",
    "GridLAMVectorEnv",
    "LinearLAMConfig",
    "LinearLAMEnv",
    "LinearLAMVectorEnv",
    "make_policy",
    "register_envs",
]
