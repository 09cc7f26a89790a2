"""The linear LAM's closed-form optimum: the least reconstruction loss any d_z-dimensional
linear LAM reaches on given data (:func:`analytic_optimum`), and a trained LAM's distance to
it (:func:`optimality_gap`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from lam_envs.utils.validate import check_float, check_int

if TYPE_CHECKING:
    from lam_models.lams.linear import LinearLAM

__all__ = [
    "AnalyticOptimum",
    "OptimalityGap",
    "analytic_optimum",
    "analytic_optimum_from_moment",
    "optimality_gap",
    "published_action_weight",
]


@dataclass(frozen=True)
class AnalyticOptimum:
    """Closed-form optimum of the linear LAM (float64 tensors).

    min_loss: the minimum of E‖ô' − o'‖², the sum of the eigenvalues beyond the top d_z.
    eigenvalues: (d_o,) eigenvalues of E[(o'−o)(o'−o)ᵀ], descending.
    A: (d_o, d_o) = I.  B: (d_o, d_z) top-d_z eigenvectors.  D = Bᵀ.  C = −D.
    """

    min_loss: float
    eigenvalues: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor


def analytic_optimum(delta: Tensor | np.ndarray, d_z: int) -> AnalyticOptimum:
    """PCA optimum of the linear LAM from samples ``delta`` = o' − o of shape (N, d_o).

    When the change o' − o = q + ε is uncorrelated with o (a random policy), the best linear
    LAM predicts ô' = o + P(o' − o), P the projector onto the top-d_z eigenvectors of
    Σ = E[(o'−o)(o'−o)ᵀ], and its loss is the sum of Σ's remaining eigenvalues (Eckart–Young).
    The model has no bias, so Σ is the uncentred second moment; it equals Cov(q + ε) when the
    change has zero mean, as under the random policy. Computed in float64.
    """
    delta = torch.as_tensor(delta).to(torch.float64)
    if delta.ndim != 2 or delta.shape[0] == 0:
        raise ValueError(f"delta must have shape (N, d_o) with N >= 1, got {tuple(delta.shape)}")
    if not torch.isfinite(delta).all():
        raise ValueError("delta holds NaN or infinite values; the data is not finite")
    return analytic_optimum_from_moment(delta.mT @ delta / delta.shape[0], d_z)


def analytic_optimum_from_moment(moment: Tensor | np.ndarray, d_z: int) -> AnalyticOptimum:
    """As :func:`analytic_optimum`, from Σ = E[(o'−o)(o'−o)ᵀ] (or a covariance), (d_o, d_o)."""
    moment = torch.as_tensor(moment).to(torch.float64)
    if moment.ndim != 2 or moment.shape[0] != moment.shape[1]:
        raise ValueError(f"moment must be a square (d_o, d_o) matrix, got {tuple(moment.shape)}")
    d_o = moment.shape[0]
    d_z = check_int("d_z", d_z, low=1, high=d_o)
    eigenvalues, eigenvectors = torch.linalg.eigh((moment + moment.mT) / 2)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    B = eigenvectors[:, :d_z]
    return AnalyticOptimum(
        min_loss=float(eigenvalues[d_z:].sum()),
        eigenvalues=eigenvalues,
        A=torch.eye(d_o, dtype=torch.float64),
        B=B,
        C=-B.mT,
        D=B.mT.clone(),
    )


def published_action_weight(d_o: int, d_a: int, weight: float = 1.0) -> float:
    """λ_a of this package's loss (sums over dimensions) that reproduces the published loss
    recon/d_o + ``weight``·action/d_a (means over dimensions): ``weight``·d_o/d_a, since the
    published loss is this one divided by d_o, and Adam's steps do not see that factor."""
    check_int("d_o", d_o, low=1)
    check_int("d_a", d_a, low=1)
    return check_float("weight", weight, low=0.0) * d_o / d_a


class OptimalityGap(NamedTuple):
    """How far trained copies are from the analytic optimum on one evaluation set."""

    loss: Tensor  # (M,) E‖ô' − o'‖² of each copy, no augmentation
    minimum: Tensor  # (M,) analytic minimum on the same data
    relative: Tensor  # (M,) (loss − minimum) / minimum


def optimality_gap(lam: LinearLAM, o: Tensor, o_next: Tensor) -> OptimalityGap:
    """Evaluate ``lam`` on (o, o') of shape (N, d_o) or (M, N, d_o) against the PCA optimum
    of the same transitions (no sampling offset; slightly negative on a finite sample, where
    o and o' − o are not exactly uncorrelated)."""
    o, o_next = (torch.as_tensor(x, dtype=torch.float32, device=lam.device) for x in (o, o_next))
    loss = lam.module.reconstruction_loss(o, o_next).double().cpu()
    delta = (o_next - o).detach().cpu()
    if delta.ndim == 2:
        delta = delta.expand(lam.num_copies, *delta.shape)
    d_z = lam.config.latent_dim
    minimum = torch.tensor([analytic_optimum(d, d_z).min_loss for d in delta], dtype=torch.float64)
    return OptimalityGap(loss, minimum, (loss - minimum) / minimum)
