"""How one report-card cell moves with the training budget, and whether its probe transfers.

    python examples/card_budget.py                                   # linear on linear/no-noise
    python examples/card_budget.py --method laom --setting grid/low --steps 400,800,1500
    python examples/card_budget.py --quick                           # the tests' version

The report card (``python -m lam_models.benchmark``) scores every method at one budget. A
small "action held" there can mean two different things: the latent does not hold the action
yet (more training would find it), or it holds something the probe cannot use on held-out
episodes (the probe does not transfer). This script tells them apart for one method and
one setting of the suite: it trains the built-in method at each budget of ``--steps`` on the
setting's training episodes and fits the action probe of the card, then reports that probe's
nmse on the transitions it was fitted on (in sample) and on the held-out episodes (the
card's number). Held-out ≈ in-sample: the budget is what limits it. On the linear process it
also prints the spectrum of o's covariance, whose spread (o wanders along X's columns over
an episode: far on the figures' 200-step walks, little on the card's 10-step episodes)
sets how fast a gradient method converges.

Writes ``<out>/card_budget.csv`` (one row per budget) and ``card_budget.png``. Each budget
is a job of the package's runner (``--workers``, ``--ray``: docs/running-at-scale.md),
cached under ``<out>/cache`` as it ends (``--cache``): a rerun trains only what is missing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs.utils.cli import Parser, run_main  # noqa: E402
from lam_envs.utils.outputs import claim_output_folder  # noqa: E402
from lam_envs.utils.validate import check_int  # noqa: E402
from lam_models import sweep  # noqa: E402
from lam_models._commands import COMMAND_ERRORS, report_error  # noqa: E402
from lam_models.data import LAMDataset  # noqa: E402
from lam_models.evaluation.card import setting_split  # noqa: E402
from lam_models.evaluation.scoring import evaluate  # noqa: E402
from lam_models.evaluation.suite import STANDARD, builtin_method, setting_family  # noqa: E402
from lam_models.recipes import ensure_dataset  # noqa: E402
from lam_models.runs import write_csv  # noqa: E402

SETTINGS = {s.name: s for s in STANDARD}


COLUMNS = ["method", "setting", "seed", "updates", "nmse_in_sample", "nmse_held_out", "seconds"]
RESULTS = ("card_budget.csv", "card_budget.png")


#: The runner's defaults here: one budget after the other, on the CPU.
RUNNER = sweep.RunnerOptions(workers=1, device="cpu")


def score_budget(
    method: str, setting: str, updates: int, seed: int, path: str, device: str
) -> dict:
    """One budget's row: ``method`` trained for ``updates`` on the setting's training
    episodes, its action probe measured in sample and held out."""
    torch.set_num_threads(1)
    split = setting_split(SETTINGS[setting], path, seed)
    start = time.perf_counter()
    latent_fn = builtin_method(method, updates)(split.training_view(), seed, device=device)
    held_out = evaluate(latent_fn, split)["nmse_action"]
    in_sample = evaluate(latent_fn, split, measure_on="fit")["nmse_action"]
    return {
        "method": method,
        "setting": setting,
        "seed": seed,
        "updates": updates,
        "nmse_in_sample": in_sample,
        "nmse_held_out": held_out,
        "seconds": time.perf_counter() - start,
    }


def run(
    method: str, setting: str, steps: list[int], seed: int, out: Path, data_root: Path,
    episodes: int | None = None, device: str | sweep.RunnerOptions = "cpu",
    cache: Path | None = None,
) -> list[dict]:  # fmt: skip
    """Train ``method`` at each budget of ``steps`` on ``setting``; one row per budget.
    ``device``: where (or :class:`~lam_models.sweep.RunnerOptions`: how) the budgets run;
    ``cache``: where each is kept as it ends (default ``<out>/cache``)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; allowed: {', '.join(SETTINGS)}")
    steps = [check_int("steps", s, low=1) for s in steps]
    builtin_method(method, 1)  # an unknown method fails before any work
    runner = (
        device if isinstance(device, sweep.RunnerOptions) else sweep.RunnerOptions(1, device=device)
    )
    torch.set_num_threads(1)
    overrides = {"episodes": episodes} if episodes else {}
    path = str(ensure_dataset(SETTINGS[setting].recipe, data_root, **overrides))
    if setting_family(SETTINGS[setting]) == "linear":
        split = setting_split(SETTINGS[setting], path, seed)
        o = split.train.obs()[:20_000].astype(np.float64)
        eigenvalues = np.linalg.eigvalsh(np.cov(o.T))[::-1]
        k = split.spec.action_dim
        print(
            f"o's covariance: top {k} eigenvalues {np.round(eigenvalues[:k], 1).tolist()}, "
            f"median {np.median(eigenvalues):.2f}"
        )
    print(f"{method} on {setting} (seed {seed}): nmse of the action probe")
    print(f"{'updates':>8} {'in sample':>10} {'held out':>10} {'seconds':>8}")
    fingerprint = LAMDataset(path).fingerprint
    tasks = [
        sweep.Task(
            f"{n} updates",
            score_budget,
            (method, setting, n, seed, path, runner.device),
            work=n,
            kind=method,
            key={"card_budget": [method, setting, n, seed], "data": fingerprint},
        )
        for n in steps
    ]

    def show(task: sweep.Task, row: dict) -> None:
        print(
            f"{row['updates']:>8} {row['nmse_in_sample']:>10.3f} {row['nmse_held_out']:>10.3f} "
            f"{row['seconds']:>8.1f}",
            flush=True,
        )

    cache = sweep.ResultCache(cache if cache is not None else out / "cache")
    rows = sweep.execute(tasks, runner, show, cache)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "card_budget.csv", COLUMNS)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for key, label in (("nmse_in_sample", "in sample"), ("nmse_held_out", "held out")):
        ax.plot(steps, [r[key] for r in rows], "o-", label=label)
    ax.set(xlabel="updates", ylabel="nmse of the action probe", title=f"{method} on {setting}")
    ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "card_budget.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out}/card_budget.csv, card_budget.png")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = Parser(
        prog="python examples/card_budget.py",
        description="Train one built-in method at several budgets on one report-card setting "
        "and compare the action probe in sample and on held-out episodes.",
    )
    p.add_argument("--method", default="linear", help="a built-in method (default: linear)")
    p.add_argument(
        "--setting",
        default="linear/no-noise",
        help=f"a setting of the suite (default: linear/no-noise): {', '.join(SETTINGS)}",
    )
    p.add_argument(
        "--steps",
        default="800,1500,3000,6000",
        help="budgets, comma-separated (default: 800,1500,3000,6000)",
    )
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default: 0)")
    p.add_argument(
        "--out", type=Path, default=Path("outputs/card_budget"),
        help="output folder (default: outputs/card_budget)",
    )  # fmt: skip
    p.add_argument(
        "--data-root", type=Path,
        help="where the setting's dataset is built and reused (default: OUT/datasets)",
    )  # fmt: skip
    sweep.add_runner_flags(p, RUNNER)
    p.add_argument("--quick", action="store_true", help="12 episodes, budgets 20 and 60 (tests)")
    args = p.parse_args(argv)
    try:
        steps = [int(s) for s in ("20,60" if args.quick else args.steps).split(",")]
    except ValueError:
        print(
            f"error: --steps must be integers separated by commas, got {args.steps!r}",
            file=sys.stderr,
        )
        return 2
    try:
        runner = sweep.runner_options(args, RUNNER)
        runner = replace(runner, device=runner.resolved_device())
        # no second run into it meanwhile; an earlier run's results only with --overwrite
        with claim_output_folder(args.out, runner.overwrite, results=RESULTS):
            run(
                args.method, args.setting, steps, args.seed, args.out,
                args.data_root or args.out / "datasets", 12 if args.quick else None, runner,
                runner.cache_folder(args.out),
            )  # fmt: skip
    except COMMAND_ERRORS as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    run_main(main)
