"""Reproduce the linear-LAM figures F3a–F3c and F6a–F6c (docs/protocols.md).

    python examples/reproduce_linear.py                      # published, thinned (~40 min, 2 cores)
    python examples/reproduce_linear.py --grid published     # the papers' full sweeps (GPU)
    python examples/reproduce_linear.py --protocol package   # the package's variants (~8 min)
    python examples/reproduce_linear.py --protocol all       # both
    python examples/reproduce_linear.py --quick              # reduced sweeps, d_o = 32 (the tests)
    python examples/reproduce_linear.py --figures F3a,F6c    # some figures only

Writes ``<out>/linear_results.csv`` (one row per protocol, figure, setting and seed) and one
PNG per figure and protocol (``F3a_published.png``, ``F3a_package.png``, ...; mean over seeds
with a standard-error band), and prints each figure's numbers (means ± s.e.), the training
speed of the batched groups, and the elapsed time.

``--protocol published`` follows the published protocol (docs/protocols.md, "Linear LAM"):
every step a fresh batch of 128 transitions drawn from the formulas
(``lam_models.lams.linear_fresh``), Adam at its defaults (lr 1e-3, constant), torch's default
initialisation, the published step counts; after training, linear probes with bias are trained
with Adam on 5,000 fresh batches of the frozen LAM's latent and measured on 10,000 fresh
transitions. Each figure probes its own latent (``change`` = ô' − o, the published surrogate,
or ``true`` = z) on its own probe data. F6a's policy matrix Π has orthonormal rows, as released
(``--f6a-pi gaussian``: the variant with i.i.d. N(0, 1) entries). ``--grid thinned`` (default)
keeps the points that carry each published finding within 45 minutes on two cores
(:data:`PUBLISHED`; docs/protocols.md lists what is dropped); ``--grid published`` runs every
value of the papers' grids.

``--protocol package`` runs the package's own variants, which answer other questions:
finite pools of transitions from ``LinearLAM-v0`` with least-squares probes, the package's
fast schedule (lr 3e-2, cosine), probes on noisy data, Gaussian noise in F6b, and a fixed
labelled subset of a pool in F6c (``PACKAGE`` below; a table per figure in
docs/reproductions/linear-figures.md).

Copies that share a step count and a latent dimension train together as one batched model
(they may differ in their data, κ, λ_a and head); the groups spread over ``--workers``
processes with one torch thread each, or over a Ray cluster (``--ray``,
docs/running-at-scale.md). Each group's results are cached under ``<out>/cache`` as it
ends (``--cache``): a rerun trains only what is missing.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs.utils.cli import Parser, run_main  # noqa: E402
from lam_models.evaluation.metrics import mean_stderr  # noqa: E402
from lam_models.lams.base import train_and_score  # noqa: E402
from lam_models.lams.linear import (  # noqa: E402
    LinearConfig,
    StreamConfig,
    StreamSource,
    published_action_weight,
)
from lam_models.lams.linear_fresh import (  # noqa: E402
    PROJECTIONS,
    FreshLaw,
    ProbePlan,
    train_and_probe,
)
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.sweep import (  # noqa: E402
    ResultCache,
    RunnerOptions,
    Task,
    add_runner_flags,
    execute,
    runner_options,
)

COLUMNS = [
    "protocol", "projection", "figure", "seed", "d_o", "d_a", "d_z", "d_b", "noise", "sigma",
    "chi", "kappa", "label_fraction", "action_weight", "steps", "latent", "probe", "nmse_a",
    "nmse_noise", "nmse_o", "llo", "recon_loss", "analytic_loss",
]  # fmt: skip
TEXT_COLUMNS = ("protocol", "projection", "figure", "noise", "latent", "probe")
FIGURES = ("F3a", "F3b", "F3c", "F6a", "F6b", "F6c")
PROTOCOLS = ("published", "package")
MAX_GROUP = 30  # copies per batched model (larger groups are split: fewer, larger
# groups cost less overhead; more, smaller ones balance the workers better)


# --------------------------------------------------------------------------------------------
# The published protocol (docs/protocols.md): fresh batches, Adam probes on the frozen LAM
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """The published sweeps (:data:`PUBLISHED_FULL`: every value of the papers' grids), or
    thinned (:data:`PUBLISHED`, the default run) to the points that carry each published
    finding, within 45 minutes on two idle cores; step counts, batch size, optimiser, latents
    and probes as published. ``f6b_extra`` are (σ, κ) points beside the σ × κ grid."""

    d_o: int = 128
    d_a: int = 8
    d_b: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    probe_steps: int = 5000
    test_transitions: int = 10_000
    f3a_steps: int = 20_000
    f3a_d_a: tuple[int, ...] = (4, 8, 16)
    f3a_d_z: tuple[int, ...] = (4, 8, 16)
    f3b_steps: int = 10_000
    f3b_sigma: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    f3b_d_z: tuple[int, ...] = (8, 16)
    steps: int = 40_000  # F3c, F6a, F6b, F6c
    f3c_sigma: tuple[float, ...] = (0.5, 2.0)
    f3c_d_z: tuple[int, ...] = (4, 8, 10, 16)  # 10: noise enters only past d_z = d_a
    f6a_chi: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    f6a_d_z: tuple[int, ...] = (4, 8)
    f6a_projection: str = "orthonormal"  # published; "gaussian" is the variant
    f6b_kappa: tuple[float, ...] = (0.0, 0.01, 0.1, 0.5)
    f6b_sigma: tuple[float, ...] = (0.1,)
    f6b_extra: tuple[tuple[float, float], ...] = ((0.5, 0.0), (0.5, 0.1), (1.0, 0.0), (1.0, 0.1))
    f6b_d_z: tuple[int, ...] = (8,)
    f6c_fraction: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1)
    f6c_sigma: tuple[float, ...] = (1.0, 2.0)
    f6c_d_z: tuple[int, ...] = (8,)
    f6c_kappa: float = 0.1
    f6c_weight: float = 1.0  # the head's weight in the published (mean over dimensions) loss


PUBLISHED = Published()
#: The papers' full sweeps (docs/protocols.md, "Linear LAM"): a GPU or a long CPU run.
PUBLISHED_FULL = Published(
    f3a_d_a=tuple(range(2, 17, 2)), f3a_d_z=tuple(range(1, 17)),
    f3b_sigma=tuple(round(0.1 * i, 1) for i in range(16)), f3b_d_z=tuple(range(2, 17, 2)),
    f3c_d_z=tuple(range(2, 17)), f6a_d_z=tuple(range(2, 17)),
    f6b_sigma=(0.0, 0.1, 0.5, 1.0), f6b_extra=(), f6b_d_z=tuple(range(2, 17)),
    f6c_sigma=(0.5, 1.0, 2.0), f6c_d_z=tuple(range(2, 17)),
)  # fmt: skip
PUBLISHED_QUICK = Published(
    d_o=32, d_a=4, d_b=4, probe_steps=500, test_transitions=2000,
    f3a_steps=3000, f3a_d_a=(2, 4), f3a_d_z=(2, 4), f3b_steps=3000, f3b_sigma=(0.0, 1.0),
    f3b_d_z=(4,), steps=3000, f3c_d_z=(2, 4), f6a_chi=(0.0, 1.0), f6a_d_z=(4,),
    f6b_kappa=(0.0, 0.5), f6b_extra=(), f6b_d_z=(4,), f6c_fraction=(0.0, 0.1), f6c_sigma=(2.0,),
    f6c_d_z=(4,),
)  # fmt: skip
GRIDS = {"thinned": PUBLISHED, "published": PUBLISHED_FULL}


@dataclass(frozen=True)
class FreshRun:
    """One copy of the published protocol: figure, seed, data law, model, labels, probes."""

    figure: str
    seed: int
    law: FreshLaw
    config: LinearConfig
    label_fraction: float
    probe: ProbePlan


def published_runs(p: Published, figures) -> list[FreshRun]:
    out = []

    def add(figure, d_z, steps, probe, kappa=0.0, fraction=0.0, **law):
        head = fraction > 0  # with no label in any batch the head would never be trained
        config = LinearConfig(
            latent_dim=d_z, steps=steps, lr=1e-3, lr_schedule="constant", init="uniform",
            init_scale=1.0, kappa=kappa, action_head=head, head_bias=head,
            action_weight=published_action_weight(p.d_o, p.d_a, p.f6c_weight) if head else 0.0,
            log_every=max(1, steps // 20),
        )  # fmt: skip
        probe = replace(probe, steps=p.probe_steps, test_transitions=p.test_transitions)
        law = FreshLaw(**{"d_o": p.d_o, "d_a": p.d_a, "d_b": p.d_b, **law})
        if figure in figures:
            out.extend(FreshRun(figure, s, law, config, fraction, probe) for s in p.seeds)

    change = ProbePlan("change")
    for d_a in p.f3a_d_a:
        for d_z in p.f3a_d_z:
            add("F3a", d_z, p.f3a_steps, change, d_a=d_a)
    for sigma in p.f3b_sigma:  # probes fitted and measured on noise-free transitions
        for d_z in p.f3b_d_z:
            probe = ProbePlan("change", fit="noise_free", test="noise_free")
            add("F3b", d_z, p.f3b_steps, probe, noise="gaussian", sigma=sigma)
    for sigma in p.f3c_sigma:
        for d_z in p.f3c_d_z:
            add("F3c", d_z, p.steps, change, noise="other_agents", sigma=sigma)
    for chi in p.f6a_chi:  # fitted on χ-policy data, measured on random-policy data
        for d_z in p.f6a_d_z:
            add("F6a", d_z, p.steps, ProbePlan("change", test="random_policy"), chi=chi,
                projection=p.f6a_projection)  # fmt: skip
    f6b = [(sigma, kappa) for sigma in p.f6b_sigma for kappa in p.f6b_kappa]
    for sigma, kappa in f6b + [x for x in p.f6b_extra if x not in f6b]:
        for d_z in p.f6b_d_z:
            add("F6b", d_z, p.steps, ProbePlan("true"), kappa, noise="uniform", sigma=sigma)
    for sigma in p.f6c_sigma:
        for fraction in p.f6c_fraction:
            for d_z in p.f6c_d_z:
                add("F6c", d_z, p.steps, ProbePlan("true"), p.f6c_kappa, fraction,
                    noise="other_agents", sigma=sigma)  # fmt: skip
    return out


def fresh_row(run: FreshRun, result: dict) -> dict:
    law, c = run.law, run.config
    return {
        "protocol": "published", "projection": law.projection, "figure": run.figure,
        "seed": run.seed, "d_o": law.d_o, "d_a": law.d_a, "d_z": c.latent_dim, "d_b": law.d_b,
        "noise": law.noise,
        "sigma": law.sigma, "chi": law.chi, "kappa": c.kappa, "label_fraction": run.label_fraction,
        "action_weight": c.effective_action_weight, "steps": c.steps, "latent": run.probe.latent,
        "probe": "adam", **{k: result[k] for k in ("nmse_a", "nmse_noise", "nmse_o")},
        "llo": -result["nmse_a"] + result["nmse_noise"] + result["nmse_o"],
        "recon_loss": result["recon_loss"], "analytic_loss": result["analytic_loss"],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# The package's variants: pools from LinearLAM-v0, least-squares probes, the fast schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """The package's sweeps (docs/reproductions/linear-figures.md: what each changes from
    the published protocol, and why)."""

    d_o: int = 128
    d_a: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1500
    train_transitions: int = 8192
    eval_transitions: int = 4096
    f3a_d_z: tuple[int, ...] = (1, 2, 4, 8, 12, 16)
    f3a_d_a: tuple[int, ...] = (4, 8, 16)
    f3b_sigma: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    f3b_d_z: tuple[int, ...] = (4, 8, 16)
    f3c_sigma: tuple[float, ...] = (0.5, 2.0)
    f3c_d_z: tuple[int, ...] = (1, 2, 4, 8, 12, 16)
    d_b: int = 8
    f6a_chi: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    # With weak other agents the action's unpredictable part (1 − χ)² competes with the
    # noise (σ_exo²) for the d_z = d_a latent directions.
    f6a_sigma_exo: tuple[float, ...] = (0.0, 0.5)
    f6b_kappa: tuple[float, ...] = (0.0, 0.01, 0.1, 0.5)
    f6b_sigma_iid: tuple[float, ...] = (0.0, 0.5, 1.0)  # Gaussian, as the paper's text says
    f6c_fraction: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1)
    f6c_sigma_exo: tuple[float, ...] = (0.5, 1.0, 2.0)
    # λ_a (sums over dimensions; = 6.25 in the published mean-over-dimensions units) must
    # outweigh what a noise direction saves in reconstruction (σ_exo² − 1 = 3 at 2); at 1%
    # of a fixed pool the head sees few distinct labels, so it needs a large weight and pool.
    f6c_action_weight: float = 100.0
    f6c_train_transitions: int = 32768


PACKAGE = Package()
PACKAGE_QUICK = Package(
    d_o=32, d_a=4, steps=500, train_transitions=2048, eval_transitions=1024,
    f3a_d_z=(1, 2, 4, 8), f3a_d_a=(2, 4), f3b_sigma=(0.0, 0.5, 2.0), f3b_d_z=(4,),
    f3c_d_z=(2, 4, 8), d_b=4, f6a_chi=(0.0, 0.5, 1.0), f6a_sigma_exo=(0.5,),
    f6b_kappa=(0.0, 0.5), f6b_sigma_iid=(0.0, 1.0), f6c_fraction=(0.0, 0.1),
    f6c_sigma_exo=(2.0,), f6c_train_transitions=4096,
)  # fmt: skip

# F6b probes the true latent (augmentation's effect on it is the point); the rest the
# package's surrogate z̃ = B⁺(ô' − o) (the over-parameterised LAM's true z also carries o).
PACKAGE_LATENT = {"F3a": "surrogate", "F3b": "surrogate", "F3c": "surrogate",
                  "F6a": "surrogate", "F6b": "true", "F6c": "surrogate"}  # fmt: skip


@dataclass(frozen=True)
class StreamRun:
    """One copy of the package protocol: a pool or stream from LinearLAM-v0."""

    figure: str
    seed: int
    stream: StreamConfig
    config: LinearConfig
    label_fraction: float
    eval_transitions: int

    def source(self) -> StreamSource:
        return StreamSource(self.stream, self.seed, self.label_fraction, self.eval_transitions)


def package_runs(s: Package, figures) -> list[StreamRun]:
    out = []

    def add(figure, d_z, env, policy="random", chi=None, pool=s.train_transitions,
            fraction=1.0, **lam):  # fmt: skip
        if figure not in figures:
            return
        for seed in s.seeds:
            kwargs = {"d_o": s.d_o, "d_a": s.d_a, **env, "structure_seed": seed}
            stream = StreamConfig(env_kwargs=kwargs, policy=policy, chi=chi,
                                  train_transitions=pool)  # fmt: skip
            config = LinearConfig(latent_dim=d_z, steps=s.steps, **lam)
            out.append(StreamRun(figure, seed, stream, config, fraction, s.eval_transitions))

    for d_a in s.f3a_d_a:
        for d_z in s.f3a_d_z:
            add("F3a", d_z, {"d_a": d_a})
    for sigma in s.f3b_sigma:
        for d_z in s.f3b_d_z:
            add("F3b", d_z, {"sigma_iid": sigma})
    for sigma in s.f3c_sigma:
        for d_z in s.f3c_d_z:
            add("F3c", d_z, {"sigma_exo": sigma, "d_b": s.d_b})
    for sigma in s.f6a_sigma_exo:
        for chi in s.f6a_chi:
            add("F6a", s.d_a, {"sigma_exo": sigma, "d_b": s.d_b}, policy="linear", chi=chi)
    for sigma in s.f6b_sigma_iid:
        for kappa in s.f6b_kappa:  # d_z = 2 d_a: latent directions beyond the action's
            add("F6b", 2 * s.d_a, {"sigma_iid": sigma}, kappa=kappa)
    for sigma in s.f6c_sigma_exo:
        for fraction in s.f6c_fraction:  # no labels: the plain LAM, λ_a = 0
            add("F6c", s.d_a, {"sigma_exo": sigma, "d_b": s.d_b}, action_head=fraction > 0,
                action_weight=s.f6c_action_weight if fraction > 0 else 0.0,
                fraction=fraction, pool=s.f6c_train_transitions)  # fmt: skip
    return out


def stream_row(run: StreamRun, result: dict) -> dict:
    latent = PACKAGE_LATENT[run.figure]
    r, env = result[latent], run.stream.env_kwargs
    noise, sigma = "none", 0.0
    if env.get("sigma_iid", 0) > 0:
        noise, sigma = "gaussian", env["sigma_iid"]
    elif env.get("sigma_exo", 0) > 0:
        noise, sigma = "other_agents", env["sigma_exo"]
    fraction = run.label_fraction if run.figure == "F6c" else 0.0
    return {
        "protocol": "package", "projection": "orthonormal", "figure": run.figure,
        "seed": run.seed, "d_o": result["d_o"],
        "d_a": result["d_a"], "d_z": run.config.latent_dim, "d_b": result["d_b"],
        "noise": noise, "sigma": sigma, "chi": run.stream.chi or 0.0, "kappa": run.config.kappa,
        "label_fraction": fraction, "action_weight": run.config.effective_action_weight,
        "steps": run.config.steps, "latent": latent, "probe": "lstsq", "nmse_a": r["nmse_a"],
        "nmse_noise": r["nmse_eps"], "nmse_o": r["nmse_o"],
        "llo": -r["nmse_a"] + r["nmse_eps"] + r["nmse_o"],
        "recon_loss": result["recon_loss"], "analytic_loss": result["analytic_loss"],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Running: batched groups over worker processes
# --------------------------------------------------------------------------------------------


def groups_of(runs: list) -> list[list]:
    """Runs that train together: the same steps and d_z (and, for the package, head or
    not), augmented or not (augmentation costs every copy of a group), at most MAX_GROUP
    copies, a setting's seeds never split; sorted by seed and law inside (contiguous
    copies share their draws cheaply)."""
    by_key = defaultdict(list)
    for run in runs:
        c = run.config
        head = c.action_head if isinstance(run, StreamRun) else False
        by_key[(c.steps, c.latent_dim, head, c.kappa > 0)].append(run)
    out = []
    for key in sorted(by_key):
        members = by_key[key]
        seeds = max(1, len({r.seed for r in members}))
        size = max(seeds, MAX_GROUP // seeds * seeds)
        chunks = [members[i : i + size] for i in range(0, len(members), size)]
        if isinstance(members[0], FreshRun):
            law_key = lambda r: (r.seed, r.law.d_a, r.law.noise_width, r.law.noise)  # noqa: E731
            chunks = [sorted(chunk, key=law_key) for chunk in chunks]
        out.extend(chunks)
    return out


def _task(group: list, device: str):
    """(function, arguments) that train and score one group in a worker."""
    configs, seeds = [r.config for r in group], [r.seed for r in group]
    if isinstance(group[0], FreshRun):
        args = (configs, [r.law for r in group], seeds, [r.label_fraction for r in group],
                [r.probe for r in group], device)  # fmt: skip
        return train_and_probe, args
    return train_package, (configs, [r.source() for r in group], seeds, device)


def train_package(configs: list, sources: list, seeds: list, device: str) -> list[dict]:
    """:func:`train_and_score`'s results of a package group, with its training seconds (the
    model stays in the worker)."""
    return _results(train_and_score("linear", configs, sources, seeds, device))


def _results(result) -> list[dict]:
    """Per-copy results of a task, with its training and probing seconds (wall clock, and
    CPU time where measured)."""
    if isinstance(result, list):  # train_and_probe
        return result
    lam, results = result  # train_and_score: least-squares probes, timed by the training log
    for r in results:
        r.update(train_seconds=lam.history[0]["seconds"][-1], probe_seconds=0.0)
    return results


def run_groups(
    groups: list[list], workers: int | RunnerOptions, device: str, cache: Path | None = None
) -> list[dict]:
    """Train every group (longest first) and return one CSV row per run. Prints each
    group's time, and the CPU time of the published groups: what they would take alone on
    an idle machine (the wall clock of a busy machine says little). ``cache``: each group's
    results are kept there as it ends (a rerun trains only what is missing)."""
    runner = workers if isinstance(workers, RunnerOptions) else RunnerOptions(workers=workers)
    runner = replace(runner, device=device)
    workers = runner.workers
    cost = lambda g: g[0].config.steps * len(g)  # noqa: E731
    groups = sorted(groups, key=cost, reverse=True)
    start, rows = time.perf_counter(), []
    cpu = defaultdict(float)  # published: model-steps, probe-steps and their CPU seconds

    def collect(group, result):
        results, c, n = _results(result), group[0].config, len(group)
        kind = "published" if isinstance(group[0], FreshRun) else "package"
        r = results[0]
        line = (f"  {kind:<9} d_z={c.latent_dim:<3}{' κ' if c.kappa else '  '} {n:>3} models × "
                f"{c.steps:>6} steps: train {r['train_seconds']:6.1f} s")  # fmt: skip
        if "train_cpu_seconds" in r:
            probe_steps = n * group[0].probe.steps
            cpu["model_steps"] += c.steps * n
            cpu["probe_steps"] += probe_steps
            cpu["train"] += r["train_cpu_seconds"]
            cpu["probe"] += r["probe_cpu_seconds"]
            line += (f" ({c.steps * n / r['train_cpu_seconds']:5.0f} model-steps per CPU-s), "
                     f"probes {r['probe_seconds']:5.1f} s "
                     f"({probe_steps / r['probe_cpu_seconds']:5.0f} per CPU-s)")  # fmt: skip
        print(f"{line}  [{time.perf_counter() - start:5.0f} s]", flush=True)

    tasks = []
    for group in groups:
        kind, c = "published" if isinstance(group[0], FreshRun) else "package", group[0].config
        detail = f"{len(group)} models × {c.steps} steps"
        tasks.append(Task(f"{kind} d_z={c.latent_dim}", *_task(group, device), cost(group), kind,
                          detail, key={"linear": repr(group)}))  # fmt: skip
    of_task = {id(t): g for t, g in zip(tasks, groups, strict=True)}
    results = execute(
        tasks,
        runner,
        lambda task, result: collect(of_task[id(task)], result),
        None if cache is None else ResultCache(cache),
    )
    for group, result in zip(groups, results, strict=True):  # the rows in the groups' order
        make_row = fresh_row if isinstance(group[0], FreshRun) else stream_row
        rows.extend(map(make_row, group, _results(result)))
    if cpu:
        total = cpu["train"] + cpu["probe"]
        print(f"  published: {cpu['model_steps'] / 1e6:.2f} M model-steps in {cpu['train']:.0f} "
              f"CPU-s ({cpu['model_steps'] / cpu['train']:.0f}/s), {cpu['probe_steps'] / 1e6:.2f}"
              f" M probe steps in {cpu['probe']:.0f} CPU-s; alone on an idle machine about "
              f"{total / workers / 60:.0f} min with {workers} worker(s)")  # fmt: skip
    key = lambda r: (PROTOCOLS.index(r["protocol"]), FIGURES.index(r["figure"]))  # noqa: E731
    return sorted(rows, key=key)


# --------------------------------------------------------------------------------------------
# Plots and the summary: one spec per figure and protocol
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plot:
    """x: the column on the x axis; curves: the column whose values are the curves (None:
    the metrics are the curves); panels: the column whose values are the panel columns;
    metrics: one panel row per metric (or the curves); title: what the figure shows."""

    x: str
    curves: str | None
    panels: str | None
    metrics: tuple[str, ...]
    title: str
    categorical: bool = False


LABEL = {
    "d_a": "d_a", "d_z": "latent dimension d_z", "sigma": "σ", "chi": "policy χ",
    "kappa": "augmentation κ", "label_fraction": "labelled fraction", "nmse_a": "nmse(a)",
    "nmse_o": "nmse(o)", "nmse_noise": "nmse(noise)", "llo": "LLO",
}  # fmt: skip
PUBLISHED_PLOTS = {
    "F3a": Plot("d_z", "d_a", None, ("nmse_a", "nmse_o"), "no noise: the latent holds a share "
                "d_z/d_a of the action (dotted), all of it once d_z ≥ d_a"),
    "F3b": Plot("sigma", "d_z", None, ("nmse_a", "nmse_o"), "i.i.d. Gaussian noise σ in "
                "training; probes fitted and measured on noise-free transitions"),
    "F3c": Plot("d_z", None, "sigma", ("nmse_a", "nmse_noise", "nmse_o"), "other agents σ·Y b "
                "(noise target b): weaker ones are fitted after the action, stronger before it"),
    "F6a": Plot("chi", "d_z", None, ("nmse_a", "nmse_o"), "policy a = (1 − χ) s + χ Π o "
                "(Π {projection}); probes fitted on χ-policy data, measured on random-policy "
                "data"),
    "F6b": Plot("kappa", "sigma", None, ("nmse_o", "nmse_a"), "augmentation κ under uniform "
                "[0, σ) noise: κ takes o out of the true latent, gives it the action", True),
    "F6c": Plot("label_fraction", "sigma", None, ("nmse_a", "nmse_noise"), "action head "
                "(weight 1, κ = 0.1) on per-batch random labels, other agents σ (target b)", True),
}  # fmt: skip
PACKAGE_PLOTS = {
    "F3a": Plot("d_z", "d_a", None, ("nmse_a",), "no noise (pool of 8,192, least squares): "
                "share d_z/d_a (dotted)"),
    "F3b": Plot("sigma", "d_z", None, ("nmse_a", "llo"), "i.i.d. Gaussian noise σ; probes "
                "fitted and measured on noisy data"),
    "F3c": Plot("d_z", None, "sigma", ("nmse_a", "nmse_noise", "nmse_o"), "other agents σ "
                "(noise target ε); surrogate B⁺(ô′ − o)"),
    "F6a": Plot("chi", "sigma", None, ("nmse_a", "nmse_o"), "policy a = (1 − χ) s + χ Π o, Π "
                "orthonormal rows, other agents σ, d_z = d_a; probes on random-policy data"),
    "F6b": Plot("kappa", "sigma", None, ("nmse_o", "nmse_a"), "augmentation κ under i.i.d. "
                "Gaussian noise σ, d_z = 2 d_a, true latent", True),
    "F6c": Plot("label_fraction", "sigma", None, ("nmse_a",), "action head on a fixed labelled "
                "subset of a pool of 32,768, λ_a = 100, other agents σ, d_z = d_a", True),
}  # fmt: skip
PLOTS = {"published": PUBLISHED_PLOTS, "package": PACKAGE_PLOTS}


def aggregate(rows, x, metric, **where) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x values, mean, standard error over seeds) of ``metric`` for rows matching ``where``."""
    by_x = defaultdict(list)
    for r in rows:
        if all(r[k] == v if isinstance(v, str) else math.isclose(r[k], v)
               for k, v in where.items()):  # fmt: skip
            by_x[r[x]].append(r[metric])
    xs = np.array(sorted(by_x))
    stats = np.array([mean_stderr(by_x[v]) for v in xs]).reshape(-1, 2)
    return xs, stats[:, 0], stats[:, 1]


def values(rows, key, **where) -> list:
    return sorted({r[key] for r in rows if all(r[k] == v for k, v in where.items())})


def _name(key: str, value: float) -> str:
    if key == "label_fraction":
        return f"{value:.0%} labels"
    return f"{LABEL.get(key, key).split()[-1]} = {value:g}"


def plot_figure(rows: list[dict], protocol: str, figure: str, path: Path) -> Path:
    spec = PLOTS[protocol][figure]
    rows = [r for r in rows if r["protocol"] == protocol and r["figure"] == figure]
    panels = values(rows, spec.panels) if spec.panels else [None]
    panel_rows = (spec.metrics,) if spec.curves is None else tuple((m,) for m in spec.metrics)
    width = max(6.4, 4.6 * len(panels))
    fig, axes = plt.subplots(len(panel_rows), len(panels), squeeze=False,
                             figsize=(width, 0.6 + 3.2 * len(panel_rows)))  # fmt: skip
    xs_all = values(rows, spec.x)
    for i, metrics in enumerate(panel_rows):
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            where = {spec.panels: panel} if spec.panels else {}
            curves = [(c, m) for m in metrics for c in
                      (values(rows, spec.curves) if spec.curves else [None])]  # fmt: skip
            for curve, metric in curves:
                sel = dict(where, **({spec.curves: curve} if spec.curves else {}))
                xs, mean, err = aggregate(rows, spec.x, metric, **sel)
                px = [xs_all.index(v) for v in xs] if spec.categorical else xs
                label = _name(spec.curves, curve) if spec.curves else LABEL[metric]
                (line,) = ax.plot(px, mean, marker="o", label=label)
                ax.fill_between(px, mean - err, mean + err, color=line.get_color(), alpha=0.2)
                if figure == "F3a" and metric == "nmse_a":  # theory: 1 − min(d_z, d_a)/d_a
                    ax.plot(px, 1 - np.minimum(xs, curve) / curve, "k:", lw=1)
            if figure == "F3a" and metrics[0] == "nmse_a":
                ax.plot([], [], "k:", lw=1, label="1 − min(d_z, d_a)/d_a")
            if spec.categorical:
                ax.set_xticks(range(len(xs_all)), [f"{v:g}" for v in xs_all])
            ylabel = LABEL[metrics[0]] if len(metrics) == 1 else "nmse (1: holds none of it)"
            ax.set(xlabel=LABEL[spec.x], ylabel=ylabel)
            if panel is not None:
                ax.set_title(_name(spec.panels, panel), fontsize=10)
            if figure == "F6a" and metrics[0] == "nmse_a" and max(ax.get_ylim()) > 5:
                ax.set_yscale("log")  # a deterministic policy's probe is off by orders
            ax.legend(fontsize=8)
    seeds = len(values(rows, "seed"))
    latent = {"change": "surrogate ô′ − o", "true": "true latent z",
              "surrogate": "surrogate B⁺(ô′ − o)"}[rows[0]["latent"]]  # fmt: skip
    title = textwrap.fill(f"{figure} ({protocol} protocol): {_title(spec, rows)}", int(width * 14))
    fig.suptitle(f"{title}\n{latent}; mean ± s.e. over {seeds} seeds, d_o = "
                 f"{rows[0]['d_o']:g}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title(spec: Plot, rows: list[dict]) -> str:
    """The plot's title, naming how Π was drawn where it says (F6a)."""
    projections = sorted({r["projection"] for r in rows}) or ["orthonormal"]
    names = {"orthonormal": "orthonormal rows", "gaussian": "Gaussian entries (a variant)"}
    return spec.title.replace("{projection}", ", ".join(names[p] for p in projections))


def summary(rows: list[dict]) -> str:
    """Each figure's numbers (mean ± s.e. over seeds), in the layout of its plot."""
    lines = []
    for protocol in PROTOCOLS:
        for figure in FIGURES:
            sub = [r for r in rows if r["protocol"] == protocol and r["figure"] == figure]
            if not sub:
                continue
            spec = PLOTS[protocol][figure]
            lines.append(f"{figure} ({protocol}): {_title(spec, sub)}")
            for panel in values(sub, spec.panels) if spec.panels else [None]:
                for curve in values(sub, spec.curves) if spec.curves else [None]:
                    where = {k: v for k, v in ((spec.panels, panel), (spec.curves, curve)) if k}
                    head = ", ".join(_name(k, v) for k, v in where.items())
                    for metric in spec.metrics:
                        xs, mean, err = aggregate(sub, spec.x, metric, **where)
                        cells = "  ".join(
                            f"{x:g}: {m:.3f}±{e:.3f}" for x, m, e in zip(xs, mean, err, strict=True)
                        )
                        lines.append(f"  {head + ' ' if head else ''}{LABEL[metric]} by "
                                     f"{spec.x}: {cells}")  # fmt: skip
    gaps = [
        (r["recon_loss"] - r["analytic_loss"]) / r["analytic_loss"]
        for r in rows
        if r["figure"] in ("F3b", "F3c") and r["kappa"] == 0 and r["analytic_loss"] > 1e-3
    ]
    if gaps:
        lines.append(f"Optimisation check (F3b, F3c): recon loss vs the PCA minimum of the same "
                     f"transitions, relative gap median {np.median(gaps):+.2%}, max "
                     f"{np.max(gaps):+.2%} over {len(gaps)} runs.")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


#: The runner's defaults here: two worker processes on the CPU.
RUNNER = RunnerOptions(workers=2, device="cpu")


def main(argv: list[str] | None = None, published: Published | None = None,
         package: Package | None = None) -> int:  # fmt: skip
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="published", choices=(*PROTOCOLS, "all"),
                        help="published (default): docs/protocols.md; package: the package's "
                        "variants; all: both")  # fmt: skip
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help="comma-separated figures to run (default: all six)",
    )
    parser.add_argument("--quick", action="store_true", help="reduced sweeps for the tests")
    parser.add_argument(
        "--grid",
        default="thinned",
        choices=tuple(GRIDS),
        help="the published protocol's sweeps: thinned (default; the points that carry each "
        "published finding, about 40 min on 2 cores) or published (every value of the papers' "
        "grids: hours on a CPU, a GPU job)",
    )
    parser.add_argument(
        "--f6a-pi",
        default="orthonormal",
        choices=PROJECTIONS,
        help="F6a's policy matrix Π: orthonormal rows (default, as published) or gaussian "
        "(i.i.d. N(0, 1) entries: a variant, a has variance d_o at χ = 1)",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/linear"), help="output folder")
    add_runner_flags(parser, RUNNER)
    args = parser.parse_args(argv)
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = [f for f in figures if f not in FIGURES]
    if unknown or not figures:
        parser.error(f"--figures: unknown figure(s) {unknown}; allowed: {', '.join(FIGURES)}")
    try:
        runner = runner_options(args, RUNNER)
    except ValueError as error:
        parser.error(str(error))
    try:
        device = runner.resolved_device()
    except ValueError as error:
        parser.error(f"--device: {error}")
    if device != "cpu" and runner.ray is None:
        runner = replace(runner, workers=1)  # one GPU here: one group at a time
    csv_path = args.out / "linear_results.csv"
    if csv_path.exists() and not runner.overwrite:
        parser.error(f"{csv_path} exists; pass --overwrite to replace it, or another --out")
    torch.set_num_threads(1)  # tiny batched models: one thread per process beats two
    start = time.perf_counter()
    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    runs = []
    if "published" in protocols:
        sweeps = published or (PUBLISHED_QUICK if args.quick else GRIDS[args.grid])
        sweeps = replace(sweeps, f6a_projection=args.f6a_pi)
        runs += published_runs(sweeps, figures)
    if "package" in protocols:
        runs += package_runs(package or (PACKAGE_QUICK if args.quick else PACKAGE), figures)
    groups = groups_of(runs)
    print(f"{len(runs)} runs in {len(groups)} batched groups ({', '.join(protocols)}; "
          f"{'quick' if args.quick else args.grid}; {', '.join(figures)}), device {device}",
          flush=True)  # fmt: skip
    rows = run_groups(groups, runner, device, runner.cache_folder(args.out))
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, csv_path, COLUMNS)
    rows = read_csv(csv_path, text=TEXT_COLUMNS, integers=("seed",))  # plots read the CSV
    for protocol in protocols:
        for figure in figures:
            path = plot_figure(rows, protocol, figure, args.out / f"{figure}_{protocol}.png")
            print(f"wrote {path}")
    print(f"wrote {csv_path} ({len(rows)} rows)")
    print(summary(rows))
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)  # a quiet Ctrl-C: "interrupted", status 130
