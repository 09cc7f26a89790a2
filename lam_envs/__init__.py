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

from lam_envs.cli import quiet_interrupt_during_startup

quiet_interrupt_during_startup()  # first: `python -m lam_envs.X` exits quietly on Ctrl-C

from gymnasium.envs.registration import register, registry

from lam_envs.grid import (
    DISTRACTOR_SETTINGS,
    GRID_PRESETS,
    GridLAMConfig,
    GridLAMEnv,
    GridLAMVectorEnv,
)
from lam_envs.linear import LINEAR_PRESETS, LinearLAMConfig, LinearLAMEnv, LinearLAMVectorEnv
from lam_envs.policies import make_policy

__version__ = "0.1.0"

DEFAULT_EPISODE_STEPS = 200

#: Every id this package registers: id -> (environment name, preset or None).
ENV_IDS: dict[str, tuple[str, str | None]] = {
    "LinearLAM-v0": ("linear", None),
    "LinearLAM-IID-v0": ("linear", "iid"),
    "LinearLAM-OtherAgents-v0": ("linear", "other_agents"),
    "LinearLAM-OtherAgentsStrong-v0": ("linear", "other_agents_strong"),
    "GridLAM-v0": ("grid", None),
    "GridLAM-NoNoise-v0": ("grid", "none"),
    "GridLAM-LowNoise-v0": ("grid", "low"),
    "GridLAM-HighNoise-v0": ("grid", "high"),
    "GridLAM-Clean-v0": ("grid", "clean"),
    "GridLAM-OtherAgents-v0": ("grid", "other_agents"),
    "GridLAM-CorrelatedAgents-v0": ("grid", "correlated_agents"),
    "GridLAM-Background-v0": ("grid", "background"),
    "GridLAM-Shake-v0": ("grid", "shake"),
    "GridLAM-ColourDrift-v0": ("grid", "colour_drift"),
    "GridLAM-Distracting-v0": ("grid", "distracting"),
}


def register_envs() -> None:
    """Register every id in ``ENV_IDS`` (idempotent: ids already registered are kept)."""
    classes = {"linear": "lam_envs.linear:LinearLAM", "grid": "lam_envs.grid:GridLAM"}
    for env_id, (kind, preset) in ENV_IDS.items():
        if env_id in registry:
            continue
        base = classes[kind]
        register(
            id=env_id,
            entry_point=f"{base}Env",
            vector_entry_point=f"{base}VectorEnv",
            max_episode_steps=DEFAULT_EPISODE_STEPS,
            kwargs={} if preset is None else {"preset": preset},
        )


register_envs()

__all__ = [
    "DISTRACTOR_SETTINGS",
    "ENV_IDS",
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
