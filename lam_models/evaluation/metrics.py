"""Probes and metrics that score a LAM's latent.

Every function accepts numpy arrays or torch tensors and returns plain Python floats (or numpy
arrays), so researchers can score latents from any model.

- :func:`probe_nmse`, :func:`linear_probe_report`: linear probes from a latent z to the ground
  truth (a, q = X a, ε, o) and the linear LAM objective LLO = −nmse(q) + nmse(ε) + nmse(o);
  :func:`lam_models.evaluate` does the same for any LAM given only its latent function and
  a dataset.
- :func:`controllable_stochastic_loss`: the grid's reconstruction losses on the controllable
  rows and on the noise row, on either scale: over the signal's variance (the paper's text),
  or over the error of a predictor that knows o but not the action
  (:func:`no_action_error`; the constant 0.060 of the authors' code).
- :func:`code_action_map`, :func:`code_action_accuracy`, :func:`perplexity`: discrete codes.
- :func:`mean_stderr`: every reported figure is a mean over seeds with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "PROBE_RCOND",
    "PUBLISHED_CONTROLLABLE_SCALE",
    "published_table1_losses",
    "GridLosses",
    "LATENT_KINDS",
    "code_action_accuracy",
    "code_action_map",
    "controllable_stochastic_loss",
    "grid_mse",
    "linear_probe_report",
    "mean_stderr",
    "no_action_error",
    "perplexity",
    "probe_nmse",
]

ArrayLike = np.ndarray | torch.Tensor

LATENT_KINDS = ("true", "surrogate")

# A target whose total variance is below this fraction of its mean square E‖y‖² is treated as
# constant (e.g. ε = 0 up to rounding): nmse is then undefined and reported as NaN.
_ZERO_VARIANCE_RTOL = 1e-12

#: The probes' relative cut-off on singular values: directions of the centred training
#: latents whose singular value is below this fraction of the largest one are treated as
#: absent (the least-squares solution gives them no weight). A float32 latent (what
#: networks return) resolves about 7 significant digits (float32's ε = 1.2e-7) per value,
#: and the rounding of every layer before it adds up, so a direction 10⁴ times weaker than
#: its strongest (10⁸ times less variance) is at the level of the network's rounding, not
#: of what it encodes. The solver's default cut-off (float64's ε times the number of rows,
#: about 1e-12) keeps such directions, and the probe's weights along them grow as the
#: inverse of their singular values: held-out latents that vary along them blow the nmse
#: up. Measured on the authors' LAOM (d_z 128, 2,000 updates on GridLAM-GoalLights-v0, 3
#: seeds): singular values fall to ~7e-4, then ~1e-5 to 1e-7, then ~3e-8 (exactly
#: missing directions); at a cut-off of 1e-6 one seed's action probe gave nmse 6.2, at
#: 1e-4 0.81 (the others 0.87 at both). A well-conditioned latent's probe is unchanged
#: (its smallest singular values are far above it).
PROBE_RCOND = 1e-4


def _as_float64_2d(name: str, x: ArrayLike) -> torch.Tensor:
    """(N,) or (N, d) array/tensor -> (N, d) float64 CPU tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float64)
    else:
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, d), got {tuple(t.shape)}")
    return t


def _total_variance(y: torch.Tensor) -> float:
    """Sum over dimensions of the per-dimension variance of y (N, d); NaN if y is constant."""
    total = float(y.var(dim=0, correction=0).sum())
    mean_square = float(y.square().sum(-1).mean())
    return math.nan if total <= _ZERO_VARIANCE_RTOL * mean_square else total


def probe_nmse(
    z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike, y_test: ArrayLike
) -> float:
    """Normalised MSE of a least-squares probe (with bias) from latent z to target y.

    Arguments:
        z_train: (N_train, d_z) latents the probe is fitted on.
        y_train: (N_train, d_y) or (N_train,) targets.
        z_test: (N_test, d_z) held-out latents.
        y_test: (N_test, d_y) or (N_test,) held-out targets.

    Returns:
        nmse = E‖ŷ − y‖² / total variance of y_test (sum of the per-dimension variances),
        measured on the held-out set: 0 when z holds all of y, about 1 when it holds nothing.
        NaN when y_test has zero total variance (nmse is undefined; callers decide).

    The probe is fitted in float64 by least squares on centred data (equivalent to a bias
    column, better conditioned) with the SVD-based solver, which gives no weight to the
    directions of z_train whose singular value is below :data:`PROBE_RCOND` times the
    largest (rank-deficient latents: their held-out copies may vary along those directions).
    """
    z_train, y_train = _as_float64_2d("z_train", z_train), _as_float64_2d("y_train", y_train)
    z_test, y_test = _as_float64_2d("z_test", z_test), _as_float64_2d("y_test", y_test)
    for split, z, y in (("train", z_train, y_train), ("test", z_test, y_test)):
        if z.shape[0] != y.shape[0] or z.shape[0] == 0:
            raise ValueError(
                f"z_{split} and y_{split} must have the same number N >= 1 of rows, "
                f"got {z.shape[0]} and {y.shape[0]}"
            )
    if z_train.shape[1] != z_test.shape[1] or y_train.shape[1] != y_test.shape[1]:
        raise ValueError(
            f"train and test dimensions differ: z {z_train.shape[1]} vs {z_test.shape[1]}, "
            f"y {y_train.shape[1]} vs {y_test.shape[1]}"
        )
    total_variance = _total_variance(y_test)
    if math.isnan(total_variance):
        return math.nan

    z_mean, y_mean = z_train.mean(0), y_train.mean(0)
    y_hat = y_mean.expand_as(y_test)
    if z_train.shape[1] > 0:
        # gelsd: SVD solver, minimum-norm solution when z has redundant or constant columns;
        # rcond: relative to the largest singular value (PROBE_RCOND).
        W = torch.linalg.lstsq(
            z_train - z_mean, y_train - y_mean, rcond=PROBE_RCOND, driver="gelsd"
        ).solution
        y_hat = (z_test - z_mean) @ W + y_mean
    mse = float((y_hat - y_test).square().sum(-1).mean())
    return mse / total_variance


def linear_probe_report(
    z_train: ArrayLike,
    z_test: ArrayLike,
    targets_train: Mapping[str, ArrayLike],
    targets_test: Mapping[str, ArrayLike],
    latent_name: str = "true",
) -> dict[str, float | str | bool]:
    """Probe a latent for the ground truth of the linear environment and score it by LLO.

    This is the public scoring function: pass latents from any model.

    Arguments:
        z_train: (N_train, d_z) latents of the transitions the probes are fitted on.
        z_test: (N_test, d_z) latents of held-out transitions, where nmse is measured.
        targets_train, targets_test: dicts of ground truth for the same transitions, each
            value (N, d): "q" (the controllable change X·a, (N, d_o)), "eps" (the exogenous
            change ε, (N, d_o)), "o" (the observation o at time t, (N, d_o)); optionally
            "a" (the true action, (N, d_a)) and any other target, probed the same way.
            Use the oracle fields (true actions even where the dataset hides them).
        latent_name: which latent was probed: "true" (z = C·o + D·o') or "surrogate"
            (z̃ = B⁺(ô' − o)).

    Returns:
        {"latent": latent_name, "nmse_<target>": float for every target given,
        "llo": −nmse(q) + nmse(ε) + nmse(o), "eps_zero_variance": bool}.
        LLO's best value is 2 (z predicts q exactly and holds nothing of ε or o). When ε has
        zero variance (no exogenous noise) nmse(ε) is undefined; it is then taken as 1 in LLO
        and reported as 1.0 in "nmse_eps", with "eps_zero_variance" True.
    """
    if latent_name not in LATENT_KINDS:
        raise ValueError(f"latent_name must be one of {LATENT_KINDS}, got {latent_name!r}")
    for name, targets in (("targets_train", targets_train), ("targets_test", targets_test)):
        missing = [key for key in ("q", "eps", "o") if key not in targets]
        if missing:
            raise ValueError(f"{name} lacks {missing}; it needs 'q', 'eps' and 'o'")
    if set(targets_train) != set(targets_test):
        raise ValueError(
            f"targets_train and targets_test name different targets: "
            f"{sorted(targets_train)} vs {sorted(targets_test)}"
        )

    report: dict[str, float | str | bool] = {"latent": latent_name}
    for key in targets_train:
        report[f"nmse_{key}"] = probe_nmse(z_train, targets_train[key], z_test, targets_test[key])
    eps_zero_variance = math.isnan(report["nmse_eps"])
    if eps_zero_variance:
        report["nmse_eps"] = 1.0  # the package's rule: without ε, holding none of it is perfect
    report["eps_zero_variance"] = eps_zero_variance
    report["llo"] = -report["nmse_q"] + report["nmse_eps"] + report["nmse_o"]
    return report


class GridLosses(NamedTuple):
    """The grid's normalised reconstruction losses (lower controllable = more action in z)."""

    controllable: float  # rows 0–2, where the agent's square moves
    stochastic: float  # row 3, the exogenous noise; NaN when the noise row never varies


_GRID_ROWS = (slice(0, 3), slice(3, 4))  # controllable rows, the noise row


def controllable_stochastic_loss(
    pred_next: ArrayLike, next_obs: ArrayLike, scale: GridLosses | None = None
) -> GridLosses:
    """FDM reconstruction losses on the 4×4 grid, split by rows.

    Arguments:
        pred_next: (N, 1, 4, 4) or (N, 4, 4) predicted next images ô'.
        next_obs: the same shape, the true next images o'.
        scale: None (the text's scale): divide by the signal's variance. Or per-pixel
            errors (controllable, stochastic) to divide by instead, e.g. those of a
            predictor that knows o but not the action (:func:`no_action_error`): the
            scale of the authors' code, which divides by such a constant (0.060).

    Returns:
        controllable = E‖ô' − o'‖² over rows 0–2 / total variance of rows 0–2 of o' (sum over
        the 12 cells of each cell's variance over the N evaluated transitions), i.e. the
        per-pixel MSE over the mean per-pixel variance; with ``scale``, the per-pixel MSE
        over ``scale.controllable``. stochastic = the same over row 3. With no noise (row 3
        constant, e.g. intensity 0) the stochastic loss is undefined and returned as NaN on
        either scale.
    """
    pred, target = (_as_grid(n, x) for n, x in (("pred_next", pred_next), ("next_obs", next_obs)))
    if pred.shape != target.shape:
        raise ValueError(f"pred_next {pred.shape} and next_obs {target.shape} differ in shape")

    def normalised(rows: slice, per_pixel: float | None) -> float:
        p, t = pred[:, rows].reshape(len(pred), -1), target[:, rows].reshape(len(target), -1)
        total_variance = _total_variance(t)
        if math.isnan(total_variance):
            return math.nan
        if per_pixel is None:
            return float((p - t).square().sum(-1).mean()) / total_variance
        if not per_pixel > 0:
            return math.nan
        return float((p - t).square().mean()) / per_pixel

    scales = (None, None) if scale is None else tuple(scale)
    return GridLosses(*(normalised(r, k) for r, k in zip(_GRID_ROWS, scales, strict=True)))


#: The released Table 1 results divide the controllable per-pixel error by this constant
#: (close to the error of a predictor that knows o but not the action, :func:`no_action_error`).
PUBLISHED_CONTROLLABLE_SCALE = 0.060


def published_table1_losses(
    controllable_mse: float, stochastic_mse: float, noise_intensity: float
) -> GridLosses:
    """The published Table 1 losses from per-pixel FDM errors (measured over the last
    training updates: :class:`~lam_models.lams.training_score.TrainingScore`).

    controllable = error on rows 0–2 / 0.060 (:data:`PUBLISHED_CONTROLLABLE_SCALE`), every
    row; stochastic = error on the noise row / the noise row's variance, Bernoulli(0.5) ×
    intensity, i.e. intensity² / 4 (0.25 at low noise, 1.0 at high), and the raw error
    without noise (intensity 0), as the released results script does."""
    intensity = float(noise_intensity)
    if not (math.isfinite(intensity) and intensity >= 0):
        raise ValueError(f"noise_intensity must be a finite number >= 0, got {noise_intensity}")
    variance = intensity**2 / 4 if intensity > 0 else 1.0
    return GridLosses(controllable_mse / PUBLISHED_CONTROLLABLE_SCALE, stochastic_mse / variance)


def grid_mse(pred_next: ArrayLike, next_obs: ArrayLike) -> GridLosses:
    """Per-pixel mean squared error of ô' on rows 0–2 (controllable) and on row 3
    (stochastic), unnormalised: shapes as :func:`controllable_stochastic_loss`."""
    pred, target = (_as_grid(n, x) for n, x in (("pred_next", pred_next), ("next_obs", next_obs)))
    if pred.shape != target.shape:
        raise ValueError(f"pred_next {pred.shape} and next_obs {target.shape} differ in shape")
    return GridLosses(*(float((pred[:, r] - target[:, r]).square().mean()) for r in _GRID_ROWS))


def no_action_error(
    obs_train: ArrayLike, next_train: ArrayLike, obs_test: ArrayLike, next_test: ArrayLike
) -> GridLosses:
    """Per-pixel MSE of the best predictor of o' that knows o but not the action.

    The predictor is E[o' | o]: the mean o' of the training transitions with the same o
    (grid observations take few distinct values: 12 square cells × 16 noise rows on the
    4×4 grid), measured on the test transitions (an o never seen in training is predicted
    by the mean o'). Returned as (controllable: rows 0–2, stochastic: row 3); pass it as
    the ``scale`` of :func:`controllable_stochastic_loss`. Under the uniform policy with
    low noise the controllable error is about 0.057 (5 equally likely moves, walls turning
    some into "stay"): the constant 0.060 the authors' code divides by; the stochastic
    error is the noise row's variance, 0.25 (the row is independent of o).

    Shapes: obs_* and next_* (N, 1, 4, 4) or (N, 4, 4).
    """
    named = {
        "obs_train": obs_train,
        "next_train": next_train,
        "obs_test": obs_test,
        "next_test": next_test,
    }
    grids = [_as_grid(name, x) for name, x in named.items()]
    o_train, n_train, o_test, n_test = (g.reshape(len(g), -1).numpy() for g in grids)
    if len(o_train) != len(n_train) or len(o_test) != len(n_test):
        raise ValueError("obs and next images must have the same number of transitions")
    rows = np.ascontiguousarray(np.concatenate([o_train, o_test]), dtype=np.float64)
    # One opaque key per image: np.unique of a 1-d array is far faster than of rows.
    keys, index = np.unique(
        rows.view(np.dtype((np.void, rows.shape[1] * 8))).reshape(-1), return_inverse=True
    )
    index = index.reshape(-1)
    train_index, test_index = index[: len(o_train)], index[len(o_train) :]
    seen = np.bincount(train_index, minlength=len(keys))
    if (seen > 0).sum() > len(o_train) / 2:  # most o seen once: continuous observations
        raise ValueError(
            f"the observations take {(seen > 0).sum()} distinct values in {len(o_train)} "
            "training transitions: too many to estimate E[o' | o] by grouping (the no-action "
            "error is for the grid's discrete images)"
        )
    sums = np.zeros((len(keys), n_train.shape[1]))
    np.add.at(sums, train_index, n_train)
    means = np.where(seen[:, None] > 0, sums / np.maximum(seen, 1)[:, None], n_train.mean(0))
    pred = means[test_index].reshape(-1, 4, 4)
    return grid_mse(pred, n_test.reshape(-1, 4, 4))


def _as_grid(name: str, x: ArrayLike) -> torch.Tensor:
    t = x.detach().to("cpu", torch.float64) if isinstance(x, torch.Tensor) else None
    if t is None:
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or tuple(t.shape[1:]) != (4, 4) or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 1, 4, 4) or (N, 4, 4), got {tuple(x.shape)}")
    return t


def _as_codes(name: str, x: ArrayLike, num: int) -> np.ndarray:
    codes = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    codes = codes.reshape(-1)
    if codes.size and (
        not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() >= num
    ):
        raise ValueError(f"{name} must be integers in [0, {num - 1}]")
    return codes.astype(np.int64)


def code_action_map(
    codes: ArrayLike, actions: ArrayLike, num_codes: int, num_actions: int
) -> np.ndarray:
    """Best many-to-one map from code to action: the majority action of each code, (num_codes,).

    codes, actions: (N,) integers. A code never seen maps to the overall majority action.
    """
    codes = _as_codes("codes", codes, num_codes)
    actions = _as_codes("actions", actions, num_actions)
    if codes.shape != actions.shape:
        raise ValueError(f"codes {codes.shape} and actions {actions.shape} differ in shape")
    counts = np.bincount(codes * num_actions + actions, minlength=num_codes * num_actions)
    counts = counts.reshape(num_codes, num_actions)
    mapping = counts.argmax(1)
    unseen = counts.sum(1) == 0
    mapping[unseen] = counts.sum(0).argmax()
    return mapping


def code_action_accuracy(
    codes_train: ArrayLike,
    actions_train: ArrayLike,
    codes_test: ArrayLike,
    actions_test: ArrayLike,
    num_codes: int,
    num_actions: int,
) -> float:
    """Held-out accuracy of the majority code→action map fitted on the training split.

    codes_*, actions_*: (N,) integers in [0, num_codes) and [0, num_actions). 1.0 means the
    codes determine the action; chance is the frequency of the most common action.
    """
    mapping = code_action_map(codes_train, actions_train, num_codes, num_actions)
    codes_test = _as_codes("codes_test", codes_test, num_codes)
    actions_test = _as_codes("actions_test", actions_test, num_actions)
    if codes_test.shape != actions_test.shape or codes_test.size == 0:
        raise ValueError("codes_test and actions_test must be non-empty and of the same shape")
    return float((mapping[codes_test] == actions_test).mean())


def perplexity(codes: ArrayLike, num_codes: int) -> float:
    """exp(entropy) of the code usage distribution: num_codes when uniform, 1 when collapsed."""
    codes = _as_codes("codes", codes, num_codes)
    if codes.size == 0:
        raise ValueError("codes is empty")
    p = np.bincount(codes, minlength=num_codes) / codes.size
    p = p[p > 0]  # 0·log 0 = 0
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_stderr(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard error (sample std / √n, 0 for one value) of per-seed numbers."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, float)
    v = v.reshape(-1)
    if v.size == 0:
        raise ValueError("values is empty")
    stderr = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), stderr
