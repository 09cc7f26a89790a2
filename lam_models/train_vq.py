"""Train the grid VQ LAM on a dataset, score it on held-out transitions, and save the run.

    python -m lam_models.train vq --dataset lam-envs/grid-low-uniform-v0
    python -m lam_models.train vq --dataset ID --augment --action-prediction --seed 3

The pipeline, top to bottom (SPEC, "VQ LAM (grid)" and "Metrics"):

1. Data. A ``GridLAM-v0`` dataset made by ``lam_envs.collect``, split by episode into train
   and held-out (``LAMDataset.split``, seeded by the run's seed). The train split is read
   into memory once (a 200k-transition grid dataset is 26 MB) and batches are drawn from it
   by random index. ``eval_dataset`` scores the model on the held-out episodes of another
   grid dataset instead: a model trained on correlated-policy data is then measured on
   uniform-policy transitions, as the SPEC's policy-determinism experiments do.
2. Training. :func:`lam_models.vq.train_vq_lams`: several seeds of one configuration train
   as one batched model (:func:`train_and_evaluate_many`); the CLI trains one.
3. Evaluation, on held-out transitions without augmentation (:func:`evaluate`):
   controllable and stochastic loss (:func:`lam_models.metrics.controllable_stochastic_loss`),
   codebook perplexity and the number of codes used, and the action accuracy of the best
   (majority) code→action map. With action prediction also the accuracy of the
   pre-assigned map (code k = action k) on transitions where the square moved.
4. Saving. ``model.pt``, ``run.json`` (configuration, model configuration, metrics, training
   history) and ``transitions.png`` (a few held-out transitions with ô' and the chosen
   code) via ``save_run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from lam_envs.cli import Parser, derive_seed
from lam_envs.validate import check_float, check_int
from lam_models.data import DatasetError, LAMDataset
from lam_models.metrics import (
    code_action_accuracy,
    controllable_stochastic_loss,
    perplexity,
)
from lam_models.runs import save_run
from lam_models.vq import VQLAM, SampleBatch, VQLAMConfig, predict, train_vq_lams

__all__ = [
    "GridSource",
    "TrainVQConfig",
    "VQRun",
    "evaluate",
    "main",
    "plot_transitions",
    "train_and_evaluate",
    "train_and_evaluate_many",
]

ACTION_NAMES = ("stay", "up", "down", "left", "right")  # GridLAM-v0's Discrete(5)


@dataclass
class TrainVQConfig:
    """Everything one grid VQ-LAM run needs; saved in ``run.json``.

    Data:
        dataset: Minari id or path of a ``lam_envs.collect`` dataset of ``GridLAM-v0``.
        eval_dataset: score on the held-out episodes of this grid dataset instead (None:
            the held-out episodes of ``dataset``).
        held_out: share of episodes held out for scoring, in (0, 1).
        eval_transitions: score at most this many held-out transitions (a seeded subset).
    Model (SPEC symbols):
        codebook_size: K, the number of codes (>= 5 with action prediction).
        augment: random ±1-column periodic shifts (Aug1 for the IDM, Aug2 for the FDM).
        action_prediction: pre-assign code k to action k and pull the latent of labelled
            transitions toward its action's code, with weight λ_a = ``action_weight``.
        labelled_share: with action prediction, this share of every batch is drawn from the
            labelled transitions (the rest from all). With 1% labels a uniform batch of 128
            holds about one labelled transition, too weak a pull against the noise row:
            measured on low noise (5000 updates, 3 seeds), share 0 and λ_a = 1 left the
            best-map action accuracy at 0.36 (0.29 without action prediction); share 0.1 and
            λ_a = 5 raised it to 0.55 and code k = action k on 74% of moves. The labelled
            transitions are a uniform random subset, so this reuses them more often without
            changing the distribution of (o, o') the model sees.
    Optimisation: steps, batch_size, lr (Adam), seed (split, batches, initialisation).
    """

    dataset: str
    eval_dataset: str | None = None
    held_out: float = 0.1
    eval_transitions: int = 20_000
    codebook_size: int = 5
    augment: bool = False
    action_prediction: bool = False
    action_weight: float = 5.0
    labelled_share: float = 0.1
    steps: int = 16_000
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("codebook_size", self.codebook_size, low=1)
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
        check_int("eval_transitions", self.eval_transitions, low=1)
        check_float("action_weight", self.action_weight, low=0.0)
        check_float("labelled_share", self.labelled_share, low=0.0, high=1.0)
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_float("lr", self.lr, low=0.0)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        check_int("seed", self.seed, low=0)
        # The model's own checks (e.g. codebook_size >= the number of actions when action
        # prediction pre-assigns codes) run here too, before any data is read.
        self.model_config()

    def model_config(self, obs_shape: tuple[int, int, int] = (1, 4, 4)) -> VQLAMConfig:
        """The :class:`VQLAMConfig` this run trains (λ_a = 0 without action prediction)."""
        return VQLAMConfig(
            codebook_size=self.codebook_size,
            obs_shape=obs_shape,
            lr=self.lr,
            batch_size=self.batch_size,
            steps=self.steps,
            augment=self.augment,
            action_weight=self.action_weight if self.action_prediction else 0.0,
            seed=self.seed,
            log_every=min(100, self.steps),
        )


class HeldOut(NamedTuple):
    """Held-out transitions and their ground truth (evaluation only)."""

    obs: torch.Tensor  # (N, 1, 4, 4) float32
    next_obs: torch.Tensor  # (N, 1, 4, 4) float32
    actions: np.ndarray  # (N,) int64, the true actions (oracle)
    moved: np.ndarray  # (N,) bool, the square changed cell (not stay, not a wall bump)
    description: str


class GridSource:
    """A grid dataset split by episode: the train split in memory, the held-out set."""

    def __init__(self, config: TrainVQConfig):
        self.config = c = config
        self.data = data = LAMDataset(c.dataset)
        data.require("grid")
        train_episodes, test_episodes = data.split(c.held_out, seed=c.seed)
        self.train = data.read_numpy(train_episodes)
        self.obs_shape = tuple(int(s) for s in data.observation_shape)
        labelled = int(self.train["label_mask"].sum())
        if c.action_prediction and labelled == 0:
            raise ValueError(
                f"dataset {data.dataset_id!r} has no labelled transitions in its train split "
                f"(label fraction {data.collect_config.get('label_fraction')}), but action "
                "prediction needs some; drop --action-prediction or collect with "
                "--label-fraction > 0"
            )
        self.description = (
            f"dataset {data.dataset_id} ({data.env_id} {data.env_kwargs}, policy "
            f"{data.collect_config.get('policy')}); train {len(self.train['obs']):,} "
            f"transitions in {len(train_episodes)} episodes, {labelled:,} labelled"
        )
        if c.eval_dataset is None:
            eval_data, eval_episodes = data, test_episodes
        else:
            eval_data = LAMDataset(c.eval_dataset)
            eval_data.require("grid")
            if tuple(eval_data.observation_shape) != self.obs_shape:
                raise DatasetError(
                    f"eval dataset {eval_data.dataset_id!r} has observations of shape "
                    f"{tuple(eval_data.observation_shape)}, the training data {self.obs_shape}"
                )
            eval_episodes = eval_data.split(c.held_out, seed=c.seed)[1]
        self.held_out = self._held_out(eval_data, eval_episodes)

    def _held_out(self, data: LAMDataset, episodes: np.ndarray) -> HeldOut:
        learn, oracle = data.read_numpy(episodes), data.oracle(episodes)
        n = len(learn["obs"])
        rows = np.arange(n)
        if n > self.config.eval_transitions:
            rng = np.random.default_rng(derive_seed(self.config.seed, 1))
            rows = np.sort(rng.choice(n, self.config.eval_transitions, replace=False))
        moved = (oracle["position"] != oracle["position_before"]).any(-1)
        return HeldOut(
            torch.from_numpy(learn["obs"][rows]).float(),
            torch.from_numpy(learn["next_obs"][rows]).float(),
            oracle["action"][rows].astype(np.int64),
            moved[rows],
            f"{len(rows):,} held-out transitions of {data.dataset_id} ({len(episodes)} episodes)",
        )

    def sampler(self) -> SampleBatch:
        """``sample_batch(step)``: a batch of train transitions drawn at random, seeded.

        With action prediction and ``labelled_share`` > 0, that share of each batch is
        drawn from the labelled transitions, the rest from all of them.
        """
        c = self.config
        rng = np.random.default_rng(derive_seed(c.seed, 0))
        train = {k: torch.from_numpy(v) for k, v in self.train.items()}
        n, size = len(self.train["obs"]), c.batch_size
        labelled = np.flatnonzero(self.train["label_mask"])
        n_labelled = round(c.labelled_share * size) if c.action_prediction else 0

        def sample_batch(step: int):
            rows = rng.integers(n, size=size)
            rows[:n_labelled] = labelled[rng.integers(len(labelled), size=n_labelled)]
            index = torch.from_numpy(rows)
            return (
                train["obs"][index],
                train["next_obs"][index],
                train["actions"][index].long(),
                train["label_mask"][index],
            )

        return sample_batch


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


class VQRun(NamedTuple):
    """One trained model, its metrics and its training history."""

    model: VQLAM
    metrics: dict[str, Any]
    history: dict[str, list[float]]


@torch.no_grad()
def evaluate(model: VQLAM, held_out: HeldOut) -> dict[str, Any]:
    """The SPEC's grid metrics of one model on held-out transitions (no augmentation).

    Returns ``controllable_loss``, ``stochastic_loss`` (None/NaN without noise),
    ``perplexity`` and ``codes_used`` of the chosen codes, ``action_accuracy`` (the best,
    i.e. majority, code→action map, fitted on the scored transitions themselves: with
    K × 5 cells and thousands of transitions this adds no measurable optimism; wall bumps
    look like "stay", so under a uniform policy the ceiling is about 0.77), and with action
    prediction ``assigned_action_accuracy``: how often code k = action k where the square
    moved (ceiling 1, chance 0.2).
    """
    k, num_actions = model.config.codebook_size, model.config.num_actions
    prediction = predict(model, held_out.obs, held_out.next_obs)
    losses = controllable_stochastic_loss(prediction.pred_next, held_out.next_obs)
    codes = prediction.codes.numpy()
    actions = held_out.actions
    metrics: dict[str, Any] = {
        "controllable_loss": losses.controllable,
        "stochastic_loss": losses.stochastic,
        "perplexity": perplexity(codes, k),
        "codes_used": int(len(np.unique(codes))),
        "action_accuracy": code_action_accuracy(codes, actions, codes, actions, k, num_actions),
        "eval_transitions": len(codes),
    }
    if model.config.action_weight > 0:
        moved = held_out.moved
        metrics["assigned_action_accuracy"] = float((codes[moved] == actions[moved]).mean())
    return metrics


def _shared_model_config(configs: list[TrainVQConfig], sources: list[GridSource]) -> VQLAMConfig:
    """The one VQLAMConfig of configurations that differ at most in seed and data."""
    shapes = {s.obs_shape for s in sources}
    if len(shapes) > 1:
        raise ValueError(f"models trained together must share the image shape; got {shapes}")
    model_configs = [c.model_config(sources[0].obs_shape) for c in configs]
    first = dataclasses.replace(model_configs[0], seed=0)
    for other in model_configs[1:]:
        if dataclasses.replace(other, seed=0) != first:
            raise ValueError(
                "configurations trained together must differ only in seed and data; "
                f"got {model_configs[0]} and {other}"
            )
    return model_configs[0]


def train_and_evaluate_many(
    configs: list[TrainVQConfig],
    progress: bool = False,
    sources: list[GridSource] | None = None,
) -> list[VQRun]:
    """Train one VQ LAM per configuration, all together as one batched model; evaluate each.

    The configurations must agree on everything but ``seed`` and the datasets (usually they
    are the seeds of one setting). Each model has its own split, batches and initialisation
    from its own seed, exactly as if trained alone. ``sources``: the configurations' data,
    when the caller has opened it already (default: opened here).
    """
    sources = [GridSource(c) for c in configs] if sources is None else sources
    model_config = _shared_model_config(configs, sources)
    models, histories = train_vq_lams(
        model_config,
        [c.seed for c in configs],
        [s.sampler() for s in sources],
        progress=progress,
    )
    runs = []
    for model, history, source in zip(models, histories, sources, strict=True):
        metrics = evaluate(model, source.held_out)
        metrics["train_loss"] = history["loss"][-1]
        metrics["train_perplexity"] = history["perplexity"][-1]
        metrics["codes_revived"] = int(sum(history["revived"]))
        metrics["data"] = source.description
        metrics["scored_on"] = source.held_out.description
        runs.append(VQRun(model, metrics, history))
    return runs


def train_and_evaluate(config: TrainVQConfig, progress: bool = False) -> VQRun:
    """Train and evaluate one grid VQ LAM; see :func:`train_and_evaluate_many`."""
    return train_and_evaluate_many([config], progress=progress)[0]


# --------------------------------------------------------------------------------------------
# Report, plot and command line
# --------------------------------------------------------------------------------------------


def format_report(config: TrainVQConfig, metrics: dict[str, Any]) -> str:
    """The metrics, one per line, with what each means."""
    c = config
    action = (
        f"on, λ_a={c.action_weight:g}, labelled share {c.labelled_share:g}"
        if c.action_prediction
        else "off"
    )
    stochastic = metrics["stochastic_loss"]
    stochastic_text = "n/a (no noise)" if math.isnan(stochastic) else f"{stochastic:.4f}"
    lines = [
        f"VQ LAM  K={c.codebook_size} codes, augmentation {'on' if c.augment else 'off'}, "
        f"action prediction {action}; {c.steps} updates, batch {c.batch_size}, seed {c.seed}",
        f"data: {metrics['data']}",
        f"scored on {metrics['scored_on']}",
        "",
        f"controllable loss    {metrics['controllable_loss']:.4f}   rows 0-2; lower: z holds "
        "more of the action",
        f"stochastic loss      {stochastic_text:<8} row 3; higher: z holds less noise",
        f"codebook perplexity  {metrics['perplexity']:.3f}    of {c.codebook_size} "
        f"({metrics['codes_used']} codes used)",
        f"action accuracy      {metrics['action_accuracy']:.4f}   best code→action map "
        "(wall bumps look like stay: ceiling ≈ 0.77 under a uniform policy)",
    ]
    if "assigned_action_accuracy" in metrics:
        lines.append(
            f"assigned accuracy    {metrics['assigned_action_accuracy']:.4f}   code k = action "
            "k where the square moved (chance 0.2)"
        )
    return "\n".join(lines)


def plot_transitions(
    model: VQLAM, held_out: HeldOut, path: str | Path, count: int = 6, title: str = ""
) -> Path:
    """A PNG of ``count`` held-out transitions: o, o', ô' and the chosen code (and action).

    Picks the first transition of each true action in turn, so every action appears.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen: list[int] = []
    for i in range(len(held_out.actions)):
        if len(chosen) == count:
            break
        if held_out.actions[i] == len(chosen) % model.config.num_actions:
            chosen.append(i)
    index = torch.tensor(chosen, dtype=torch.long)
    prediction = predict(model, held_out.obs[index], held_out.next_obs[index])
    top = float(max(held_out.obs.max(), held_out.next_obs.max(), 1.0))
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.6 * len(chosen), 5.2), squeeze=False)
    for j, i in enumerate(chosen):
        images = (held_out.obs[i, 0], held_out.next_obs[i, 0], prediction.pred_next[j, 0])
        for row, (image, name) in enumerate(zip(images, ("o", "o'", "ô'"), strict=True)):
            ax = axes[row, j]
            ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
        action = ACTION_NAMES[held_out.actions[i]]
        axes[0, j].set_title(f"a = {action}\ncode {int(prediction.codes[j])}", fontsize=9)
    fig.suptitle(title or "held-out transitions: o, o', predicted ô' and the chosen code")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    d = TrainVQConfig(dataset="")
    p = Parser(
        prog="python -m lam_models.train vq",
        description="Train the grid VQ LAM on a GridLAM-v0 dataset; print held-out metrics; "
        "save model.pt, run.json and transitions.png.",
    )
    p.add_argument(
        "--dataset", required=True, metavar="ID_OR_PATH", help="Minari id or path of a dataset"
    )
    p.add_argument(
        "--eval-dataset",
        metavar="ID_OR_PATH",
        help="score on the held-out episodes of this grid dataset (default: --dataset's)",
    )
    p.add_argument(
        "--held-out",
        type=float,
        default=d.held_out,
        help=f"share of episodes held out for scoring (default {d.held_out})",
    )
    p.add_argument(
        "--eval-transitions",
        type=int,
        default=d.eval_transitions,
        help=f"score at most this many held-out transitions (default {d.eval_transitions})",
    )
    p.add_argument(
        "--codebook-size",
        type=int,
        default=d.codebook_size,
        help=f"K, number of codes (default {d.codebook_size})",
    )
    p.add_argument(
        "--augment", action="store_true", help="random ±1-column periodic shifts (Aug1, Aug2)"
    )
    p.add_argument(
        "--action-prediction",
        action="store_true",
        help="pre-assign code k to action k; pull labelled latents toward their action's code",
    )
    p.add_argument(
        "--action-weight",
        type=float,
        default=d.action_weight,
        help=f"λ_a, weight of the action-prediction pull (default {d.action_weight})",
    )
    p.add_argument(
        "--labelled-share",
        type=float,
        default=d.labelled_share,
        help="with --action-prediction: share of each batch drawn from the labelled "
        f"transitions (default {d.labelled_share})",
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"Adam updates (default {d.steps})")
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"batch size ({d.batch_size})"
    )
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of split, batches and model")
    p.add_argument("--out", type=Path, help="run folder (default runs/vq/<data>-K<K>-s<seed>)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for these small models on a busy CPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainVQConfig:
    return TrainVQConfig(
        dataset=args.dataset,
        eval_dataset=args.eval_dataset,
        held_out=args.held_out,
        eval_transitions=args.eval_transitions,
        codebook_size=args.codebook_size,
        augment=args.augment,
        action_prediction=args.action_prediction,
        action_weight=args.action_weight,
        labelled_share=args.labelled_share,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )


def default_out(config: TrainVQConfig) -> Path:
    name = Path(config.dataset).name.replace("/", "_")
    extras = ("-aug" if config.augment else "") + ("-ap" if config.action_prediction else "")
    return Path("runs") / "vq" / f"{name}-K{config.codebook_size}{extras}-s{config.seed}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        torch.set_num_threads(check_int("threads", args.threads, low=1))
        config = config_from_args(args)
        start = time.perf_counter()
        source = GridSource(config)
        (run,) = train_and_evaluate_many([config], not args.quiet, [source])
        elapsed = time.perf_counter() - start
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(config, run.metrics))
    out = args.out or default_out(config)
    path = save_run(
        out,
        "vq",
        run.model,
        config,
        run.metrics,
        model_config=run.model.config,
        history=run.history,
        elapsed_seconds=elapsed,
    )
    plot_transitions(run.model, source.held_out, out / "transitions.png")
    print(f"saved {path.parent}/ (model.pt, run.json, transitions.png) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
