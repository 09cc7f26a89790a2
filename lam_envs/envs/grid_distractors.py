"""The distracting grid's exogenous distractors: their state, their laws, their pictures.

Each distractor is a small class over a batch of ``num_envs`` environments. Its state is a
dict of arrays with a leading ``num_envs`` axis whose keys are the ``info`` keys that report
it (ground truth, written to a dataset's oracle fields). It reads its randomness the way the
grid does: per-env draws on reset (``reset``), and per step ``columns`` uniforms of the
env's stream row (``step``); so the native vector env and single envs stay equal.

Laws (one step; u are the step's uniforms in [0, 1)):

- :class:`OtherAgents`: each of k squares takes its own action, uniform over the 5 grid
  actions, except that with probability ``persistence`` it repeats its previous action,
  and with probability ρ (``correlation``) it copies the agent's action instead; it moves
  like the agent (a move into a wall stays).
- :class:`Background`: a texture drawn on reset (one of ``textures`` smooth periodic
  patterns) scrolls by a velocity fixed on reset (``speed`` pixels along one of the 8
  compass directions): offset ← (offset + velocity) mod image size.
- :class:`CameraShake`: the shift (dy, dx) of the whole image, pixels; each coordinate
  moves by an integer uniform in [−step, step] and is reflected into [−bound, bound].
- :class:`ColourDrift`: the agent's intensity c moves by a uniform in [−step, step] and is
  reflected into [low, high].

Only :class:`OtherAgents` reads the agent's action, and only when ρ > 0.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

State = dict[str, np.ndarray]

#: The 8 compass directions (d_row, d_col) a background can scroll along.
COMPASS = np.array(
    [[-1, 0], [-1, 1], [0, 1], [1, 1], [1, 0], [1, -1], [0, -1], [-1, -1]], dtype=np.int64
)


def uniform_ints(u: np.ndarray, count: int) -> np.ndarray:
    """Integers uniform over 0 … count − 1 from uniforms u in [0, 1)."""
    return np.minimum((u * count).astype(np.int64), count - 1)


def reflect(x: np.ndarray, low, high) -> np.ndarray:
    """x folded into [low, high] by reflection at both ends (a 1-Lipschitz map)."""
    width = high - low
    y = np.mod(x - low, 2 * width)
    return low + np.where(y > width, 2 * width - y, y)


def _select(state: State, index: np.ndarray | None) -> State:
    return state if index is None else {k: v[index] for k, v in state.items()}


def _store(state: State, index: np.ndarray | None, new: State) -> None:
    for key, value in new.items():
        if index is None:
            state[key] = value
        else:
            state[key][index] = value


class Distractor:
    """State of one distractor for ``num_envs`` envs; see the module docstring."""

    columns = 0  # uniforms read per env per step

    def __init__(self, num_envs: int):
        self.state: State = {}

    def reset(self, i: int, rng: np.random.Generator) -> None:
        """Draw env i's start state from its generator."""

    def step(self, u: np.ndarray, actions: np.ndarray, index: np.ndarray | None) -> None:
        """Advance the envs ``index`` (None: all) given their uniforms u (n, columns)."""

    def info(self, index: np.ndarray | None) -> State:
        return {k: v.copy() if index is None else v[index] for k, v in self.state.items()}


class OtherAgents(Distractor):
    """k squares moving on the agent's 3×4 cells under their own policy (see module doc).

    State: ``other_positions`` (k, 2) int64 cells; ``other_actions`` (k,) int64, the action
    each took this step (on reset: stay, or with persistence its initial heading);
    ``other_copied`` (k,) bool, whether it copied the agent's action (only when ρ > 0).
    """

    def __init__(self, num_envs, count, persistence, correlation, deltas, upper):
        super().__init__(num_envs)
        self.k, self.persistence, self.rho = count, persistence, correlation
        self.deltas, self.upper = deltas, upper
        self.columns = count * (1 + (persistence > 0) + (correlation > 0))
        self.state = {
            "other_positions": np.zeros((num_envs, count, 2), np.int64),
            "other_actions": np.zeros((num_envs, count), np.int64),
        }
        if correlation > 0:
            self.state["other_copied"] = np.zeros((num_envs, count), bool)

    def reset(self, i, rng):
        cells = rng.integers(12, size=self.k)
        self.state["other_positions"][i] = np.stack([cells // 4, cells % 4], axis=1)
        heading = rng.integers(5, size=self.k) if self.persistence > 0 else 0
        self.state["other_actions"][i] = heading
        if self.rho > 0:
            self.state["other_copied"][i] = False

    def step(self, u, actions, index):
        k, s = self.k, _select(self.state, index)
        acts = uniform_ints(u[:, :k], 5)
        col = k
        if self.persistence > 0:
            acts = np.where(u[:, col : col + k] < self.persistence, s["other_actions"], acts)
            col += k
        new: State = {}
        if self.rho > 0:
            copied = u[:, col : col + k] < self.rho
            acts = np.where(copied, actions[:, None], acts)
            new["other_copied"] = copied
        new["other_actions"] = acts
        moved = s["other_positions"] + self.deltas[acts]
        new["other_positions"] = np.minimum(np.maximum(moved, 0), self.upper)  # walls stop
        _store(self.state, index, new)


@functools.lru_cache(maxsize=8)
def background_textures(count: int, size: int, length: float, seed: int) -> np.ndarray:
    """``count`` smooth periodic patterns (count, size, size) in [0, 1], float32.

    Gaussian white noise low-pass filtered with a Gaussian of ``length`` pixels (periodic,
    through the FFT, so a scrolled texture wraps seamlessly), then scaled to [0, 1].
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    noise = rng.standard_normal((count, size, size))
    freq = np.fft.fftfreq(size)
    kernel = np.exp(-2 * (np.pi * length) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    smooth = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    low = smooth.min(axis=(1, 2), keepdims=True)
    high = smooth.max(axis=(1, 2), keepdims=True)
    textures = ((smooth - low) / np.maximum(high - low, 1e-12)).astype(np.float32)
    textures.setflags(write=False)  # cached: shared by every env built with these values
    return textures


class Background(Distractor):
    """A scrolling texture behind everything (see module doc).

    State: ``background_texture`` () int64, which texture; ``background_offset`` (2,) int64,
    the texture pixel (row, col) at the image's top-left (before camera shake);
    ``background_velocity`` (2,) int64, pixels per step.
    """

    def __init__(self, num_envs, size, intensity, speed, textures, cell, seed):
        super().__init__(num_envs)
        self.size, self.speed, self.count = size, speed, textures
        bank = background_textures(textures, size, cell / 2, seed) * np.float32(intensity)
        # Every row an image can show: _rows[t, y, x] is row y of texture t from column x
        # on, ``size`` pixels long (wrapping round: the texture is periodic).
        wrapped = np.tile(bank, (1, 1, 2))
        segments = sliding_window_view(wrapped, size, axis=2)[:, :, :size]
        self._rows = np.ascontiguousarray(segments).reshape(textures * size * size, size)
        self._image_rows = np.arange(size)
        self.state = {
            "background_texture": np.zeros(num_envs, np.int64),
            "background_offset": np.zeros((num_envs, 2), np.int64),
            "background_velocity": np.zeros((num_envs, 2), np.int64),
        }

    def reset(self, i, rng):
        self.state["background_texture"][i] = rng.integers(self.count)
        self.state["background_offset"][i] = rng.integers(self.size, size=2)
        self.state["background_velocity"][i] = COMPASS[rng.integers(8)] * self.speed

    def step(self, u, actions, index):
        s = _select(self.state, index)
        offset = np.mod(s["background_offset"] + s["background_velocity"], self.size)
        _store(self.state, index, {"background_offset": offset})

    def picture(self, index, shift, out: np.ndarray) -> None:
        """Write the background of each env, as the (shifted) camera sees it, into ``out``
        (n, size, size)."""
        s, size = _select(self.state, index), self.size
        start = s["background_offset"] if shift is None else s["background_offset"] - shift
        start = np.mod(start, size)
        texture_rows = np.mod(start[:, :1] + self._image_rows, size)  # (n, size)
        rows = (s["background_texture"][:, None] * size + texture_rows) * size + start[:, 1:]
        np.take(self._rows, rows, axis=0, out=out, mode="clip")  # clip: unbuffered, in place


class CameraShake(Distractor):
    """A bounded random walk of the whole image's translation (see module doc).

    State: ``shake`` (2,) int64, (dy, dx) in pixels, each in [−bound, bound].
    """

    columns = 2

    def __init__(self, num_envs, bound, step):
        super().__init__(num_envs)
        self.bound, self.step_size = bound, step
        self.state = {"shake": np.zeros((num_envs, 2), np.int64)}

    def reset(self, i, rng):
        self.state["shake"][i] = rng.integers(-self.bound, self.bound + 1, size=2)

    def step(self, u, actions, index):
        s = _select(self.state, index)
        move = uniform_ints(u, 2 * self.step_size + 1) - self.step_size
        shift = reflect(s["shake"] + move, -self.bound, self.bound)
        _store(self.state, index, {"shake": shift})


class ColourDrift(Distractor):
    """A bounded random walk of the agent's intensity (see module doc).

    State: ``agent_intensity`` () float32, in [low, high].
    """

    columns = 1

    def __init__(self, num_envs, step, low, high):
        super().__init__(num_envs)
        self.low, self.high = np.float32(low), np.float32(high)
        self.step_size = np.float32(step)
        self.state = {"agent_intensity": np.ones(num_envs, np.float32)}

    def reset(self, i, rng):
        self.state["agent_intensity"][i] = self.low + (self.high - self.low) * rng.random(
            dtype=np.float32
        )

    def step(self, u, actions, index):
        s = _select(self.state, index)
        walk = s["agent_intensity"] + self.step_size * (2 * u[:, 0] - 1)
        # clip: float32 rounding of the reflection may land a hair outside
        c = np.minimum(np.maximum(reflect(walk, self.low, self.high), self.low), self.high)
        _store(self.state, index, {"agent_intensity": c.astype(np.float32)})


@functools.lru_cache(maxsize=16)
def _square_masks(side: int) -> np.ndarray:
    """masks[(a + side) (2 side + 1) + b + side] (side, side): which pixels of a side×side
    window a side×side square covers when placed (a, b) pixels from it, a, b in [−side,
    side]."""
    offsets = np.arange(-side, side + 1)
    pixel = np.arange(side)
    rows = (pixel[None, :] >= offsets[:, None]) & (pixel[None, :] < offsets[:, None] + side)
    return (rows[:, None, :, None] & rows[None, :, None, :]).reshape(-1, side, side)


def paint(image: np.ndarray, top: np.ndarray, left: np.ndarray, side: int, values, clip: bool):
    """Paint squares of ``side`` pixels, top-left at (top, left), in place.

    image (n, H, W); top, left (n,) int, one square per image, or one int for all; without
    ``clip`` also (m, n), m squares per image at once (where they overlap, which one shows
    is undefined). values broadcast to (n, side, side). With ``clip`` the squares may lie
    partly or wholly outside the image, whose pixels are then dropped; without, every
    square must lie inside.
    """
    n, height, width = image.shape
    rows, cols = image.strides[1:]
    # A view of every placement of a square (fancy indexing picks one per image); built
    # with np.ndarray rather than as_strided, which costs more than painting a small batch.
    windows = np.ndarray(
        (n, height - side + 1, width - side + 1, side, side),
        image.dtype,
        buffer=image,
        strides=(image.strides[0], rows, cols, rows, cols),
    )
    top, left = np.broadcast_arrays(top, left, np.empty(n, np.int8))[:2]
    envs = np.broadcast_to(np.arange(n), top.shape)
    if not clip:
        windows[envs, top, left] = values
        return
    # The nearest window inside the image, and which of its pixels the square covers.
    y = np.minimum(np.maximum(top, 0), height - side)
    x = np.minimum(np.maximum(left, 0), width - side)
    dy = np.minimum(np.maximum(top - y, -side), side) + side
    dx = np.minimum(np.maximum(left - x, -side), side) + side
    covered = np.take(_square_masks(side), dy * (2 * side + 1) + dx, axis=0)
    window = windows[envs, y, x]  # a copy
    np.copyto(window, values, where=covered)
    windows[envs, y, x] = window
