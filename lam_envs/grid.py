"""``GridLAM-v0``: a square moved in the 3×4 top area of a 4×4 image, a noise row below."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs._core import BatchDynamics, BatchEnv, BatchVectorEnv, Info
from lam_envs._rng import BlockStreams, block_rows, uniform_f32
from lam_envs.validate import check_choice, check_float, check_fraction, check_keys

ROWS, COLS = 3, 4  # the area the square moves in; row 3 of the image is the noise row
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

#: Distractor patterns of the noise row, one per action (stay: blank; up/down/left/right: a
#: single lit cell), scaled by noise_intensity.
DISTRACTOR_PATTERNS = np.vstack([np.zeros(4), np.eye(4)]).astype(np.float32)

GRID_PRESETS: dict[str, dict[str, Any]] = {
    "none": {"noise_intensity": 0.0},
    "low": {"noise_intensity": 1.0},
    "high": {"noise_intensity": 2.0},
}


@dataclass(frozen=True)
class GridLAMConfig:
    """Parameters of ``GridLAM-v0``; validated on construction.

    noise_intensity: value of a lit noise cell (presets: none 0, low 1, high 2).
    distractor_correlation: ρ, probability that the noise row shows the action's pattern
    instead of Bernoulli noise (action-correlated distractors).
    """

    noise_intensity: float = 1.0
    distractor_correlation: float = 0.0

    def __post_init__(self):
        check_float("noise_intensity", self.noise_intensity, low=0.0)
        rho = check_fraction("distractor_correlation", self.distractor_correlation)
        if rho > 0 and self.noise_intensity == 0:
            raise ValueError(
                f"distractor_correlation = {rho} needs noise_intensity > 0 (the distractor "
                "pattern is drawn at that intensity), got noise_intensity = 0.0"
            )

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> GridLAMConfig:
        """The preset's values (``None``: the defaults), with ``overrides`` applied on top."""
        check_keys("GridLAM parameter", overrides, [f.name for f in dataclasses.fields(cls)])
        base = {} if preset is None else GRID_PRESETS[check_choice("preset", preset, GRID_PRESETS)]
        return cls(**{**base, **overrides})


def square_positions(observations: np.ndarray) -> np.ndarray:
    """(row, col) of the square in a batch of observations (N, 1, 4, 4) -> (N, 2) int64."""
    flat = np.asarray(observations).reshape(len(observations), 16)[:, : ROWS * COLS]
    cell = flat.argmax(axis=1)
    return np.stack([cell // COLS, cell % COLS], axis=1)


class GridDynamics(BatchDynamics):
    """The square's moves and the noise row, for a batch of envs.

    Per step each env reads one row of its stream: 4 uniforms for the noise cells (when
    noise_intensity > 0) and 1 for the distractor coin (when ρ > 0).
    """

    def __init__(self, num_envs: int, preset: str | None = None, **params: Any):
        super().__init__(num_envs)
        self.config = c = GridLAMConfig.from_preset(preset, **params)
        self.observation_space = gym.spaces.Box(
            0.0, max(1.0, c.noise_intensity), (1, 4, 4), np.float32
        )
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        width = 4 * (c.noise_intensity > 0) + (c.distractor_correlation > 0)
        self._streams = BlockStreams(num_envs, width, block_rows(width), uniform_f32)
        self._pos = np.zeros((num_envs, 2), dtype=np.int64)
        self._noise = np.zeros((num_envs, 4), dtype=np.float32)
        self._intensity = np.float32(c.noise_intensity)
        self._patterns = DISTRACTOR_PATTERNS * self._intensity
        self._upper = np.array([ROWS - 1, COLS - 1])

    def _noise_rows(self, rows: np.ndarray, actions: np.ndarray | None):
        if rows.shape[1] == 0:
            return np.zeros((len(rows), 4), np.float32), np.zeros(len(rows), bool)
        noise = (rows[:, :4] < 0.5).astype(np.float32)
        noise *= self._intensity
        distracted = np.zeros(len(rows), dtype=bool)
        if actions is not None and rows.shape[1] == 5:
            distracted = rows[:, 4] < self.config.distractor_correlation
            noise[distracted] = self._patterns[actions[distracted]]
        return noise, distracted

    def reset(self, index, rngs) -> Info:
        for i in index:
            cell = rngs[i].integers(ROWS * COLS)
            self._pos[i] = divmod(int(cell), COLS)
        self._streams.restart(index, rngs)
        noise, distracted = self._noise_rows(self._streams.next_rows(rngs, index), None)
        self._noise[index] = noise
        return self._info(index, self._pos[index], noise, distracted)

    def step(self, actions, rngs, index) -> tuple[np.ndarray, Info]:
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a.size and (a.min() < 0 or a.max() >= NUM_ACTIONS):
            raise ValueError(f"actions must be in [0, {NUM_ACTIONS - 1}], got {a}")
        pos = self._pos if index is None else self._pos[index]
        new = np.clip(pos + ACTION_DELTAS[a], 0, self._upper)  # a move into a wall: stay
        successor = SNAKE_NEXT_CELL[pos[:, 0], pos[:, 1]]
        rewards = (new == successor).all(axis=1).astype(np.float64)
        noise, distracted = self._noise_rows(self._streams.next_rows(rngs, index), a)
        if index is None:
            self._pos, self._noise = new, noise
        else:
            self._pos[index], self._noise[index] = new, noise
        return rewards, self._info(index, new, noise, distracted)

    def _image(self, pos: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        n = len(pos)
        img = np.zeros((n, 16), dtype=np.float32)
        img[np.arange(n), pos[:, 0] * COLS + pos[:, 1]] = 1.0
        if noise is not None:
            img[:, 12:] = noise
        return img.reshape(n, 1, 4, 4)

    def _info(self, index, pos, noise, distracted) -> Info:
        return {
            "position": pos.copy(),
            "noise": noise.copy(),
            "clean_obs": self._image(pos, None),
            "distracted": distracted,
        }

    def observations(self, index=None) -> np.ndarray:
        if index is None:
            return self._image(self._pos, self._noise)
        return self._image(self._pos[index], self._noise[index])

    def render_ansi(self, i: int) -> str:
        r, c = self._pos[i]
        lines = [
            " ".join("#" if (row, col) == (r, c) else "." for col in range(COLS))
            for row in range(ROWS)
        ]
        lines.append("-" * (2 * COLS - 1))
        lines.append(" ".join(f"{v:g}" for v in self._noise[i]))
        return "\n".join(lines) + "\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """A 128×128 picture: the square white on slate, the noise row in amber below."""
        image = self.observations(np.array([i]))[0, 0]
        scale = max(1.0, float(self._intensity))
        cell = np.zeros((4, 4, 3), dtype=np.float32)
        cell[:3] = np.array([40, 44, 52]) + image[:3, :, None] * np.array([215, 211, 203])
        cell[3] = np.array([25, 25, 25]) + (image[3, :, None] / scale) * np.array([230, 160, 0])
        picture = np.kron(cell, np.ones((32, 32, 1))).astype(np.uint8)
        picture[::32] = picture[:, ::32] = 90  # grid lines
        picture[95:97] = 200  # the edge of the controllable area
        return picture


class GridLAMEnv(BatchEnv):
    """
    ## Description

    A 4×4 single-channel image. Rows 0–2 (a 3×4 area) hold a square of intensity 1.0 that
    the agent moves; row 3 is exogenous noise: each of its 4 cells is Bernoulli(0.5) ×
    ``noise_intensity``, redrawn every step independently of everything else. A latent
    action should capture the square's move and ignore the noise row.

    With ``distractor_correlation`` ρ > 0 the noise row instead shows, with probability ρ,
    a pattern tied to the action just taken (``DISTRACTOR_PATTERNS``): distractors that move
    with the agent.

    ## Action Space

    ``Discrete(5)``: 0 stay, 1 up, 2 down, 3 left, 4 right. A move into a wall leaves the
    square where it is.

    ## Observation Space

    ``Box(0, max(1, noise_intensity), (1, 4, 4), float32)``.

    ## Rewards

    1 when the square moves to the next cell of the snake cycle ``SNAKE_CYCLE`` (the path
    the snaking policy follows), else 0. The snaking policy at ε = 0 earns 1 per step.

    ## Starting State

    The square in a cell drawn uniformly from the 12; a fresh noise row.

    ## Episode End

    Never terminates. Registered ids truncate after ``max_episode_steps`` (200 unless
    given to ``gym.make``).

    ## Info (ground truth, for evaluation only)

    On reset and every step: ``position`` (2,) int64 (row, col) of the square, ``noise``
    (4,) float32 the noise row, ``clean_obs`` (1, 4, 4) the noise-free image,
    ``distracted`` bool, whether the noise row is the action's distractor pattern.

    ## Arguments

    ``gym.make("GridLAM-v0", **kwargs)`` accepts ``preset`` (``none``, ``low``, ``high``;
    see ``GRID_PRESETS``), the fields of :class:`GridLAMConfig` (``noise_intensity``,
    default 1.0 = low; ``distractor_correlation``, default 0), and ``render_mode``
    (``"ansi"``, or ``"rgb_array"`` for a 128×128 picture).

    ## Vectorized environment

    ``gym.make_vec("GridLAM-v0", num_envs=N)`` returns :class:`GridLAMVectorEnv`: all N
    envs in numpy at once, exactly the transitions of N single envs seeded ``s, s + 1, ...``.

    ## Version History

    * v0: initial version.
    """

    dynamics_class = GridDynamics


class GridLAMVectorEnv(BatchVectorEnv):
    """Native vector version of :class:`GridLAMEnv`; same arguments plus ``num_envs`` and
    ``max_episode_steps``. Autoreset mode ``NEXT_STEP``; info arrays have a leading
    ``num_envs`` axis."""

    dynamics_class = GridDynamics
