"""Reproduce Table 1: the grid VQ LAM's four comparisons (SPEC, "Experiments to reproduce"),
with the published model on the published data (PROTOCOLS.md, "Grid VQ LAM").

    python examples/reproduce_table1.py --device cuda          # the published model, 5 seeds
    python examples/reproduce_table1.py --budget small         # the CPU budget (<= 30 min, 2 cores)
    python examples/reproduce_table1.py --budget text          # the text's 16k updates
    python examples/reproduce_table1.py --arch ours            # the package's own VQ LAM
    python examples/reproduce_table1.py --arch all             # both
    python examples/reproduce_table1.py --quick                # seconds, for the tests

Models (``--arch``): ``published`` (default), the model behind the paper's Table 1
(``vq-published``, :mod:`lam_models.lams.vq_published`); ``ours``, the package's own VQ LAM
(``vq``, :mod:`lam_models.lams.vq`: a translation-invariant IDM and an EMA codebook, its
own training settings); ``all``, both.

Budgets (``--budget``; the CSV's ``budget`` column):

- ``released`` (default): the released code's length, 1,600 updates of 1,024 examples
  (400 epochs of one frame pair from each of the 3,800 training trajectories). A GPU job
  (``--device cuda``): the published model costs about 0.8 CPU-seconds per update at
  batch 1,024, so on 2 CPU cores the table takes hours.
- ``text``: the paper's text, 16,000 updates of 1,024.
- ``small``: the published architecture, data and losses, trained on fewer examples
  (:data:`BUDGETS`) so that the whole published table fits in 30 minutes on 2 idle CPU
  cores; it shows the table's directions less sharply than the released length.

Ours has one length (its default, 16k updates of 128) for ``released`` and ``text``,
and a quarter of it for ``small``.

Data, as published: the recipes ``datasets/table1-grid-*.toml`` (4,000 trajectories × 200
frames; 1% of the trajectories labelled), built under Minari's root (or ``--data-root``)
or reused when already built with the same recipe. 95% of the trajectories train, 5% are
held out: one split (seed 0) shared by every seed, as the released code's fixed split, so
the standard errors measure the training's randomness. One training example is one random
frame pair; labelled examples reach a batch at their natural rate.

The rows, every one on the published base (uniform policy, low noise) unless it says
otherwise, each model scored on its own dataset's held-out trajectories:

- noise: none / low / high.
- policy: uniform / correlated (snaking, ε = 0.05).
- augmentation: without / shift (the text: ±1-column periodic shifts) / noise copy (the
  released code: the noise row copied so the latent cannot see it change).
- action prediction: without / with (1% of the trajectories labelled; pull weight 0.1
  for the published model).

"Without" and "uniform" rows are the models of the low-noise row (trained once).

Losses on two scales (SPEC, "Metrics"): ``*_loss_signal``, the FDM's per-pixel error over
the variance of the signal (the text), and ``*_loss_noaction``, the same error over that
of a predictor that knows o but not the action (the authors' code divides by a constant,
0.060: here it is computed from the base data's held-out trajectories, printed, and used
for every row, as a constant). ``controllable_loss`` and ``stochastic_loss`` repeat the
signal scale (the columns of earlier versions).

Resumable: each finished setting × seed is cached under ``<out>/cache`` (keyed by the model,
its settings and the dataset's fingerprint), so a rerun trains only what is missing; the
progress lines give an ETA. Seeds of a setting train together as one batched model;
settings run in ``--workers`` processes (one torch thread each) on the CPU.

Writes ``<out>/table1_<budget>.csv`` (:data:`COLUMNS`), ``table1_<budget>.md`` (mean ±
standard error per setting and model, and whether each comparison moves the published
way by more than the standard errors), ``table1_<budget>_<arch>.png`` (bars) and, for
each setting trained, ``pictures/<arch>_<budget>_<setting>/codes.png`` (what each code
means: the mean ô′ − o and examples of ô′ given each code, seed 0) and
``transitions.png`` (held-out o, o′, ô′ and the chosen code).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
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

from lam_envs.cli import Parser  # noqa: E402
from lam_envs.collect import CollectConfig, collect, default_root  # noqa: E402
from lam_models import sweep  # noqa: E402
from lam_models.data import LAMDataset  # noqa: E402
from lam_models.lam import get_lam, resolve_device  # noqa: E402
from lam_models.metrics import GridLosses, mean_stderr, no_action_error  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.split import DataSplit  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "datasets"
HELD_OUT = 0.05  # of the trajectories (PROTOCOLS.md)
SPLIT_SEED = 0  # one train/held-out split for every seed
NO_ACTION_FIT = 200_000  # train transitions the no-action predictor is estimated from

ARCHS = {"published": "vq-published", "ours": "vq"}
#: Per model and budget: the settings that differ from the model's defaults.
BUDGETS: dict[str, dict[str, dict[str, int]]] = {
    "published": {
        "released": {"steps": 1600, "batch_size": 1024},
        "text": {"steps": 16_000, "batch_size": 1024},
        "small": {"steps": 500, "batch_size": 128},
        "quick": {"steps": 20, "batch_size": 64, "log_every": 10},
    },
    "ours": {
        "released": {},
        "text": {},
        "small": {"steps": 4000},
        "quick": {"steps": 150},
    },
}
EVAL_TRANSITIONS = {"released": 20_000, "text": 20_000, "small": 10_000, "quick": 2000}

COLUMNS = [
    "group",
    "setting",
    "seed",
    "controllable_loss",
    "stochastic_loss",
    "perplexity",
    "action_accuracy",
    "arch",
    "augmentation",
    "budget",
    "controllable_loss_signal",
    "controllable_loss_noaction",
    "stochastic_loss_signal",
    "stochastic_loss_noaction",
]
METRICS = [
    "controllable_loss_signal",
    "controllable_loss_noaction",
    "stochastic_loss_signal",
    "stochastic_loss_noaction",
    "perplexity",
    "action_accuracy",
]
HEADERS = {
    "controllable_loss_signal": "controllable ↓ (signal)",
    "controllable_loss_noaction": "controllable ↓ (no-action)",
    "stochastic_loss_signal": "stochastic ↑ (signal)",
    "stochastic_loss_noaction": "stochastic ↑ (no-action)",
    "perplexity": "perplexity",
    "action_accuracy": "action accuracy ↑",
}


@dataclass(frozen=True)
class Training:
    """One distinct setting: trained once for all seeds, used by one or more rows."""

    recipe: str  # datasets/<recipe>.toml
    augment: bool = False  # the text's shift
    noise_copy: bool = False  # the released code's noise-row copy
    action_prediction: bool = False

    @property
    def augmentation(self) -> str:
        return "shift" if self.augment else "noise-copy" if self.noise_copy else "none"


TRAININGS = {
    "none": Training("table1-grid-none-uniform"),
    "low": Training("table1-grid-low-uniform"),
    "high": Training("table1-grid-high-uniform"),
    "correlated": Training("table1-grid-low-correlated"),
    "shift": Training("table1-grid-low-uniform", augment=True),
    "noise-copy": Training("table1-grid-low-uniform", noise_copy=True),
    "action-prediction": Training("table1-grid-low-uniform", action_prediction=True),
}
BASE = "low"  # the published base: its data give the no-action scale

# (group, setting, training): the rows of the table, in order.
TABLE = [
    ("noise", "none", "none"),
    ("noise", "low", "low"),
    ("noise", "high", "high"),
    ("policy", "uniform", "low"),
    ("policy", "correlated", "correlated"),
    ("augmentation", "without", "low"),
    ("augmentation", "shift (text)", "shift"),
    ("augmentation", "noise copy (released)", "noise-copy"),
    ("action prediction", "without", "low"),
    ("action prediction", "with (1% of trajectories)", "action-prediction"),
]


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
            config, dataset_id=config.dataset_id.removesuffix("-v0") + "-quick-v0"
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


def model_config(arch: str, training: Training, budget: str) -> Any:
    cls = get_lam(ARCHS[arch])
    return cls.Config(
        augment=training.augment,
        noise_copy=training.noise_copy,
        action_prediction=training.action_prediction,
        **BUDGETS[arch][budget],
    )


def no_action_scale(dataset: str, folder: Path, eval_transitions: int) -> GridLosses:
    """The per-pixel error of a predictor that knows o but not the action, on the base
    data's held-out trajectories (fitted on its train ones): the authors' constant. Cached
    in ``folder`` by the dataset's fingerprint."""
    fingerprint = LAMDataset(dataset).fingerprint
    path = folder / f"noaction-{fingerprint[:12]}-{eval_transitions}.json"
    if path.is_file():
        return GridLosses(*json.loads(path.read_text()))
    split = DataSplit(dataset, HELD_OUT, SPLIT_SEED, None, None, eval_transitions)
    fit = split.train.subset(np.arange(min(len(split.train), NO_ACTION_FIT)))
    scale = no_action_error(fit.obs(), fit.next_obs(), split.test.obs(), split.test.next_obs())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(list(scale)))
    partial.replace(path)
    return scale


def table_row(
    arch: str,
    plan: Plan,
    group: str,
    setting: str,
    training: str,
    seed: int,
    metrics: dict,
    scale: GridLosses,
) -> dict:
    noisy = not math.isnan(metrics["stochastic_loss"])
    values = {
        "controllable_loss_signal": metrics["controllable_loss"],
        "controllable_loss_noaction": metrics["controllable_mse"] / scale.controllable,
        "stochastic_loss_signal": metrics["stochastic_loss"],
        "stochastic_loss_noaction": metrics["stochastic_mse"] / scale.stochastic
        if noisy
        else math.nan,
        "perplexity": metrics["perplexity"],
        "action_accuracy": metrics["action_accuracy"],
    }
    return {
        "group": group,
        "setting": setting,
        "seed": seed,
        "arch": arch,
        "augmentation": TRAININGS[training].augmentation,
        "budget": plan.budget,
        "controllable_loss": values["controllable_loss_signal"],
        "stochastic_loss": values["stochastic_loss_signal"],
        **values,
    }


# --------------------------------------------------------------------------------------------
# Table, directions and plots
# --------------------------------------------------------------------------------------------


def summarise(rows: list[dict]) -> dict[tuple[str, str, str], dict[str, tuple[float, float]]]:
    """(arch, group, setting) -> metric -> (mean, standard error) over seeds."""
    values: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for key in METRICS:
            values[(r["arch"], r["group"], r["setting"])][key].append(r[key])
    return {cell: {k: mean_stderr(v) for k, v in m.items()} for cell, m in values.items()}


def _cell(stat: tuple[float, float]) -> str:
    mean, err = stat
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {err:.3f}"


def markdown_table(stats: dict, arch: str, table: list[tuple[str, str, str]]) -> str:
    lines = [
        "| group | setting | " + " | ".join(HEADERS[k] for k in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for group, setting, _ in table:
        s = stats[(arch, group, setting)]
        lines.append(f"| {group} | {setting} | " + " | ".join(_cell(s[k]) for k in METRICS) + " |")
    return "\n".join(lines)


# (group, from setting, to setting, metric, the published direction)
COMPARISONS = [
    ("noise", "none", "low", "controllable_loss", "up"),
    ("noise", "low", "high", "controllable_loss", "up"),
    ("policy", "uniform", "correlated", "controllable_loss", "up"),
    ("augmentation", "without", "shift (text)", "controllable_loss", "down"),
    ("augmentation", "without", "noise copy (released)", "controllable_loss", "down"),
    ("action prediction", "without", "with (1% of trajectories)", "controllable_loss", "down"),
    ("action prediction", "without", "with (1% of trajectories)", "action_accuracy", "up"),
]


def directions(stats: dict, arch: str) -> list[str]:
    """Whether each comparison (of the rows trained) moves the published way, on both loss
    scales, and by more than the two standard errors together."""
    lines = []
    for group, a, b, metric, way in COMPARISONS:
        if (arch, group, a) not in stats or (arch, group, b) not in stats:
            continue
        keys = [f"{metric}_signal", f"{metric}_noaction"] if metric.endswith("loss") else [metric]
        parts = []
        for key in keys:
            (ma, ea), (mb, eb) = stats[(arch, group, a)][key], stats[(arch, group, b)][key]
            moves = mb > ma if way == "up" else mb < ma
            beyond = abs(mb - ma) > ea + eb
            parts.append(
                f"{key} {ma:.3f} -> {mb:.3f}: {'yes' if moves else 'NO'}, "
                f"{'beyond' if beyond else 'within'} the errors"
            )
        lines.append(f"- {group} {a} -> {b} (published: {way}): " + "; ".join(parts))
    return lines


def plot_bars(stats: dict, arch: str, table: list, path: Path, title: str) -> Path:
    labels = [f"{g}\n{s}" for g, s, _ in table]
    groups = list(dict.fromkeys(g for g, _, _ in table))
    colours = [f"C{groups.index(g)}" for g, _, _ in table]
    fig, axes = plt.subplots(3, 2, figsize=(14, 9), sharex=True)
    for ax, key in zip(axes.flat, METRICS, strict=True):
        means = [stats[(arch, g, s)][key][0] for g, s, _ in table]
        errors = [stats[(arch, g, s)][key][1] for g, s, _ in table]
        ax.bar(
            range(len(table)),
            np.nan_to_num(means),
            yerr=np.nan_to_num(errors),
            color=colours,
            capsize=3,
        )
        ax.set_title(HEADERS[key], fontsize=9)
    for ax in axes[-1]:
        ax.set_xticks(range(len(table)), labels, fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


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
        "--settings",
        nargs="+",
        choices=list(TRAININGS),
        default=list(TRAININGS),
        metavar="SETTING",
        help=f"train only these settings, and give the rows that use them (default: all of "
        f"{', '.join(TRAININGS)})",
    )
    parser.add_argument("--quick", action="store_true", help="reduced run for the tests")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (default 5)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--out", type=Path, default=Path("outputs/table1"), help="output folder")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="where datasets are built or reused (default: Minari's root; --quick: <out>/datasets)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes of one torch thread each (default: 2 on the CPU, 1 on a GPU)",
    )
    args = parser.parse_args(argv)
    args.settings = list(dict.fromkeys(args.settings))
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        parser.error(str(error))
    if args.workers is None:
        args.workers = 1 if args.device.startswith("cuda") else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    plan = QUICK if args.quick else Plan(budget=args.budget, seeds=tuple(range(args.seeds)))
    archs = list(ARCHS) if args.arch == "all" else [args.arch]
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.data_root or (args.out / "datasets" if args.quick else default_root())
    recipes = sorted({TRAININGS[name].recipe for name in {*args.settings, BASE}})
    paths = {recipe: str(dataset_path(recipe, root, plan)) for recipe in recipes}
    cache = args.out / "cache"
    scale = no_action_scale(paths[TRAININGS[BASE].recipe], cache, plan.eval_transitions)
    print(
        f"no-action scale (per-pixel error of a predictor that knows o but not the action, "
        f"base data): controllable {scale.controllable:.4f} (the authors' constant: 0.060), "
        f"stochastic {scale.stochastic:.4f}",
        flush=True,
    )
    jobs = {
        (arch, name): sweep.Job(
            name=f"{arch}_{plan.budget}_{name}",
            method=ARCHS[arch],
            config=model_config(arch, training, plan.budget),
            dataset=paths[training.recipe],
            seeds=plan.seeds,
            held_out=HELD_OUT,
            split_seed=SPLIT_SEED,
            eval_transitions=plan.eval_transitions,
        )
        for arch in archs
        for name, training in TRAININGS.items()
        if name in args.settings
    }
    table = [row for row in TABLE if row[2] in args.settings]
    print(
        f"{len(archs)} model(s) × {len(args.settings)} settings × {len(plan.seeds)} seeds, "
        f"budget {plan.budget}:",
        end=" ",
    )
    if args.workers == 1 and not args.device.startswith("cuda"):
        torch.set_num_threads(os.cpu_count() or 1)  # one process: every core
    done = sweep.run(
        list(jobs.values()),
        sweep.ResultCache(cache),
        args.workers,
        args.device,
        args.out / "pictures",
    )
    results = {
        (arch, name, seed): done[(job.name, seed)]
        for (arch, name), job in jobs.items()
        for seed in job.seeds
    }

    rows = [
        table_row(
            arch, plan, group, setting, training, seed, results[(arch, training, seed)], scale
        )
        for arch in archs
        for group, setting, training in table
        for seed in plan.seeds
    ]
    csv_path = args.out / f"table1_{plan.budget}.csv"
    write_csv(rows, csv_path, COLUMNS)
    # the table and plots read what was written
    rows = read_csv(
        csv_path, text=("group", "setting", "arch", "augmentation", "budget"), integers=("seed",)
    )
    stats = summarise(rows)
    sections, written = [], [csv_path]
    lengths = {}
    for arch in archs:
        config = model_config(arch, TRAININGS[BASE], plan.budget)
        lengths[arch] = f"{config.steps:,} updates of {config.batch_size:,}"
    for arch in archs:
        text, checks = markdown_table(stats, arch, table), "\n".join(directions(stats, arch))
        sections.append(
            f"## {arch} model ({ARCHS[arch]}; {lengths[arch]})\n\n{text}\n\n"
            f"Published directions:\n\n{checks or '(no comparison among these rows)'}\n"
        )
        written.append(
            plot_bars(
                stats,
                arch,
                table,
                args.out / f"table1_{plan.budget}_{arch}.png",
                f"Table 1, {arch} model, {plan.budget} budget: mean ± s.e. over "
                f"{len(plan.seeds)} seeds",
            )
        )
    notes = (
        f"Mean ± standard error over {len(plan.seeds)} seeds, on each dataset's held-out "
        f"trajectories ({plan.eval_transitions:,} transitions at most). Losses: per-pixel FDM "
        "error over the signal's variance (the text), and over the error of a predictor that "
        f"knows o but not the action on the base data (controllable {scale.controllable:.4f}, "
        f"stochastic {scale.stochastic:.4f}; the authors' code uses 0.060). Stochastic loss is "
        "undefined without noise (n/a). Every row: uniform policy, low noise, unless it says "
        "otherwise."
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
