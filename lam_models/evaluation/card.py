"""The report card: a method scored on the suite's settings (:mod:`.suite`), and the card's
files: ``card.csv`` (one row per method × setting × seed), ``card.md`` (mean ± s.e.) and
``card.png`` (methods × settings; colour: the share of the action the latent holds,
1 − nmse(a); a mark where it holds more of a nuisance than of the action).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_envs.utils.outputs import staged_files
from lam_models.evaluation.metrics import mean_stderr
from lam_models.evaluation.scoring import evaluate, latent_history
from lam_models.evaluation.suite import (
    SUITE_VERSION,
    LatentFn,
    Method,
    Setting,
    Suite,
    call_method,
)
from lam_models.runs import read_csv, write_csv
from lam_models.split import DataSplit

__all__ = [
    "CARD_FILES",
    "COLUMNS",
    "card_markdown",
    "pipeline_return",
    "plot_card",
    "read_card",
    "score_setting",
    "setting_split",
    "write_card",
]

CARD_FILES = ("card.csv", "card.md", "card.png")
COLUMNS = [
    "suite_version",
    "method",
    "setting",
    "seed",
    "nmse_action",
    "action_held",
    "nuisance_held",
    "obs_leakage",
    "normalised_return",
    "seconds",
]


# --------------------------------------------------------------------------------- scoring


def setting_split(setting: Setting, path: str | Path, seed: int) -> DataSplit:
    """The card's split of a setting's dataset for one seed: 10% of the episodes held out
    (at most 20,000 of their transitions scored), the setting's label budget."""
    return DataSplit(
        path,
        held_out=0.1,
        seed=seed,
        label_fraction=setting.label_fraction,
        eval_transitions=20_000,
    )


def score_setting(
    name: str,
    method: Method,
    setting: Setting,
    path: str,
    seeds: Sequence[int],
    device: str,
    with_pipeline: bool = False,
) -> list[dict[str, Any]]:
    """Every seed of one method on one setting: train on the training view, score on the
    held-out episodes. One row per seed."""
    torch.set_num_threads(1)
    rows = []
    for seed in seeds:
        split = setting_split(setting, path, seed)
        start = time.perf_counter()
        latent_fn = call_method(method, split.training_view(), seed, device)
        scores = evaluate(latent_fn, split, nuisance=setting.nuisance)
        row = {
            "suite_version": SUITE_VERSION,
            "method": name,
            "setting": setting.name,
            "seed": seed,
            **_card_metrics(scores, setting),
        }
        if with_pipeline:
            row["normalised_return"] = pipeline_return(latent_fn, split, seed)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    return rows


def _card_metrics(scores: dict[str, Any], setting: Setting) -> dict[str, float]:
    """The card's columns: the action probe, the worst nuisance probe, leakage of o."""
    nuisance = [scores[f"nmse_{n}"] for n in setting.nuisance if math.isfinite(scores[f"nmse_{n}"])]
    return {
        "nmse_action": scores["nmse_action"],
        "action_held": _held(scores["nmse_action"]),
        "nuisance_held": max((_held(v) for v in nuisance), default=math.nan),
        "obs_leakage": _held(scores["nmse_o"]) if "nmse_o" in scores else math.nan,
        **{f"nmse_{n}": scores[f"nmse_{n}"] for n in setting.nuisance},
    }


def _held(nmse: float) -> float:
    """How much of a target the latent holds: 1 − nmse, clipped to [0, 1]."""
    return float(np.clip(1 - nmse, 0.0, 1.0)) if math.isfinite(nmse) else math.nan


def pipeline_return(latent_fn: LatentFn, split: DataSplit, seed: int, steps: int = 1500) -> float:
    """The LAPO-style pipeline (lam_models.pipeline.bc, lam_models.pipeline.rollout) from a
    latent function: π(z | o) on every train transition, a decoder z -> a on the labelled
    subset, rolled out; its return over that of BC on all labels."""
    from lam_models.pipeline.bc import PolicyFit, bc_policies, fit_decoder
    from lam_models.pipeline.rollout import composed, evaluate_policies

    train, spec = split.train, split.spec
    o, o_next = (
        frames(history=latent_history(latent_fn)) for frames in (train.obs, train.next_obs)
    )
    z = np.concatenate(
        [
            np.asarray(
                latent_fn(torch.from_numpy(o[i : i + 4096]), torch.from_numpy(o_next[i : i + 4096]))
            )
            for i in range(0, len(train), 4096)
        ]
    )[None]
    obs, shown, mask = (
        train.obs().reshape(1, len(train), -1),
        train.actions[None],
        train.label_mask[None],
    )
    fit = PolicyFit(spec.discrete, spec.action_dim, steps, [seed], 64)
    policies = bc_policies(obs, z, shown, train.oracle["action"][None], mask, fit)
    decoder = fit_decoder(z, shown, mask, fit)
    acting = {
        "composed": composed(policies["latent_policy"], decoder),
        "full_bc": policies["full_bc"].act,
    }
    test_obs = torch.from_numpy(split.test.obs().reshape(1, len(split.test), -1))
    results = evaluate_policies(split.data, acting, test_obs, split.test.oracle["action"], 16, seed)
    full = float(results["full_bc"]["return"][0])
    return float(results["composed"]["return"][0]) / full if full else math.nan


# ---------------------------------------------------------------------------- the files


def read_card(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``card.csv``."""
    return read_csv(path, text=("suite_version", "method", "setting"), integers=("seed",))


def write_card(rows: list[dict[str, Any]], out: Path, suite: Suite, sizes: str = "cpu") -> None:
    """card.csv, card.md and card.png into ``out`` (created): all three or, when one cannot
    be written (a full disk), none of them changed."""
    out.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    with staged_files(out) as staged:
        write_csv(rows, staged / "card.csv", COLUMNS + extra)
        rows = read_card(staged / "card.csv")
        (staged / "card.md").write_text(card_markdown(rows, suite, sizes) + "\n")
        plot_card(rows, suite, staged / "card.png")


def _cells(rows, metric) -> dict[tuple[str, str], tuple[float, float]]:
    values = defaultdict(list)
    for r in rows:
        if math.isfinite(r.get(metric, math.nan)):
            values[r["method"], r["setting"]].append(r[metric])
    return {k: mean_stderr(v) for k, v in values.items()}


def _methods(rows) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def card_markdown(rows: list[dict[str, Any]], suite: Suite, sizes: str = "cpu") -> str:
    """One table: a row per method and setting, mean ± s.e. over seeds."""
    seeds = len({r["seed"] for r in rows})
    metrics = [
        ("action_held", "action held ↑"),
        ("nuisance_held", "nuisance held ↓"),
        ("obs_leakage", "o leakage ↓"),
        ("normalised_return", "norm. return ↑"),
    ]
    metrics = [(k, t) for k, t in metrics if any(math.isfinite(r.get(k, math.nan)) for r in rows)]
    cells = {k: _cells(rows, k) for k, _ in metrics}
    lines = [
        f"LAM report card (suite v{SUITE_VERSION}, mean ± s.e. over {seeds} seeds; held = "
        f"1 − nmse of a probe from z, on held-out episodes; built-in methods at {sizes} "
        f"sizes, {suite.steps:,} updates)",
        "",
        "| method | setting | " + " | ".join(t for _, t in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for method in _methods(rows):
        for setting in suite.settings:
            if (method, setting.name) not in cells[metrics[0][0]]:
                continue
            values = []
            for key, _ in metrics:
                m, e = cells[key].get((method, setting.name), (math.nan, 0.0))
                values.append("—" if math.isnan(m) else f"{m:.3f} ± {e:.3f}")
            lines.append(f"| {method} | {setting.name} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def plot_card(rows: list[dict[str, Any]], suite: Suite, path: Path) -> Path:
    """Methods × settings: colour = the share of the action the latent holds; ✗ where it
    holds more of a nuisance than of the action; blank where a method does not apply."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, settings = _methods(rows), [s.name for s in suite.settings]
    action, nuisance = _cells(rows, "action_held"), _cells(rows, "nuisance_held")
    grid = np.full((len(methods), len(settings)), np.nan)
    for i, m in enumerate(methods):
        for j, s in enumerate(settings):
            grid[i, j] = action.get((m, s), (np.nan, 0))[0]
    fig, ax = plt.subplots(figsize=(1.1 * len(settings) + 3, 0.6 * len(methods) + 2.2))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, m in enumerate(methods):
        for j, s in enumerate(settings):
            if np.isnan(grid[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", color="gray", fontsize=8)
                continue
            worse = nuisance.get((m, s), (np.nan, 0))[0] > grid[i, j]
            text = f"{grid[i, j]:.2f}" + (" ✗" if worse else "")
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if grid[i, j] < 0.5 else "black",
            )
    ax.set_xticks(range(len(settings)), settings, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=9)
    fig.colorbar(image, ax=ax, label="action held by z (1 − probe nmse)")
    seeds = len({r["seed"] for r in rows})
    ax.set_title(
        f"What the latent holds (suite v{SUITE_VERSION}, {seeds} seeds); "
        "✗: more of a nuisance than of the action",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
