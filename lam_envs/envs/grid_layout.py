"""The grid's layout: its cells and actions, the snake cycle through the cells (the snaking
policies' path and the reward's), the published Table 1 snake, and the presets of
``GridLAM-v0``. Pure numpy, shared by the environment (:mod:`lam_envs.envs.grid`) and its
policies (:mod:`lam_envs.envs.grid_policies`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lam_envs.utils.validate import check_fraction

ROWS, COLS = 3, 4  # the cells the square moves in; row 3 of the image is the noise row
NUM_ACTIONS = 5
ACTION_NAMES = ("stay", "up", "down", "left", "right")
#: (d_row, d_col) of each action.
ACTION_DELTAS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)

#: A Hamiltonian cycle through the 12 cells: the snaking policy's path, and the reward's.
SNAKE_CYCLE = (
    (0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (2, 3),
    (2, 2), (1, 2), (1, 1), (2, 1), (2, 0), (1, 0),
)  # fmt: skip


def _snake_tables() -> tuple[np.ndarray, np.ndarray]:
    next_cell = np.zeros((ROWS, COLS, 2), dtype=np.int64)
    next_action = np.zeros((ROWS, COLS), dtype=np.int64)
    for k, cell in enumerate(SNAKE_CYCLE):
        successor = SNAKE_CYCLE[(k + 1) % len(SNAKE_CYCLE)]
        delta = np.subtract(successor, cell)
        next_cell[cell] = successor
        next_action[cell] = int(np.flatnonzero((ACTION_DELTAS == delta).all(axis=1))[0])
    return next_cell, next_action


#: SNAKE_NEXT_CELL[r, c] is the successor of cell (r, c) on the cycle; SNAKE_ACTION[r, c]
#: the action that moves there.
SNAKE_NEXT_CELL, SNAKE_ACTION = _snake_tables()

#: The snake of the published Table 1 data (the authors' released data script): down
#: column 0, up column 1, down column 2 (each turning right at its end), up column 3, and
#: at (0, 3) a wrap to (0, 0) stored as action "stay" (0): the environment makes that move
#: only with ``corner_jump`` > 0. RELEASED_SNAKE_ACTION[r, c] is the snake's action.
RELEASED_SNAKE_ACTION = np.array(
    [[2, 4, 2, 0],
     [2, 1, 2, 1],
     [4, 1, 4, 1]], dtype=np.int64,
)  # fmt: skip
#: The published start cell (1, 2) of every Table 1 trajectory, as ``start_cell``.
RELEASED_START_CELL = 1 * COLS + 2


def released_corner_jump(epsilon: float) -> float:
    """``corner_jump`` that makes the released snake's data law exact at exploration ε.

    The released script takes the snake's action with probability 1 − ε, else a uniform
    one of the 5: at (0, 3) it wraps to (0, 0) with probability 1 − ε and truly stays with
    probability ε/5, both stored as "stay". The snaking policy here says "stay" there with
    probability 1 − ε + ε/5, so the environment wraps with (1 − ε) / (1 − ε + ε/5)."""
    epsilon = check_fraction("epsilon", epsilon)
    return (1 - epsilon) / (1 - epsilon + epsilon / NUM_ACTIONS)


#: Patterns the noise row shows when the action leaks into it (``action_leak``), one per
#: action (stay: blank; up/down/left/right: a single lit cell), scaled by noise_intensity.
#: Not a distractor: it is a second copy of the action.
ACTION_LEAK_PATTERNS = np.vstack([np.zeros(4), np.eye(4)]).astype(np.float32)

#: The distracting grid: 4×4 cells at 8 pixels a cell (32×32 images), no noise row.
_PIXELS = {"pixel_scale": 8, "noise_intensity": 0.0}
_OTHER_AGENTS = {"other_agents": 2, "other_agent_persistence": 0.5}
_BACKGROUND = {"background_intensity": 0.5, "background_speed": 1}
_SHAKE = {"shake_bound": 4, "shake_step": 1}
_BLOBS = {
    "blob_count": 2, "blob_width": 7.0, "blob_speed": 6.0, "blob_flicker": 0.5,
    "blob_persistence": 0.8,
    "blob_intensity": 1.0,
}  # fmt: skip
# The goal task; a goal unreached for 8 steps moves (the farthest cell is 5 moves away);
# its outline at half the agent's intensity.
_GOAL = {"goal": True, "goal_timeout": 8, "goal_intensity": 0.5}
# Pulsing lights: three wide blobs that stay put while their brightness walks at random.
_LIGHTS = {
    "blob_count": 3, "blob_width": 12.0, "blob_speed": 0.0, "blob_flicker": 1.0,
    "blob_pulse": 0.5, "blob_persistence": 0.0, "blob_intensity": 0.9,
}  # fmt: skip
_SMALL_AGENTS = {
    "other_agents": 2, "other_agent_persistence": 0.5, "other_agent_size": 0.5,
    "other_agent_intensity": 0.6,
}  # fmt: skip
_COLOUR_DRIFT = {"colour_drift_step": 0.1, "colour_drift_low": 0.5, "colour_drift_high": 1.5}

GRID_PRESETS: dict[str, dict[str, Any]] = {
    "none": {"noise_intensity": 0.0},
    "low": {"noise_intensity": 1.0},
    "high": {"noise_intensity": 2.0},
    # The distracting grid (s = 8): the clean control, each distractor alone, all together.
    "clean": {**_PIXELS},
    "other_agents": {**_PIXELS, **_OTHER_AGENTS},
    "correlated_agents": {**_PIXELS, **_OTHER_AGENTS, "other_agent_correlation": 0.5},
    "background": {**_PIXELS, **_BACKGROUND},
    "shake": {**_PIXELS, **_SHAKE},
    "colour_drift": {**_PIXELS, **_COLOUR_DRIFT},
    "distracting": {**_PIXELS, **_OTHER_AGENTS, **_BACKGROUND, **_SHAKE, **_COLOUR_DRIFT},
    # The goal task (s = 8): its clean control, flickering blobs, other agents that look
    # unlike the agent (half its side, dimmer), correlated ones, and blobs with agents.
    "goal": {**_PIXELS, **_GOAL},
    "goal_blobs": {**_PIXELS, **_GOAL, **_BLOBS},
    "goal_lights": {**_PIXELS, **_GOAL, **_LIGHTS},
    "goal_agents": {**_PIXELS, **_GOAL, **_SMALL_AGENTS},
    "goal_correlated_agents": {
        **_PIXELS,
        **_GOAL,
        **_SMALL_AGENTS,
        "other_agent_correlation": 0.5,
    },  # fmt: skip
    "goal_distracting": {**_PIXELS, **_GOAL, **_BLOBS, **_SMALL_AGENTS},
}

#: The distracting grid's settings for studies ("each distractor alone and all together",
#: beside the clean grid at the same pixel scale): setting name -> preset.
DISTRACTOR_SETTINGS: dict[str, str] = {
    "clean": "clean",
    "other_agents": "other_agents",
    "correlated_agents": "correlated_agents",
    "background": "background",
    "shake": "shake",
    "colour_drift": "colour_drift",
    "all": "distracting",
}


def square_positions(observations: np.ndarray) -> np.ndarray:
    """(row, col) of the square in a batch of clean grid observations (N, 1, 4s, 4s) -> (N, 2).

    Reads the brightest cell of the 3×4 area, so it holds for the grid without distractors
    (any s, any noise row); with other agents, a background or camera shake the square
    cannot be told from the observation: read ``info["position"]`` instead.
    """
    obs = np.asarray(observations)
    n, size = len(obs), obs.shape[-1]
    s = size // 4
    cells = obs.reshape(n, 4, s, 4, s).sum(axis=(2, 4)) if s > 1 else obs.reshape(n, 4, 4)
    cell = cells[:, :ROWS].reshape(n, ROWS * COLS).argmax(axis=1)
    return np.stack([cell // COLS, cell % COLS], axis=1)
