"""``GridLAM-v0``: a square moved in the 3×4 top area of a 4×4 image, a noise row below;
at a pixel scale s, with optional exogenous distractors (``GridLAM-Distracting-v0``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs.envs._rng import BlockStreams, block_rows, uniform_f32
from lam_envs.envs.base import (
    BatchDynamics,
    BatchEnv,
    BatchVectorEnv,
    Info,
    config_from_preset,
    set_checked,
)
from lam_envs.envs.family import EnvFamily
from lam_envs.envs.grid_distractors import (
    Background,
    CameraShake,
    ColourDrift,
    Distractor,
    OtherAgents,
    paint,
)
from lam_envs.envs.grid_layout import (
    ACTION_DELTAS,
    ACTION_LEAK_PATTERNS,
    ACTION_NAMES,
    COLS,
    DISTRACTOR_SETTINGS,
    GRID_PRESETS,
    NUM_ACTIONS,
    RELEASED_SNAKE_ACTION,
    RELEASED_START_CELL,
    ROWS,
    SNAKE_ACTION,
    SNAKE_CYCLE,
    SNAKE_NEXT_CELL,
    released_corner_jump,
    square_positions,
)
from lam_envs.envs.grid_policies import GRID_POLICIES
from lam_envs.envs.grid_scenery import Blobs, Goal, SceneryConfig, distractor_change
from lam_envs.utils.validate import FLOAT32_MAX, check_float, check_fraction, check_int


@dataclass(frozen=True)
class GridLAMConfig(SceneryConfig):
    """Parameters of ``GridLAM-v0``; validated on construction (values are stored as plain
    ``int``/``float``). Intensities are pixel values; sizes and moves are in pixels unless
    said otherwise. See :class:`GridLAMEnv` for what each does.

    pixel_scale: s, pixels per cell side (the image is 4s × 4s; s = 1 is the published 4×4).
    noise_intensity: value of a lit noise cell (presets: none 0, low 1, high 2).
    action_leak: probability that the noise row shows the action's own pattern instead of
        Bernoulli noise (``ACTION_LEAK_PATTERNS``): the action leaks into the image. Not a
        distractor; needs noise_intensity > 0.
    other_agents: k, squares that move under their own policy (0 = off).
    other_agent_size: their side relative to the agent's (1 = same; 1.5 = larger).
    other_agent_intensity: their pixel value (the agent's is 1).
    other_agent_persistence: probability that one repeats its previous action.
    other_agent_correlation: ρ, probability that one copies the agent's action.
    background_intensity: peak value of the scrolling background (0 = off).
    background_speed: its scroll, pixels per step.
    background_textures: how many textures an episode's background is drawn from.
    shake_bound: bound of the camera shake per axis, pixels (0 = off).
    shake_step: largest move of the shake per step and axis, pixels.
    colour_drift_step: largest change of the agent's intensity per step (0 = off).
    colour_drift_low, colour_drift_high: bounds of the agent's intensity under drift.
    structure_seed: seed of the background textures, fixed for the environment's lifetime.
    start_cell: −1 (default): each episode starts in a uniformly random cell; 0..11: in cell
        row·4 + col (the published Table 1 data: 6, the cell (1, 2)).
    corner_jump: probability that the action "stay" in the top-right cell (0, 3) moves the
        square to (0, 0) (default 0). The published Table 1 snaking data wraps from (0, 3)
        to (0, 0) and stores that move as "stay" (see ``RELEASED_SNAKE_ACTION``).
    goal, blob_*: the goal task and the flickering blobs (:class:`SceneryConfig`).
    """

    pixel_scale: int = 1
    noise_intensity: float = 1.0
    action_leak: float = 0.0
    other_agents: int = 0
    other_agent_size: float = 1.0
    other_agent_intensity: float = 1.0
    other_agent_persistence: float = 0.0
    other_agent_correlation: float = 0.0
    background_intensity: float = 0.0
    background_speed: int = 1
    background_textures: int = 8
    shake_bound: int = 0
    shake_step: int = 1
    colour_drift_step: float = 0.0
    colour_drift_low: float = 0.5
    colour_drift_high: float = 1.5
    structure_seed: int = 0
    start_cell: int = -1
    corner_jump: float = 0.0

    def __post_init__(self):
        def canonical(name: str, check, *bounds) -> Any:
            return set_checked(self, name, check, *bounds)

        top = FLOAT32_MAX  # an observation (float32) must hold every intensity
        s = canonical("pixel_scale", check_int, 1, 32)
        noise = canonical("noise_intensity", check_float, 0.0, top)
        leak = canonical("action_leak", check_fraction)
        canonical("other_agents", check_int, 0, 16)
        canonical("other_agent_size", check_float, 0.25, 3.0)
        canonical("other_agent_intensity", check_float, 0.0, top)
        canonical("other_agent_persistence", check_fraction)
        canonical("other_agent_correlation", check_fraction)
        canonical("background_intensity", check_float, 0.0, top)
        canonical("background_speed", check_int, 1, 4 * s - 1)  # 4s would look still
        canonical("background_textures", check_int, 1, 1024)
        bound = canonical("shake_bound", check_int, 0, 2 * s)
        canonical("shake_step", check_int, 1, 2 * bound if bound else None)
        canonical("colour_drift_step", check_float, 0.0, top)
        low = canonical("colour_drift_low", check_float, 0.0, top)
        high = canonical("colour_drift_high", check_float, 0.0, top)
        canonical("structure_seed", check_int, 0)
        canonical("start_cell", check_int, -1, ROWS * COLS - 1)
        canonical("corner_jump", check_fraction)
        self.check_scenery()
        if leak > 0 and noise == 0:
            raise ValueError(
                f"action_leak = {leak} needs noise_intensity > 0 (the leaked pattern is drawn "
                "at that intensity), got noise_intensity = 0.0"
            )
        if self.colour_drift_step > 0 and not 0 < low < high:
            raise ValueError(
                "colour drift needs 0 < colour_drift_low < colour_drift_high, got "
                f"colour_drift_low = {low}, colour_drift_high = {high}"
            )

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> GridLAMConfig:
        """The preset's values (``None``: the defaults), with ``overrides`` applied on top."""
        return config_from_preset(cls, GRID_PRESETS, "GridLAM", preset, overrides)

    @property
    def size(self) -> int:
        """Side of the (square) image in pixels: 4s."""
        return 4 * self.pixel_scale

    @property
    def distractors(self) -> tuple[str, ...]:
        """Names of the distractors that are on."""
        on = {
            "other_agents": self.other_agents > 0,
            "background": self.background_intensity > 0,
            "shake": self.shake_bound > 0,
            "colour_drift": self.colour_drift_step > 0,
            "blobs": self.blob_count > 0,
        }
        return tuple(name for name, is_on in on.items() if is_on)

    @property
    def observation_high(self) -> float:
        """The largest pixel value an observation can hold (the space's upper bound)."""
        values = [1.0, self.noise_intensity]
        if self.other_agents:
            values.append(self.other_agent_intensity)
        if self.background_intensity:
            values.append(self.background_intensity)
        if self.colour_drift_step:
            values.append(self.colour_drift_high)
        if self.blob_count:
            values.append(self.blob_intensity)
        return max(values)


class GridDynamics(BatchDynamics):
    """The square's moves, the noise row and the distractors, for a batch of envs.

    Randomness of each env (its stream, see ``_rng.py``): on reset the start cell (unless
    ``start_cell`` fixes it), then the distractors' start states (other agents, background,
    camera shake, colour drift, each only when on); per step one row of uniforms: 4 for the
    noise cells (noise_intensity > 0), 1 for the action-leak coin (action_leak > 0), 1 for
    the corner-jump coin (corner_jump > 0), then the distractors' columns in the same
    order. The published grid's stream is unchanged by the distractors.
    """

    def __init__(self, num_envs: int, preset: str | None = None, **params: Any):
        super().__init__(num_envs)
        self.config = c = GridLAMConfig.from_preset(preset, **params)
        s, size = c.pixel_scale, c.size
        self.observation_space = gym.spaces.Box(
            0.0, c.observation_high, (1, size, size), np.float32
        )
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._upper = np.array([ROWS - 1, COLS - 1])
        self.others = self.background = self.shake = self.colour = None
        self._other_side = max(1, round(c.other_agent_size * s))
        if c.other_agents:
            self.others = OtherAgents(
                num_envs, c.other_agents, c.other_agent_persistence,
                c.other_agent_correlation, ACTION_DELTAS, self._upper,
            )  # fmt: skip
        if c.background_intensity:
            self.background = Background(
                num_envs, size, c.background_intensity, c.background_speed,
                c.background_textures, s, c.structure_seed,
            )  # fmt: skip
        if c.shake_bound:
            self.shake = CameraShake(num_envs, c.shake_bound, c.shake_step)
        if c.colour_drift_step:
            self.colour = ColourDrift(
                num_envs, c.colour_drift_step, c.colour_drift_low, c.colour_drift_high
            )
        self.blobs = Blobs.of(num_envs, c) if c.blob_count else None
        self.goal = Goal(num_envs, self, c.goal_timeout, c.goal_intensity) if c.goal else None
        parts = (self.others, self.background, self.shake, self.colour, self.blobs, self.goal)
        self._distractors: list[Distractor] = [d for d in parts if d is not None]
        self._noise_columns = 4 * (c.noise_intensity > 0) + (c.action_leak > 0)
        self._jump_column = self._noise_columns if c.corner_jump > 0 else None
        width = self._noise_columns + (c.corner_jump > 0)
        width += sum(d.columns for d in self._distractors)
        self._streams = BlockStreams(num_envs, width, block_rows(width), uniform_f32)
        self._pos = np.zeros((num_envs, 2), dtype=np.int64)
        self._noise = np.zeros((num_envs, 4), dtype=np.float32)
        self._intensity = np.float32(c.noise_intensity)
        self._patterns = ACTION_LEAK_PATTERNS * self._intensity
        # The noise-free image of the square in each of the 12 cells (info's clean_obs).
        self._clean = np.zeros((ROWS * COLS, 1, size, size), np.float32)
        for cell in range(ROWS * COLS):
            r, col = divmod(cell, COLS)
            self._clean[cell, 0, r * s : (r + 1) * s, col * s : (col + 1) * s] = 1.0

    def _noise_rows(self, rows: np.ndarray, actions: np.ndarray | None):
        n = len(rows)
        if not self._noise_columns:
            return np.zeros((n, 4), np.float32), None
        noise = (rows[:, :4] < 0.5).astype(np.float32)
        noise *= self._intensity
        if self.config.action_leak == 0:
            return noise, None
        leaked = np.zeros(n, dtype=bool)
        if actions is not None:
            leaked = rows[:, 4] < self.config.action_leak
            noise[leaked] = self._patterns[actions[leaked]]
        return noise, leaked

    def _advance_distractors(self, rows: np.ndarray, actions, index) -> None:
        column = self._noise_columns + (self._jump_column is not None)
        for d in self._distractors:
            d.step(rows[:, column : column + d.columns], actions, index)
            column += d.columns

    def reset(self, index, rngs) -> Info:
        fixed = self.config.start_cell
        for i in index:
            cell = rngs[i].integers(ROWS * COLS) if fixed < 0 else fixed
            self._pos[i] = divmod(int(cell), COLS)
            for d in self._distractors:
                d.reset(i, rngs[i])
        self._streams.restart(index, rngs)
        noise, leaked = self._noise_rows(self._streams.next_rows(rngs, index), None)
        self._noise[index] = noise
        return self._info(index, self._pos[index], noise, leaked, reset=True)

    def step(self, actions, rngs, index) -> tuple[np.ndarray, Info]:
        a = actions  # int64 (n,) in [0, 4]: checked by the environment
        pos = self._pos if index is None else self._pos[index]
        # a move into a wall: stay (minimum/maximum: np.clip costs more on small arrays)
        new = np.minimum(np.maximum(pos + ACTION_DELTAS[a], 0), self._upper)
        successor = SNAKE_NEXT_CELL[pos[:, 0], pos[:, 1]]
        rewards = (new == successor).all(axis=1).astype(np.float64)
        if self.goal is not None:  # the goal task's reward instead of the snake's
            rewards = self.goal.reached(new, index)
        rows = self._streams.next_rows(rngs, index)
        if self._jump_column is not None:  # "stay" at (0, 3) may wrap to (0, 0)
            jump = (a == 0) & (pos[:, 0] == 0) & (pos[:, 1] == COLS - 1)
            jump &= rows[:, self._jump_column] < self.config.corner_jump
            new[jump] = 0
        noise, leaked = self._noise_rows(rows, a)
        self._advance_distractors(rows, a, index)
        if index is None:
            self._pos, self._noise = new, noise
        else:
            self._pos[index], self._noise[index] = new, noise
        return rewards, self._info(index, new, noise, leaked)

    def _info(self, index, pos, noise, leaked, reset=False) -> Info:
        cell = pos[:, 0] * COLS + pos[:, 1]
        if index is None:
            clean = self.pool.take("clean_obs", (len(pos), *self._clean.shape[1:]), np.float32)
            np.take(self._clean, cell, axis=0, out=clean, mode="clip")  # clip: unbuffered
        else:
            clean = self._clean[cell]
        info = {"position": pos.copy(), "noise": noise.copy(), "clean_obs": clean}
        if leaked is not None:
            info["action_leaked"] = leaked
        for d in self._distractors:
            info.update(d.info(index))
        if self.blobs is not None or (self.goal is not None and self.others is not None):
            info["distractor_change"] = distractor_change(
                self.blobs, self.others, index, len(pos), reset
            )
        return info

    def observations(self, index=None) -> np.ndarray:
        """Compose the images: background, noise row, other agents, the agent on top, all
        translated by the camera shake (what leaves the image is lost)."""
        c, s, size = self.config, self.config.pixel_scale, self.config.size
        pos = self._pos if index is None else self._pos[index]
        noise = self._noise if index is None else self._noise[index]
        n = len(pos)
        if not self._distractors and s == 1:  # the published 4×4 grid: the fast path
            image = self._blank(index, n, 4)
            image[:, 3, :] = noise
            image.reshape(n, 16)[np.arange(n), pos[:, 0] * 4 + pos[:, 1]] = 1.0
            return image.reshape(n, 1, 4, 4)
        shift = None if self.shake is None else self.shake.state["shake"]
        if shift is not None and index is not None:
            shift = shift[index]
        image = self._blank(index, n, size, fill=self.background is None)
        if self.background is not None:
            self.background.picture(index, shift, image)
        if self.blobs is not None:
            self.blobs.picture(index, shift, image)
        # Where the scene's top-left pixel lands (the shake may take squares partly out).
        y0, x0 = (0, 0) if shift is None else (shift[:, 0], shift[:, 1])
        clip = shift is not None
        if c.noise_intensity > 0:
            for j in range(COLS):
                paint(image, y0 + 3 * s, x0 + j * s, s, noise[:, j, None, None], clip)
        if self.goal is not None:
            self.goal.picture(index, shift, s, image)
        if self.others is not None:
            side, offset = self._other_side, (s - self._other_side) // 2
            where = self.others.state["other_positions"]
            where = where if index is None else where[index]
            top = (where[:, :, 0] * s + offset).T + y0  # (k, n)
            left = (where[:, :, 1] * s + offset).T + x0
            if side <= s and not clip:
                # All in one go: squares of two other agents are the same (same cell) or
                # apart (different cells), so the order they are painted in cannot matter.
                paint(image, top, left, side, c.other_agent_intensity, False)
            else:  # they may overlap (or their clipping windows may): later over earlier
                for j in range(c.other_agents):
                    paint(image, top[j], left[j], side, c.other_agent_intensity, True)
        value = 1.0
        if self.colour is not None:
            value = self.colour.state["agent_intensity"]
            value = (value if index is None else value[index])[:, None, None]
        paint(image, y0 + pos[:, 0] * s, x0 + pos[:, 1] * s, s, value, clip)
        return image.reshape(n, 1, size, size)

    def _blank(self, index, n: int, side: int, name: str = "obs", fill: bool = True):
        """An (n, side, side) float32 array, zeroed when ``fill``: recycled when all envs
        are asked for (see ArrayPool), fresh otherwise."""
        if index is not None:
            return np.zeros((n, side, side), np.float32)
        array = self.pool.take(name, (n, side, side), np.float32)
        if fill:
            array.fill(0.0)
        return array

    def render_ansi(self, i: int) -> str:
        """The cells (# the agent, o other agents), the noise row, and the distractors'
        state."""
        r, c = self._pos[i]
        grid = [["."] * COLS for _ in range(ROWS)]
        if self.others is not None:
            for orow, ocol in self.others.state["other_positions"][i]:
                grid[orow][ocol] = "o"
        grid[r][c] = "#"
        lines = [" ".join(row) for row in grid]
        lines.append("-" * (2 * COLS - 1))
        lines.append(" ".join(f"{v:g}" for v in self._noise[i]))
        for d in self._distractors:
            if d is not self.others:
                lines += [f"{key}: {value[i]}" for key, value in d.state.items()]
        return "\n".join(lines) + "\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """A picture of at least 128×128: bright on slate, the noise row in amber below."""
        c, s = self.config, self.config.pixel_scale
        image = self.observations(np.array([i]))[0, 0]
        zoom = max(1, 128 // c.size)
        # Rows above ``band`` are the scene (slate to white); below it the noise row (amber),
        # unless there is no noise row and a background fills the whole image.
        band = 3 * s if c.noise_intensity > 0 or self.background is None else c.size
        bright = [1.0, c.background_intensity]
        if self.others is not None:
            bright.append(c.other_agent_intensity)
        if self.colour is not None:
            bright.append(c.colour_drift_high)
        top = max(bright)
        picture = np.zeros((c.size, c.size, 3), dtype=np.float32)
        lit = np.clip(image[:band, :, None] / top, 0, 1)
        picture[:band] = np.array([40, 44, 52]) + lit * np.array([215, 211, 203])
        noise_scale = max(1.0, float(self._intensity))
        picture[band:] = np.array([25, 25, 25]) + (image[band:, :, None] / noise_scale) * np.array(
            [230, 160, 0]
        )
        picture = np.kron(picture, np.ones((zoom, zoom, 1))).astype(np.uint8)
        cell = s * zoom
        picture[::cell] = picture[:, ::cell] = 90  # grid lines between cells
        picture[3 * cell - 1 : 3 * cell + 1] = 200  # the edge of the controllable area
        return picture


class GridLAMEnv(BatchEnv):
    """
    ## Description

    A single-channel image of 4×4 cells, each cell s×s pixels (``pixel_scale`` s; s = 1 is
    the published 4×4 image). Rows 0–2 of cells (a 3×4 area) hold a square of intensity 1.0
    that the agent moves; cell row 3 is exogenous noise: each of its 4 cells is
    Bernoulli(0.5) × ``noise_intensity``, redrawn every step independently of everything
    else. A latent action should capture the square's move and ignore the rest.

    ### Distractors (all off by default)

    Exogenous and temporally correlated, as in the Distracting Control Suite; none depends
    on the action, except other agents that copy it with probability ρ. Each one's state is
    ground truth in ``info``.

    - **Other agents** (``other_agents`` = k > 0): k squares on the same 3×4 cells, of side
      ``other_agent_size`` × the agent's and value ``other_agent_intensity``. Each step each
      takes the action the agent's random policy would (uniform over the 5), except that
      with probability ``other_agent_persistence`` it repeats its previous action and with
      probability ``other_agent_correlation`` ρ it copies the agent's action
      ("action-correlated"); walls stop them as they stop the agent. Start cells uniform.
    - **Moving background** (``background_intensity`` > 0): a smooth periodic texture
      (features about one cell wide; one of ``background_textures`` drawn from
      ``structure_seed``, chosen on reset) with values in [0, background_intensity],
      behind everything. It scrolls ``background_speed`` pixels per step along one of the 8
      compass directions, chosen on reset: it moves every step.
    - **Camera shake** (``shake_bound`` > 0): the whole image is translated by (dy, dx)
      pixels, a random walk whose coordinates move by an integer uniform in
      [−``shake_step``, ``shake_step``] per step and are reflected into [−shake_bound,
      shake_bound]; what is translated out of the image is lost, and what comes in is
      background (or 0).
    - **Colour drift** (``colour_drift_step`` > 0): the agent's intensity is a random walk
      moving by a uniform in [−colour_drift_step, colour_drift_step] per step, reflected
      into [``colour_drift_low``, ``colour_drift_high``]; its start is uniform there.

    Drawn in this order, later over earlier: background, noise row (when noise_intensity
    > 0), other agents, the agent; then the shake translates it all.

    ``action_leak`` > 0 is not a distractor: with that probability the noise row shows a
    pattern of the action just taken (``ACTION_LEAK_PATTERNS``), a second copy of the
    action in the image.

    ## Action Space

    ``Discrete(5)``: 0 stay, 1 up, 2 down, 3 left, 4 right. A move into a wall leaves the
    square where it is. With ``corner_jump`` p > 0 (the published Table 1 snaking data),
    "stay" in the top-right cell (0, 3) moves the square to (0, 0) with probability p.
    ``step`` refuses anything else (a wrong shape, a value out of range
    or not integral) with a ``ValueError``.

    ## Observation Space

    ``Box(0, high, (1, 4s, 4s), float32)``, ``high`` the largest value any pixel can hold:
    max(1, noise_intensity, and the intensities of the distractors that are on).

    ## Rewards

    1 when the square moves to the next cell of the snake cycle ``SNAKE_CYCLE`` (the path
    the snaking policy follows), else 0. The snaking policy at ε = 0 earns 1 per step.

    ## Starting State

    The square in a cell drawn uniformly from the 12 (or in cell ``start_cell``: the
    published Table 1 data start every episode in (1, 2)); a fresh noise row; the
    distractors' start states as above.

    ## Episode End

    Never terminates. Registered ids truncate after ``max_episode_steps`` (200 unless
    given to ``gym.make``).

    ## Info (ground truth, for evaluation only)

    On reset and every step, the same keys and shapes: ``position`` (2,) int64 (row, col)
    of the square's cell; ``noise`` (4,) float32 the noise row; ``clean_obs`` (1, 4s, 4s)
    the image of the square alone (intensity 1, no noise, no distractor, no shake); with
    ``action_leak`` > 0, ``action_leaked`` bool. For each distractor that is on:

    - other agents: ``other_positions`` (k, 2) int64 cells; ``other_actions`` (k,) int64,
      the action each took (on reset: its initial heading under persistence, else 0);
      with ρ > 0, ``other_copied`` (k,) bool, whether it copied the agent's action.
    - background: ``background_texture`` () int64; ``background_offset`` (2,) int64, the
      texture pixel at the image's top-left before the shake; ``background_velocity`` (2,)
      int64, pixels per step.
    - camera shake: ``shake`` (2,) int64, (dy, dx) in pixels.
    - colour drift: ``agent_intensity`` () float32.

    ## Arguments

    ``gym.make("GridLAM-v0", **kwargs)`` accepts ``preset`` (see ``GRID_PRESETS``: the
    noise presets ``none``, ``low``, ``high``; the distracting grid's ``clean``,
    ``other_agents``, ``correlated_agents``, ``background``, ``shake``, ``colour_drift``,
    ``distracting``), the fields of :class:`GridLAMConfig` (explicit values override the
    preset's) and ``render_mode`` (``"ansi"``, or ``"rgb_array"`` for a picture of at least
    128×128). Defaults: s = 1, noise_intensity = 1.0 (low), every distractor off; other
    agents same size and intensity as the agent, persistence 0, ρ = 0; background speed 1
    pixel per step from 8 textures; shake step 1 pixel; colour drift bounds [0.5, 1.5].
    Out-of-range values raise ``ValueError`` naming the parameter.

    ## Vectorized environment

    ``gym.make_vec("GridLAM-v0", num_envs=N)`` returns :class:`GridLAMVectorEnv`: all N
    envs in numpy at once, exactly the transitions of N single envs seeded ``s, s + 1, ...``.

    ## Version History

    * v0: initial version; the pixel scale and the distractors are new parameters whose
      defaults leave the published grid unchanged.
    """

    dynamics_class = GridDynamics


class GridLAMVectorEnv(BatchVectorEnv):
    """Native vector version of :class:`GridLAMEnv`; same arguments plus ``num_envs`` and
    ``max_episode_steps``. Autoreset mode ``NEXT_STEP``; info arrays have a leading
    ``num_envs`` axis."""

    dynamics_class = GridDynamics


def grid_spaces_problem(kwargs: dict[str, Any], observations: Any, actions: Any) -> str | None:
    """What is wrong with a dataset's spaces for GridLAM arguments ``kwargs`` (None: they
    are right): Discrete(5) actions on images in [0, high], high the largest pixel value
    the parameters allow (1 without noise or distractors, the noise intensity, ...).
    ``ValueError``/``TypeError`` when ``kwargs`` are not GridLAM's."""
    parameters = {k: v for k, v in kwargs.items() if k != "render_mode"}
    high = GridLAMConfig.from_preset(parameters.pop("preset", None), **parameters).observation_high
    n, start = getattr(actions, "n", None), getattr(actions, "start", None)
    if (n, start) != (NUM_ACTIONS, 0):
        return f"'action_space' is not Discrete({NUM_ACTIONS})"
    if not ((observations.low == 0).all() and (observations.high == high).all()):
        return f"'observation_space' is not the box [0, {high:g}]"
    return None


FAMILY = EnvFamily(
    name="grid",
    config=GridLAMConfig,
    env=GridLAMEnv,
    vector_env=GridLAMVectorEnv,
    presets=GRID_PRESETS,
    ids={
        "GridLAM-v0": None,
        "GridLAM-NoNoise-v0": "none",
        "GridLAM-LowNoise-v0": "low",
        "GridLAM-HighNoise-v0": "high",
        "GridLAM-Clean-v0": "clean",
        "GridLAM-OtherAgents-v0": "other_agents",
        "GridLAM-CorrelatedAgents-v0": "correlated_agents",
        "GridLAM-Background-v0": "background",
        "GridLAM-Shake-v0": "shake",
        "GridLAM-ColourDrift-v0": "colour_drift",
        "GridLAM-Distracting-v0": "distracting",
        "GridLAM-Goal-v0": "goal",
        "GridLAM-GoalBlobs-v0": "goal_blobs",
        "GridLAM-GoalLights-v0": "goal_lights",
        "GridLAM-GoalAgents-v0": "goal_agents",
        "GridLAM-GoalCorrelatedAgents-v0": "goal_correlated_agents",
        "GridLAM-GoalDistracting-v0": "goal_distracting",
    },
    policies=GRID_POLICIES,
    oracle_fields=("position", "noise", "clean_obs"),
    # the square, its image and the distractor states that move (each when on)
    moving_fields=(
        "position",
        "clean_obs",
        "shake",
        "agent_intensity",
        "background_offset",
        "other_positions",
        "blob_positions",
        "goal",
    ),  # fmt: skip
    scores=("grid_probe_losses",),
    # GridLAM's noise row showing the action's pattern: not a distractor (it is the action)
    renamed_kwargs={"distractor_correlation": "action_leak"},
    check_spaces=grid_spaces_problem,
)

__all__ = [
    "ACTION_DELTAS", "ACTION_LEAK_PATTERNS", "ACTION_NAMES", "COLS", "DISTRACTOR_SETTINGS",
    "FAMILY", "GRID_PRESETS", "NUM_ACTIONS", "RELEASED_SNAKE_ACTION", "RELEASED_START_CELL",
    "ROWS", "SNAKE_ACTION", "SNAKE_CYCLE", "SNAKE_NEXT_CELL", "GridDynamics", "GridLAMConfig",
    "GridLAMEnv", "GridLAMVectorEnv", "grid_spaces_problem", "released_corner_jump",
    "square_positions",
]  # fmt: skip
