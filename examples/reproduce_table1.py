"""Reproduce Table 1: the grid VQ LAM under noise, a correlated policy, augmentation and 1%
action prediction, as the authors ran it (docs/protocols.md, "Grid VQ LAM").

    python examples/reproduce_table1.py --device cuda          # the published run, 5 seeds
    python examples/reproduce_table1.py --budget small         # the CPU budget (<= 30 min, 2 cores)
    python examples/reproduce_table1.py --budget text          # the text's 16k updates
    python examples/reproduce_table1.py --variant skip         # a named variant (repeatable)
    python examples/reproduce_table1.py --arch ours            # the package's own VQ LAM
    python examples/reproduce_table1.py --quick                # seconds, for the tests

The published protocol (the default; the CSV's ``protocol`` column says ``published``):

- Data, as the released data script makes it (recipes ``datasets/table1-grid-*.toml``):
  4,000 trajectories × 200 frames, every one starting in cell (1, 2); uniform random actions,
  or for the policy row the released snake (down and up the columns, a wrap from (0, 3) to
  (0, 0) stored as "stay") with ε = 0.05; the first 1% of trajectories labelled (here a
  seeded 1%); 95% of the trajectories train, 5% are held out (one split for every seed).
- Model (``vq-published``): the released one: per-frame CNN encoder called on o and on o′
  apart, MLP IDM, 5 codes moved only by the dead-code reset (the last batch of every 5th
  epoch, accumulating marks), an FDM without a skip connection; labelled examples feed
  their action's code to the FDM detached, the straight-through output is pulled toward it,
  and no code is reset while labels are used.
- Losses (``controllable_loss``, ``stochastic_loss``): the FDM's per-pixel error on rows
  0–2 divided by 0.060, and on the noise row divided by the noise row's variance (0.25 at
  low noise, 1.0 at high, raw without noise), averaged over the last 40 updates of
  training-mode batches: the training batch, or for the policy row a batch of the
  uniform-policy data (the snaking model is scored on uniform data).
- Augmentation: the released code's noise-row copy is the published row; the text's
  one-column shift (left or right) is a variant row.

Named variants (``--variant``, repeatable; the ``protocol`` column joins their names with
"+"; :data:`VARIANTS`) keep the package's earlier readings available beside the published
protocol: ``skip``, ``per-update-reset``, ``straight-through-labels``, ``package-data``,
``own-data-scoring``; and ``noise-copy-fdm-idm-input``, a hypothesis about the augmentation
row (the FDM reads the IDM's o, with o′'s noise row). ``--arch ours`` trains the package's
own VQ LAM (``vq``: a translation-invariant IDM and an EMA codebook, its own settings) on
the same rows, scored the same way.

Every run also reports the package's held-out metrics, in eval mode on each row's held-out
trajectories (the policy row's on the uniform data, unless ``own-data-scoring``):
``*_loss_signal`` (the per-pixel error over the signal's variance, the paper's text),
``*_loss_noaction`` (over the error of a predictor that knows o but not the action, on the
base data), ``perplexity`` and ``action_accuracy`` (the best code→action map).

Budgets (``--budget``): ``released`` (default), 1,600 updates of 1,024 (400 epochs of 4
batches: a GPU job, about 0.8 CPU-seconds per update); ``text``, 16,000 updates of 1,024;
``small``, the published model and protocol on 500 updates of 128, so the table fits 30
minutes on 2 idle CPU cores. Ours has one length (16k updates of 128) for released and
text, and a quarter of it for small.

Resumable: each finished setting × seed is cached under ``<out>/cache`` (``--cache``; keyed
by the model, its settings, the datasets' fingerprints, the results' version, the package's
version and code, and the device), so a rerun trains only what is missing; the progress
lines give an ETA. Seeds of a setting train together as one batched model; settings run in
``--workers`` processes (one torch thread each) on the CPU, or as Ray tasks (``--ray``,
docs/running-at-scale.md).

Writes ``<out>/table1_<budget>.csv`` (:data:`COLUMNS`), ``table1_<budget>.md`` (the
published values beside ours, the direction of each row against the base and whether it
holds beyond 2 standard errors, then the held-out metrics), ``table1_<budget>_<arch>.png``
(bars beside the published values) and, for each setting trained,
``pictures/<arch>_<budget>_<setting>/codes.png`` and ``transitions.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs.collect import CollectConfig, collect, default_root  # noqa: E402
from lam_envs.envs.grid import GridLAMConfig  # noqa: E402
from lam_envs.utils.cli import Parser  # noqa: E402
from lam_models import sweep  # noqa: E402
from lam_models.data import LAMDataset  # noqa: E402
from lam_models.evaluation.metrics import (  # noqa: E402
    GridLosses,
    mean_stderr,
    no_action_error,
    published_table1_losses,
)
from lam_models.lams.base import get_lam  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.split import DataSplit  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "datasets"
HELD_OUT = 0.05  # of the trajectories
SPLIT_SEED = 0  # one train/held-out split for every seed
NO_ACTION_FIT = 200_000  # train transitions the no-action predictor is estimated from

ARCHS = {"published": "vq-published", "ours": "vq"}
#: Per model and budget: the settings that differ from the model's defaults.
BUDGETS: dict[str, dict[str, dict[str, int]]] = {
    "published": {
        "released": {"steps": 1600, "batch_size": 1024},
        "text": {"steps": 16_000, "batch_size": 1024},
        "small": {"steps": 500, "batch_size": 128},
        "quick": {"steps": 20, "batch_size": 64, "log_every": 10, "score_updates": 5},
    },
    "ours": {
        "released": {},
        "text": {},
        "small": {"steps": 4000},
        "quick": {"steps": 150, "score_updates": 5},
    },
}
EVAL_TRANSITIONS = {"released": 20_000, "text": 20_000, "small": 10_000, "quick": 2000}

#: The package's earlier readings of the protocol, each a named variant (off by default).
VARIANTS = {
    "skip": "the FDM's UNet with a full-resolution skip connection (released: none)",
    "per-update-reset": "dead codes checked every update and reset after more than 3 dead "
    "updates in a row to a random latent of the batch (released: the last batch of every "
    "5th epoch, accumulating marks, the batch row of the code's index)",
    "straight-through-labels": "labelled examples feed their action's code through the "
    "straight-through path, the latent is pulled and committed to it, and codes are still "
    "reset (released: the code detached, the straight-through output pulled, no reset)",
    "package-data": "the package's data process: random start cells, the snaking policy on "
    "a Hamiltonian cycle (released: every trajectory from (1, 2), the released snake)",
    "own-data-scoring": "the policy row scored on its own snaking data (released: on the "
    "uniform-policy data)",
    "noise-copy-fdm-idm-input": "with the noise copy, the FDM reads the IDM's o (with o′'s "
    "noise row) instead of o, so it cannot copy the target's noise row (a hypothesis for the "
    "published augmentation row's stochastic loss, not the protocol's reading)",
}
#: The variants that change the published model's configuration.
MODEL_VARIANTS = {
    "skip": {"fdm_skip": True},
    "per-update-reset": {"reset_schedule": "every-update"},
    "straight-through-labels": {"label_mechanism": "straight-through"},
    "noise-copy-fdm-idm-input": {"noise_copy_fdm_input": "idm"},
}

COLUMNS = [
    "row",
    "setting",
    "seed",
    "protocol",
    "arch",
    "budget",
    "controllable_loss",
    "stochastic_loss",
    "controllable_loss_signal",
    "controllable_loss_noaction",
    "stochastic_loss_signal",
    "stochastic_loss_noaction",
    "perplexity",
    "action_accuracy",
    "scored_on",
]
TEXT_COLUMNS = ("row", "setting", "protocol", "arch", "budget", "scored_on")
HELD_OUT_METRICS = {
    "controllable_loss_signal": "controllable ↓ (signal)",
    "controllable_loss_noaction": "controllable ↓ (no-action)",
    "stochastic_loss_signal": "stochastic ↑ (signal)",
    "stochastic_loss_noaction": "stochastic ↑ (no-action)",
    "perplexity": "perplexity",
    "action_accuracy": "action accuracy ↑",
}
LOSSES = {"controllable_loss": "controllable ↓", "stochastic_loss": "stochastic ↑"}


@dataclass(frozen=True)
class Training:
    """One distinct setting: trained once for all seeds."""

    recipe: str  # datasets/<recipe>.toml (the published data process)
    augment: bool = False  # the text's shift
    noise_copy: bool = False  # the released code's noise-row copy
    action_prediction: bool = False
    scored_on_base: bool = False  # the policy row: scored on the base's uniform data


TRAININGS = {
    "none": Training("table1-grid-none-uniform"),
    "low": Training("table1-grid-low-uniform"),
    "high": Training("table1-grid-high-uniform"),
    "correlated": Training("table1-grid-low-correlated", scored_on_base=True),
    "noise-copy": Training("table1-grid-low-uniform", noise_copy=True),
    "shift": Training("table1-grid-low-uniform", augment=True),
    "action-prediction": Training("table1-grid-low-uniform", action_prediction=True),
}
BASE = "low"  # the published base: uniform policy, low noise, nothing else

#: (row, training): the rows of the table, in the paper's order (the shift row is the
#: text's augmentation, a variant row).
TABLE = [
    ("no noise", "none"),
    ("low noise (base)", "low"),
    ("high noise", "high"),
    ("correlated policy", "correlated"),
    ("augmentation: noise copy (released)", "noise-copy"),
    ("augmentation: shift (text, a variant)", "shift"),
    ("1% action prediction", "action-prediction"),
]
#: The paper's Table 1: (mean, standard error) over 5 seeds; None where it gives none.
PAPER: dict[str, dict[str, tuple[float, float] | None]] = {
    "none": {"controllable_loss": (0.624, 0.087), "stochastic_loss": None},
    "low": {"controllable_loss": (0.781, 0.079), "stochastic_loss": (0.739, 0.047)},
    "high": {"controllable_loss": (1.046, 0.017), "stochastic_loss": (0.607, 0.021)},
    "correlated": {"controllable_loss": (1.997, 0.022), "stochastic_loss": (0.599, 0.036)},
    "noise-copy": {"controllable_loss": (0.415, 0.020), "stochastic_loss": (0.898, 0.049)},
    "action-prediction": {"controllable_loss": (0.295, 0.011), "stochastic_loss": (0.986, 0.002)},
}


@dataclass(frozen=True)
class Plan:
    """Sizes of a run; ``QUICK`` is the reduced version the tests use."""

    budget: str = "released"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    episodes: int | None = None  # None: the recipe's
    episode_length: int | None = None
    label_fraction: float | None = None

    @property
    def eval_transitions(self) -> int:
        return EVAL_TRANSITIONS[self.budget]


QUICK = Plan(budget="quick", seeds=(0, 1), episodes=60, episode_length=40, label_fraction=0.1)


def protocol_name(variants: list[str]) -> str:
    """``published``, or the variants' names joined by "+"."""
    return "+".join(variants) if variants else "published"


def recipe_of(training: Training, variants: list[str]) -> str:
    """The training's recipe under the data process the variants ask for."""
    if "package-data" in variants:
        return training.recipe.replace("table1-", "table1-package-", 1)
    return training.recipe


# --------------------------------------------------------------------------------------------
# Datasets, jobs and the cache
# --------------------------------------------------------------------------------------------


def dataset_path(recipe: str, root: Path, plan: Plan) -> Path:
    """Build the recipe's dataset under ``root`` unless it is there with the same recipe."""
    sizes = (
        ("episodes", plan.episodes),
        ("episode_length", plan.episode_length),
        ("label_fraction", plan.label_fraction),
    )
    overrides = {k: v for k, v in sizes if v is not None}
    config = CollectConfig.from_recipe(RECIPES / f"{recipe}.toml", **overrides)
    if overrides:  # a reduced dataset never takes the standard id
        config = dataclasses.replace(
            config, dataset_id=re.sub(r"-v(\d+)$", r"-quick-v\1", config.dataset_id)
        )
    path = root / config.dataset_id
    if (path / "data" / "metadata.json").is_file():
        stored = LAMDataset(path).collect_config
        if stored != dataclasses.asdict(config):
            raise ValueError(
                f"dataset {str(path)!r} exists but was built with another recipe "
                f"({stored}); remove it or choose another --data-root"
            )
        return path
    print(
        f"collecting {config.dataset_id} ({config.episodes} × {config.episode_length})", flush=True
    )
    collect(config, root=root, progress=False)
    return path


def no_action_scale(dataset: str, folder: Path, eval_transitions: int) -> GridLosses:
    """The per-pixel error of a predictor that knows o but not the action, on the base
    data's held-out trajectories (fitted on its train ones): the authors' constant. Cached
    in ``folder`` by the dataset's fingerprint."""
    fingerprint = LAMDataset(dataset).fingerprint
    path = folder / f"noaction-{fingerprint[:12]}-{eval_transitions}.json"
    if path.is_file():
        return GridLosses(*json.loads(path.read_text()))
    split = DataSplit(dataset, HELD_OUT, SPLIT_SEED, eval_transitions=eval_transitions)
    fit = split.train.subset(np.arange(min(len(split.train), NO_ACTION_FIT)))
    scale = no_action_error(fit.obs(), fit.next_obs(), split.test.obs(), split.test.next_obs())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(list(scale)))
    partial.replace(path)
    return scale


def noise_intensity(recipe: str) -> float:
    """The noise row's intensity of a recipe's environment."""
    config = CollectConfig.from_recipe(RECIPES / f"{recipe}.toml")
    return GridLAMConfig.from_preset(config.preset, **config.env_kwargs).noise_intensity


def model_config(
    arch: str, training: Training, budget: str, variants: list[str], score_dataset: str
) -> Any:
    cls = get_lam(ARCHS[arch])
    model_variants = {} if arch == "ours" else MODEL_VARIANTS
    options = {k: v for name in variants for k, v in model_variants.get(name, {}).items()}
    return cls.Config(
        augment=training.augment,
        noise_copy=training.noise_copy,
        action_prediction=training.action_prediction,
        score_dataset=score_dataset,
        **BUDGETS[arch][budget],
        **options,
    )


def table_row(
    arch: str,
    plan: Plan,
    protocol: str,
    row: str,
    training: str,
    seed: int,
    metrics: dict,
    scale: GridLosses,
    intensity: float,
) -> dict:
    noisy = not math.isnan(metrics["stochastic_loss"])
    published = published_table1_losses(
        metrics["scored_controllable_mse"], metrics["scored_stochastic_mse"], intensity
    )
    return {
        "row": row,
        "setting": training,
        "seed": seed,
        "protocol": protocol,
        "arch": arch,
        "budget": plan.budget,
        "controllable_loss": published.controllable,
        "stochastic_loss": published.stochastic,
        "controllable_loss_signal": metrics["controllable_loss"],
        "controllable_loss_noaction": metrics["controllable_mse"] / scale.controllable,
        "stochastic_loss_signal": metrics["stochastic_loss"],
        "stochastic_loss_noaction": (
            metrics["stochastic_mse"] / scale.stochastic if noisy else math.nan
        ),
        "perplexity": metrics["perplexity"],
        "action_accuracy": metrics["action_accuracy"],
        "scored_on": metrics["scored_on"],
    }


# --------------------------------------------------------------------------------------------
# Table, directions and plots
# --------------------------------------------------------------------------------------------


def summarise(rows: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """(arch, setting) -> metric -> (mean, standard error) over seeds."""
    values: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for key in (*LOSSES, *HELD_OUT_METRICS):
            values[(r["arch"], r["setting"])][key].append(r[key])
    return {cell: {k: mean_stderr(v) for k, v in m.items()} for cell, m in values.items()}


def _cell(stat: tuple[float, float] | None) -> str:
    if stat is None or math.isnan(stat[0]):
        return "–"
    return f"{stat[0]:.3f} ± {stat[1]:.3f}"


def direction(
    row: tuple[float, float] | None, base: tuple[float, float] | None
) -> tuple[str, bool] | None:
    """(up/down/same, beyond 2 s.e.) of a row against the base: the difference of the means
    against twice the standard error of that difference."""
    if row is None or base is None or math.isnan(row[0]) or math.isnan(base[0]):
        return None
    difference = row[0] - base[0]
    way = "up" if difference > 0 else "down" if difference < 0 else "same"
    return way, abs(difference) > 2 * math.hypot(row[1], base[1])


def _direction_text(ours, paper) -> str:
    if ours is None:
        return "–"
    text = f"{ours[0]}{'' if ours[1] else ' (within 2 s.e.)'}"
    if paper is not None:
        text += ", as published" if ours[0] == paper[0] else f", published: {paper[0]}"
    return text


def markdown_losses(stats: dict, arch: str, table: list[tuple[str, str]]) -> str:
    """The published values beside ours, and each row's direction against the base."""
    lines = [
        "| row | controllable ↓ published | controllable ↓ ours | stochastic ↑ published | "
        "stochastic ↑ ours | vs base: controllable | vs base: stochastic |",
        "|---|---|---|---|---|---|---|",
    ]
    base_ours = stats.get((arch, BASE))
    for row, training in table:
        ours, paper = stats[(arch, training)], PAPER.get(training, {})
        cells = [row]
        moves = []
        for key in LOSSES:
            cells += [_cell(paper.get(key)), _cell(ours[key])]
            if key == "stochastic_loss" and training == "none":
                moves.append("– (no noise row: a raw error, not comparable)")
                continue
            if training == BASE or base_ours is None:
                moves.append("(base)" if training == BASE else "–")
                continue
            mine = direction(ours[key], base_ours[key])
            published = direction(paper.get(key), PAPER[BASE][key])
            moves.append(_direction_text(mine, published))
        lines.append("| " + " | ".join(cells + moves) + " |")
    return "\n".join(lines)


def markdown_held_out(stats: dict, arch: str, table: list[tuple[str, str]]) -> str:
    lines = [
        "| row | " + " | ".join(HELD_OUT_METRICS.values()) + " |",
        "|---|" + "---|" * len(HELD_OUT_METRICS),
    ]
    for row, training in table:
        s = stats[(arch, training)]
        lines.append(f"| {row} | " + " | ".join(_cell(s[k]) for k in HELD_OUT_METRICS) + " |")
    return "\n".join(lines)


def plot_bars(stats: dict, arch: str, table: list, path: Path, title: str) -> Path:
    labels = [row.replace(": ", ":\n") for row, _ in table]
    x = np.arange(len(table))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    for ax, (key, name) in zip(axes, LOSSES.items(), strict=True):
        means = [stats[(arch, t)][key][0] for _, t in table]
        errors = [stats[(arch, t)][key][1] for _, t in table]
        paper = [PAPER.get(t, {}).get(key) for _, t in table]
        ax.bar(x - 0.2, [p[0] if p else np.nan for p in paper], 0.4,
               yerr=[p[1] if p else 0 for p in paper], capsize=3, color="0.7",
               label="published")  # fmt: skip
        ax.bar(x + 0.2, np.nan_to_num(means, nan=0.0), 0.4, yerr=np.nan_to_num(errors),
               capsize=3, color="C0", label=f"this run ({ARCHS[arch]})")  # fmt: skip
        ax.set_title(name, fontsize=10)
        ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


#: The runner's defaults here: the device CUDA when there is one; --workers, when not
#: given, 1 on a GPU.
RUNNER = sweep.RunnerOptions(workers=2, device="auto")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch",
        choices=[*ARCHS, "all"],
        default="published",
        help="which model: the published one (default), ours, or both",
    )
    parser.add_argument(
        "--budget",
        choices=["released", "text", "small"],
        default="released",
        help="training length: the released code's (default), the text's 16k "
        "updates, or the small CPU budget",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        choices=list(VARIANTS),
        metavar="NAME",
        help="a named variant of the published protocol, repeatable: "
        + "; ".join(f"{name}: {text}" for name, text in VARIANTS.items()),
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(TRAININGS),
        default=list(TRAININGS),
        metavar="SETTING",
        help=f"train only these settings, and give their rows (default: all of "
        f"{', '.join(TRAININGS)})",
    )
    parser.add_argument("--quick", action="store_true", help="reduced run for the tests")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (default 5)")
    parser.add_argument("--out", type=Path, default=Path("outputs/table1"), help="output folder")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="where datasets are built or reused (default: Minari's root; --quick: <out>/datasets)",
    )
    sweep.add_runner_flags(
        parser, RUNNER, skip=("overwrite",), shown={"workers": "2 on the CPU, 1 on a GPU"}
    )
    args = parser.parse_args(argv)
    args.settings = list(dict.fromkeys(args.settings))
    args.variant = sorted(set(args.variant))
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    model_only = [v for v in args.variant if v in MODEL_VARIANTS]
    if args.arch == "ours" and model_only:
        parser.error(
            f"--variant {', '.join(model_only)} changes the published model; --arch ours "
            "has its own (use --arch published or all)"
        )
    try:
        runner = sweep.runner_options(args, RUNNER)
        device = runner.resolved_device()
    except ValueError as error:
        parser.error(str(error))
    if not hasattr(args, "workers") and device.startswith("cuda"):
        runner = dataclasses.replace(runner, workers=1)  # one GPU: one job at a time
    args.runner = dataclasses.replace(runner, device=device)
    args.device, args.workers = device, args.runner.workers
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    plan = QUICK if args.quick else Plan(budget=args.budget, seeds=tuple(range(args.seeds)))
    archs = list(ARCHS) if args.arch == "all" else [args.arch]
    protocol = protocol_name(args.variant)
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.data_root or (args.out / "datasets" if args.quick else default_root())
    recipes = sorted({recipe_of(TRAININGS[name], args.variant) for name in {*args.settings, BASE}})
    paths = {recipe: str(dataset_path(recipe, root, plan)) for recipe in recipes}
    base_path = paths[recipe_of(TRAININGS[BASE], args.variant)]
    cache = args.runner.cache_folder(args.out)
    scale = no_action_scale(base_path, cache, plan.eval_transitions)
    print(
        f"protocol {protocol}; no-action scale of the held-out metrics (per-pixel error of a "
        f"predictor that knows o but not the action, base data): controllable "
        f"{scale.controllable:.4f}, stochastic {scale.stochastic:.4f}",
        flush=True,
    )
    own_data = "own-data-scoring" in args.variant
    jobs = {}
    for arch in archs:
        for name, training in TRAININGS.items():
            if name not in args.settings:
                continue
            on_base = training.scored_on_base and not own_data
            config = model_config(
                arch, training, plan.budget, args.variant, base_path if on_base else ""
            )
            suffix = "" if protocol == "published" else f"_{protocol}"
            jobs[(arch, name)] = sweep.Job(
                name=f"{arch}_{plan.budget}_{name}{suffix}",
                method=ARCHS[arch],
                config=config,
                dataset=paths[recipe_of(training, args.variant)],
                seeds=plan.seeds,
                held_out=HELD_OUT,
                split_seed=SPLIT_SEED,
                eval_transitions=plan.eval_transitions,
                eval_dataset=base_path if on_base else None,
            )
    table = [row for row in TABLE if row[1] in args.settings]
    print(
        f"{len(archs)} model(s) × {len(args.settings)} settings × {len(plan.seeds)} seeds, "
        f"budget {plan.budget}:",
        end=" ",
    )
    if args.workers == 1 and args.runner.ray is None and not args.device.startswith("cuda"):
        torch.set_num_threads(os.cpu_count() or 1)  # one process: every core
    done = sweep.run(
        list(jobs.values()), sweep.ResultCache(cache), args.runner, pictures=args.out / "pictures"
    )
    intensities = {name: noise_intensity(t.recipe) for name, t in TRAININGS.items()}
    rows = [
        table_row(
            arch,
            plan,
            protocol,
            row,
            training,
            seed,
            done[(jobs[(arch, training)].name, seed)],
            scale,
            intensities[training],
        )
        for arch in archs
        for row, training in table
        for seed in plan.seeds
    ]
    csv_path = args.out / f"table1_{plan.budget}.csv"
    write_csv(rows, csv_path, COLUMNS)
    rows = read_csv(csv_path, text=TEXT_COLUMNS, integers=("seed",))  # the table reads the CSV
    stats = summarise(rows)
    sections, written = [], [csv_path]
    for arch in archs:
        config = jobs[(arch, table[0][1])].config
        length = f"{config.steps:,} updates of {config.batch_size:,}"
        sections.append(
            f"## {arch} model ({ARCHS[arch]}; {length}; protocol {protocol})\n\n"
            f"Published losses (the authors' scale: last {config.score_updates} training "
            f"updates, controllable ÷ 0.060, stochastic ÷ the noise row's variance):\n\n"
            f"{markdown_losses(stats, arch, table)}\n\n"
            f"Held-out metrics (eval mode, {plan.eval_transitions:,} held-out transitions at "
            f"most):\n\n{markdown_held_out(stats, arch, table)}\n"
        )
        written.append(
            plot_bars(
                stats,
                arch,
                table,
                args.out / f"table1_{plan.budget}_{arch}.png",
                f"Table 1, {arch} model, {plan.budget} budget, protocol {protocol}: mean ± "
                f"s.e. over {len(plan.seeds)} seeds (grey: published, 5 seeds)",
            )
        )
    notes = (
        f"Mean ± standard error over {len(plan.seeds)} seeds (published: 5). Directions: "
        "each row against the low-noise base; '(within 2 s.e.)' when the difference of the "
        "means is within twice its standard error. Held-out scales: per-pixel error over "
        "the signal's variance, and over the error of a predictor that knows o but not the "
        f"action on the base data (controllable {scale.controllable:.4f}, stochastic "
        f"{scale.stochastic:.4f})."
    )
    elapsed = time.perf_counter() - start
    md_path = args.out / f"table1_{plan.budget}.md"
    md_path.write_text(
        f"# Table 1: grid VQ LAM, {plan.budget} budget ({elapsed:.0f} s)\n\n"
        + "\n".join(sections)
        + f"\n{notes}\n"
    )
    written.insert(1, md_path)
    print(md_path.read_text())
    for path in written:
        print(f"wrote {path}")
    print(f"pictures of each setting trained: {args.out / 'pictures'}/<model>_<budget>_<setting>")
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
