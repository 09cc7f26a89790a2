"""Scoring any LAM's latent against the ground truth of its data.

    import lam_models
    report = lam_models.evaluate(my_latent_fn, "lam_envs/grid-low-uniform-v0")

:func:`evaluate` takes any callable ``(o, o_next) -> z`` (a user's own PyTorch model, or a
function of numpy arrays), computes z for the train and held-out transitions of the
dataset's split, fits least-squares probes on the train transitions and measures them on
the held-out ones (:func:`evaluate_latents`):

- every dataset: ``nmse_action``, the normalised MSE of a probe of the true action (one-hot
  for discrete actions) from z: 0 = z holds the action, 1 = none of it;
- then what the data's environment family asks for (:class:`lam_envs.envs.family.EnvFamily`):
  ``nmse_<target>`` for each of its ``probe_targets`` (oracle fields, or ``"o"`` the
  observation), then each of its ``scores`` (:data:`SCORES`):

  - LinearLAM data: ``nmse_q``, ``nmse_eps``, ``nmse_o`` (the controllable change q = X a,
    the exogenous noise ε, the observation o) and ``llo`` = −nmse(q) + nmse(ε) + nmse(o);
  - GridLAM data: ``probe_controllable_loss`` and ``probe_stochastic_loss``
    (:func:`grid_probe_losses`): how well a probe from z (and o) predicts rows 0–2 and
    row 3 of o'. They are *probe-based*, for LAMs with no pixel decoder, and named apart
    from the VQ LAM's FDM-based ``controllable_loss`` / ``stochastic_loss``.

Every built-in LAM is scored by the same functions (:func:`score_lam`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_envs.envs.family import FAMILIES, EnvFamily
from lam_envs.utils.validate import check_choice, check_int
from lam_models.data import LAMDataset
from lam_models.evaluation.metrics import (
    GridLosses,
    controllable_stochastic_loss,
    probe_nmse,
)
from lam_models.seeding import Stream, numpy_rng
from lam_models.split import DataSplit, Part, action_targets

__all__ = [
    "SCORES",
    "evaluate",
    "evaluate_latents",
    "format_scores",
    "grid_probe_losses",
    "latent_history",
    "register_score",
    "score_lam",
]

PROBE_FIT_MAX = 50_000  # train transitions the probes are fitted on at most
#: Pixels of the published 4×4 grid's frame, where the probe-based losses are defined
#: (rows 0–2 and the noise row); another frame gets NaN for them.
GRID_FRAME_PIXELS = 16

#: A score's function: ``(z_fit, z_test, fit, test, offset, result) -> entries``, given the
#: latents and parts the probes use, the IDM's offset and the metrics so far; the entries
#: returned are added to (or update) the result.
Score = Callable[[np.ndarray, np.ndarray, Part, Part, int, dict[str, float]], dict[str, float]]
#: Scores an environment family may ask for (``EnvFamily.scores``), by name.
SCORES: dict[str, Score] = {}


def register_score(name: str) -> Callable[[Score], Score]:
    """Decorator: make a score available to families under ``name``."""

    def add(function: Score) -> Score:
        SCORES[name] = function
        return function

    return add


def grid_probe_losses(
    z_train: np.ndarray,
    obs_train: np.ndarray,
    target_train: np.ndarray,
    z_test: np.ndarray,
    obs_test: np.ndarray,
    target_test: np.ndarray,
) -> GridLosses:
    """Probe-based controllable and stochastic losses of a latent on the grid.

    A LAM that predicts no pixels has no ô'; instead a least-squares probe from the features
    vec(o ⊗ [z, 1]) (every pixel of o times every latent coordinate and 1) to the target image
    is fitted on training transitions and scored on held-out ones with
    :func:`lam_models.evaluation.metrics.controllable_stochastic_loss`. With o one-hot in the
    square's
    cell the probe is a separate linear map from z for each cell, so it is exact when z
    linearly holds the move; the noise row of o' is independent of o, so what the probe gets
    right of it comes through z.
    """

    def features(z: np.ndarray, o: np.ndarray) -> torch.Tensor:
        z1 = np.concatenate([z, np.ones((len(z), 1))], axis=1)
        flat = o.reshape(len(o), -1)
        return torch.from_numpy(np.einsum("np,nz->npz", flat, z1).reshape(len(o), -1))

    x_train = features(z_train.astype(np.float64), obs_train.astype(np.float64))
    y_train = torch.from_numpy(target_train.reshape(len(target_train), -1).astype(np.float64))
    weights = torch.linalg.lstsq(x_train, y_train, driver="gelsd").solution
    pred = features(z_test.astype(np.float64), obs_test.astype(np.float64)) @ weights
    return controllable_stochastic_loss(pred.reshape(target_test.shape), target_test)


def _fit_rows(n: int, seed: int) -> np.ndarray:
    if n <= PROBE_FIT_MAX:
        return np.arange(n)
    return np.sort(numpy_rng(seed, Stream.EVAL_SUBSET).choice(n, PROBE_FIT_MAX, replace=False))


def evaluate_latents(
    z_train: np.ndarray,
    z_test: np.ndarray,
    train: Part,
    test: Part,
    discrete: bool,
    num_actions: int,
    seed: int = 0,
    offset: int = 1,
    nuisance: Sequence[str] = (),
    family: str | None = None,
) -> dict[str, float]:
    """Probe metrics of a latent, fitted on ``train`` transitions, measured on ``test``.

    z_train, z_test: (N, d_z) latents of the transitions of the two parts (in order); at
    most :data:`PROBE_FIT_MAX` train transitions (a seeded subset) fit the probes. On the
    grid the probe-based losses predict o_{t+offset} (the IDM's partner). ``family``: the
    data's environment family (``DataSpec.kind``); None: the registered family whose
    oracle fields the data holds. Returns ``nmse_action``, then what the family asks for
    (``nmse_<target>`` for its probe targets, then its scores: ``probe_controllable_loss``,
    ``probe_stochastic_loss`` on the grid; ``nmse_q``, ``nmse_eps``, ``nmse_o``, ``llo`` on
    the linear data); and ``nmse_<field>`` for each oracle field named in ``nuisance`` (what
    the latent holds of the noise row, the distractors, ...: NaN where the field never
    varies).
    """
    nuisance = check_nuisance(nuisance)
    if np.iscomplexobj(z_train) or np.iscomplexobj(z_test):
        raise ValueError("the latents are complex; the probes take real latents")
    z_train, z_test = np.asarray(z_train, np.float64), np.asarray(z_test, np.float64)
    if len(z_train) != len(train) or len(z_test) != len(test):
        raise ValueError(
            f"give one latent per transition: {len(z_train)} for {len(train)} train and "
            f"{len(z_test)} for {len(test)} held-out transitions"
        )
    if not (np.isfinite(z_train).all() and np.isfinite(z_test).all()):
        raise ValueError("the latents hold NaN or infinite values; cannot probe them")
    rows = _fit_rows(len(train), seed)
    fit = train.subset(rows)
    z_fit = z_train[rows]
    extra = {}
    for name in nuisance:
        y_fit, y_test = nuisance_targets(name, fit, test)
        extra[f"nmse_{name}"] = probe_nmse(z_fit, y_fit, z_test, y_test)
    result = _evaluate(
        z_fit, z_test, fit, test, discrete, num_actions, offset, _family(family, fit)
    )
    return {**result, **extra}


def check_nuisance(nuisance: Any) -> tuple[str, ...]:
    """``nuisance`` as a tuple of names: one name alone (``"noise"``) is one name, not its
    letters; anything but strings is refused."""
    if isinstance(nuisance, str):
        return (nuisance,)
    if not isinstance(nuisance, Sequence | set | frozenset) or not all(
        isinstance(name, str) for name in nuisance
    ):
        raise TypeError(
            f"nuisance must be oracle field names (e.g. ('noise',) or 'noise'), got {nuisance!r}"
        )
    return tuple(nuisance)


def nuisance_targets(name: str, *parts: Part) -> list[np.ndarray]:
    """The probe targets of a nuisance in each part, (N, d) float64: the oracle field
    ``name``; its change over the transition for ``"<field>:change"`` (field −
    field_before); integer fields (the other agents' actions) one-hot per column, with the
    same width in every part."""
    field, _, change = name.partition(":")
    if change not in ("", "change"):
        raise ValueError(f"unknown nuisance {name!r}: give an oracle field, or FIELD:change")
    needed = [field] + ([f"{field}_before"] if change else [])
    for part in parts:
        missing = [k for k in needed if k not in part.oracle]
        if missing:
            raise ValueError(
                f"unknown nuisance {name!r}: no oracle field {missing[0]!r} to probe; the "
                f"nuisances this data has are its oracle fields {sorted(part.oracle)} (each "
                "also as FIELD:change)"
            )
    ys = []
    for part in parts:
        y = part.oracle[field]
        if change:
            y = y.astype(np.float64) - part.oracle[f"{field}_before"]
        ys.append(y.reshape(len(part), -1))
    if ys[0].dtype.kind in "iub":
        width = int(max(y.max() for y in ys)) + 1
        ys = [np.concatenate([np.eye(width)[c] for c in y.T.astype(int)], 1) for y in ys]
    return [y.astype(np.float64) for y in ys]


@register_score("grid_probe_losses")
def _grid_probe_scores(z_fit, z_test, fit: Part, test: Part, offset: int, result) -> dict:
    if np.prod(fit.frames.shape[1:]) != GRID_FRAME_PIXELS:
        nan = float("nan")
        return {"probe_controllable_loss": nan, "probe_stochastic_loss": nan}
    losses = grid_probe_losses(
        z_fit, fit.obs(), fit.far_obs(offset), z_test, test.obs(), test.far_obs(offset)
    )
    return {
        "probe_controllable_loss": losses.controllable,
        "probe_stochastic_loss": losses.stochastic,
    }


@register_score("llo")
def _llo(z_fit, z_test, fit: Part, test: Part, offset: int, result) -> dict:
    """LLO = −nmse(q) + nmse(ε) + nmse(o), with the rule of
    :func:`~lam_models.evaluation.metrics.linear_probe_report`: without ε, holding none of
    it is perfect, so a NaN nmse(ε) counts, and is reported, as 1."""
    eps = result["nmse_eps"]
    if math.isnan(eps):
        eps = 1.0
    return {"nmse_eps": eps, "llo": -result["nmse_q"] + eps + result["nmse_o"]}


def _probe_target(part: Part, name: str) -> np.ndarray:
    """A family's probe target in a part: the oracle field ``name``, or the observation."""
    if name == "o":
        return part.obs().reshape(len(part), -1)
    if name not in part.oracle:
        raise ValueError(
            f"probe target {name!r} is not an oracle field of the data; it has "
            f"{sorted(part.oracle)}"
        )
    return part.oracle[name]


def _family(family: str | None, part: Part) -> EnvFamily | None:
    """The family named ``family``; when None, the one registered family whose oracle
    fields the data holds (None: no family, or several)."""
    if family is not None:
        return FAMILIES.get(family)
    fits = [
        f for f in FAMILIES.values() if f.oracle_fields and set(f.oracle_fields) <= set(part.oracle)
    ]
    return fits[0] if len(fits) == 1 else None


def _evaluate(z_fit, z_test, fit: Part, test: Part, discrete, num_actions, offset, family):
    a_fit = action_targets(fit.oracle["action"], discrete, num_actions)
    a_test = action_targets(test.oracle["action"], discrete, num_actions)
    result = {"nmse_action": probe_nmse(z_fit, a_fit, z_test, a_test)}
    if family is None:
        return result
    for name in family.probe_targets:
        result[f"nmse_{name}"] = probe_nmse(
            z_fit, _probe_target(fit, name), z_test, _probe_target(test, name)
        )
    for name in family.scores:
        if name not in SCORES:
            raise ValueError(
                f"family {family.name!r} asks for score {name!r}, which is not registered; "
                f"scores: {', '.join(SCORES)}"
            )
        result.update(SCORES[name](z_fit, z_test, fit, test, offset, result))
    return result


def score_lam(lam: Any, splits: Sequence[DataSplit]) -> list[dict[str, Any]]:
    """:func:`evaluate_latents` for each copy of a trained LAM on its own split."""
    results = []
    k = lam.lookahead
    for m, split in enumerate(splits):
        z = {}
        for name, part in (("train", split.train), ("test", split.test)):
            z[name] = lam.part_latents(part)[m]
        result = evaluate_latents(
            z["train"],
            z["test"],
            split.train,
            split.test,
            split.discrete,
            split.spec.action_dim,
            lam.seeds[m],
            offset=k,
            family=split.kind,
        )
        result["data"] = split.describe()
        results.append(result)
    return results


def _latents(z: Any, n: int) -> np.ndarray:
    """What ``latent_fn`` returned for ``n`` transitions, as float64 (n, d_z); anything but
    a real tensor or array of n rows is refused (``TypeError`` or ``ValueError``)."""
    what = f"{type(z).__name__} {z!r:.60}"
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu()
        if z.is_complex():
            raise ValueError(
                f"latent_fn returned a complex tensor ({z.dtype}); the probes take real "
                "latents: return torch.view_as_real(z).flatten(1) to keep both parts"
            )
        z = z.numpy()
    elif not isinstance(z, np.ndarray):
        raise TypeError(
            f"latent_fn must return a tensor or an array of shape (B, d_z); it returned {what}"
        )
    if z.dtype.kind == "c":
        raise ValueError(
            f"latent_fn returned a complex array ({z.dtype}); the probes take real latents: "
            "return np.concatenate([z.real, z.imag], 1) to keep both parts"
        )
    if z.dtype.kind not in "biuf":
        raise TypeError(f"latent_fn must return numbers; it returned an array of dtype {z.dtype}")
    count = "a 0-d array" if z.ndim == 0 else f"{len(z)} latents"
    if z.ndim == 0 or len(z) != n:
        raise ValueError(
            f"latent_fn returned {count} for a chunk of {n} transitions; it must return one "
            f"latent per transition, shape ({n}, d_z) (got shape {tuple(z.shape)})"
        )
    z = z.reshape(n, -1)
    if z.shape[1] == 0:
        raise ValueError(f"latent_fn returned latents of no coordinates, shape {z.shape}")
    return z.astype(np.float64)


def latent_history(latent_fn: Callable) -> int:
    """The frames of each observation a latent function reads: its ``history`` attribute
    (stacked frames, as ``laom``'s encoder), 1 without one."""
    history = getattr(latent_fn, "history", 1)
    if isinstance(history, bool) or not isinstance(history, int) or history < 1:
        raise ValueError(f"latent_fn.history must be an integer >= 1, got {history!r}")
    return history


def _apply(latent_fn: Callable, o: np.ndarray, o_next: np.ndarray, batch_size: int) -> np.ndarray:
    """latent_fn over (o, o_next) in chunks, as float64 numpy (N, d_z)."""
    parts = []
    with torch.no_grad():
        for i in range(0, len(o), batch_size):
            chunk = torch.from_numpy(o[i : i + batch_size]).float()
            z = latent_fn(chunk, torch.from_numpy(o_next[i : i + batch_size]).float())
            parts.append(_latents(z, len(chunk)))
    z = np.concatenate(parts)
    if len(z) != len(o):
        raise ValueError(f"latent_fn returned {len(z)} latents for {len(o)} transitions")
    return z


def evaluate(
    latent_fn: Callable[[torch.Tensor, torch.Tensor], Any],
    dataset: LAMDataset | DataSplit | str | Path,
    held_out: float = 0.1,
    seed: int = 0,
    eval_transitions: int = 20_000,
    batch_size: int = 4096,
    nuisance: Sequence[str] = (),
    measure_on: str = "held_out",
) -> dict[str, Any]:
    """Score any LAM's latent on a lam_envs dataset with the package's metrics.

    latent_fn: ``(o, o_next) -> z``, called on float32 CPU tensors (B, *obs_shape) in
        chunks of ``batch_size``, returning (B, d_z) (a tensor or an array). A function
        with an integer attribute ``history`` = h > 1 is given h frames of each, oldest
        first, stacked on the channel axis (an episode's first frame repeated before its
        start): (B, h·C, H, W) (see :func:`latent_history`).
    dataset: a :class:`~lam_models.split.DataSplit`, or a dataset (id, path or
        :class:`LAMDataset`) split by episode here (``held_out``, ``seed``; at most
        ``eval_transitions`` held-out transitions).
    nuisance: oracle fields to probe as well (``nmse_<field>``), e.g. ``("noise",)``.
    measure_on: ``"held_out"`` (the score) or ``"fit"``: the probes measured on the very
        transitions they were fitted on, whose gap to the held-out score says whether a
        poor score is the latent's or the probe's transfer to unseen episodes.
    Returns the metrics of :func:`evaluate_latents` and the split's description.
    """
    check_choice("measure_on", measure_on, ("held_out", "fit"))
    if not callable(latent_fn):
        raise TypeError(f"latent_fn must be a function (o, o_next) -> z, got {latent_fn!r:.60}")
    batch_size = check_int("batch_size", batch_size, low=1)
    nuisance = check_nuisance(nuisance)
    split = (
        dataset
        if isinstance(dataset, DataSplit)
        else DataSplit(dataset, held_out=held_out, seed=seed, eval_transitions=eval_transitions)
    )
    rows = _fit_rows(len(split.train), split.seed)
    train, h = split.train.subset(rows), latent_history(latent_fn)
    z_train = _apply(latent_fn, train.obs(history=h), train.next_obs(history=h), batch_size)
    if measure_on == "fit":
        test, z_test = train, z_train
    else:
        test = split.test
        z_test = _apply(latent_fn, test.obs(history=h), test.next_obs(history=h), batch_size)
    result = evaluate_latents(
        z_train, z_test, train, test, split.discrete, split.spec.action_dim, split.seed,
        nuisance=nuisance, family=split.kind,
    )  # fmt: skip
    result["data"] = split.describe()
    return result


def format_scores(metrics: dict[str, Any]) -> str:
    """The probe metrics as a few readable lines."""
    lines = [
        f"data: {metrics.get('data', '?')}",
        "probes: least squares, fitted on training transitions, nmse on held-out ones",
        f"  nmse(true action) {metrics['nmse_action']:.4f}   0: z holds the action; 1: none",
    ]
    if "probe_controllable_loss" in metrics:
        stochastic = metrics["probe_stochastic_loss"]
        text = "n/a" if stochastic is None or math.isnan(stochastic) else f"{stochastic:.4f}"
        lines.append(
            f"  probe controllable loss {metrics['probe_controllable_loss']:.4f}   probe "
            f"stochastic loss {text}  (probe of o' from o ⊗ [z, 1])"
        )
    if "llo" in metrics:
        lines.append(
            f"  nmse_q {metrics['nmse_q']:.4f}  nmse_eps {metrics['nmse_eps']:.4f}  "
            f"nmse_o {metrics['nmse_o']:.4f}  LLO {metrics['llo']:.4f}"
        )
    shown = {"nmse_action"} | ({"nmse_q", "nmse_eps", "nmse_o"} if "llo" in metrics else set())
    others = [k for k in metrics if k.startswith("nmse_") and k not in shown]
    if others:  # another family's probe targets, or nuisances
        lines.append("  " + "  ".join(f"{k} {metrics[k]:.4f}" for k in others))
    return "\n".join(lines)
