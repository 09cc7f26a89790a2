"""Stacked frames: an observation with the ones before it, as the authors' LAOM code feeds
its encoder (dunnolab/laom, ``src/utils.py``: 3 frames, an episode's first frame repeated
where the episode has fewer)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["stack_frames"]


def stack_frames(frames, rows, first, history: int):
    """frames[rows] (numpy or torch) with the ``history`` − 1 frames before each, oldest
    first, concatenated on an observation's first axis (channels): (*rows.shape, h·C, H,
    W) for images. ``first`` (the shape of ``rows``): the row of each one's episode's first
    frame, which rows before it read instead."""
    if first is None:
        raise ValueError("stacked frames need the rows of the episodes' first frames")
    back = [frames[(rows - k).clip(min=first)] for k in range(history - 1, -1, -1)]
    if isinstance(frames, torch.Tensor):
        return torch.cat(back, dim=rows.dim())
    return np.concatenate(back, axis=rows.ndim)
