"""The report card: a method scored on the suite's settings (:mod:`.suite`), and the card's
files: ``card.csv`` (one row per method × setting × seed), ``card.md`` (mean ± s.e.) and
``card.png`` (methods × settings; colour: the share of the action the latent holds,
1 − nmse(a); a mark where it holds more of a nuisance than of the action). A cell whose
method's training loss was still falling when it stopped is marked unconverged
(:func:`unconverged`, the rule) instead of shown as a finding.
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
    "LEVELLED_BELOW",
    "STILL_FALLING",
    "card_markdown",
    "pipeline_return",
    "plot_card",
    "read_card",
    "score_setting",
    "setting_split",
    "unconverged",
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
    "unconverged",
    "seconds",
]

# ------------------------------------------------------------------------ the unconverged rule

#: A training loss whose mean over the last tenth of its log is more than this fraction
#: below its mean over the tenth before is still falling: the method had not converged.
STILL_FALLING = 0.02
#: ... unless that last tenth's mean is already below this fraction of the first tenth's:
#: a loss whose optimum is 0 (a noiseless process) falls geometrically towards it for as
#: long as it trains, and would be marked for ever by a relative rule alone.
LEVELLED_BELOW = 1e-4


def unconverged(losses: Sequence[float] | None) -> bool:
    """The card's convergence rule, on a training loss at each log point, oldest first:
    True when its mean over the last tenth of the points (the last ``len // 10``, at least
    the last one) is more than :data:`STILL_FALLING` (2%) below its mean over the tenth
    before, unless it is already below :data:`LEVELLED_BELOW` (10⁻⁴) times its mean over
    the first tenth. A log of fewer than two points, or none (a method without a loss
    history), is never marked."""
    try:
        values = np.asarray(losses if losses is not None else [], dtype=np.float64)
    except (TypeError, ValueError):
        values = np.zeros((0, 0))
    if values.ndim != 1:
        raise ValueError(
            f"a loss history is a sequence of numbers, one per log point; got {losses!r:.60}"
        )
    tenth = max(1, len(values) // 10)
    if len(values) < 2 * tenth or not np.isfinite(values).all():
        return False
    first, before, last = (
        values[:tenth].mean(),
        values[-2 * tenth : -tenth].mean(),
        values[-tenth:].mean(),
    )
    if 0 <= last < LEVELLED_BELOW * first:
        return False
    return bool(before - last > STILL_FALLING * abs(before))


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
            # a built-in's loss log (LAMLatents), or one a user's latent_fn offers
            "unconverged": unconverged(getattr(latent_fn, "loss_history", None)),
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
    """The rows of a ``card.csv`` (``unconverged`` a bool; False on cards before it)."""
    rows = read_csv(
        path, text=("suite_version", "method", "setting", "unconverged"), integers=("seed",)
    )
    for row in rows:
        row["unconverged"] = row.get("unconverged") == "True"
    return rows


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


def _unconverged_seeds(rows) -> dict[tuple[str, str], tuple[int, int]]:
    """(seeds marked unconverged, seeds) of each method × setting with a mark."""
    counts = defaultdict(lambda: [0, 0])
    for r in rows:
        count = counts[r["method"], r["setting"]]
        count[0] += bool(r.get("unconverged", False))
        count[1] += 1
    return {k: (marked, n) for k, (marked, n) in counts.items() if marked}


#: What the mark means, on the card's files.
UNCONVERGED_NOTE = (
    "unconverged: the method's training loss was still falling when it stopped (in k of n "
    f"seeds its mean over the last tenth of the log was more than {STILL_FALLING:.0%} below "
    f"the tenth before, and not yet below {LEVELLED_BELOW:g} of the first tenth's: "
    "lam_models.evaluation.card.unconverged); the cell says where "
    "training stopped, not a finding"
)


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
    marks = _unconverged_seeds(rows)
    lines = [
        f"LAM report card (suite v{SUITE_VERSION}, mean ± s.e. over {seeds} seeds; held = "
        f"1 − nmse of a probe from z, on held-out episodes; built-in methods at {sizes} "
        f"sizes, {suite.steps:,} updates)",
        "",
        "| method | setting | " + " | ".join(t for _, t in metrics) + " | unconverged |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for method in _methods(rows):
        for setting in suite.settings:
            if (method, setting.name) not in cells[metrics[0][0]]:
                continue
            values = []
            for key, _ in metrics:
                m, e = cells[key].get((method, setting.name), (math.nan, 0.0))
                values.append("—" if math.isnan(m) else f"{m:.3f} ± {e:.3f}")
            marked, n = marks.get((method, setting.name), (0, 0))
            values.append(f"**unconverged** ({marked}/{n} seeds)" if marked else "")
            lines.append(f"| {method} | {setting.name} | " + " | ".join(values) + " |")
    return "\n".join([*lines, "", UNCONVERGED_NOTE + "."])


def plot_card(rows: list[dict[str, Any]], suite: Suite, path: Path) -> Path:
    """Methods × settings: colour = the share of the action the latent holds; ✗ where it
    holds more of a nuisance than of the action; blank where a method does not apply."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, settings = _methods(rows), [s.name for s in suite.settings]
    action, nuisance = _cells(rows, "action_held"), _cells(rows, "nuisance_held")
    marks = _unconverged_seeds(rows)
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
            colour = "white" if grid[i, j] < 0.5 else "black"
            if (m, s) in marks:  # not a finding: hatched, the number in brackets, no ✗
                ax.add_patch(
                    plt.Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", color="gray", lw=0
                    )
                )
                text, style = f"({grid[i, j]:.2f})\nunconverged", "italic"
            else:
                worse = nuisance.get((m, s), (np.nan, 0))[0] > grid[i, j]
                text, style = f"{grid[i, j]:.2f}" + (" ✗" if worse else ""), "normal"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour, style=style)
    ax.set_xticks(range(len(settings)), settings, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=9)
    fig.colorbar(image, ax=ax, label="action held by z (1 − probe nmse)")
    seeds = len({r["seed"] for r in rows})
    ax.set_title(
        f"What the latent holds (suite v{SUITE_VERSION}, {seeds} seeds)\n"
        "✗: more of a nuisance than of the action\n"
        "hatched: unconverged (its loss still falling), not a finding",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
