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
same code path as yours. By default (``--sizes cpu``, :data:`CPU_SIZES`) they run at sizes
a CPU handles: on the distracting grid's 32×32 frames ``vq`` at batch 32 and LAOM with the
label-budget study's CPU encoder (d_z 128; on the 4×4 grid too), ``vq-published`` at batch 128
and on the 4×4 grid only (its 64-channel convolutions on 32×32 frames take seconds per
update); ``--sizes published`` gives every built-in its own defaults everywhere (a GPU job).
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
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_envs.utils.cli import Parser, run_main
from lam_envs.utils.outputs import check_path, claim_output_folder, staged_files
from lam_envs.utils.validate import check_choice, check_int
from lam_models.data import DatasetError, LAMDataset
from lam_models.evaluation.metrics import mean_stderr
from lam_models.evaluation.scoring import evaluate
from lam_models.lams.base import get_lam, registry, resolve_device
from lam_models.recipes import ensure_dataset
from lam_models.runs import read_csv, write_csv
from lam_models.split import DataSplit

__all__ = [
    "SUITES",
    "SUITE_VERSION",
    "Setting",
    "builtin_method",
    "main",
    "resolve_method",
    "run_benchmark",
    "setting_split",
]

#: Bumped whenever a setting, its data or its metrics change: cards of different versions
#: are not comparable.
SUITE_VERSION = "1"

LatentFn = Callable[[torch.Tensor, torch.Tensor], Any]
Method = Callable[..., LatentFn]


@dataclass(frozen=True)
class Setting:
    """One standard setting: its dataset (a recipe of ``datasets/``), the label budget the
    methods get, and the nuisances a latent should not hold (oracle fields)."""

    name: str
    recipe: str
    nuisance: tuple[str, ...] = ()
    label_fraction: float | None = None  # the labelled subset (None: the recipe's, 1%)
    description: str = ""


# The distractors' change over a transition (oracle fields,
# lam_models.evaluation.scoring.nuisance_targets).
_AGENTS, _BACKGROUND = "other_actions", "background_velocity"
_SHAKE, _COLOUR = "shake:change", "agent_intensity:change"

#: The full suite, version :data:`SUITE_VERSION`.
STANDARD = (
    Setting("linear/no-noise", "linear-no-noise", (), None, "o' = o + X a"),
    Setting("linear/iid", "linear-iid-0p5", ("eps",), None, "i.i.d. noise σ = 0.5"),
    Setting("linear/agents-weak", "linear-other-agents-0p5", ("eps",), None, "σ_exo = 0.5"),
    Setting("linear/agents-strong", "linear-other-agents-2p0", ("eps",), None, "σ_exo = 2"),
    Setting("linear/deterministic", "linear-chi-1p0", (), None, "policy a = Π o (χ = 1)"),
    Setting("grid/none", "grid-none-uniform", (), None, "no noise row"),
    Setting("grid/low", "grid-low-uniform", ("noise",), None, "noise row 0/1"),
    Setting("grid/high", "grid-high-uniform", ("noise",), None, "noise row 0/2"),
    Setting("grid/correlated", "grid-low-correlated", ("noise",), None, "snaking ε = 0.05"),
    # The distracting grid (32×32 pixels): what changes over a transition besides the agent.
    Setting("distracting/clean", "grid-distracting-clean", (), None, "no distractor"),
    Setting(
        "distracting/other-agents",
        "grid-distracting-other-agents",
        (_AGENTS,),
        None,
        "two other squares, random moves",
    ),  # fmt: skip
    Setting(
        "distracting/background",
        "grid-distracting-background",
        (_BACKGROUND,),
        None,
        "a scrolling texture",
    ),  # fmt: skip
    Setting("distracting/shake", "grid-distracting-shake", (_SHAKE,), None, "camera shake"),
    Setting(
        "distracting/colour-drift",
        "grid-distracting-colour-drift",
        (_COLOUR,),
        None,
        "the agent's intensity drifts",
    ),  # fmt: skip
    Setting(
        "distracting/all",
        "grid-distracting-all",
        (_AGENTS, _BACKGROUND, _SHAKE, _COLOUR),
        None,
        "all four",
    ),  # fmt: skip
)


#: Frames of more pixels than this are images (the distracting grid's 32×32), where the
#: built-in methods take their ``NAME/image`` sizes.
IMAGE_PIXELS = 64

#: The built-in methods' sizes in the CPU suites, by registered LAM: ``NAME`` on every
#: setting, ``NAME/image`` on top of it on images; ``None``: not run on images (the card
#: leaves the cell blank). Measured per update on one CPU thread (28 Nov 2026): ``vq`` on
#: 32×32 frames 281 ms at its batch of 128, 49 ms at 32; ``vq-published`` 828 ms at its
#: batch of 1,024 on the 4×4 grid, 118 ms at 128, and 6.7 s at 128 on 32×32 (its full-
#: resolution 64-channel convolutions); the published LAOM (d_z 8,192, three ResNet stages)
#: 200 ms on 4×4 and 773 ms on 32×32, at the label-budget study's CPU sizes 15 and 71 ms.
#: ``--sizes published`` runs every built-in at its own defaults instead (a GPU job).
CPU_SIZES: dict[str, dict[str, Any] | None] = {
    "vq/image": {"batch_size": 32},
    "vq-published": {"batch_size": 128},  # Table 1's small budget's batch
    "vq-published/image": None,
    # the label-budget study's CPU encoder; the published shift (4 pixels of 64) to scale
    "laom": {
        "channels": (16,),
        "blocks": 1,
        "embed_dim": 64,
        "width": 128,
        "latent_dim": 128,
        "batch_size": 32,
        "label_batch_size": 32,
        "shift": 0,
    },
    "laom/image": {"stem": 4, "shift": 2},
}
SIZES = {"cpu": CPU_SIZES, "published": {}}


@dataclass(frozen=True)
class Suite:
    """Settings and sizes: ``episodes`` overrides the recipes' (None: theirs), ``steps`` is
    the training budget of the built-in methods."""

    settings: tuple[Setting, ...]
    episodes: int | None
    steps: int
    seeds: int = 3


SUITES = {
    # 1,500 updates: all five built-ins on every setting in 71 min 45 s on the idle 2-core
    # machine (cpu sizes, 2 workers, collection included; 28 Nov 2026)
    "full": Suite(STANDARD, None, 1500),
    "quick": Suite(STANDARD, 40, 800),
    # the tests' version: two settings, seconds
    "tiny": Suite((STANDARD[3], STANDARD[6]), 12, 60, seeds=2),
}

# (registered LAM, its settings) of the built-in methods that are not plain registry names.
BUILTIN_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "laom+labels": ("laom", {"action_head": True, "action_weight": 1.0}),
}


# ------------------------------------------------------------------------------------ methods


@dataclass(frozen=True)
class BuiltinMethod:
    """A registered LAM as a benchmark method (picklable, for worker processes), at the
    sizes of :data:`SIZES` ``[sizes]``."""

    name: str
    steps: int
    sizes: str = "cpu"

    @property
    def lam_name(self) -> str:
        return BUILTIN_VARIANTS.get(self.name, (self.name, {}))[0]

    def options(self, image: bool) -> dict[str, Any] | None:
        """Its config overrides on a setting (``image``: frames of more than
        :data:`IMAGE_PIXELS` pixels); None where the sizes leave it out."""
        table = SIZES[self.sizes]
        options = dict(table.get(self.lam_name) or {})
        if image:
            if f"{self.lam_name}/image" in table and table[f"{self.lam_name}/image"] is None:
                return None
            options.update(table.get(f"{self.lam_name}/image") or {})
        return {**options, **BUILTIN_VARIANTS.get(self.name, (self.name, {}))[1]}

    def __call__(self, data: DataSplit, seed: int, device: str = "cpu") -> LatentFn:
        cls = get_lam(self.lam_name)
        options = self.options(int(np.prod(data.spec.obs_shape)) > IMAGE_PIXELS)
        if options is None:
            raise ValueError(f"{self.name} does not run on these frames at {self.sizes} sizes")
        config = cls.Config(**{**cls.pipeline_defaults, **options, "steps": self.steps})
        lam = cls.train(config, [data], [seed], device=device)
        return lambda o, o_next: lam.latents(o, o_next)[0]

    def supports(self, kind: str) -> bool:
        return kind in get_lam(self.lam_name).kinds


def builtin_method(name: str, steps: int, sizes: str = "cpu") -> BuiltinMethod:
    """The built-in method ``name`` (a registered LAM, or ``laom+labels``) at ``sizes``
    (a key of :data:`SIZES`)."""
    check_choice("sizes", sizes, SIZES)
    if name not in BUILTIN_VARIANTS:
        try:
            get_lam(name)
        except ValueError:
            known = [*registry, *BUILTIN_VARIANTS]
            raise ValueError(
                f"unknown method {name!r}: give a built-in name ({', '.join(known)}) or "
                "MODULE:FUNCTION"
            ) from None
    return BuiltinMethod(name, steps, sizes)


def resolve_method(spec: str | Method, steps: int, sizes: str = "cpu") -> tuple[str, Method]:
    """(its name on the card, the method) of a built-in name, ``MODULE:FUNCTION`` or a
    callable."""
    if callable(spec):
        name = getattr(spec, "__name__", "method")
        return name, check_method(spec, name)
    if ":" not in spec:
        return spec, builtin_method(spec, steps, sizes)
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"--method {spec!r}: cannot import {module_name!r} ({error})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"--method {spec!r}: {module_name!r} has no function {function_name!r}")
    return spec, check_method(function, spec)


def check_method(function: Method, name: str) -> Method:
    """``function`` if it can be called as ``train(data, seed)`` (and, where it names a
    ``device`` parameter, with ``device=``); refused naming its signature otherwise."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function  # a builtin without a signature: its call will tell
    try:
        signature.bind(None, 0)
    except TypeError:
        raise ValueError(
            f"--method {name!r}: {getattr(function, '__qualname__', function)}{signature} "
            "cannot be called as train(data, seed); a method is a function "
            "train(data, seed[, device=...]) -> latent_fn(o, o_next) -> z"
        ) from None
    return function


def _supports(method: Method, kind: str, image: bool) -> bool:
    if not isinstance(method, BuiltinMethod):
        return True
    return method.supports(kind) and method.options(image) is not None


def _call(method: Method, data: DataSplit, seed: int, device: str) -> LatentFn:
    try:
        takes_device = "device" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes_device = False
    latent_fn = method(data, seed, device=device) if takes_device else method(data, seed)
    if not callable(latent_fn):
        name = getattr(method, "__qualname__", getattr(method, "name", method))
        raise ValueError(
            f"method {name} returned {latent_fn!r:.60}, not a function latent_fn(o, o_next) -> z"
        )
    return latent_fn


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
        latent_fn = _call(method, split.training_view(), seed, device)
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
    from lam_models.pipeline.bc import bc_policies, fit_decoder
    from lam_models.pipeline.rollout import composed, evaluate_policies

    train, spec = split.train, split.spec
    z = np.concatenate(
        [
            np.asarray(
                latent_fn(
                    torch.from_numpy(train.obs()[i : i + 4096]),
                    torch.from_numpy(train.next_obs()[i : i + 4096]),
                )
            )
            for i in range(0, len(train), 4096)
        ]
    )[None]
    obs, shown, mask = (
        train.obs().reshape(1, len(train), -1),
        train.actions[None],
        train.label_mask[None],
    )
    policies = bc_policies(
        obs,
        z,
        shown,
        train.oracle["action"][None],
        mask,
        spec.discrete,
        spec.action_dim,
        steps,
        [seed],
        64,
    )
    decoder = fit_decoder(z, shown, mask, spec.discrete, spec.action_dim, steps, [seed], 64)
    acting = {
        "composed": composed(policies["latent_policy"], decoder),
        "full_bc": policies["full_bc"].act,
    }
    test_obs = torch.from_numpy(split.test.obs().reshape(1, len(split.test), -1))
    results = evaluate_policies(split.data, acting, test_obs, split.test.oracle["action"], 16, seed)
    full = float(results["full_bc"]["return"][0])
    return float(results["composed"]["return"][0]) / full if full else math.nan


# -------------------------------------------------------------------------------- the run


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
        return _run(resolved, suite, n_seeds, out, data_root, device, workers, with_pipeline, sizes)


def _run(resolved, suite, n_seeds, out, data_root, device, workers, with_pipeline, sizes):
    root = Path(data_root) if data_root is not None else out / "datasets"
    paths, images = {}, {}
    for setting in suite.settings:  # collect here, before any worker reads
        overrides = {"episodes": suite.episodes} if suite.episodes else {}
        paths[setting.name] = str(ensure_dataset(setting.recipe, root, **overrides))
        shape = LAMDataset(paths[setting.name]).observation_shape
        images[setting.name] = int(np.prod(shape)) > IMAGE_PIXELS
    jobs = []
    for name, method in resolved:
        for setting in suite.settings:
            kind = "linear" if setting.name.startswith("linear") else "grid"
            if _supports(method, kind, images[setting.name]):
                jobs.append((name, method, setting))
    args = [
        (name, method, setting, paths[setting.name], list(range(n_seeds)), device, with_pipeline)
        for name, method, setting in jobs
    ]
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if workers > 1 and len(args) > 1:
        with ProcessPoolExecutor(min(workers, len(args)), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(score_setting, *a) for a in args]
            for (name, _, setting), future in zip(jobs, futures, strict=True):
                rows += future.result()
                print(
                    f"  {name:<16} {setting.name:<22} {time.perf_counter() - start:6.0f} s",
                    flush=True,
                )
    else:
        for (name, _, setting), a in zip(jobs, args, strict=True):
            rows += score_setting(*a)
            print(
                f"  {name:<16} {setting.name:<22} {time.perf_counter() - start:6.0f} s", flush=True
            )
    write_card(rows, out, suite, sizes)
    return rows


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


def write_card(rows: list[dict[str, Any]], out: Path, suite: Suite, sizes: str = "cpu") -> None:
    """card.csv, card.md and card.png into ``out`` (created): all three or, when one cannot
    be written (a full disk), none of them changed."""
    out.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    with staged_files(out) as staged:
        write_csv(rows, staged / "card.csv", COLUMNS + extra)
        rows = read_csv(
            staged / "card.csv", text=("suite_version", "method", "setting"), integers=("seed",)
        )
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
        "images, vq-published on the 4×4 grid only; see lam_models.benchmark.CPU_SIZES) or "
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
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine, not the input: a full disk, an I/O error
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        card_markdown(
            read_csv(
                args.out / "card.csv",
                text=("suite_version", "method", "setting"),
                integers=("seed",),
            ),
            SUITES[args.suite],
            args.sizes,
        )
    )
    print(
        f"\nwrote {args.out}/card.csv, card.md, card.png ({len(rows)} rows) in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
