"""Per-environment random streams that a vector env can read in bulk.

Why this exists: a native vector env must produce exactly the transitions of N single
environments seeded ``seed, seed + 1, ...`` (Gymnasium's convention), so every sub-env
needs its own stream. Calling N generators every step would cost more than the dynamics,
so each stream is read in blocks of ``block`` steps: one generator call per env every
``block`` steps. The single environment reads its stream through the same class with
N = 1, so both see the same numbers by construction.

Stream layout of one environment (its ``np_random``): on reset, whatever ``reset`` draws
(start state), then one block of ``block`` rows; each further ``block`` steps, the next
block. A reset discards the unread rows of the current block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lam_envs.envs._pool import ArrayPool

Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def standard_normal_f32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def block_rows(width: int, floats_per_env: int = 8192, most: int = 256) -> int:
    """A block length that keeps each env's buffer near ``floats_per_env`` numbers."""
    return int(np.clip(floats_per_env // max(width, 1), 16, most))


def uniform_f32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape, dtype=np.float32)


class BlockStreams:
    """``num_envs`` independent streams of rows of ``width`` numbers, read one row per step.

    ``next_rows(rngs)`` returns an array (num_envs, width): row t of each env's stream.
    ``restart(index, rngs)`` starts the streams of the given envs anew (after a reset).
    """

    def __init__(self, num_envs: int, width: int, block: int, draw: Draw):
        self.num_envs, self.width, self.block, self.draw = num_envs, width, block, draw
        self._buffer = np.zeros((num_envs, block, width), dtype=np.float32)
        self._cursor = np.zeros(num_envs, dtype=np.int64)
        self._arange = np.arange(num_envs)
        self._pool = ArrayPool()  # next_rows' arrays, recycled once the caller drops them

    def restart(self, index: Sequence[int] | np.ndarray, rngs: Sequence[np.random.Generator]):
        for i in index:
            self._buffer[i] = self.draw(rngs[i], (self.block, self.width))
        self._cursor[index] = 0

    def next_rows(
        self, rngs: Sequence[np.random.Generator], index: np.ndarray | None = None
    ) -> np.ndarray:
        """The next row of each env's stream, (len(index), width); ``index=None`` means all."""
        envs = self._arange if index is None else index
        if self.width == 0:
            return np.zeros((len(envs), 0), dtype=np.float32)
        cursor = self._cursor[0]
        if index is None and cursor < self.block and (self._cursor == cursor).all():
            self._cursor += 1  # the common case: all envs in step, a plain slice
            rows = self._pool.take("rows", (self.num_envs, self.width), np.float32)
            np.copyto(rows, self._buffer[:, cursor])
            return rows
        exhausted = envs[self._cursor[envs] == self.block]
        if exhausted.size:
            self.restart(exhausted, rngs)
        rows = self._buffer[envs, self._cursor[envs]]  # fancy indexing: a fresh copy
        self._cursor[envs] += 1
        return rows
