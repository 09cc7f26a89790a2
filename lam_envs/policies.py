"""Behaviour policies, each with one knob from uniformly random to fully deterministic.

A policy is a plain object: ``policy(observations, rng) -> actions`` on a batch
(observations with a leading batch axis, actions likewise), drawing its randomness only
from the numpy ``Generator`` it is given. Policies read only the observation.

- ``random``: uniform over the 5 grid actions; a ~ N(0, I) in the linear environment.
- ``snaking`` (grid): follow ``SNAKE_CYCLE`` through all 12 cells; with probability
  ``epsilon`` take a uniformly random action instead (ε = 1: uniform; ε = 0: deterministic;
  the published correlated policy is ε = 0.05).
- ``linear`` (linear env): a = χ·Π o + (1 − χ)·s with Π (d_a×d_o) a fixed random projection
  with orthonormal rows and s ~ N(0, I) (χ = 0: random; χ = 1: deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs.grid import NUM_ACTIONS, SNAKE_ACTION, square_positions
from lam_envs.validate import check_choice, check_fraction, check_int, check_keys

#: Which knob each policy has, and the environments (action-space kinds) it fits.
POLICIES = {
    "random": {"knob": None, "fits": ("grid", "linear")},
    "snaking": {"knob": "epsilon", "fits": ("grid",)},
    "linear": {"knob": "chi", "fits": ("linear",)},
}


@dataclass(frozen=True)
class RandomGridPolicy:
    """Uniform over the 5 grid actions."""

    def __call__(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(NUM_ACTIONS, size=len(observations))


@dataclass(frozen=True)
class SnakingPolicy:
    """Follow the snake cycle; with probability ``epsilon`` act uniformly at random."""

    epsilon: float = 0.0

    def __post_init__(self):
        check_fraction("epsilon", self.epsilon)

    def __call__(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = square_positions(observations)
        actions = SNAKE_ACTION[pos[:, 0], pos[:, 1]]
        if self.epsilon > 0:
            n = len(observations)
            explore = rng.random(n) < self.epsilon
            actions = np.where(explore, rng.integers(NUM_ACTIONS, size=n), actions)
        return actions


@dataclass(frozen=True)
class LinearPolicy:
    """a = χ·Π o + (1 − χ)·s for the linear environment; χ = 0 is a ~ N(0, I).

    Along a trajectory the closed loop o' = (I + χ X Π) o + ... can grow, since Π does not
    know X. The paper's setting draws each transition from o ~ N(0, I): collect with
    episodes of one step (``--episode-length 1``) for that.
    """

    d_o: int
    d_a: int
    chi: float = 0.0
    projection_seed: int = 0
    projection: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        d_o = check_int("d_o", self.d_o, low=1)
        d_a = check_int("d_a", self.d_a, low=1, high=d_o)
        check_fraction("chi", self.chi)
        rng = np.random.Generator(np.random.PCG64(self.projection_seed))
        q, _ = np.linalg.qr(rng.standard_normal((d_o, d_a)))
        object.__setattr__(self, "projection", np.ascontiguousarray(q.T, dtype=np.float32))

    def __call__(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = rng.standard_normal((len(observations), self.d_a), dtype=np.float32)
        if self.chi == 0:
            return s
        determined = np.asarray(observations, dtype=np.float32) @ self.projection.T
        return np.float32(self.chi) * determined + np.float32(1 - self.chi) * s


def env_kind(action_space: gym.spaces.Space) -> str:
    """'grid' for the Discrete(5) environment, 'linear' for a Box action space."""
    if isinstance(action_space, gym.spaces.Discrete):
        return "grid"
    if isinstance(action_space, gym.spaces.Box):
        return "linear"
    raise ValueError(f"no behaviour policy for action space {action_space}")


def make_policy(name: str, env: gym.Env | gym.vector.VectorEnv, **knobs: Any):
    """Build the policy ``name`` for ``env`` (single or vector). ``knobs``: ``epsilon`` for
    ``snaking``, ``chi`` (and ``projection_seed``) for ``linear``, none for ``random``."""
    check_choice("policy", name, POLICIES)
    action_space = getattr(env, "single_action_space", env.action_space)
    kind = env_kind(action_space)
    if kind not in POLICIES[name]["fits"]:
        raise ValueError(
            f"policy {name!r} does not fit the {kind} environment; it fits: "
            + ", ".join(POLICIES[name]["fits"])
            + f". Policies for the {kind} environment: "
            + ", ".join(p for p, v in POLICIES.items() if kind in v["fits"])
        )
    allowed = {"random": [], "snaking": ["epsilon"], "linear": ["chi", "projection_seed"]}[name]
    check_keys(f"knob for policy {name!r}", knobs, allowed)
    if name == "snaking":
        return SnakingPolicy(**knobs)
    if kind == "grid":
        return RandomGridPolicy()
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    # ``random`` in the linear environment is the linear policy at χ = 0: a ~ N(0, I).
    return LinearPolicy(d_o=obs_space.shape[0], d_a=action_space.shape[0], **knobs)
