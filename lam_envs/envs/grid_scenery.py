"""The goal task and the flickering blobs of the distracting grid (``GridLAM-Goal*-v0``).

Two additions to the grid, both off by default (the grid's other presets are unchanged):

- :class:`Goal` (``goal = True``): a task. A goal cell, drawn as a hollow square (its
  outline, one pixel wide at ``pixel_scale`` ≥ 3, at ``goal_intensity``; the agent is a
  solid square of intensity 1), is drawn on reset uniformly among the 11 cells the agent
  is not in. When the agent moves into it the step earns reward 1 and a new goal is drawn
  uniformly among the 11 other cells; every other step earns 0. The policy has to read
  two squares from the image (where the agent is, where the goal is), which a handful of
  labelled episodes does not teach; the action stays as easy to read from two frames as
  on the plain grid.
- :class:`Blobs` (``blob_count`` = k > 0): an exogenous distractor that changes
  unpredictably at every step. k Gaussian blobs on the periodic image plane, each of peak
  value ``blob_intensity`` × its amplitude; blob j (0 … k − 1) has its own standard
  deviation σ_j = ``blob_width`` · (k + j) / (2k − 1) pixels (from about half
  ``blob_width`` to ``blob_width``), so which blob moved can be seen, as which square is the
  agent can. Every step each blob jumps by a fresh move: ``blob_speed`` pixels along one
  of the 8 compass directions, or none, uniformly (a random walk: no velocity persists,
  so the next frame cannot be predicted from the past; like an agent's action, one of 9
  moves), its position wrapping round the image;
  and each blob's amplitude is redrawn uniform in [1 − ``blob_flicker``, 1] (flicker: a
  change no translation explains), or, with ``blob_pulse`` δ > 0, takes a random-walk step
  of −δ, 0 or +δ, reflected into [1 − ``blob_flicker``, 1] (pulsing lights: each step's
  change is fresh, yet the far future still tells the next step, as for a moving agent).
  The blobs are drawn over the background (the larger value wins) and under the noise
  row, the goal, the other agents and the agent.

Laws (one step; u are the step's uniforms in [0, 1)):

- Blobs: move_j = speed · MOVES[⌊9u⌋] (MOVES: none, then the 8 compass directions), or
  with probability ``blob_persistence`` the previous move_j;
  position_j ← (position_j + move_j) mod image size; amplitude_j ← 1 − flicker·u'.
  With pulse δ > 0: amplitude_j ← reflect(amplitude_j + δ·(⌊3u'⌋ − 1)) into
  [1 − flicker, 1] (with persistence p, the last change repeated with probability p).
- Goal: reached = (agent's new cell = goal); where reached, or where the goal has stood
  ``goal_timeout`` steps unreached (its age; 0: never), goal ← the ⌊11u⌋-th cell of the 11
  cells other than the agent's new cell (in row-major order), and its age ← 0.

Ground truth (``info``, so each is an oracle field of a dataset):

- ``blob_positions`` (k, 2) float32, (row, col) of each centre in pixels, in [0, size);
  ``blob_moves`` (k, 2) float32, this step's move (zeros on reset); ``blob_amplitudes``
  (k,) float32; ``blob_flicker`` (k,) float32, this step's change of the amplitude (zeros
  on reset).
- ``goal`` (2,) int64, the goal cell after the step (row, col); ``goal_reached`` bool;
  ``goal_age`` int64, the steps the goal has stood unreached.
- ``distractor_change`` (d,) float32, on every grid with blobs: the distractors'
  low-dimensional change over the step, the probe target of ``nmse_distractor``: the blobs'
  moves (2k numbers) and amplitude changes (k), then, with other agents, each one's move
  in cells (2 numbers each). Zeros on reset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lam_envs.envs.base import set_checked
from lam_envs.envs.grid_distractors import COMPASS, Distractor, _select, _store, uniform_ints
from lam_envs.utils.validate import FLOAT32_MAX, check_float, check_fraction, check_int

CELLS = 12  # the 3×4 cells the agent and the goal live in
#: A blob's moves (d_row, d_col) in units of ``blob_speed``: none, then the 8 directions.
MOVES = np.vstack([np.zeros((1, 2)), COMPASS]).astype(np.float32)
COLS = 4


class Blobs(Distractor):
    """k flickering Gaussian blobs on a random walk of fresh jumps (see module doc).

    State: ``blob_positions`` (k, 2), ``blob_moves`` (k, 2), ``blob_amplitudes`` (k,),
    ``blob_flicker`` (k,), all float32.
    """

    def __init__(
        self, num_envs, count, size, width, speed, flicker, intensity, persistence=0.0, pulse=0.0
    ):
        super().__init__(num_envs)
        self.k, self.size, self.speed, self.flicker = count, size, speed, flicker
        self.persistence, self.pulse = persistence, np.float32(pulse)
        self.columns = (2 + (persistence > 0)) * count
        self.intensity = np.float32(intensity)
        self._grid = np.arange(size, dtype=np.float32)
        sigma = width * (count + np.arange(count)) / (2 * count - 1)
        self.widths = sigma.astype(np.float32)  # σ_j of each blob
        self._inv = (-0.5 / sigma**2).astype(np.float32)[:, None]  # (k, 1)
        self.state = {
            "blob_positions": np.zeros((num_envs, count, 2), np.float32),
            "blob_moves": np.zeros((num_envs, count, 2), np.float32),
            "blob_amplitudes": np.ones((num_envs, count), np.float32),
            "blob_flicker": np.zeros((num_envs, count), np.float32),
        }

    @classmethod
    def of(cls, num_envs: int, c: SceneryConfig) -> Blobs:
        """The blobs of a grid config ``c`` (a :class:`~lam_envs.envs.grid.GridLAMConfig`)."""
        return cls(
            num_envs, c.blob_count, 4 * c.pixel_scale, c.blob_width, c.blob_speed,
            c.blob_flicker, c.blob_intensity, c.blob_persistence, c.blob_pulse,
        )  # fmt: skip

    def reset(self, i, rng):
        self.state["blob_positions"][i] = self.size * rng.random((self.k, 2), np.float32)
        self.state["blob_moves"][i] = 0
        self.state["blob_amplitudes"][i] = 1 - self.flicker * rng.random(self.k, np.float32)
        self.state["blob_flicker"][i] = 0

    def step(self, u, actions, index):
        k, s = self.k, _select(self.state, index)
        moves = np.float32(self.speed) * MOVES[uniform_ints(u[:, :k], len(MOVES))]
        if self.persistence > 0:  # repeat the last move with probability p
            keep = u[:, 2 * k : 3 * k, None] < self.persistence
            moves = np.where(keep, s["blob_moves"], moves)
        positions = np.mod(s["blob_positions"] + moves, np.float32(self.size))
        if self.pulse > 0:  # a random walk of the amplitude in [1 - flicker, 1]
            rates = self.pulse * (uniform_ints(u[:, k : 2 * k], 3) - 1).astype(np.float32)
            if self.persistence > 0:
                rates = np.where(keep[..., 0], s["blob_flicker"], rates)
            amplitudes = s["blob_amplitudes"] + rates
            low = np.float32(1 - self.flicker)
            amplitudes = np.where(amplitudes > 1, 2 - amplitudes, amplitudes)
            amplitudes = np.where(amplitudes < low, 2 * low - amplitudes, amplitudes)
            amplitudes = np.clip(amplitudes, low, 1)
        else:
            amplitudes = 1 - np.float32(self.flicker) * u[:, k : 2 * k]
        new = {
            "blob_positions": positions.astype(np.float32),
            "blob_moves": moves.astype(np.float32),
            "blob_amplitudes": amplitudes.astype(np.float32),
            "blob_flicker": (amplitudes - s["blob_amplitudes"]).astype(np.float32),
        }
        _store(self.state, index, new)

    def change(self, index) -> np.ndarray:
        """The blobs' low-dimensional change over the step, (n, 3k)."""
        s = _select(self.state, index)
        moves = s["blob_moves"]
        return np.concatenate([moves.reshape(len(moves), 2 * self.k), s["blob_flicker"]], 1)

    def picture(self, index, shift, out: np.ndarray) -> None:
        """Draw the blobs into ``out`` (n, size, size), where they are brighter than it."""
        s, size = _select(self.state, index), self.size
        centre = s["blob_positions"]
        if shift is not None:
            centre = centre + shift[:, None, :].astype(np.float32)
        d = np.abs(self._grid - centre[..., None])  # (n, k, 2, size)
        d = np.minimum(d, size - d)  # periodic
        g = np.exp(d**2 * self._inv[:, None])  # (n, k, 2, size)
        weight = (s["blob_amplitudes"] * self.intensity)[..., None] * g[:, :, 0]
        blobs = np.einsum("nky,nkx->nkyx", weight, g[:, :, 1]).max(axis=1)
        np.maximum(out, blobs, out=out)


class Goal(Distractor):
    """The goal cell of the goal task (see module doc); not a distractor, but kept like one
    (its state in ``info``, its draws from the env's stream).

    State: ``goal`` (2,) int64 cell; ``goal_reached`` () bool.
    """

    columns = 1

    def __init__(self, num_envs, agent, timeout: int = 0, intensity: float = 1.0):
        super().__init__(num_envs)
        self._agent = agent  # the dynamics, whose ``_pos`` is the agent's cell on reset
        self.timeout = timeout  # steps a goal stays unreached before it moves (0: never)
        self.intensity = intensity  # the outline's pixel value
        self.state = {
            "goal": np.zeros((num_envs, 2), np.int64),
            "goal_reached": np.zeros(num_envs, bool),
            "goal_age": np.zeros(num_envs, np.int64),
        }

    @staticmethod
    def other_cell(agent_cells: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """The draw-th (0 … 10) of the 11 cells other than ``agent_cells`` (row-major)."""
        return draw + (draw >= agent_cells)

    def reset(self, i, rng):
        agent = self._agent._pos[i]
        cell = self.other_cell(agent[0] * COLS + agent[1], rng.integers(CELLS - 1))
        self.state["goal"][i] = divmod(int(cell), COLS)
        self.state["goal_reached"][i] = False
        self.state["goal_age"][i] = 0

    def reached(self, new_pos: np.ndarray, index) -> np.ndarray:
        """Whether each env's agent, now at ``new_pos``, reached its goal: the reward."""
        goal = _select(self.state, index)["goal"]
        hit = (new_pos == goal).all(axis=1)
        self._new_pos = new_pos
        _store(self.state, index, {"goal_reached": hit})
        return hit.astype(np.float64)

    def step(self, u, actions, index):
        s, pos = _select(self.state, index), self._new_pos
        cell = self.other_cell(pos[:, 0] * COLS + pos[:, 1], uniform_ints(u[:, 0], CELLS - 1))
        redrawn = np.stack([cell // COLS, cell % COLS], axis=1)
        age = s["goal_age"] + 1
        new = s["goal_reached"] | ((age >= self.timeout) if self.timeout else False)
        goal = np.where(new[:, None], redrawn, s["goal"])
        _store(self.state, index, {"goal": goal, "goal_age": np.where(new, 0, age)})

    def picture(self, index, shift, side: int, out: np.ndarray) -> None:
        """Draw each goal's outline (value ``intensity``) into ``out`` (n, size, size)."""
        goal = _select(self.state, index)["goal"]
        n, size = len(goal), out.shape[-1]
        top, left = goal[:, 0] * side, goal[:, 1] * side
        if shift is not None:
            top, left = top + shift[:, 0], left + shift[:, 1]
        ring = np.ones((side, side), bool)
        if side >= 3:
            ring[1:-1, 1:-1] = False
        rows = top[:, None] + np.arange(side)  # (n, side)
        cols = left[:, None] + np.arange(side)
        inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None]
        mask = ring & inside
        env = np.broadcast_to(np.arange(n)[:, None, None], mask.shape)
        r = np.broadcast_to(np.clip(rows, 0, size - 1)[:, :, None], mask.shape)
        c = np.broadcast_to(np.clip(cols, 0, size - 1)[:, None, :], mask.shape)
        out[env[mask], r[mask], c[mask]] = self.intensity


def distractor_change(blobs: Blobs | None, others, index, n: int, reset: bool) -> np.ndarray:
    """``info["distractor_change"]`` (n, d) float32: the blobs' change, then each other
    agent's move in cells (the move its action asks for; see module doc); zeros on reset."""
    parts = [] if blobs is None else [blobs.change(index)]
    if others is not None and reset:
        parts.append(np.zeros((n, 2 * others.k), np.float32))
    elif others is not None:
        acts = _select(others.state, index)["other_actions"]
        parts.append(others.deltas[acts].reshape(n, 2 * others.k))
    if not parts:
        return np.zeros((n, 0), np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


@dataclass(frozen=True)
class SceneryConfig:
    """The goal task's and the blobs' fields of :class:`~lam_envs.envs.grid.GridLAMConfig`
    (defaults: off, every earlier preset unchanged).

    goal: the goal task (reward 1 for reaching a goal cell drawn in the image) instead of
        the snake reward.
    goal_timeout: a goal unreached for this many steps moves to a new cell (0: never).
        Without it a deterministic policy that errs once can stand still or pace forever,
        so a return would measure whether it ever errs rather than how often.
    goal_intensity: the pixel value of the goal's outline (the agent's is 1). Below 1 the
        goal moving on is a smaller share of a step's pixel change than the agent's move,
        and under lights a fainter signal for a policy to find.
    blob_count: k, flickering blobs (0 = off).
    blob_width: their standard deviation, pixels.
    blob_speed: the length of a blob's jump per axis, pixels (along one of 8 directions).
    blob_flicker: how far a blob's amplitude may fall below 1 (redrawn every step).
    blob_intensity: their peak pixel value.
    blob_persistence: probability that a blob repeats its last move (0: a fresh move every
        step; on reset the last move is none).
    blob_pulse: δ, the step of each amplitude's random walk (0: amplitudes redrawn every
        step instead).
    """

    goal: bool = False
    goal_timeout: int = 0
    goal_intensity: float = 1.0
    blob_count: int = 0
    blob_width: float = 3.0
    blob_speed: float = 4.0
    blob_flicker: float = 0.5
    blob_intensity: float = 1.0
    blob_persistence: float = 0.0
    blob_pulse: float = 0.0

    def check_scenery(self) -> None:
        """Validate (and canonicalise) the fields, for ``__post_init__``."""
        if not isinstance(self.goal, bool | np.bool_):
            raise ValueError(f"goal must be True or False, got {self.goal!r}")
        object.__setattr__(self, "goal", bool(self.goal))
        set_checked(self, "goal_timeout", check_int, 0, 1_000_000)
        # > 0: an invisible goal is no task
        set_checked(self, "goal_intensity", check_float, None, FLOAT32_MAX, above=0.0)
        set_checked(self, "blob_count", check_int, 0, 64)
        set_checked(self, "blob_width", check_float, 0.25, 64.0)
        set_checked(self, "blob_speed", check_float, 0.0, 64.0)
        set_checked(self, "blob_flicker", check_fraction)
        set_checked(self, "blob_intensity", check_float, 0.0, FLOAT32_MAX)
        set_checked(self, "blob_persistence", check_fraction)
        set_checked(self, "blob_pulse", check_fraction)
