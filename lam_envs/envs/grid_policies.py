"""The grid's behaviour policies (``random``, ``snaking``, ``snaking-released``, ``goal``); see
:mod:`lam_envs.policies` for the policies of every family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lam_envs.envs.family import PolicySpec
from lam_envs.envs.grid_layout import (
    NUM_ACTIONS,
    RELEASED_SNAKE_ACTION,
    SNAKE_ACTION,
    square_positions,
)
from lam_envs.utils.validate import check_fraction

Info = dict[str, np.ndarray] | None


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
class GoalPolicy:
    """Head for the goal cell (the goal task, ``goal=True``); with probability ``epsilon``
    act uniformly at random. Reads ``info["position"]`` and ``info["goal"]``: it moves
    along the axis on which the goal is farther (rows on a tie), one cell a step, and
    stays on the goal (which the environment redraws as soon as it is reached)."""

    epsilon: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_fraction("epsilon", self.epsilon))

    def __call__(self, observations: np.ndarray, rng: np.random.Generator, info: Info = None):
        if info is None or "goal" not in info:
            raise ValueError(
                "the goal policy reads info['position'] and info['goal']: call "
                "policy(observations, rng, info) on a grid with goal=True"
            )
        n = len(observations)
        pos = np.asarray(info["position"]).reshape(n, 2)
        d = np.asarray(info["goal"]).reshape(n, 2) - pos
        rows = np.abs(d[:, 0]) >= np.abs(d[:, 1])
        vertical = np.where(d[:, 0] < 0, 1, 2)  # up, down
        horizontal = np.where(d[:, 1] < 0, 3, 4)  # left, right
        actions = np.where(rows, vertical, horizontal)
        actions = np.where((d == 0).all(axis=1), 0, actions)
        if self.epsilon > 0:
            explore = rng.random(n) < self.epsilon
            actions = np.where(explore, rng.integers(NUM_ACTIONS, size=n), actions)
        return actions


def _goal(dynamics: Any, **knobs: Any) -> GoalPolicy:
    if not dynamics.config.goal:
        raise ValueError("the goal policy needs the goal task: a grid with goal=True")
    return GoalPolicy(**knobs)


def _snaking(released: bool):
    def make(dynamics: Any, **knobs: Any) -> SnakingPolicy:
        # Only the colour drift leaves the agent the one bright square of the cells.
        hidden = set(dynamics.config.distractors) - {"colour_drift"}
        return SnakingPolicy(**knobs, needs_info=bool(hidden), released=released)

    return make


#: The grid family's policies (``EnvFamily.policies``).
GRID_POLICIES = {
    "random": PolicySpec(lambda dynamics: RandomGridPolicy()),
    "snaking": PolicySpec(_snaking(released=False), knob="epsilon"),
    "snaking-released": PolicySpec(_snaking(released=True), knob="epsilon"),
    "goal": PolicySpec(_goal, knob="epsilon"),
}
