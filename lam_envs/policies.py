"""Behaviour policies, each with one knob from uniformly random to fully deterministic.

A policy is a plain object: ``policy(observations, rng, info=None) -> actions`` on a batch
(observations with a leading batch axis, actions likewise), drawing its randomness only
from the numpy ``Generator`` it is given. Each environment family declares the policies it
supports (:attr:`lam_envs.envs.family.EnvFamily.policies`); :func:`make_policy` asks the
environment's family. Policies read the observation, except the snaking policy on a grid
with distractors: other squares, a background or camera shake hide which square is the
agent, so it reads the documented ``info["position"]`` (the info of the same step, batched
like the observations) and refuses to act without it.

- ``random``: uniform over the 5 grid actions; a ~ N(0, I) in the linear environment.
- ``snaking`` (grid): follow ``SNAKE_CYCLE`` through all 12 cells; with probability
  ``epsilon`` take a uniformly random action instead (ε = 1: uniform; ε = 0: deterministic;
  the published correlated policy is ε = 0.05).
- ``snaking-released`` (grid): the snake of the published Table 1 data
  (``RELEASED_SNAKE_ACTION``: down and up the columns, "stay" at (0, 3), where an
  environment with ``corner_jump`` wraps the square to (0, 0)); knob ``epsilon`` as above.
- ``linear`` (linear env): a = χ·Π o + (1 − χ)·s with Π (d_a×d_o) a fixed random projection
  with orthonormal rows and s ~ N(0, I) (χ = 0: random; χ = 1: deterministic).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import gymnasium as gym

from lam_envs.envs.base import BatchDynamics, BatchEnv, BatchVectorEnv
from lam_envs.envs.family import FAMILIES, all_policies, family_of
from lam_envs.envs.grid_policies import RandomGridPolicy, SnakingPolicy
from lam_envs.envs.linear import LinearPolicy
from lam_envs.utils.validate import check_choice, check_keys

__all__ = [
    "POLICIES",
    "LinearPolicy",
    "RandomGridPolicy",
    "SnakingPolicy",
    "env_dynamics",
    "env_kind",
    "make_policy",
]


class _Policies(Mapping):
    """Every policy of the registered families -> ``{"knob": ..., "fits": (families)}``,
    read afresh on each use, so that a family registered later appears in it."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        return all_policies()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(all_policies())

    def __len__(self) -> int:
        return len(all_policies())


#: Which knob each policy has, and the environment families it fits.
POLICIES: Mapping[str, dict[str, Any]] = _Policies()


def env_dynamics(env: gym.Env | gym.vector.VectorEnv) -> BatchDynamics:
    """The dynamics of an environment of a registered family, single or vector (native, or
    Gymnasium's sync/async over single ones), through wrappers; ``ValueError`` otherwise."""
    inner = env.unwrapped
    dynamics = (
        getattr(inner, "dynamics", None) if isinstance(inner, BatchEnv | BatchVectorEnv) else None
    )
    if dynamics is None and isinstance(inner, gym.vector.VectorEnv):
        try:  # Gymnasium's sync or async vector env over our single envs
            dynamics = inner.get_attr("dynamics")[0]
        except (AttributeError, IndexError):
            dynamics = None
    try:
        family_of(dynamics)
    except ValueError:
        raise ValueError(
            "make_policy knows only this package's environments (the registered families: "
            f"{', '.join(FAMILIES)}), got {env!r}: its actions would not fit the policies"
        ) from None
    return dynamics


def env_kind(env: gym.Env | gym.vector.VectorEnv) -> str:
    """The family name ('grid', 'linear', ...) of an environment (see ``env_dynamics``)."""
    return family_of(env_dynamics(env)).name


def make_policy(name: str, env: gym.Env | gym.vector.VectorEnv, **knobs: Any):
    """Build the policy ``name`` for ``env`` (an environment of a registered family, single
    or vector). ``knobs``: ``epsilon`` for ``snaking``, ``chi`` (and ``projection_seed``)
    for ``linear``, none for ``random``: what the family's :class:`PolicySpec` takes.
    Another environment is refused (``ValueError``)."""
    check_choice("policy", name, POLICIES)
    dynamics = env_dynamics(env)
    family = family_of(dynamics)
    spec = family.policies.get(name)
    if spec is None:
        kind = family.name
        raise ValueError(
            f"policy {name!r} does not fit the {kind} environment; it fits: "
            + ", ".join(POLICIES[name]["fits"])
            + f". Policies for the {kind} environment: "
            + ", ".join(family.policies)
        )
    check_keys(f"knob for policy {name!r}", knobs, spec.knobs)
    return spec.make(dynamics, **knobs)
