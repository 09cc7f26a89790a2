"""Recycling the large arrays the environments return every step."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


class ArrayPool:
    """Recycles the large arrays a vector env hands out each step, once the caller drops them.

    Why this exists: a native vector env returns fresh arrays every step (observations and
    info ground truth, e.g. 3 x 0.5 MB for 1,024 LinearLAM envs). Fresh arrays of that size
    come from ``mmap`` and cost one page fault per 4 KiB on first write, which made up more
    than half of a LinearLAM step. ``take`` instead returns an array the pool made before
    and that nobody outside the pool references any more (its reference count equals that
    of the pool's never-handed-out sentinel), so its pages are already mapped and warm in
    cache. An array the caller still holds, directly or through a view (a view references
    its base), is never reused, so returned data never changes under the caller.
    """

    def __init__(self, per_key: int = 4):
        self.per_key = per_key
        self._arrays: dict[tuple, list[np.ndarray]] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` that no caller references.

        ``name`` keeps the arrays of different outputs (observations, q, ...) apart, so a
        caller who holds on to one output does not use up the arrays of another.
        """
        key = (name, shape, np.dtype(dtype))
        arrays = self._arrays.get(key)
        if arrays is None:
            arrays = self._arrays[key] = [np.empty(0, dtype)]  # [sentinel, pooled...]
        free = None  # the sentinel's count: held by the list only, counted the same way
        for array in arrays:
            count = sys.getrefcount(array)
            if free is None:
                free = count
            elif count == free:
                return array
        array = np.empty(shape, dtype)
        if len(arrays) <= self.per_key:
            arrays.append(array)
        return array
