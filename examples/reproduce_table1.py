"""Reproduce Table 1: the grid VQ LAM's four comparisons (SPEC, "Experiments to reproduce").

    python examples/reproduce_table1.py            # 5 seeds × 16k updates (<= 20 min, 2 cores)
    python examples/reproduce_table1.py --quick    # 2 seeds, tiny datasets (seconds, for tests)

Builds the datasets from the recipes in ``datasets/grid-*.toml`` (or reuses them when already
built with the same recipe; under Minari's root, or ``--data-root``), trains 5 seeds per
setting (the package's VQ LAM, :mod:`lam_models.lams.vq`) and scores every model on held-out
episodes:
controllable loss (rows 0-2), stochastic loss (row 3), codebook perplexity and the action
accuracy of the best code→action map (SPEC, "Metrics").

The comparisons, each a group of rows:

- noise: none / low / high, uniform policy.
- policy: uniform vs correlated (snaking, ε = 0.05), low noise. The correlated models are
  scored on the held-out episodes of the uniform low-noise dataset (same environment and
  noise): on their own data the FDM predicts o' from o alone, so a low loss there says
  nothing about the action in z. This is the SPEC's practice for the linear χ sweep
  (probes on random-policy data).
- augmentation: without / with, base **low noise, correlated policy** (scored on uniform
  data as above). Our IDM is translation invariant by construction (periodic convolution
  and global max-pooling, see ``lam_models.nn.ConvEncoder``), so on uniform data it cannot
  encode the square's position and the shift augmentation has nothing to remove (measured:
  no difference beyond the seeds' spread). Under the correlated policy the FDM instead
  learns the snake's next cell from the position in o; the FDM-side shift (Aug2) hides the
  absolute column, so z has to carry the move: the published direction.
- action prediction: without / with 1% labels, base **low noise, uniform policy**: there
  the noise row competes with the action for the 5 codes and the plain LAM loses most of
  the action; the labelled transitions (drawn as 10% of every batch, λ_a = 5; see
  ``VQConfig.labelled_share``) pull the codes back to the actions. On the correlated
  base the labelled actions are almost all the snake's, and the gain is smaller.

"Without" rows are the models of the matching noise / policy row (same configuration,
trained once). The seeds of a setting train together as one batched model
(``VQLAM.train``); the six distinct settings run in ``--workers`` processes with one
torch thread each.

Writes ``<out>/table1_results.csv`` (columns: group, setting, seed, controllable_loss,
stochastic_loss, perplexity, action_accuracy), ``table1.md`` (mean ± standard error per
setting and whether each comparison moves in the published direction),
``table1_transitions.png`` (held-out o, o', ô' and the chosen code of the action-prediction
model) and ``table1_bars.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs.collect import CollectConfig, collect, default_root  # noqa: E402
from lam_models.data import LAMDataset  # noqa: E402
from lam_models.lam import train_and_score  # noqa: E402
from lam_models.lams.vq import VQLAM, VQConfig, plot_transitions  # noqa: E402
from lam_models.metrics import mean_stderr  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.split import DataSplit  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "datasets"
COLUMNS = [
    "group",
    "setting",
    "seed",
    "controllable_loss",
    "stochastic_loss",
    "perplexity",
    "action_accuracy",
]
METRICS = COLUMNS[3:]


@dataclass(frozen=True)
class Training:
    """One distinct configuration: trained once for all seeds, used by one or more rows."""

    recipe: str  # datasets/<recipe>.toml
    eval_recipe: str | None = None  # score on this dataset's held-out episodes
    augment: bool = False
    action_prediction: bool = False


TRAININGS = {
    "none": Training("grid-none-uniform"),
    "low": Training("grid-low-uniform"),
    "high": Training("grid-high-uniform"),
    "correlated": Training("grid-low-correlated", eval_recipe="grid-low-uniform"),
    "correlated+aug": Training("grid-low-correlated", eval_recipe="grid-low-uniform", augment=True),
    "low+ap": Training("grid-low-uniform", action_prediction=True),
}

# (group, setting, training): the rows of the table, in order.
TABLE = [
    ("noise", "none", "none"),
    ("noise", "low", "low"),
    ("noise", "high", "high"),
    ("policy", "uniform", "low"),
    ("policy", "correlated", "correlated"),
    ("augmentation", "without", "correlated"),
    ("augmentation", "with", "correlated+aug"),
    ("action prediction", "without", "low"),
    ("action prediction", "with", "low+ap"),
]
GROUP_NOTES = {
    "noise": "uniform policy",
    "policy": "low noise; scored on uniform-policy episodes",
    "augmentation": "low noise, correlated policy; scored on uniform-policy episodes",
    "action prediction": "low noise, uniform policy, 1% labels",
}


@dataclass(frozen=True)
class Plan:
    """Sizes of a run; ``QUICK`` is the reduced version the tests use."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 16_000
    episodes: int | None = None  # None: the recipe's
    episode_length: int | None = None
    eval_transitions: int = 20_000


FULL = Plan()
QUICK = Plan(seeds=(0, 1), steps=150, episodes=40, episode_length=50, eval_transitions=2000)


# --------------------------------------------------------------------------------------------
# Datasets and training
# --------------------------------------------------------------------------------------------


def dataset_path(recipe: str, root: Path, plan: Plan) -> Path:
    """Build the recipe's dataset under ``root`` unless it is there with the same recipe."""
    overrides = {
        k: v
        for k, v in (("episodes", plan.episodes), ("episode_length", plan.episode_length))
        if v is not None
    }
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
    print(f"collecting {config.dataset_id} ({config.episodes} × {config.episode_length})")
    collect(config, root=root, progress=False)
    return path


@dataclass(frozen=True)
class Job:
    """One training: its seeds' splits (by path) and the model's settings."""

    dataset: str
    eval_dataset: str | None
    config: VQConfig
    seeds: tuple[int, ...]
    eval_transitions: int

    def splits(self) -> list[DataSplit]:
        return [
            DataSplit(self.dataset, 0.1, seed, None, self.eval_dataset, self.eval_transitions)
            for seed in self.seeds
        ]


def run_configs(plan: Plan, paths: dict[str, Path]) -> dict[str, Job]:
    """The job of every training."""
    return {
        name: Job(
            dataset=str(paths[t.recipe]),
            eval_dataset=str(paths[t.eval_recipe]) if t.eval_recipe else None,
            config=VQConfig(
                augment=t.augment, action_prediction=t.action_prediction, steps=plan.steps
            ),
            seeds=plan.seeds,
            eval_transitions=plan.eval_transitions,
        )
        for name, t in TRAININGS.items()
    }


def train_all(jobs: dict[str, Job], workers: int) -> dict[str, tuple[VQLAM, list[dict]]]:
    """Train every training's seeds together; the trainings spread over ``workers``."""
    # Longest first (augmentation and action prediction cost more per update).
    order = sorted(jobs, key=lambda n: -(jobs[n].config.augment + jobs[n].config.action_prediction))
    runs = {}
    if workers == 1:
        for name in order:
            start = time.perf_counter()
            runs[name] = train_and_score(
                "vq", jobs[name].config, jobs[name].splits(), jobs[name].seeds
            )
            print(
                f"  {name:<15} {len(jobs[name].seeds)} seeds in "
                f"{time.perf_counter() - start:6.1f} s",
                flush=True,
            )
        return runs
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    ) as pool:
        start = time.perf_counter()
        futures = {
            name: pool.submit(
                train_and_score, "vq", jobs[name].config, jobs[name].splits(), jobs[name].seeds
            )
            for name in order
        }
        for name, future in futures.items():
            runs[name] = future.result()
            print(f"  {name:<15} done at {time.perf_counter() - start:6.1f} s", flush=True)
    return runs


def table_rows(runs: dict[str, tuple[VQLAM, list[dict]]], plan: Plan) -> list[dict]:
    rows = []
    for group, setting, training in TABLE:
        for seed, metrics in zip(plan.seeds, runs[training][1], strict=True):
            metrics = {k: metrics[k] for k in METRICS}
            rows.append({"group": group, "setting": setting, "seed": seed, **metrics})
    return rows


# --------------------------------------------------------------------------------------------
# Table, directions and plots
# --------------------------------------------------------------------------------------------


def summarise(rows: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """(group, setting) -> metric -> (mean, standard error) over seeds."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for key in METRICS:
            values[(r["group"], r["setting"])][key].append(r[key])
    return {
        cell: {key: mean_stderr(v) for key, v in metrics.items()}
        for cell, metrics in values.items()
    }


def _cell(stat: tuple[float, float]) -> str:
    mean, err = stat
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {err:.3f}"


def markdown_table(stats: dict, seeds: int) -> str:
    lines = [
        "| group | setting | controllable loss ↓ | stochastic loss ↑ | perplexity | "
        "action accuracy ↑ |",
        "|---|---|---|---|---|---|",
    ]
    for group, setting, _ in TABLE:
        s = stats[(group, setting)]
        lines.append(f"| {group} | {setting} | " + " | ".join(_cell(s[k]) for k in METRICS) + " |")
    notes = "; ".join(f"{g}: {n}" for g, n in GROUP_NOTES.items())
    lines.append("")
    lines.append(
        f"Mean ± standard error over {seeds} seeds, held-out episodes. Stochastic loss is "
        f"undefined without noise (n/a). Settings: {notes}."
    )
    return "\n".join(lines)


def directions(stats: dict) -> list[str]:
    """Whether each comparison moves the published way, and by more than the errors."""

    def check(text: str, a: tuple[str, str], b: tuple[str, str], key: str, lower: bool) -> str:
        (ma, ea), (mb, eb) = stats[a][key], stats[b][key]
        moves = mb < ma if lower else mb > ma
        beyond = abs(mb - ma) > ea + eb
        verdict = "yes" if moves else "NO"
        return (
            f"- {text}: {key} {ma:.3f} -> {mb:.3f}: direction {verdict}, "
            f"difference {'exceeds' if beyond else 'within'} the standard errors"
        )

    return [
        check("noise none -> low", ("noise", "none"), ("noise", "low"), "controllable_loss", False),
        check("noise low -> high", ("noise", "low"), ("noise", "high"), "controllable_loss", False),
        check("noise low -> high", ("noise", "low"), ("noise", "high"), "stochastic_loss", True),
        check(
            "policy uniform -> correlated",
            ("policy", "uniform"),
            ("policy", "correlated"),
            "controllable_loss",
            False,
        ),
        check(
            "policy uniform -> correlated",
            ("policy", "uniform"),
            ("policy", "correlated"),
            "action_accuracy",
            True,
        ),
        check(
            "augmentation without -> with",
            ("augmentation", "without"),
            ("augmentation", "with"),
            "controllable_loss",
            True,
        ),
        check(
            "action prediction without -> with",
            ("action prediction", "without"),
            ("action prediction", "with"),
            "action_accuracy",
            False,
        ),
        check(
            "action prediction without -> with",
            ("action prediction", "without"),
            ("action prediction", "with"),
            "controllable_loss",
            True,
        ),
    ]


def plot_bars(stats: dict, path: Path, seeds: int) -> Path:
    labels = [f"{g}\n{s}" for g, s, _ in TABLE]
    colours = {g: f"C{i}" for i, g in enumerate(GROUP_NOTES)}
    fig, axes = plt.subplots(2, 2, figsize=(13, 7), sharex=True)
    for ax, key in zip(axes.flat, METRICS, strict=True):
        means = [stats[(g, s)][key][0] for g, s, _ in TABLE]
        errors = [stats[(g, s)][key][1] for g, s, _ in TABLE]
        ax.bar(
            range(len(TABLE)),
            np.nan_to_num(means),
            yerr=np.nan_to_num(errors),
            color=[colours[g] for g, _, _ in TABLE],
            capsize=3,
        )
        ax.set_title(key.replace("_", " "))
    for ax in axes[1]:
        ax.set_xticks(range(len(TABLE)), labels, fontsize=7)
    fig.suptitle(f"Table 1, grid VQ LAM: mean ± s.e. over {seeds} seeds (held-out episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced run for the tests")
    parser.add_argument("--out", type=Path, default=Path("outputs/table1"), help="output folder")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="where datasets are built or reused (default: Minari's root; --quick: <out>/datasets)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes, one torch thread each (default 2)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(1)
    plan = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.data_root or (args.out / "datasets" if args.quick else default_root())
    recipes = {t.recipe for t in TRAININGS.values()} | {
        t.eval_recipe for t in TRAININGS.values() if t.eval_recipe
    }
    paths = {recipe: dataset_path(recipe, root, plan) for recipe in sorted(recipes)}
    configs = run_configs(plan, paths)
    print(
        f"{len(configs)} settings × {len(plan.seeds)} seeds, {plan.steps} updates each, "
        f"{args.workers} worker(s)",
        flush=True,
    )
    runs = train_all(configs, args.workers)

    csv_path = args.out / "table1_results.csv"
    write_csv(table_rows(runs, plan), csv_path, COLUMNS)
    # the table and plots read what was written
    rows = read_csv(csv_path, text=("group", "setting"), integers=("seed",))
    stats = summarise(rows)
    table = markdown_table(stats, len(plan.seeds))
    checks = "\n".join(directions(stats))
    elapsed = time.perf_counter() - start
    md_path = args.out / "table1.md"
    md_path.write_text(
        f"# Table 1: grid VQ LAM ({'quick' if args.quick else 'full'} run, "
        f"{plan.steps} updates, {elapsed:.0f} s)\n\n{table}\n\n"
        f"Published directions:\n\n{checks}\n"
    )
    ap = configs["low+ap"]
    png = plot_transitions(
        runs["low+ap"][0],
        ap.splits()[0],
        args.out / "table1_transitions.png",
        count=8,
        title="low noise, 1% action prediction, seed "
        f"{ap.seeds[0]}: held-out o, o', ô' and the chosen code",
    )
    bars = plot_bars(stats, args.out / "table1_bars.png", len(plan.seeds))
    print(table)
    print("\nPublished directions:\n" + checks)
    for path in (csv_path, md_path, png, bars):
        print(f"wrote {path}")
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
