"""Augmentations of transitions, the one implementation every trainer calls.

The package's augmentation of a LAM draws two independent augmentations per transition:
Aug1, shared by both inputs of the IDM (o, o'), and Aug2, shared by the FDM's input o and
its target o'. Sharing within a pair is what removes information: a shift applied to both
frames keeps the move but hides where it happened.

- Images (the grid): :func:`shift_columns` rolls an image by −1, 0 or +1 columns with
  periodic wrap (:func:`draw_shifts`; the identity is among the shifts, so unshifted
  test-time images stay in the training distribution).
- Vectors (the linear environment): x + κ with κ ~ N(0, κ² I) (:func:`gaussian_offsets`;
  :func:`vector_offsets` gives M copies' κ, which a linear model can apply by linearity).
- The grid's noise row (the published VQ LAM's released code, :func:`copy_noise_row`): not
  a random draw but a copy: the IDM sees o with o′'s noise row, and the FDM's target is o′
  with o's noise row, so neither the latent nor the FDM can see the noise change.

:func:`augment_pair` applies one augmentation, drawn per transition, to two tensors; with
a leading model axis (M, B, ...) each copy m draws from its own generator, so a copy's
augmentations do not depend on the copies it is trained with.

The published LAOM instead augments every frame on its own (:func:`augment_frames`): each
image gets its own random shift of up to ``pad`` pixels in each direction, edges
replicated (:func:`shift_images`, DrQ's pad-and-crop), and each vector its own offset κ;
and, as the authors' code does, :func:`mixed_augment_frames` gives each image its own
choice of a shift, a rotation, a perspective warp, two of them, or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lam_models.data import to_device

__all__ = [
    "MIXED_CHOICES",
    "NOISE_ROWS",
    "augment_frames",
    "augment_pair",
    "copy_noise_row",
    "draw_shifts",
    "gaussian_offsets",
    "mixed_augment_frames",
    "mixed_sampling",
    "shift_columns",
    "shift_images",
    "vector_offsets",
    "warp_images",
]

#: The rows of a GridLAM image that hold the exogenous noise (row 3 of the 4×4 image).
NOISE_ROWS = slice(3, 4)


def shift_columns(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each image of ``x`` (..., C, H, W) along W by its own integer shift.

    ``shifts`` has shape ``x.shape[:-3]``; +1 moves content one column right, with the
    last column wrapping round to the first (as ``torch.roll(x, 1, dims=-1)``).
    """
    width = x.shape[-1]
    shifts = to_device(shifts, x.device)
    source = (torch.arange(width, device=x.device) - shifts[..., None]) % width
    source = source[..., None, None, :].expand(x.shape)
    return torch.gather(x, -1, source)


def draw_shifts(
    shape: tuple[int, ...], generator: torch.Generator, nonzero: bool = False
) -> torch.Tensor:
    """Column shifts uniform over {−1, 0, +1}, or over {−1, +1} when ``nonzero`` (the
    published text's shift: left or right, never none), drawn on the generator's device
    (CPU)."""
    if nonzero:
        return torch.randint(0, 2, shape, generator=generator) * 2 - 1
    return torch.randint(-1, 2, shape, generator=generator)


def gaussian_offsets(
    shape: tuple[int, ...], scale: torch.Tensor | float, generator: torch.Generator
) -> torch.Tensor:
    """κ ~ N(0, scale² I) of ``shape``; ``scale`` broadcasts against it (e.g. (M, 1, 1))."""
    return torch.randn(shape, generator=generator) * scale


def vector_offsets(
    shape: tuple[int, ...],
    generators: Sequence[torch.Generator],
    kappa: torch.Tensor | float,
    draw_of_copy: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    unit: bool = False,
) -> torch.Tensor:
    """The offsets κ of one vector augmentation of M copies: ``shape`` (M, B, d), copy m's
    rows ~ N(0, κ_m² I), drawn from ``generators[m]`` (or from
    ``generators[draw_of_copy[m]]``: see :func:`augment_pair`), returned on ``device``;
    ``unit``: the same draws before scaling by κ_m (N(0, I); the caller scales).
    ``augment_pair(x, y, ...)`` is (x + κ, y + κ); a linear model can use κ directly."""
    m = shape[0]
    index = list(range(m)) if draw_of_copy is None else list(draw_of_copy)
    if len(index) != m or (index and not 0 <= min(index) <= max(index) < len(generators)):
        raise ValueError(
            f"give one generator per copy ({len(generators)} for {m} copies), or a "
            f"draw_of_copy of {m} indices into the generators"
        )
    scale = torch.as_tensor(kappa, dtype=torch.float32).reshape(-1, 1, 1).cpu()
    scale = scale.expand(m, 1, 1) if scale.shape[0] == 1 else scale
    draws = torch.stack([gaussian_offsets(tuple(shape[1:]), 1.0, g) for g in generators])
    if draw_of_copy is not None:  # index_select: far cheaper than advanced indexing on CPU
        draws = draws.index_select(0, torch.tensor(index))
    return to_device(draws if unit else draws * scale, device)


def augment_pair(
    x: torch.Tensor,
    y: torch.Tensor,
    generators: Sequence[torch.Generator],
    kappa: torch.Tensor | float | None = None,
    draw_of_copy: Sequence[int] | None = None,
    nonzero_shift: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmentation per transition, applied to both ``x`` and ``y``.

    x, y: (M, B, C, H, W) images, or (M, B, d) vectors when ``kappa`` (κ: a number or (M,)
    per copy) is given. Copy m draws from ``generators[m]``; or, with ``draw_of_copy``
    (M,), copies share draws: copy m uses the draw of ``generators[draw_of_copy[m]]``
    (scaled by its own κ). Sharing gives exactly what each copy would draw from its own
    generator when generators of equal seed and state are merged (as the trainers' seeds
    are), at one draw per distinct generator. ``nonzero_shift``: image shifts are −1 or +1
    column, never 0 (:func:`draw_shifts`). Returns (Aug(x), Aug(y)).
    """
    m, b = x.shape[:2]
    if kappa is not None:
        offsets = vector_offsets(x.shape, generators, kappa, draw_of_copy, x.device)
        return x + offsets.to(x.dtype), y + offsets.to(x.dtype)
    index = list(range(m)) if draw_of_copy is None else list(draw_of_copy)
    if len(index) != m or (index and not 0 <= min(index) <= max(index) < len(generators)):
        raise ValueError(
            f"give one generator per copy ({len(generators)} for {m} copies), or a "
            f"draw_of_copy of {m} indices into the generators"
        )
    shifts = torch.stack([draw_shifts((b,), g, nonzero_shift) for g in generators])
    shifts = shifts if draw_of_copy is None else shifts.index_select(0, torch.tensor(index))
    shifts = to_device(shifts, x.device)  # one copy for both tensors
    return shift_columns(x, shifts), shift_columns(y, shifts)


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Translate each image of ``x`` (..., C, H, W) by its own (dy, dx) pixels, the edge
    pixels replicated into what comes in: out[i, j] = x[clamp(i − dy), clamp(j − dx)], which
    is DrQ's random shift (pad by replication, then crop). ``dy``, ``dx``: ``x.shape[:-3]``.
    """
    h, w = x.shape[-2:]
    dy, dx = to_device(dy, x.device), to_device(dx, x.device)
    rows = (torch.arange(h, device=x.device) - dy[..., None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device) - dx[..., None]).clamp(0, w - 1)
    x = torch.gather(x, -2, rows[..., None, :, None].expand(x.shape))
    return torch.gather(x, -1, cols[..., None, None, :].expand(x.shape))


def augment_frames(
    frames: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator],
    pad: int = 4,
    kappa: torch.Tensor | float | None = None,
) -> list[torch.Tensor]:
    """Augment every frame independently: each image of each tensor its own shift.

    frames: tensors (M, B, C, H, W) (images: shifts uniform in [−pad, pad]² pixels, edges
    replicated) or (M, B, d) with ``kappa`` given (vectors: offsets κ ~ N(0, κ² I)). Copy m
    draws from ``generators[m]``, frame after frame. Returns the augmented frames, in order.
    """
    m = frames[0].shape[0]
    if len(generators) != m:
        raise ValueError(f"give one generator per copy: {len(generators)} for {m} copies")
    out = []
    for x in frames:
        b = x.shape[1]
        if kappa is None:
            d = torch.stack([torch.randint(-pad, pad + 1, (2, b), generator=g) for g in generators])
            d = to_device(d, x.device)  # one copy for both axes
            out.append(shift_images(x, d[:, 0], d[:, 1]))
            continue
        out.append(x + vector_offsets(x.shape, generators, kappa, device=x.device).to(x.dtype))
    return out


def copy_noise_row(x: torch.Tensor, source: torch.Tensor, rows: slice = NOISE_ROWS) -> torch.Tensor:
    """``x`` (..., C, H, W) with its noise ``rows`` replaced by those of ``source`` (same
    shape); a new tensor, ``x`` is unchanged.

    The released code's augmentation of the published VQ LAM (docs/protocols.md, "Grid VQ LAM"),
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


#: The augmentations the authors' LAOM code chooses from, one per image, uniformly
#: (dunnolab/laom, ``src/augmentations.py``, ``Augmenter``): each a sequence applied in
#: order (S a shift, R a rotation, P a perspective warp).
MIXED_CHOICES = ((), ("S",), ("R",), ("P",), ("S", "R"), ("R", "S"), ("R", "P"), ("P", "R"))
#: The padding of the authors' perspective warp, as a share of the image side (30 of 64
#: pixels): the warp's corners are those of the padded image.
PERSPECTIVE_PAD = 30 / 64


def _homographies(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) matrices H with H·src_i ∝ dst_i for 4 point pairs (N, 4, 2) each."""
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)
    a = torch.cat([rows_u, rows_v], 1)  # (N, 8, 8)
    h = torch.linalg.solve(a, torch.cat([u, v], 1))
    return torch.cat([h, torch.ones_like(h[:, :1])], 1).reshape(-1, 3, 3)


def mixed_sampling(
    n: int,
    size: int,
    generator: torch.Generator,
    shift: int,
    degrees: float,
    distortion: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n images' augmentations: (choice (n,) index into :data:`MIXED_CHOICES`, the
    (n, 3, 3) matrices that map an output pixel's normalised coordinates (x, y, 1) to
    where it is read from in the input). Every image draws every parameter (so the
    generator's stream does not depend on the choices): an integer shift uniform in
    [−shift, shift]² pixels, an angle uniform in [−degrees, degrees], and a perspective
    warp whose 4 corners (those of the image padded by :data:`PERSPECTIVE_PAD` of its
    side) move inward by a uniform share in [0, distortion] of its half-side, per axis."""
    choice = torch.randint(len(MIXED_CHOICES), (n,), generator=generator)
    d = torch.randint(-shift, shift + 1, (n, 2), generator=generator).float()
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    corner_moves = torch.rand(n, 4, 2, generator=generator)
    eye = torch.eye(3).expand(n, 3, 3)
    s = eye.clone()
    s[:, :2, 2] = -2 * d / size  # content moves by +d pixels: read from p − d
    cos, sin = torch.cos(angle), torch.sin(angle)
    r = eye.clone()
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1] = cos, sin, -sin, cos
    c = 1 + 2 * PERSPECTIVE_PAD
    corners = torch.tensor([[-c, -c], [c, -c], [c, c], [-c, c]]).expand(n, 4, 2)
    inward = -torch.sign(corners) * corner_moves * distortion * c
    p = _homographies(corners + inward, corners)  # output (moved corner) -> input corner
    maps = {"S": s, "R": r, "P": p}
    total = eye.clone()
    for k, sequence in enumerate(MIXED_CHOICES):
        chosen = choice == k
        m = eye[chosen]
        for name in sequence:  # T1 then T2: read from A1·A2·p
            m = m @ maps[name][chosen]
        total[chosen] = m
    return choice, total


def warp_images(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample each image of ``x`` (N, C, H, W) at its matrix's (N, 3, 3) coordinates
    (bilinear; edges replicated beyond the image)."""
    n, _, h, w = x.shape
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, h * w, 3)
    mapped = points @ matrices.to(x.device, x.dtype).transpose(1, 2)  # (N, HW, 3)
    grid = (mapped[..., :2] / mapped[..., 2:]).reshape(n, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def mixed_augment_frames(
    frames: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator],
    shift: int = 4,
    degrees: float = 90.0,
    distortion: float = 0.5,
) -> list[torch.Tensor]:
    """The authors' LAOM augmentation: every image of every frame tensor (M, B, C, H, W)
    gets its own augmentation, chosen uniformly from :data:`MIXED_CHOICES` (nothing, a
    shift, a rotation, a perspective warp, or two of them in turn), with its own
    parameters (:func:`mixed_sampling`). The channels of an image (e.g. stacked frames)
    share its augmentation. Copy m draws from ``generators[m]``, frame after frame."""
    m = frames[0].shape[0]
    if len(generators) != m:
        raise ValueError(f"give one generator per copy: {len(generators)} for {m} copies")
    out = []
    for x in frames:
        b, size = x.shape[1], x.shape[-1]
        draws = [mixed_sampling(b, size, g, shift, degrees, distortion)[1] for g in generators]
        matrices = torch.cat(draws)
        out.append(warp_images(x.flatten(0, 1), matrices).unflatten(0, x.shape[:2]))
    return out
