"""The environments, each family declared once (:mod:`lam_envs.envs.family`):

- :mod:`lam_envs.envs.linear`: ``LinearLAM-v0``, o' = o + X a + ε;
- :mod:`lam_envs.envs.grid`: ``GridLAM-v0``, a square moved in a 4×4 image above a noise
  row, and the 32×32 distracting grid (:mod:`lam_envs.envs.grid_distractors`); its cells,
  snake and presets in :mod:`lam_envs.envs.grid_layout`, its policies in
  :mod:`lam_envs.envs.grid_policies`.

Both build on :mod:`lam_envs.envs.base` (batched dynamics behind a single and a native
vector env).
"""

from lam_envs.envs import grid, linear
from lam_envs.envs.family import (
    DEFAULT_EPISODE_STEPS,
    FAMILIES,
    EnvFamily,
    PolicySpec,
    env_ids,
    family_for_id,
    family_of,
    method_fits,
    register_family,
    unregister_family,
)

for _family in (linear.FAMILY, grid.FAMILY):
    if _family.name not in FAMILIES:
        register_family(_family)

__all__ = [
    "DEFAULT_EPISODE_STEPS",
    "FAMILIES",
    "EnvFamily",
    "PolicySpec",
    "env_ids",
    "family_for_id",
    "family_of",
    "method_fits",
    "register_family",
    "unregister_family",
]
