"""Train the LAOM-style LAM on a dataset, probe its latent, and save the run.

    python -m lam_models.train laom --dataset ID_OR_PATH [--k 1] [--action-head]

The pipeline, top to bottom (SPEC, "LAOM-style LAM" and "Metrics"):

1. Data. A ``lam_envs.collect`` dataset (grid or linear), split by episode into train and
   held-out (:func:`load_transitions`), each transition with its far observation o_{t+k}.
   The learner sees o, o_{t+k}, and the actions of the labelled transitions (``label_mask``).
2. Training. :func:`lam_models.laom.train_laom_lams` with batches drawn at random from the
   train split (:func:`make_samplers`); with the head on (λ_a > 0), a separate batch of
   labelled transitions every update.
3. Evaluation (:func:`evaluate_latents`, shared by every LAM in :mod:`lam_models.pipeline`).
   Probes fitted on train transitions and measured on held-out ones: nmse of the true
   action (one-hot on the grid); on the linear env also q, ε, o and LLO; on the grid the
   controllable and stochastic losses of a probe of what z holds about o_{t+k}
   (:func:`grid_probe_losses`, since this LAM predicts no pixels); the head's held-out
   accuracy (grid) or nmse (linear) when trained.
4. Saving. ``model.pt`` and ``run.json`` via :func:`lam_models.runs.save_run`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_envs.cli import Parser
from lam_envs.validate import check_int
from lam_models.data import DatasetError, LAMDataset
from lam_models.laom import LAOMLAM, LAOMConfig, far_observations, latents, train_laom_lams
from lam_models.metrics import (
    controllable_stochastic_loss,
    linear_probe_report,
    probe_nmse,
)
from lam_models.runs import save_run

__all__ = [
    "TrainLAOMConfig",
    "action_targets",
    "evaluate_latents",
    "grid_probe_losses",
    "load_transitions",
    "main",
    "make_samplers",
    "train_and_evaluate",
]

_PROBE_MAX = 50_000  # transitions the probes are fitted on at most


@dataclass
class TrainLAOMConfig:
    """One LAOM run on a dataset; saved in ``run.json``.

    dataset: Minari id or path of a ``lam_envs.collect`` dataset (grid or linear).
    held_out: share of episodes held out for the probes, in (0, 1).
    latent_dim (d_z), embed_dim (d_s), width, k, ema_decay (τ), augment, kappa (κ),
    action_weight (λ_a; the head is trained when ``action_head``), label_batch_size, lr,
    batch_size, steps, seed: see :class:`lam_models.laom.LAOMConfig`.
    """

    dataset: str = ""
    held_out: float = 0.1
    latent_dim: int = 8
    embed_dim: int = 32
    width: int = 64
    k: int = 1
    ema_decay: float = 0.99
    augment: bool = True
    kappa: float = 0.1
    action_head: bool = False
    action_weight: float = 1.0
    label_batch_size: int = 32
    lr: float = 1e-3
    batch_size: int = 128
    steps: int = 3000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
        check_int("k", self.k, low=1)
        check_int("seed", self.seed, low=0)

    def model_config(self, obs_shape: tuple[int, ...], action_dim: int) -> LAOMConfig:
        """The model's configuration for data of this shape (validates the rest)."""
        return LAOMConfig(
            obs_shape=tuple(obs_shape),
            latent_dim=self.latent_dim,
            embed_dim=self.embed_dim,
            width=self.width,
            k=self.k,
            ema_decay=self.ema_decay,
            augment=self.augment,
            kappa=self.kappa,
            action_weight=self.action_weight if self.action_head else 0.0,
            action_dim=action_dim,
            label_batch_size=self.label_batch_size,
            lr=self.lr,
            batch_size=self.batch_size,
            steps=self.steps,
            seed=self.seed,
        )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_transitions(data: LAMDataset, episodes: np.ndarray, k: int = 1) -> dict[str, Any]:
    """Every transition of ``episodes`` as numpy arrays, in ``read_numpy`` order.

    Keys: ``obs``, ``next_obs``, ``far_obs`` (o_{t+k}, see :func:`far_observations`),
    ``actions`` (sentinel where unlabelled), ``label_mask``, and ``oracle`` (ground truth, for
    evaluation and the fully labelled baseline only).
    """
    arrays = data.read_numpy(episodes)
    arrays["far_obs"] = far_observations(arrays["next_obs"], data.episode_length, k)
    arrays["oracle"] = data.oracle(episodes)
    return arrays


def action_dim(data: LAMDataset) -> int:
    """d_a of the action targets: the number of actions (one-hot) or the action dimension."""
    if data.discrete:
        return int(data.recover_environment().action_space.n)
    return int(data.oracle(data.episodes[:1])["action"].shape[-1])


def action_targets(actions: np.ndarray, discrete: bool, dim: int) -> np.ndarray:
    """Float targets of actions (N,) or (N, d_a): one-hot (N, dim) when discrete; sentinel
    rows (−1 / NaN) become zeros (they are never used: they carry no label)."""
    if discrete:
        targets = np.zeros((len(actions), dim), np.float32)
        known = actions >= 0
        targets[np.flatnonzero(known), actions[known]] = 1.0
        return targets
    return np.nan_to_num(np.asarray(actions, np.float32))


def per_copy(array: np.ndarray | torch.Tensor, copies: int, item_ndim: int) -> torch.Tensor:
    """An array of N items (N, *item) shared by every copy, or (M, N, *item) one per copy, as a
    (M, N, *item) tensor (shared arrays are expanded, not copied)."""
    t = torch.as_tensor(array)
    if t.ndim == item_ndim + 1:
        t = t[None].expand(copies, *t.shape)
    if t.ndim != item_ndim + 2 or t.shape[0] != copies:
        raise ValueError(f"expected (N, ...) or ({copies}, N, ...) items, got {tuple(t.shape)}")
    return t


def make_samplers(
    obs: np.ndarray,
    far_obs: np.ndarray,
    targets: np.ndarray,
    label_masks: np.ndarray,
    batch_size: int,
    label_batch_size: int,
    seeds: list[int],
):
    """``sample_batch`` and ``sample_labelled`` for :func:`train_laom_lams` from in-memory
    transitions: obs and far_obs (N, *obs_shape), targets (N, d_a) (see
    :func:`action_targets`), each shared by the M copies or given per copy (M, N, ...), and
    ``label_masks`` (M, N) bool.

    Every copy m draws its own indices (from ``seeds[m]``): B of its N transitions, and B_l of
    its own labelled ones, with replacement.
    """
    m = len(seeds)
    masks = np.asarray(label_masks, dtype=bool).reshape(m, -1)
    given_per_copy = obs.ndim >= 3 and obs.shape[:2] == masks.shape
    item = obs.ndim - (2 if given_per_copy else 1)
    o, o_far = per_copy(obs, m, item).float(), per_copy(far_obs, m, item).float()
    a = per_copy(targets, m, 1).float()
    copies = torch.arange(m)[:, None]
    generators = [torch.Generator().manual_seed(seed + 7_919) for seed in seeds]
    labelled = [torch.from_numpy(np.flatnonzero(mask)) for mask in masks]

    def sample_batch(step: int):
        n = o.shape[1]
        index = torch.stack([torch.randint(n, (batch_size,), generator=g) for g in generators])
        return o[copies, index], o_far[copies, index]

    def sample_labelled(step: int):
        rows, valid = [], []
        for g, pool in zip(generators, labelled, strict=True):
            if len(pool):
                rows.append(pool[torch.randint(len(pool), (label_batch_size,), generator=g)])
            else:
                rows.append(torch.zeros(label_batch_size, dtype=torch.long))
            valid.append(torch.full((label_batch_size,), len(pool) > 0))
        index = torch.stack(rows)
        return o[copies, index], o_far[copies, index], a[copies, index], torch.stack(valid)

    return sample_batch, sample_labelled


# --------------------------------------------------------------------------------------------
# Evaluation (every LAM's latent, in lam_models.pipeline too)
# --------------------------------------------------------------------------------------------


def _subsample(n: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[:_PROBE_MAX])


def grid_probe_losses(
    z_train: np.ndarray,
    obs_train: np.ndarray,
    target_train: np.ndarray,
    z_test: np.ndarray,
    obs_test: np.ndarray,
    target_test: np.ndarray,
):
    """Controllable and stochastic losses (SPEC, Metrics) of a probe of what z holds.

    A LAM that predicts no pixels has no ô'; instead a least-squares probe from the features
    vec(o ⊗ [z, 1]) (every pixel of o times every latent coordinate and 1) to the target image
    is fitted on training transitions and scored on held-out ones with
    :func:`controllable_stochastic_loss`. With o one-hot in the square's cell, the probe is
    a separate linear map from z for each cell, so it is exact when z linearly holds the
    move; the noise row of o' is independent of o, so what the probe gets right of it comes
    through z.
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


def evaluate_latents(
    z_train: np.ndarray,
    z_test: np.ndarray,
    train: dict[str, Any],
    test: dict[str, Any],
    discrete: bool,
    num_actions: int,
    seed: int = 0,
) -> dict[str, float]:
    """Probe metrics of a latent, fitted on ``train`` transitions and measured on ``test``.

    z_train, z_test: (N, d_z) latents of the transitions of :func:`load_transitions` sets.
    Returns ``nmse_action`` (true action, one-hot on the grid); grid: ``controllable_loss``
    and ``stochastic_loss`` of :func:`grid_probe_losses`; linear: ``nmse_q``, ``nmse_eps``,
    ``nmse_o`` and ``llo`` of :func:`linear_probe_report`.
    """
    fit = _subsample(len(z_train), seed)
    z_fit = np.asarray(z_train, np.float64)[fit]
    z_test = np.asarray(z_test, np.float64)
    a_fit, a_test = train["oracle"]["action"][fit], test["oracle"]["action"]
    if discrete:
        a_fit = action_targets(a_fit, True, num_actions)
        a_test = action_targets(a_test, True, num_actions)
        losses = grid_probe_losses(
            z_fit, train["obs"][fit], train["far_obs"][fit], z_test, test["obs"], test["far_obs"]
        )
        return {
            "nmse_action": probe_nmse(z_fit, a_fit, z_test, a_test),
            "controllable_loss": losses.controllable,
            "stochastic_loss": losses.stochastic,
        }
    targets = [
        {"a": s["oracle"]["action"][i], "q": s["oracle"]["q"][i], "eps": s["oracle"]["eps"][i],
         "o": s["obs"][i]}
        for s, i in ((train, fit), (test, slice(None)))
    ]  # fmt: skip
    report = linear_probe_report(z_fit, z_test, *targets)
    return {
        "nmse_action": report["nmse_a"],
        **{key: report[key] for key in ("nmse_q", "nmse_eps", "nmse_o", "llo")},
    }


def head_metrics(
    model: LAOMLAM, z_test: torch.Tensor, test: dict[str, Any], discrete: bool
) -> dict[str, float]:
    """Held-out quality of the action head E: accuracy of argmax E z (grid), or nmse of E z."""
    with torch.no_grad():
        pred = model.action_prediction(z_test)[0].numpy()
    truth = test["oracle"]["action"]
    if discrete:
        return {"head_accuracy": float((pred.argmax(-1) == truth).mean())}
    variance = float(truth.var(0).sum())
    return {"head_nmse": float(np.square(pred - truth).sum(-1).mean() / variance)}


# --------------------------------------------------------------------------------------------
# Training and evaluation of one run
# --------------------------------------------------------------------------------------------


def train_and_evaluate(
    config: TrainLAOMConfig, progress: bool = False
) -> tuple[LAOMLAM, dict[str, Any]]:
    """Train one LAOM-style LAM on ``config.dataset`` and probe it on held-out episodes."""
    data = LAMDataset(config.dataset)
    train_episodes, test_episodes = data.split(config.held_out, seed=config.seed)
    train = load_transitions(data, train_episodes, config.k)
    test = load_transitions(data, test_episodes, config.k)
    d_a = action_dim(data)
    model_config = config.model_config(data.observation_shape, d_a)
    labelled = train["label_mask"]
    if config.action_head and not labelled.any():
        raise DatasetError(
            f"dataset {data.dataset_id!r} has no labelled transition in its train split; "
            "the action head needs some (collect with --label-fraction > 0, or drop it)"
        )
    targets = action_targets(train["actions"], data.discrete, d_a)
    samplers = make_samplers(
        train["obs"], train["far_obs"], targets, labelled[None],
        config.batch_size, config.label_batch_size, [config.seed],
    )  # fmt: skip
    model, histories = train_laom_lams(model_config, [config.seed], *samplers, progress=progress)
    z_train = latents(model, torch.from_numpy(train["obs"]), torch.from_numpy(train["far_obs"]))
    z_test = latents(model, torch.from_numpy(test["obs"]), torch.from_numpy(test["far_obs"]))
    metrics = evaluate_latents(
        z_train[0].numpy(), z_test[0].numpy(), train, test, data.discrete, d_a, config.seed
    )
    if config.action_head:
        metrics.update(head_metrics(model, z_test, test, data.discrete))
    history = histories[0]
    metrics.update(
        final_latent_loss=history["latent_loss"][-1],
        embed_std=history["embed_std"][-1],
        labelled_transitions=int(labelled.sum()),
        data=f"dataset {data.dataset_id} ({data.env_id})",
        env_kind=data.kind,
    )
    return model, metrics


def format_report(config: TrainLAOMConfig, metrics: dict[str, Any]) -> str:
    """The metrics as a few readable lines."""
    c = config
    head = f"head λ_a={c.action_weight:g}" if c.action_head else "no head"
    lines = [
        f"LAOM-style LAM  d_z={c.latent_dim} d_s={c.embed_dim} k={c.k} τ={c.ema_decay:g} "
        f"augment={'on' if c.augment else 'off'} {head}; {c.steps} Adam steps, batch "
        f"{c.batch_size}",
        f"data: {metrics['data']}; {metrics['labelled_transitions']} labelled train transitions",
        "probes: least squares, fitted on training transitions, nmse on held-out ones",
        f"  nmse(true action{', one-hot' if metrics['env_kind'] == 'grid' else ''}) "
        f"{metrics['nmse_action']:.4f}",
    ]
    if metrics["env_kind"] == "grid":
        lines.append(
            f"  controllable loss {metrics['controllable_loss']:.4f}   stochastic loss "
            f"{metrics['stochastic_loss']:.4f}  (probe of o_(t+k) from o ⊗ [z, 1])"
        )
    else:
        lines.append(
            f"  nmse_q {metrics['nmse_q']:.4f}  nmse_eps {metrics['nmse_eps']:.4f}  "
            f"nmse_o {metrics['nmse_o']:.4f}  LLO {metrics['llo']:.4f}"
        )
    if "head_accuracy" in metrics:
        lines.append(f"  action head: held-out accuracy {metrics['head_accuracy']:.4f}")
    if "head_nmse" in metrics:
        lines.append(f"  action head: held-out nmse {metrics['head_nmse']:.4f}")
    lines.append(
        f"final latent loss {metrics['final_latent_loss']:.5f}; target embedding std "
        f"{metrics['embed_std']:.3f} (near 0: collapsed)"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d = TrainLAOMConfig()
    p = Parser(
        prog="python -m lam_models.train laom",
        description="Train the LAOM-style LAM (continuous latent, prediction in an EMA target "
        "encoder's space) on a dataset; print probe metrics; save model.pt and run.json.",
    )
    p.add_argument("--dataset", required=True, metavar="ID_OR_PATH", help="Minari id or path")
    p.add_argument("--held-out", type=float, default=d.held_out, help="share of episodes held out")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim, help="d_z, latent dimension")
    p.add_argument("--embed-dim", type=int, default=d.embed_dim, help="d_s, encoder dimension")
    p.add_argument("--width", type=int, default=d.width, help="hidden units of each MLP")
    p.add_argument("--k", type=int, default=d.k, help="IDM look-ahead: it sees (o_t, o_t+k)")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="τ of the target EMA")
    p.add_argument("--no-augment", action="store_true", help="turn the augmentation Aug1/Aug2 off")
    p.add_argument("--kappa", type=float, default=d.kappa, help="κ of vector augmentation")
    p.add_argument(
        "--action-head", action="store_true", help="train the linear head E on labelled data"
    )
    p.add_argument(
        "--action-weight", type=float, default=d.action_weight, help="λ_a of the head's loss"
    )
    p.add_argument(
        "--label-batch-size",
        type=int,
        default=d.label_batch_size,
        help="labelled transitions per update",
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"Adam steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="transitions per step")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of split, data order, model")
    p.add_argument("--out", type=Path, help="run folder (default runs/laom/<data>-s<seed>)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        torch.set_num_threads(check_int("threads", args.threads, low=1))
        config = TrainLAOMConfig(
            dataset=args.dataset,
            held_out=args.held_out,
            latent_dim=args.latent_dim,
            embed_dim=args.embed_dim,
            width=args.width,
            k=args.k,
            ema_decay=args.ema_decay,
            augment=not args.no_augment,
            kappa=args.kappa,
            action_head=args.action_head,
            action_weight=args.action_weight,
            label_batch_size=args.label_batch_size,
            lr=args.lr,
            batch_size=args.batch_size,
            steps=args.steps,
            seed=args.seed,
        )
        start = time.perf_counter()
        model, metrics = train_and_evaluate(config, progress=not args.quiet)
        elapsed = time.perf_counter() - start
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(config, metrics))
    name = Path(config.dataset).name.replace("/", "_")
    out = args.out or Path("runs") / "laom" / f"{name}-s{config.seed}"
    path = save_run(
        out, "laom", model, config, metrics, model_config=model.config, elapsed_seconds=elapsed
    )
    print(f"saved {path.parent}/ (model.pt, run.json) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
