"""Reproduce the linear-LAM figures F3a–F3c and F6a–F6c (SPEC, "Experiments to reproduce").

    python examples/reproduce_linear.py            # full sweep, d_o = 128 (<= 15 min, 2 cores)
    python examples/reproduce_linear.py --quick    # reduced sweep, d_o = 32 (seconds)

Writes ``<out>/linear_results.csv`` (one row per figure, setting and seed) and one PNG per
figure (mean over seeds with a standard-error band), then prints a per-finding summary
computed from the CSV.

Every run streams its own transitions from ``LinearLAM-v0`` (one-step episodes, so
o ~ N(0, I); structure_seed = seed, so each seed has its own X and Y) through the linear
LAM (``lam_models.lams.linear``); runs with the same latent dimension (and action head or
not) train together as one batched model. Probes are fitted on training transitions and
measured on fresh held-out random-policy ones. Which latent each figure probes:
the surrogate z̃ = B⁺(ô' − o) for F3a–c, F6a and F6c (the over-parameterised LAM's true z
also carries o, which A cancels), the true z for F6b (augmentation's effect on it is the
point). ``recon_loss`` is measured on the training data without augmentation, beside
``analytic_loss``, the PCA minimum of the same data's o' − o.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_models.lams.linear import (  # noqa: E402
    LinearConfig,
    LinearLAM,
    StreamConfig,
    StreamSource,
)
from lam_models.metrics import mean_stderr  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402

COLUMNS = [
    "figure",
    "seed",
    "d_o",
    "d_a",
    "d_z",
    "d_b",
    "sigma_iid",
    "sigma_exo",
    "chi",
    "kappa",
    "label_fraction",
    "latent",
    "nmse_a",
    "nmse_q",
    "nmse_eps",
    "nmse_o",
    "llo",
    "recon_loss",
    "analytic_loss",
]
FIGURES = ("F3a", "F3b", "F3c", "F6a", "F6b", "F6c")


@dataclass(frozen=True)
class Sweep:
    """The sweep values of every figure; ``QUICK`` is a scaled-down copy for the tests."""

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
    # F6a also with weak other agents: then the action's unpredictable part (1 − χ)² competes
    # with the noise (σ_exo²) for the d_z = d_a latent directions.
    f6a_sigma_exo: tuple[float, ...] = (0.0, 0.5)
    # F6b: d_z = 2 d_a > d_a + d_b: latent directions with no change left to encode, where
    # the over-parameterised LAM's true latent is free to carry o.
    f6b_kappa: tuple[float, ...] = (0.0, 0.01, 0.1, 0.5)
    f6b_sigma_exo: tuple[float, ...] = (0.0, 0.5, 2.0)
    f6b_d_b: int = 4
    f6c_fraction: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1)
    f6c_sigma_exo: tuple[float, ...] = (0.5, 1.0, 2.0)
    # λ_a must outweigh what a noise direction saves in reconstruction (σ_exo² − 1 = 3 at 2);
    # the head's loss is a mean over the labelled transitions of a batch, so λ_a's weight does
    # not shrink with the label fraction, but its gradient gets rarer and noisier: at 1% the
    # latent leaves the noise within 1500 steps only with a large λ_a and a larger pool
    # (more distinct labelled transitions).
    f6c_action_weight: float = 100.0
    f6c_train_transitions: int = 32768
    extra: dict = field(default_factory=dict)


FULL = Sweep()
QUICK = Sweep(
    d_o=32,
    d_a=4,
    steps=500,
    train_transitions=2048,
    eval_transitions=1024,
    f3a_d_z=(1, 2, 4, 8),
    f3a_d_a=(2, 4),
    f3b_sigma=(0.0, 0.5, 2.0),
    f3b_d_z=(4,),
    f3c_d_z=(2, 4, 8),
    d_b=4,
    f6a_chi=(0.0, 0.5, 1.0),
    f6a_sigma_exo=(0.5,),
    f6b_kappa=(0.0, 0.5),
    f6b_sigma_exo=(0.0, 2.0),
    f6b_d_b=2,
    f6c_fraction=(0.0, 0.1),
    f6c_sigma_exo=(2.0,),
    f6c_train_transitions=4096,
)

LATENT = {
    "F3a": "surrogate",
    "F3b": "surrogate",
    "F3c": "surrogate",
    "F6a": "surrogate",
    "F6b": "true",
    "F6c": "surrogate",
}


@dataclass(frozen=True)
class Job:
    """One run: its figure, data (a stream), model settings and seed."""

    figure: str
    stream: StreamConfig
    lam: LinearConfig
    seed: int
    label_fraction: float = 1.0
    eval_transitions: int = 4096

    def source(self) -> StreamSource:
        return StreamSource(self.stream, self.seed, self.label_fraction, self.eval_transitions)


def jobs(s: Sweep) -> list[Job]:
    """Every (figure, setting, seed) run of the sweep."""
    out: list[Job] = []

    def add(
        figure: str,
        d_z: int,
        env: dict,
        policy="random",
        chi=None,
        train_transitions=s.train_transitions,
        label_fraction=1.0,
        **lam,
    ) -> None:
        for seed in s.seeds:
            kwargs = {"d_o": s.d_o, "d_a": s.d_a, **env, "structure_seed": seed}
            stream = StreamConfig(
                env_kwargs=kwargs, policy=policy, chi=chi, train_transitions=train_transitions
            )
            config = LinearConfig(latent_dim=d_z, steps=s.steps, **lam)
            out.append(Job(figure, stream, config, seed, label_fraction, s.eval_transitions))

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
    for sigma in s.f6b_sigma_exo:
        for kappa in s.f6b_kappa:
            add("F6b", 2 * s.d_a, {"sigma_exo": sigma, "d_b": s.f6b_d_b}, kappa=kappa)
    for sigma in s.f6c_sigma_exo:
        for fraction in s.f6c_fraction:
            # With no labels the head has nothing to learn from: the plain LAM, λ_a = 0.
            add(
                "F6c",
                s.d_a,
                {"sigma_exo": sigma, "d_b": s.d_b},
                action_head=fraction > 0,
                action_weight=s.f6c_action_weight if fraction > 0 else 0.0,
                label_fraction=fraction,
                train_transitions=s.f6c_train_transitions,
            )
    return out


def run_jobs(all_jobs: list[Job], progress: bool) -> list[dict]:
    """Train the jobs in batched groups (same d_z; F6c apart, for its action head)."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in all_jobs:
        groups[(job.lam.latent_dim, job.figure == "F6c")].append(job)
    rows = []
    for (d_z, head), group in sorted(groups.items()):
        start = time.perf_counter()
        sources = [j.source() for j in group]
        lam = LinearLAM.train(
            [j.lam for j in group],
            sources,
            [j.seed for j in group],
            device="cpu",
            progress=progress,
        )
        results = lam.metrics(sources)
        print(
            f"  d_z={d_z:<3} head={'yes' if head else 'no ':<3} {len(group):>3} models "
            f"in {time.perf_counter() - start:6.1f} s",
            flush=True,
        )
        for job, result in zip(group, results, strict=True):
            rows.append(_row(job, result))
    order = {f: i for i, f in enumerate(FIGURES)}
    return sorted(rows, key=lambda r: order[r["figure"]])


def _row(job: Job, result: dict) -> dict:
    latent = LATENT[job.figure]
    report = result[latent]
    return {
        "figure": job.figure,
        "seed": job.seed,
        "d_o": result["d_o"],
        "d_a": result["d_a"],
        "d_z": job.lam.latent_dim,
        "d_b": result["d_b"],
        "sigma_iid": result["sigma_iid"],
        "sigma_exo": result["sigma_exo"],
        "chi": job.stream.chi if job.stream.chi is not None else 0.0,
        "kappa": job.lam.kappa,
        "label_fraction": job.label_fraction if job.figure == "F6c" else 1.0,
        "latent": latent,
        **{k: report[k] for k in ("nmse_a", "nmse_q", "nmse_eps", "nmse_o", "llo")},
        "recon_loss": result["recon_loss"],
        "analytic_loss": result["analytic_loss"],
    }


# --------------------------------------------------------------------------------------------
# Aggregation, plots and the summary
# --------------------------------------------------------------------------------------------


def aggregate(rows, figure, x, metric, **where) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x values, mean, standard error over seeds) of ``metric`` for rows matching ``where``."""
    by_x = defaultdict(list)
    for r in rows:
        if r["figure"] == figure and all(math.isclose(r[k], v) for k, v in where.items()):
            by_x[r[x]].append(r[metric])
    xs = np.array(sorted(by_x))
    stats = np.array([mean_stderr(by_x[v]) for v in xs]).reshape(-1, 2)
    return xs, stats[:, 0], stats[:, 1]


def _values(rows, figure, key) -> list[float]:
    return sorted({r[key] for r in rows if r["figure"] == figure})


def _band(ax, xs, mean, err, label, positions=None, **kw) -> None:
    px = xs if positions is None else positions
    (line,) = ax.plot(px, mean, marker="o", label=label, **kw)
    ax.fill_between(px, mean - err, mean + err, color=line.get_color(), alpha=0.2)


def plot_all(rows: list[dict], out: Path) -> list[Path]:
    paths = []
    seeds = len({r["seed"] for r in rows})
    note = f"mean ± s.e. over {seeds} seeds"

    def save(fig, name, title):
        fig.suptitle(f"{name}: {title}\n({note})", fontsize=10)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    # F3a: nmse(q) against d_z, one line per d_a, beside the theory 1 − min(d_z, d_a)/d_a.
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for d_a in _values(rows, "F3a", "d_a"):
        xs, m, e = aggregate(rows, "F3a", "d_z", "nmse_q", d_a=d_a)
        _band(ax, xs, m, e, f"d_a = {d_a:g}")
        ax.plot(xs, 1 - np.minimum(xs, d_a) / d_a, "k:", lw=1)
    ax.plot([], [], "k:", lw=1, label="1 − min(d_z, d_a)/d_a")
    ax.set(xlabel="latent dimension d_z", ylabel="nmse(q), surrogate latent")
    ax.legend()
    save(fig, "F3a", "no noise: z holds the action once d_z ≥ d_a")

    # F3b: nmse(q) and LLO against σ_iid, one line per d_z.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for d_z in _values(rows, "F3b", "d_z"):
        for ax, metric in zip(axes, ("nmse_q", "llo"), strict=True):
            xs, m, e = aggregate(rows, "F3b", "sigma_iid", metric, d_z=d_z)
            _band(ax, xs, m, e, f"d_z = {d_z:g}")
    axes[0].set(xlabel="σ_iid", ylabel="nmse(q)")
    axes[1].set(xlabel="σ_iid", ylabel="LLO (best 2)")
    axes[0].legend()
    d_a = _values(rows, "F3b", "d_a")[0]
    save(fig, "F3b", f"i.i.d. noise (d_a = {d_a:g}), surrogate latent")

    # F3c: the three nmse terms against d_z, one panel per σ_exo.
    sigmas = _values(rows, "F3c", "sigma_exo")
    fig, axes = plt.subplots(1, len(sigmas), figsize=(5 * len(sigmas), 4), squeeze=False)
    for ax, sigma in zip(axes[0], sigmas, strict=True):
        for metric, label in (
            ("nmse_q", "nmse(q)"),
            ("nmse_eps", "nmse(ε)"),
            ("nmse_o", "nmse(o)"),
        ):
            xs, m, e = aggregate(rows, "F3c", "d_z", metric, sigma_exo=sigma)
            _band(ax, xs, m, e, label)
        ax.axvline(_values(rows, "F3c", "d_a")[0], color="grey", ls=":", lw=1)
        ax.set(xlabel="latent dimension d_z", ylabel="nmse", title=f"σ_exo = {sigma:g}")
        ax.set_ylim(-0.05, 1.1)
        ax.legend()
    d_b = _values(rows, "F3c", "d_b")[0]
    save(fig, "F3c", f"other agents (d_b = {d_b:g}), surrogate latent; dotted: d_z = d_a")

    # F6a: action information against policy determinism χ.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for sigma in _values(rows, "F6a", "sigma_exo"):
        for ax, metric in zip(axes, ("nmse_q", "nmse_o"), strict=True):
            xs, m, e = aggregate(rows, "F6a", "chi", metric, sigma_exo=sigma)
            _band(ax, xs, m, e, f"σ_exo = {sigma:g}")
    axes[0].set(xlabel="policy determinism χ", ylabel="nmse(q) on random-policy data")
    axes[1].set(xlabel="policy determinism χ", ylabel="nmse(o) on random-policy data")
    axes[0].legend()
    save(fig, "F6a", "data policy a = χ Π o + (1 − χ) s, d_z = d_a, surrogate latent")

    # F6b: nmse(o) and nmse(q) of the true latent against κ, one line per noise level.
    kappas = _values(rows, "F6b", "kappa")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for sigma in _values(rows, "F6b", "sigma_exo"):
        for ax, metric in zip(axes, ("nmse_o", "nmse_q"), strict=True):
            xs, m, e = aggregate(rows, "F6b", "kappa", metric, sigma_exo=sigma)
            _band(ax, xs, m, e, f"σ_exo = {sigma:g}", positions=np.arange(len(xs)))
    for ax, label in zip(axes, ("nmse(o), true latent", "nmse(q), true latent"), strict=True):
        ax.set_xticks(range(len(kappas)), [f"{k:g}" for k in kappas])
        ax.set(xlabel="augmentation κ", ylabel=label)
    axes[0].legend()
    save(fig, "F6b", "augmentation, d_z = 2 d_a > d_a + d_b")

    # F6c: nmse(q) against the label fraction, one line per σ_exo.
    fractions = _values(rows, "F6c", "label_fraction")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for sigma in _values(rows, "F6c", "sigma_exo"):
        xs, m, e = aggregate(rows, "F6c", "label_fraction", "nmse_q", sigma_exo=sigma)
        _band(ax, xs, m, e, f"σ_exo = {sigma:g}", positions=np.arange(len(xs)))
    ax.set_xticks(range(len(fractions)), [f"{f:.0%}" for f in fractions])
    ax.set(xlabel="labelled fraction (action head)", ylabel="nmse(q), surrogate latent")
    ax.legend()
    d_b = _values(rows, "F6c", "d_b")[0]
    save(fig, "F6c", f"action prediction, d_z = d_a, d_b = {d_b:g}")
    return paths


def summary(rows: list[dict]) -> str:
    """One paragraph per published finding, with the numbers from the CSV."""

    def ms(figure, x, metric, at, **where) -> str:
        xs, m, e = aggregate(rows, figure, x, metric, **where)
        i = int(np.argmin(np.abs(xs - at)))
        return f"{m[i]:.3f}±{e[i]:.3f}"

    lines = []
    d_as = _values(rows, "F3a", "d_a")
    parts = []
    for d_a in d_as:
        xs, m, _ = aggregate(rows, "F3a", "d_z", "nmse_q", d_a=d_a)
        cells = ", ".join(
            f"d_z={x:g}: {v:.3f} (theory {1 - min(x, d_a) / d_a:.3f})"
            for x, v in zip(xs, m, strict=True)
        )
        parts.append(f"  d_a={d_a:g}: {cells}")
    lines.append(
        "1. No noise, z holds the action once d_z >= d_a, a share d_z/d_a below (F3a nmse_q):"
    )
    lines += parts

    lines.append(
        "2. i.i.d. noise up to about half the signal's scale barely hurts (F3b, d_z = d_a):"
    )
    d_a = _values(rows, "F3b", "d_a")[0]
    for sigma in _values(rows, "F3b", "sigma_iid"):
        lines.append(
            f"  σ_iid={sigma:g}: nmse_q {ms('F3b', 'd_z', 'nmse_q', d_a, sigma_iid=sigma)}, "
            f"LLO {ms('F3b', 'd_z', 'llo', d_a, sigma_iid=sigma)}"
        )

    lines.append("3. Other agents: weaker -> latent fits q first; stronger -> noise first (F3c):")
    for sigma in _values(rows, "F3c", "sigma_exo"):
        for d_z in _values(rows, "F3c", "d_z"):
            lines.append(
                f"  σ_exo={sigma:g} d_z={d_z:g}: "
                f"nmse_q {ms('F3c', 'd_z', 'nmse_q', d_z, sigma_exo=sigma)}, "
                f"nmse_eps {ms('F3c', 'd_z', 'nmse_eps', d_z, sigma_exo=sigma)}"
            )

    lines.append(
        "4. A more deterministic policy leaves less action in z (F6a, random-policy probes):"
    )
    for sigma in _values(rows, "F6a", "sigma_exo"):
        for chi in _values(rows, "F6a", "chi"):
            lines.append(
                f"  σ_exo={sigma:g} χ={chi:g}: "
                f"nmse_a {ms('F6a', 'chi', 'nmse_a', chi, sigma_exo=sigma)}, "
                f"nmse_q {ms('F6a', 'chi', 'nmse_q', chi, sigma_exo=sigma)}, "
                f"nmse_o {ms('F6a', 'chi', 'nmse_o', chi, sigma_exo=sigma)}"
            )

    lines.append("5. Augmentation removes o from the true latent and recovers the action (F6b):")
    for sigma in _values(rows, "F6b", "sigma_exo"):
        for kappa in _values(rows, "F6b", "kappa"):
            lines.append(
                f"  σ_exo={sigma:g} κ={kappa:g}: "
                f"nmse_o {ms('F6b', 'kappa', 'nmse_o', kappa, sigma_exo=sigma)}, "
                f"nmse_q {ms('F6b', 'kappa', 'nmse_q', kappa, sigma_exo=sigma)}"
            )

    lines.append("6. ~1% action labels make z capture the action under strong other agents (F6c):")
    for sigma in _values(rows, "F6c", "sigma_exo"):
        cells = ", ".join(
            f"{f:.0%}: {ms('F6c', 'label_fraction', 'nmse_q', f, sigma_exo=sigma)}"
            for f in _values(rows, "F6c", "label_fraction")
        )
        lines.append(f"  σ_exo={sigma:g} nmse_q by label fraction: {cells}")

    gaps = [
        (r["recon_loss"] - r["analytic_loss"]) / r["analytic_loss"]
        for r in rows
        if r["figure"] in ("F3b", "F3c") and r["analytic_loss"] > 1e-3
    ]
    if gaps:
        lines.append(
            f"Optimisation check (F3b, F3c, random policy, no augmentation): recon loss vs "
            f"analytic minimum, relative gap median {np.median(gaps):+.2%}, "
            f"max {np.max(gaps):+.2%} over {len(gaps)} runs."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sweep for the tests")
    parser.add_argument("--out", type=Path, default=Path("outputs/linear"), help="output folder")
    parser.add_argument("--progress", action="store_true", help="tqdm bar for each group")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny batched models: one thread beats two on a busy CPU
    sweep = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    all_jobs = jobs(sweep)
    print(f"{len(all_jobs)} runs ({'quick' if args.quick else 'full'} sweep, d_o = {sweep.d_o})")
    rows = run_jobs(all_jobs, progress=args.progress)
    csv_path = args.out / "linear_results.csv"
    write_csv(rows, csv_path, COLUMNS)
    # the summary and plots read what was written
    rows = read_csv(csv_path, text=("figure", "latent"))
    for path in plot_all(rows, args.out):
        print(f"wrote {path}")
    print(f"wrote {csv_path} ({len(rows)} rows)")
    print(summary(rows))
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
