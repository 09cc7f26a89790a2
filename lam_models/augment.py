"""Augmentations of transitions, the one implementation every trainer calls.

The SPEC's augmentation of a LAM draws two independent augmentations per transition:
Aug1, shared by both inputs of the IDM (o, o'), and Aug2, shared by the FDM's input o and
its target o'. Sharing within a pair is what removes information: a shift applied to both
frames keeps the move but hides where it happened.

- Images (the grid): :func:`shift_columns` rolls an image by −1, 0 or +1 columns with
  periodic wrap (:func:`draw_shifts`; the identity is among the shifts, so unshifted
  test-time images stay in the training distribution).
- Vectors (the linear environment): x + κ with κ ~ N(0, κ² I) (:func:`gaussian_offsets`).
- The grid's noise row (the published VQ LAM's released code, :func:`copy_noise_row`): not
  a random draw but a copy: the IDM sees o with o′'s noise row, and the FDM's target is o′
  with o's noise row, so neither the latent nor the FDM can see the noise change.

:func:`augment_pair` applies one augmentation, drawn per transition, to two tensors; with
a leading model axis (M, B, ...) each copy m draws from its own generator, so a copy's
augmentations do not depend on the copies it is trained with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "NOISE_ROWS",
    "augment_pair",
    "copy_noise_row",
    "draw_shifts",
    "gaussian_offsets",
    "shift_columns",
]

#: The rows of a GridLAM image that hold the exogenous noise (row 3 of the 4×4 image).
NOISE_ROWS = slice(3, 4)


def shift_columns(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each image of ``x`` (..., C, H, W) along W by its own integer shift.

    ``shifts`` has shape ``x.shape[:-3]``; +1 moves content one column right, with the
    last column wrapping round to the first (as ``torch.roll(x, 1, dims=-1)``).
    """
    width = x.shape[-1]
    shifts = shifts.to(x.device)
    source = (torch.arange(width, device=x.device) - shifts[..., None]) % width
    source = source[..., None, None, :].expand(x.shape)
    return torch.gather(x, -1, source)


def draw_shifts(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Column shifts uniform over {−1, 0, +1}, drawn on the generator's device (CPU)."""
    return torch.randint(-1, 2, shape, generator=generator)


def gaussian_offsets(
    shape: tuple[int, ...], scale: torch.Tensor | float, generator: torch.Generator
) -> torch.Tensor:
    """κ ~ N(0, scale² I) of ``shape``; ``scale`` broadcasts against it (e.g. (M, 1, 1))."""
    return torch.randn(shape, generator=generator) * scale


def augment_pair(
    x: torch.Tensor,
    y: torch.Tensor,
    generators: Sequence[torch.Generator],
    kappa: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmentation per transition, applied to both ``x`` and ``y``.

    x, y: (M, B, C, H, W) images, or (M, B, d) vectors when ``kappa`` (κ: a number or (M,)
    per copy) is given. Copy m draws from ``generators[m]``. Returns (Aug(x), Aug(y)).
    """
    m, b = x.shape[:2]
    if len(generators) != m:
        raise ValueError(f"give one generator per copy: {len(generators)} for {m} copies")
    if kappa is None:
        shifts = torch.stack([draw_shifts((b,), g) for g in generators])
        return shift_columns(x, shifts), shift_columns(y, shifts)
    scale = torch.as_tensor(kappa, dtype=x.dtype).reshape(-1, 1, 1)
    scale = scale.expand(m, 1, 1) if scale.shape[0] == 1 else scale
    offsets = torch.stack(
        [gaussian_offsets(x.shape[1:], scale[i].cpu(), g) for i, g in enumerate(generators)]
    ).to(x.device)
    return x + offsets, y + offsets


def copy_noise_row(x: torch.Tensor, source: torch.Tensor, rows: slice = NOISE_ROWS) -> torch.Tensor:
    """``x`` (..., C, H, W) with its noise ``rows`` replaced by those of ``source`` (same
    shape); a new tensor, ``x`` is unchanged.

    The released code's augmentation of the published VQ LAM (PROTOCOLS.md, "Grid VQ LAM"),
    per transition (o, o′)::

        IDM inputs:           copy_noise_row(o, o′), o′     # the noise row does not change
        FDM input, target:    o, copy_noise_row(o′, o)      # nor has it to be predicted

    so a latent that encodes the noise change no longer lowers the loss.
    """
    if x.shape != source.shape:
        raise ValueError(f"x {tuple(x.shape)} and source {tuple(source.shape)} differ in shape")
    out = x.clone()
    out[..., rows, :] = source[..., rows, :]
    return out
