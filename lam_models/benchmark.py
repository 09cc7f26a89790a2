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
1 − nmse(a); a mark where it holds more of a nuisance than of the action). A cell whose
training loss was still falling when the method stopped is marked unconverged, not shown
as a finding (:func:`lam_models.evaluation.card.unconverged`: a built-in's loss log, or
the ``loss_history`` attribute your ``latent_fn`` may offer; without one, never marked).

This module is the command and :func:`run_benchmark`; the suite (settings, methods) lives in
:mod:`lam_models.evaluation.suite`, the scoring and the card's files in
:mod:`lam_models.evaluation.card`, and the jobs run on :func:`lam_models.sweep.execute`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lam_envs.utils.cli import Parser, run_main
from lam_envs.utils.config import Checked, option
from lam_envs.utils.flags import add_flags, from_flags
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
from lam_models.sweep import (
    ResultCache,
    RunnerOptions,
    Task,
    add_runner_flags,
    code_hash,
    execute,
    runner_options,
)

# The card's names that callers import from here (their homes: lam_models.evaluation).
__all__ = ["STANDARD", "SUITES", "SUITE_VERSION", "Setting", "Suite", "builtin_method"]
__all__ += ["BenchmarkConfig", "main", "resolve_method", "run_benchmark", "setting_split"]

#: The runner's defaults on this command: two worker processes on the CPU.
RUNNER = RunnerOptions(workers=2, device="cpu")


def run_benchmark(
    methods: Sequence[str | Method],
    suite: str | Suite = "quick",
    seeds: int | None = None,
    out: str | Path = "outputs/benchmark",
    data_root: str | Path | None = None,
    device: str = "cpu",
    workers: int | RunnerOptions = 1,
    with_pipeline: bool = False,
    sizes: str = "cpu",
    overwrite: bool = False,
    cache: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Score ``methods`` on every setting of ``suite``; write the card into ``out``; return
    its rows. Datasets are built from the recipes under ``data_root`` (default
    ``<out>/datasets``) on first use and reused after. ``sizes``: the built-in methods'
    (:data:`SIZES`: ``cpu`` or ``published``). ``workers``: a number of worker processes,
    or :class:`~lam_models.sweep.RunnerOptions` (Ray; its device is ``device``). Each
    method × setting is cached in ``cache`` (default ``<out>/cache``) as it ends: a rerun
    scores only what is missing. An earlier card in ``out`` is refused unless
    ``overwrite``."""
    suite = SUITES[suite] if isinstance(suite, str) else suite
    n_seeds = check_int("seeds", seeds if seeds is not None else suite.seeds, low=1)
    check_choice("sizes", sizes, SIZES)
    resolved = [resolve_method(m, suite.steps, sizes) for m in methods]
    runner = workers if isinstance(workers, RunnerOptions) else RunnerOptions(workers=workers)
    if runner.ray is None or not device.startswith("cuda"):
        device = str(resolve_device(device))
    runner = dataclasses.replace(runner, device=device)
    if data_root is not None:
        check_path(data_root, "--data-root")
    # The folder is claimed for the whole run: a second benchmark into the same --out is
    # refused at once (an earlier card is replaced only with --overwrite).
    with claim_output_folder(out, overwrite, results=CARD_FILES) as out:
        root = Path(data_root) if data_root is not None else out / "datasets"
        paths, images, fingerprints = {}, {}, {}
        for setting in suite.settings:  # collected here, before any worker reads
            overrides = {"transitions": suite.transitions} if suite.transitions else {}
            paths[setting.name] = str(ensure_dataset(setting.recipe, root, **overrides))
            data = LAMDataset(paths[setting.name])
            images[setting.name] = int(np.prod(data.observation_shape)) > IMAGE_PIXELS
            fingerprints[setting.name] = data.fingerprint
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
                key={
                    "card": SUITE_VERSION,
                    "method": name,
                    "spec": _spec(method),
                    "method_code": code_hash(method),
                    "setting": dataclasses.asdict(setting),
                    "data": fingerprints[setting.name],
                    "seeds": n_seeds,
                    "pipeline": with_pipeline,
                },
            )
            for name, method in resolved
            for setting in suite.settings
            if applies(method, setting, images[setting.name])
        ]
        folder = ResultCache(cache if cache is not None else out / "cache")
        results = execute(tasks, runner, cache=folder)
        rows = [row for result in results for row in result]
        write_card(rows, out, suite, sizes)
    return rows


def _spec(method: Method) -> str:
    """What names a method in its cache key: a built-in's sizes, a function's name."""
    if dataclasses.is_dataclass(method):
        return repr(method)
    return f"{getattr(method, '__module__', '')}:{getattr(method, '__qualname__', method)}"


# --------------------------------------------------------------------------- command line


def _suite(name: str, value: Any) -> str:
    if value not in SUITES:
        raise ValueError(f"unknown suite {value!r}; allowed: {', '.join(SUITES)}")
    return value


@dataclass(frozen=True)
class BenchmarkConfig(Checked):
    """The card's own options (the runner's are :class:`~lam_models.sweep.RunnerOptions`)."""

    method: tuple[str, ...] = option(
        (),
        "a built-in method (linear, vq, vq-published, laom, laom+labels, or any registered "
        "LAM) or your function train(data, seed) -> latent_fn; repeatable (default: none)",
        cli={"action": "append", "required": True, "nargs": None, "type": str,
             "metavar": "NAME|MODULE:FUNCTION"},
    )  # fmt: skip
    suite: str = option("quick", f"{', '.join(SUITES)}", check=_suite)
    seeds: int | None = option(None, "seeds per setting (default: the suite's, 3)", low=1)
    out: str = option("outputs/benchmark", "output folder", cli={"metavar": "DIR"})
    data_root: str | None = option(
        None,
        "where the datasets are built and reused (default: OUT/datasets)",
        cli={"metavar": "DIR"},
    )
    with_pipeline: bool = option(False, "also the LAPO-style pipeline's normalised return (slower)")
    sizes: str = option(
        "cpu",
        "the built-in methods' sizes: cpu (default: smaller batches and encoders on "
        "images, vq-published on the 4×4 grid only: each LAM's cpu_sizes) or "
        "published (each method's own defaults everywhere: a GPU job)",
        choices=SIZES,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", tuple(self.method))
        super().__post_init__()


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m lam_models.benchmark",
        description="Train and score LAMs on the standard settings: what does the latent "
        "hold (the action, noise, the observation)? Writes card.csv, card.md and card.png.",
    )
    add_flags(p, BenchmarkConfig)
    add_runner_flags(p, RUNNER)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        config = from_flags(BenchmarkConfig, args)
        runner = runner_options(args, RUNNER)
        out = Path(config.out)
        rows = run_benchmark(
            config.method,
            config.suite,
            config.seeds,
            out,
            config.data_root,
            runner.device,
            runner,
            config.with_pipeline,
            config.sizes,
            runner.overwrite,
            runner.cache_folder(out),
        )
    except COMMAND_ERRORS as error:
        return report_error(error)
    print(card_markdown(read_card(out / "card.csv"), SUITES[config.suite], config.sizes))
    print(
        f"\nwrote {out}/card.csv, card.md, card.png ({len(rows)} rows) in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
