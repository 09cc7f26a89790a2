"""A LAM report card: one command trains and scores any LAM across the standard settings.

    python -m lam_models.benchmark --method vq                        # a built-in method
    python -m lam_models.benchmark --method vq-published --device cuda  # the published grid VQ
    python -m lam_models.benchmark --method my_package.lam:train      # yours
    python -m lam_models.benchmark --method laom --method laom+labels --suite full

"On data where I know the truth, what does my LAM's latent hold: the action, the noise, the
frame, a distractor?" A *method* is any function ``train(data, seed) -> latent_fn``:

- ``data`` is a :class:`~lam_models.split.DataSplit` training view of a setting's dataset:
  ``data.train.obs()``, ``data.train.next_obs()``, ``data.train.actions`` (the labelled
  subset's actions, −1 / NaN elsewhere), ``data.train.label_mask``, ``data.spec``; it has no
  held-out part and no ground truth (a method must not read the dataset's oracle fields);
- ``seed`` seeds the method's randomness (the card reports mean ± s.e. over seeds);
- it may take a ``device`` keyword (the benchmark passes ``--device``);
- it returns ``latent_fn(o, o_next) -> z`` on float32 tensors (B, *obs_shape) -> (B, d_z).

The built-in methods (``linear``, ``vq`` (the package's grid VQ LAM), ``vq-published`` (the
published one behind Table 1, at its own batch of 1,024), ``laom``, ``laom+labels``, and every
other registered LAM by its name) are such functions too, so the reference rows come from the
same code path as yours. By default (``--sizes cpu``) they run at the sizes a CPU handles
that each LAM declares (its ``cpu_sizes``): on the distracting grid's 32×32 frames ``vq`` at
batch 32 and LAOM with the label-budget study's CPU encoder (d_z 128; on the 4×4 grid too),
``vq-published`` at batch 128 and on the 4×4 grid only (its full-resolution 64-channel
convolutions make 32×32 frames dozens of times slower per update); ``--sizes published``
gives every built-in its own defaults everywhere (a GPU job).
Your method's sizes are its own. Every latent is scored by
:func:`lam_models.evaluate` on the held-out episodes: the action probe, a probe of each
nuisance the setting has (the exogenous noise ε, the noise row, each distractor's state: what
the latent holds that it should not), and the observation leakage on the linear environment
(1 − nmse(o)). ``--with-pipeline`` also runs
the LAPO-style pipeline from the latents and reports the return normalised by BC on all
labels.

The card: ``card.csv`` (one row per method × setting × seed), ``card.md`` (mean ± s.e.) and
``card.png`` (methods × settings; colour: the share of the action the latent holds,
1 − nmse(a); a mark where it holds more of a nuisance than of the action).

This module is the command and :func:`run_benchmark`; the suite (settings, methods) lives in
:mod:`lam_models.evaluation.suite`, the scoring and the card's files in
:mod:`lam_models.evaluation.card`, and the jobs run on :func:`lam_models.sweep.execute`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lam_envs.utils.cli import Parser, run_main
from lam_envs.utils.outputs import check_path, claim_output_folder
from lam_envs.utils.validate import check_choice, check_int
from lam_models._commands import COMMAND_ERRORS, report_error
from lam_models.data import LAMDataset
from lam_models.evaluation.card import (
    CARD_FILES,
    card_markdown,
    read_card,
    score_setting,
    setting_split,
    write_card,
)
from lam_models.evaluation.suite import (
    IMAGE_PIXELS,
    SIZES,
    STANDARD,
    SUITE_VERSION,
    SUITES,
    Method,
    Setting,
    Suite,
    applies,
    builtin_method,
    resolve_method,
)
from lam_models.evaluation.suite import call_method as _call  # noqa: F401  (its old name)
from lam_models.lams.base import resolve_device
from lam_models.recipes import ensure_dataset
from lam_models.sweep import Task, execute

# The card's names that callers import from here (their homes: lam_models.evaluation).
__all__ = ["STANDARD", "SUITES", "SUITE_VERSION", "Setting", "Suite", "builtin_method"]
__all__ += ["main", "resolve_method", "run_benchmark", "setting_split"]


def run_benchmark(
    methods: Sequence[str | Method],
    suite: str | Suite = "quick",
    seeds: int | None = None,
    out: str | Path = "outputs/benchmark",
    data_root: str | Path | None = None,
    device: str = "cpu",
    workers: int = 1,
    with_pipeline: bool = False,
    sizes: str = "cpu",
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Score ``methods`` on every setting of ``suite``; write the card into ``out``; return
    its rows. Datasets are built from the recipes under ``data_root`` (default
    ``<out>/datasets``) on first use and reused after. ``sizes``: the built-in methods'
    (:data:`SIZES`: ``cpu`` or ``published``). An earlier card in ``out`` is refused
    unless ``overwrite``."""
    suite = SUITES[suite] if isinstance(suite, str) else suite
    n_seeds = check_int("seeds", seeds if seeds is not None else suite.seeds, low=1)
    check_choice("sizes", sizes, SIZES)
    resolved = [resolve_method(m, suite.steps, sizes) for m in methods]
    device = str(resolve_device(device))
    if data_root is not None:
        check_path(data_root, "--data-root")
    # The folder is claimed for the whole run: a second benchmark into the same --out is
    # refused at once (an earlier card is replaced only with --overwrite).
    with claim_output_folder(out, overwrite, results=CARD_FILES) as out:
        root = Path(data_root) if data_root is not None else out / "datasets"
        paths, images = {}, {}
        for setting in suite.settings:  # collected here, before any worker reads
            overrides = {"episodes": suite.episodes} if suite.episodes else {}
            paths[setting.name] = str(ensure_dataset(setting.recipe, root, **overrides))
            shape = LAMDataset(paths[setting.name]).observation_shape
            images[setting.name] = int(np.prod(shape)) > IMAGE_PIXELS
        tasks = [  # one per method × setting it applies to
            Task(
                f"{name} on {setting.name}",
                score_setting,
                (
                    name,
                    method,
                    setting,
                    paths[setting.name],
                    list(range(n_seeds)),
                    device,
                    with_pipeline,
                ),  # fmt: skip
                work=n_seeds,
                kind=f"{name}/image" if images[setting.name] else name,
                detail=f"{n_seeds} seeds",
            )
            for name, method in resolved
            for setting in suite.settings
            if applies(method, setting, images[setting.name])
        ]
        results = execute(tasks, workers)
        rows = [row for result in results for row in result]
        write_card(rows, out, suite, sizes)
    return rows


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m lam_models.benchmark",
        description="Train and score LAMs on the standard settings: what does the latent "
        "hold (the action, noise, the observation)? Writes card.csv, card.md and card.png.",
    )
    p.add_argument(
        "--method",
        action="append",
        required=True,
        metavar="NAME|MODULE:FUNCTION",
        help="a built-in method (linear, vq, vq-published, laom, laom+labels, or any "
        "registered LAM) or "
        "your function train(data, seed) -> latent_fn; repeatable",
    )
    p.add_argument("--suite", default="quick", help=f"{', '.join(SUITES)} (default: quick)")
    p.add_argument("--seeds", type=int, help="seeds per setting (default: the suite's, 3)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/benchmark"),
        help="output folder (default: outputs/benchmark)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        help="where the datasets are built and reused (default: OUT/datasets)",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="worker processes, one setting each (default: 2)"
    )
    p.add_argument(
        "--with-pipeline",
        action="store_true",
        help="also the LAPO-style pipeline's normalised return (slower)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier card in --out")
    p.add_argument(
        "--sizes",
        default="cpu",
        help="the built-in methods' sizes: cpu (default: smaller batches and encoders on "
        "images, vq-published on the 4×4 grid only: each LAM's cpu_sizes) or "
        "published (each method's own defaults everywhere: a GPU job)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.suite not in SUITES:
            raise ValueError(f"unknown suite {args.suite!r}; allowed: {', '.join(SUITES)}")
        check_int("workers", args.workers, low=1)
        rows = run_benchmark(
            args.method,
            args.suite,
            args.seeds,
            args.out,
            args.data_root,
            args.device,
            args.workers,
            args.with_pipeline,
            args.sizes,
            args.overwrite,
        )
    except COMMAND_ERRORS as error:
        return report_error(error)
    print(card_markdown(read_card(args.out / "card.csv"), SUITES[args.suite], args.sizes))
    print(
        f"\nwrote {args.out}/card.csv, card.md, card.png ({len(rows)} rows) in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
