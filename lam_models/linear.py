"""The linear latent action model (LAM): model, gradient trainer and closed-form optimum.

For a transition (o, o') with o, o' ∈ R^{d_o} (SPEC, "Linear LAM"):

    z  = C·Aug1(o) + D·Aug1(o')            IDM,  C, D ∈ R^{d_z×d_o}
    ô' = A·Aug2(o) + B·z                   FDM,  A ∈ R^{d_o×d_o}, B ∈ R^{d_o×d_z}
    â  = E·z                               action head (optional), E ∈ R^{d_a×d_z}

    loss = ‖ô' − Aug2(o')‖² + λ_a·‖E·z − a‖²      (action term on labelled transitions only)

Aug_i(x) = x + κ_i with κ_i ~ N(0, κ²I): one draw κ_1 per transition shared by both IDM
inputs, an independent draw κ_2 per transition shared by the FDM input and the target.
κ = 0 turns augmentation off.

Loss normalisation: each term is the per-transition squared error *summed over dimensions*,
then *averaged over the batch* (the action term over the labelled transitions of the batch
only). On the reconstruction term this is E‖ô' − o'‖², the same quantity as the analytic
minimum of :func:`analytic_optimum` (a sum of eigenvalues), so the two compare directly.

Batched models. A :class:`LinearLAM` holds M independent models in one set of batched tensors
(``A`` is M×d_o×d_o, ``B`` M×d_o×d_z, and so on), so several seeds or settings (κ, λ_a) train as
one computation. Every method returns per-model results with a leading model dimension M, also
when M = 1. Data may be shared by all models, shape (N, d_o), or given per model, (M, N, d_o).
Vectors are rows: C·x is written ``x @ C.mT``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "AnalyticOptimum",
    "LinearLAM",
    "LinearLAMConfig",
    "LossTerms",
    "OptimalityGap",
    "TrainHistory",
    "analytic_optimum",
    "analytic_optimum_from_moment",
    "optimality_gap",
    "train_linear_lam",
]

LR_SCHEDULES = ("constant", "cosine")

# sample_batch(step) -> (o, o_next, a, label_mask), shapes (N, d_o), (N, d_o), (N, d_a), (N,)
# or with a leading model dimension M to give every model its own data.
BatchSampler = Callable[[int], tuple[Tensor, Tensor, Tensor, Tensor]]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class LinearLAMConfig:
    """Hyper-parameters of the linear LAM and its Adam trainer.

    Arguments:
        d_o: observation dimension.
        d_a: action dimension (size of the action head's output).
        d_z: latent dimension, 1 <= d_z <= d_o.
        kappa: augmentation scale κ >= 0 (0 = off); one value for all models or one per model.
        action_weight: λ_a >= 0, weight of the action-head loss; scalar or one per model.
            Only used when ``use_action_head`` is True (λ_a = 0 then disables it per model).
        use_action_head: whether the model has the action head E and its loss term.
        lr: Adam learning rate (> 0).
        lr_schedule: "cosine" (anneal to 0 over ``steps``, which lets Adam settle on the
            optimum instead of jittering around it) or "constant".
        batch_size: transitions per step; the trainer checks the sampler returns this many.
        steps: number of Adam updates.
        seed: seeds the initialisation (and, offset by one, the augmentation draws).
        init_scale: parameters start as N(0, init_scale² / fan_in) entries.
        num_models: M, the number of independent models trained together.
        device: torch device the model lives on.
    """

    d_o: int
    d_a: int
    d_z: int
    kappa: float | Sequence[float] = 0.0
    action_weight: float | Sequence[float] = 1.0
    use_action_head: bool = False
    lr: float = 1e-2
    lr_schedule: str = "cosine"
    batch_size: int = 128
    steps: int = 5000
    seed: int = 0
    init_scale: float = 0.1
    num_models: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.d_o = _check_int("d_o", self.d_o, low=1)
        self.d_a = _check_int("d_a", self.d_a, low=1)
        self.d_z = _check_int("d_z", self.d_z, low=1, high=self.d_o, high_name="d_o")
        self.num_models = _check_int("num_models", self.num_models, low=1)
        self.batch_size = _check_int("batch_size", self.batch_size, low=1)
        self.steps = _check_int("steps", self.steps, low=1)
        self.seed = _check_int("seed", self.seed, low=0)
        self.kappa = _check_per_model("kappa", self.kappa, self.num_models)
        self.action_weight = _check_per_model("action_weight", self.action_weight, self.num_models)
        self.lr = _check_float("lr", self.lr, positive=True)
        self.init_scale = _check_float("init_scale", self.init_scale, positive=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not isinstance(self.use_action_head, bool):
            raise ValueError(f"use_action_head must be a bool, got {self.use_action_head!r}")

    @property
    def kappas(self) -> tuple[float, ...]:
        """κ of each model, length M."""
        return _per_model(self.kappa, self.num_models)

    @property
    def action_weights(self) -> tuple[float, ...]:
        """λ_a of each model, length M."""
        return _per_model(self.action_weight, self.num_models)


def _check_int(name, value, low=None, high=None, high_name=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        bound = f"{high_name} = {high}" if high_name else str(high)
        raise ValueError(f"{name} must be <= {bound}, got {value}")
    return value


def _check_float(name, value, positive=False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    # NaN fails every comparison, so test finiteness explicitly.
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        allowed = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {allowed}, got {value}")
    return value


def _check_per_model(name, value, num_models) -> float | tuple[float, ...]:
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        values = tuple(_check_float(f"{name}[{i}]", v) for i, v in enumerate(value))
        if len(values) != num_models:
            raise ValueError(
                f"{name} has {len(values)} values but num_models = {num_models}; "
                "give one value, or one per model"
            )
        return values
    return _check_float(name, value)


def _per_model(value, num_models) -> tuple[float, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,) * num_models


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class LossTerms(NamedTuple):
    """Per-model loss terms, each of shape (M,)."""

    total: Tensor  # reconstruction + λ_a · action
    reconstruction: Tensor  # E‖ô' − Aug2(o')‖²
    action: Tensor  # mean over labelled transitions of ‖E z − a‖²; 0 without labels or head


class LinearLAM(nn.Module):
    """M independent linear LAMs held as batched tensors.

    Parameters (leading dimension M = ``config.num_models``):
        A: (M, d_o, d_o)   FDM observation map.
        B: (M, d_o, d_z)   FDM latent map.
        C: (M, d_z, d_o)   IDM map of o.
        D: (M, d_z, d_o)   IDM map of o'.
        E: (M, d_a, d_z)   action head, or None when ``use_action_head`` is False.
    Buffers: ``kappa`` (M,) = κ, ``action_weight`` (M,) = λ_a.

    Inputs o, o' are (N, d_o), shared by all models, or (M, N, d_o); outputs are (M, N, ·).
    """

    def __init__(self, config: LinearLAMConfig):
        super().__init__()
        self.config = config
        M, d_o, d_z, d_a = config.num_models, config.d_o, config.d_z, config.d_a
        # Draw on the CPU from a seeded generator, so the start is the same on every device.
        gen = torch.Generator().manual_seed(config.seed)

        def init(*shape: int) -> nn.Parameter:
            fan_in = shape[-1]
            w = torch.randn((M, *shape), generator=gen) * (config.init_scale / math.sqrt(fan_in))
            return nn.Parameter(w)

        self.A = init(d_o, d_o)
        self.B = init(d_o, d_z)
        self.C = init(d_z, d_o)
        self.D = init(d_z, d_o)
        self.E = init(d_a, d_z) if config.use_action_head else None
        self.register_buffer("kappa", torch.tensor(config.kappas, dtype=torch.float32))
        self.register_buffer(
            "action_weight", torch.tensor(config.action_weights, dtype=torch.float32)
        )
        # Decided once here so the loss never branches on tensor values (no device sync).
        self._augment = any(k > 0 for k in config.kappas)
        self.to(config.device)

    @property
    def num_models(self) -> int:
        return self.A.shape[0]

    # The two halves of the LAM, without augmentation.
    def idm(self, o: Tensor, o_next: Tensor) -> Tensor:
        """z = C·o + D·o'. o, o_next: (N, d_o) or (M, N, d_o) -> z: (M, N, d_z)."""
        return o @ self.C.mT + o_next @ self.D.mT

    def predict(self, o: Tensor, z: Tensor) -> Tensor:
        """FDM ô' = A·o + B·z. o: (N, d_o) or (M, N, d_o), z: (M, N, d_z) -> (M, N, d_o)."""
        return o @ self.A.mT + z @ self.B.mT

    def latent(self, o: Tensor, o_next: Tensor) -> Tensor:
        """The true latent z = C·o + D·o' (no augmentation): (M, N, d_z)."""
        return self.idm(o, o_next)

    def surrogate_latent(self, o: Tensor, o_next: Tensor) -> Tensor:
        """z̃ = B⁺(ô' − o), B⁺ the pseudo-inverse of B: (M, N, d_z).

        What the FDM's prediction says changed, read back in latent coordinates. For the
        over-parameterised model (A ≠ I, C ≠ −D) the true z also carries o, which A·o then
        cancels; z̃ removes that part and keeps only the predicted change.
        """
        change = self.predict(o, self.latent(o, o_next)) - o
        return change @ torch.linalg.pinv(self.B).mT

    def action_prediction(self, z: Tensor) -> Tensor:
        """â = E·z: (M, N, d_z) -> (M, N, d_a). Needs the action head."""
        if self.E is None:
            raise ValueError("this model has no action head (use_action_head=False)")
        return z @ self.E.mT

    def loss(
        self,
        o: Tensor,
        o_next: Tensor,
        a: Tensor | None = None,
        label_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossTerms:
        """Training loss with augmentation κ (when > 0); per-model terms of shape (M,).

        Arguments:
            o, o_next: (N, d_o) or (M, N, d_o) float.
            a: (N, d_a) or (M, N, d_a) actions; unlabelled entries may hold anything (NaN).
            label_mask: (N,) or (M, N) bool, True where ``a`` is a real label. Defaults to the
                rows of ``a`` that are all finite.
            generator: torch generator for the augmentation draws κ_1, κ_2.
        """
        M = self.num_models
        if self._augment:
            N, d_o = o.shape[-2:]
            scale = self.kappa.view(M, 1, 1)
            # κ_1: one draw per transition shared by both IDM inputs; κ_2: an independent one
            # shared by the FDM input and its target.
            kappa1 = scale * torch.randn(
                (M, N, d_o), generator=generator, device=o.device, dtype=o.dtype
            )
            kappa2 = scale * torch.randn(
                (M, N, d_o), generator=generator, device=o.device, dtype=o.dtype
            )
            z = self.idm(o + kappa1, o_next + kappa1)
            residual = self.predict(o + kappa2, z) - (o_next + kappa2)
        else:
            z = self.idm(o, o_next)
            residual = self.predict(o, z) - o_next
        reconstruction = residual.square().sum(-1).mean(-1)

        if self.E is not None and a is not None:
            action = self._action_loss(z, a, label_mask)
            total = reconstruction + self.action_weight * action
        else:
            action = torch.zeros_like(reconstruction)
            total = reconstruction
        return LossTerms(total, reconstruction, action)

    def _action_loss(self, z: Tensor, a: Tensor, label_mask: Tensor | None) -> Tensor:
        """Mean over labelled transitions of ‖E·z − a‖² (0 if none is labelled): (M,)."""
        if label_mask is None:
            label_mask = torch.isfinite(a).all(-1)
        # Replace unlabelled actions before any arithmetic: NaN * 0 is NaN, and a NaN anywhere
        # in the graph poisons the gradient even if masked out afterwards.
        a = torch.where(label_mask.unsqueeze(-1), a, 0.0)
        err = (z @ self.E.mT - a).square().sum(-1)  # (M, N)
        err = torch.where(label_mask, err, 0.0)
        n_labelled = label_mask.sum(-1).clamp_min(1)  # () or (M,)
        return err.sum(-1) / n_labelled

    @torch.no_grad()
    def reconstruction_loss(self, o: Tensor, o_next: Tensor) -> Tensor:
        """Evaluation loss E‖ô' − o'‖² without augmentation, (M,): compare to the optimum."""
        return (self.predict(o, self.latent(o, o_next)) - o_next).square().sum(-1).mean(-1)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


@dataclass
class TrainHistory:
    """Per-step training losses (with augmentation), each (steps, M) float32 numpy arrays."""

    step: np.ndarray  # (steps,)
    loss: np.ndarray
    reconstruction: np.ndarray
    action: np.ndarray


def train_linear_lam(
    config: LinearLAMConfig,
    sample_batch: BatchSampler,
    *,
    progress: bool = False,
    log_every: int = 100,
) -> tuple[LinearLAM, TrainHistory]:
    """Train ``config.num_models`` linear LAMs with Adam on batches from ``sample_batch``.

    ``sample_batch(step)`` returns float32 tensors o (N, d_o), o_next (N, d_o), a (N, d_a) and a
    bool label_mask (N,), N = ``config.batch_size`` — or each with a leading model dimension M
    to give every model its own data. Unlabelled actions may be NaN.

    The M models share nothing: the loss summed over models has, for each model's parameters,
    exactly that model's gradient, and Adam is element-wise, so this is M separate trainings.
    Losses are kept on the device every step and copied out once at the end; ``progress`` shows
    a tqdm bar whose postfix (a device sync) refreshes every ``log_every`` steps.
    """
    device = torch.device(config.device)
    model = LinearLAM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
        if config.lr_schedule == "cosine"
        else None
    )
    # A generator of its own for κ_1, κ_2: the draws do not depend on the caller's RNG use.
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    terms_log = torch.empty((3, config.steps, config.num_models), device=device)

    steps = range(config.steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        steps = bar = tqdm(steps, desc="linear LAM", unit="step")

    for step in steps:
        o, o_next, a, label_mask = sample_batch(step)
        if step == 0:
            _check_batch(config, o, o_next, a, label_mask)
        o, o_next = o.to(device, non_blocking=True), o_next.to(device, non_blocking=True)
        a, label_mask = a.to(device, non_blocking=True), label_mask.to(device, non_blocking=True)

        terms = model.loss(o, o_next, a, label_mask, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        terms.total.sum().backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

        terms_log[:, step] = torch.stack(terms).detach()
        if bar is not None and (step + 1) % log_every == 0:
            bar.set_postfix(loss=f"{terms.total.mean().item():.4g}")

    log = terms_log.cpu().numpy()
    history = TrainHistory(np.arange(config.steps), log[0], log[1], log[2])
    return model, history


def _check_batch(config: LinearLAMConfig, o, o_next, a, label_mask) -> None:
    """Check the first batch once, so a wrong sampler fails with a readable message."""
    M, N = config.num_models, config.batch_size
    expected = {
        "o": (o, config.d_o),
        "o_next": (o_next, config.d_o),
        "a": (a, config.d_a),
    }
    for name, (x, dim) in expected.items():
        if not isinstance(x, Tensor) or x.dtype != torch.float32:
            raise ValueError(f"sample_batch must return float32 tensors; {name} is {_describe(x)}")
        if tuple(x.shape) not in {(N, dim), (M, N, dim)}:
            raise ValueError(
                f"sample_batch returned {name} of shape {tuple(x.shape)}; expected ({N}, {dim}) "
                f"or ({M}, {N}, {dim}) (batch_size = {N}, num_models = {M})"
            )
    if not isinstance(label_mask, Tensor) or label_mask.dtype != torch.bool:
        raise ValueError(f"sample_batch must return a bool label_mask; got {_describe(label_mask)}")
    if tuple(label_mask.shape) not in {(N,), (M, N)}:
        raise ValueError(
            f"sample_batch returned label_mask of shape {tuple(label_mask.shape)}; "
            f"expected ({N},) or ({M}, {N})"
        )


def _describe(x) -> str:
    return f"a tensor of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__


# --------------------------------------------------------------------------------------------
# Analytic optimum
# --------------------------------------------------------------------------------------------


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
    The model has no bias, so Σ is the uncentered second moment; it equals Cov(q + ε) when the
    change has zero mean, as under the random policy. Computed in float64.
    """
    delta = torch.as_tensor(delta).to(torch.float64)
    if delta.ndim != 2 or delta.shape[0] == 0:
        raise ValueError(f"delta must have shape (N, d_o) with N >= 1, got {tuple(delta.shape)}")
    return analytic_optimum_from_moment(delta.mT @ delta / delta.shape[0], d_z)


def analytic_optimum_from_moment(moment: Tensor | np.ndarray, d_z: int) -> AnalyticOptimum:
    """As :func:`analytic_optimum`, from Σ = E[(o'−o)(o'−o)ᵀ] (or a covariance), (d_o, d_o)."""
    moment = torch.as_tensor(moment).to(torch.float64)
    if moment.ndim != 2 or moment.shape[0] != moment.shape[1]:
        raise ValueError(f"moment must be a square (d_o, d_o) matrix, got {tuple(moment.shape)}")
    d_o = moment.shape[0]
    d_z = _check_int("d_z", d_z, low=1, high=d_o, high_name="d_o")
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


class OptimalityGap(NamedTuple):
    """How far trained models are from the analytic optimum on one evaluation set."""

    loss: Tensor  # (M,) E‖ô' − o'‖² of each model, no augmentation
    minimum: Tensor  # (M,) analytic minimum on the same data
    relative: Tensor  # (M,) (loss − minimum) / minimum


def optimality_gap(model: LinearLAM, o: Tensor, o_next: Tensor) -> OptimalityGap:
    """Evaluate ``model`` on (o, o') of shape (N, d_o) or (M, N, d_o) against the PCA optimum.

    The minimum is computed on the same transitions, so the gap has no sampling offset from
    comparing two different data sets. It can be slightly negative on a finite sample, where
    o and o' − o are not exactly uncorrelated.
    """
    loss = model.reconstruction_loss(o, o_next).double().cpu()
    delta = (o_next - o).detach().cpu()
    if delta.ndim == 2:
        delta = delta.expand(model.num_models, *delta.shape)
    d_z = model.config.d_z
    minimum = torch.tensor([analytic_optimum(d, d_z).min_loss for d in delta], dtype=torch.float64)
    return OptimalityGap(loss, minimum, (loss - minimum) / minimum)
