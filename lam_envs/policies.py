"""Behaviour policies, each with one knob from uniformly random to fully deterministic.

A policy is a plain object: ``policy(observations, rng, info=None) -> actions`` on a batch
(observations with a leading batch axis, actions likewise), drawing its randomness only
from the numpy ``Generator`` it is given. Policies read the observation, except the
snaking policy on a grid with distractors: other squares, a background or camera shake
hide which square is the agent, so it reads the documented ``info["position"]`` (the info
of the same step, batched like the observations) and refuses to act without it.

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

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs.envs.base import BatchEnv, BatchVectorEnv
from lam_envs.envs.grid import (
    NUM_ACTIONS,
    RELEASED_SNAKE_ACTION,
    SNAKE_ACTION,
    GridDynamics,
    square_positions,
)
from lam_envs.envs.linear import LinearDynamics
from lam_envs.utils.validate import check_choice, check_fraction, check_int, check_keys

Info = dict[str, np.ndarray] | None

#: Which knob each policy has, and the environments (action-space kinds) it fits.
POLICIES = {
    "random": {"knob": None, "fits": ("grid", "linear")},
    "snaking": {"knob": "epsilon", "fits": ("grid",)},
    "snaking-released": {"knob": "epsilon", "fits": ("grid",)},
    "linear": {"knob": "chi", "fits": ("linear",)},
}


@dataclass(frozen=True)
class RandomGridPolicy:
    """Uniform over the 5 grid actions."""

    def __call__(self, observations: np.ndarray, rng: np.random.Generator, info: Info = None):
        return rng.integers(NUM_ACTIONS, size=len(observations))


@dataclass(frozen=True)
class SnakingPolicy:
    """Follow the snake cycle; with probability ``epsilon`` act uniformly at random.

    The square's cell comes from ``info["position"]`` when ``info`` is given, else from the
    observation (``square_positions``), which only the grid without distractors allows:
    with ``needs_info`` (set by ``make_policy`` for such a grid) a call without ``info``
    is refused.
    """

    epsilon: float = 0.0
    needs_info: bool = False
    released: bool = False  # the published Table 1 snake (RELEASED_SNAKE_ACTION)

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_fraction("epsilon", self.epsilon))

    def __call__(self, observations: np.ndarray, rng: np.random.Generator, info: Info = None):
        if info is not None and "position" in info:
            pos = np.asarray(info["position"]).reshape(len(observations), 2)
        elif self.needs_info:
            raise ValueError(
                "the snaking policy cannot tell the agent from the distractors in the "
                "observation: call policy(observations, rng, info) with the step's info "
                "(it reads info['position'])"
            )
        else:
            pos = square_positions(observations)
        table = RELEASED_SNAKE_ACTION if self.released else SNAKE_ACTION
        actions = table[pos[:, 0], pos[:, 1]]
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
        object.__setattr__(self, "chi", check_fraction("chi", self.chi))
        object.__setattr__(self, "d_o", d_o)
        object.__setattr__(self, "d_a", d_a)
        rng = np.random.Generator(np.random.PCG64(self.projection_seed))
        q, _ = np.linalg.qr(rng.standard_normal((d_o, d_a)))
        object.__setattr__(self, "projection", np.ascontiguousarray(q.T, dtype=np.float32))

    def __call__(self, observations: np.ndarray, rng: np.random.Generator, info: Info = None):
        s = rng.standard_normal((len(observations), self.d_a), dtype=np.float32)
        if self.chi == 0:
            return s
        determined = np.asarray(observations, dtype=np.float32) @ self.projection.T
        return np.float32(self.chi) * determined + np.float32(1 - self.chi) * s


def env_dynamics(env: gym.Env | gym.vector.VectorEnv) -> GridDynamics | LinearDynamics:
    """The dynamics of one of this package's environments, single or vector (native, or
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
    if not isinstance(dynamics, GridDynamics | LinearDynamics):
        raise ValueError(
            "make_policy knows only this package's environments (lam_envs.ENV_IDS: GridLAM, "
            f"LinearLAM), got {env!r}: its actions would not fit the policies"
        )
    return dynamics


def env_kind(env: gym.Env | gym.vector.VectorEnv) -> str:
    """'grid' or 'linear' for one of this package's environments (see ``env_dynamics``)."""
    return "grid" if isinstance(env_dynamics(env), GridDynamics) else "linear"


def make_policy(name: str, env: gym.Env | gym.vector.VectorEnv, **knobs: Any):
    """Build the policy ``name`` for ``env`` (one of this package's environments, single or
    vector). ``knobs``: ``epsilon`` for ``snaking``, ``chi`` (and ``projection_seed``) for
    ``linear``, none for ``random``. Another environment is refused (``ValueError``)."""
    check_choice("policy", name, POLICIES)
    dynamics = env_dynamics(env)
    kind = "grid" if isinstance(dynamics, GridDynamics) else "linear"
    if kind not in POLICIES[name]["fits"]:
        raise ValueError(
            f"policy {name!r} does not fit the {kind} environment; it fits: "
            + ", ".join(POLICIES[name]["fits"])
            + f". Policies for the {kind} environment: "
            + ", ".join(p for p, v in POLICIES.items() if kind in v["fits"])
        )
    allowed = {"random": [], "linear": ["chi", "projection_seed"]}.get(name, ["epsilon"])
    check_keys(f"knob for policy {name!r}", knobs, allowed)
    if name.startswith("snaking"):
        # Only the colour drift leaves the agent the one bright square of the cells.
        hidden = set(dynamics.config.distractors) - {"colour_drift"}
        released = name == "snaking-released"
        return SnakingPolicy(**knobs, needs_info=bool(hidden), released=released)
    if kind == "grid":
        return RandomGridPolicy()
    # ``random`` in the linear environment is the linear policy at χ = 0: a ~ N(0, I).
    config = dynamics.config
    return LinearPolicy(d_o=config.d_o, d_a=config.d_a, **knobs)
