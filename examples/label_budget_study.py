"""Label-budget study: does supervision during LAM training help under distractors?

    python examples/label_budget_study.py            # full study (<= 30 min on 2 cores)
    python examples/label_budget_study.py --quick    # reduced, for the tests (seconds)

On the grid whose noise row leaks the action (``action_leak`` ρ > 0: the noise row shows
the action's pattern with probability ρ) and without the leak (ρ = 0, the control; same
i.i.d. noise row otherwise), three LAMs go through the LAPO-style pipeline
(:mod:`lam_models.pipeline`) at several label fractions and seeds:

- ``vq``: the VQ LAM (LAPO-style), unsupervised;
- ``laom``: the LAOM-style LAM without labels;
- ``laom+labels``: the LAOM-style LAM with its linear action head trained on the labelled
  subset (λ_a = 1).

For each it reports the linear-probe nmse of the true action (one-hot) from the latent
(held-out episodes) and the pipeline's return normalised by BC on fully labelled data (the
same seed's); BC on the labelled subset alone is reported beside them. Writes
``<out>/label_budget.csv`` (one row per setting, method, label fraction and seed) and
``<out>/label_budget.png``, then prints a mean ± s.e. table and the comparison of LAOM with
and without labels.

Each seed has its own dataset (collected with that seed); the unsupervised LAMs never read
labels, so one model per seed serves every label fraction; label subsets are nested across
fractions. Seeds (and label fractions) of one LAM kind train as one batched model, and the
settings run in two worker processes with one torch thread each.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs.collect import CollectConfig, collect  # noqa: E402
from lam_models.bc import fit_decoder, fit_policy  # noqa: E402
from lam_models.lam import get_lam  # noqa: E402
from lam_models.metrics import mean_stderr  # noqa: E402
from lam_models.pipeline import PipelineConfig  # noqa: E402
from lam_models.rollout import composed, evaluate_policies  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.scoring import evaluate_latents  # noqa: E402
from lam_models.split import DataSplit  # noqa: E402

METHODS = ("vq", "laom", "laom+labels")
COLUMNS = [
    "setting",
    "noise_intensity",
    "action_leak",
    "method",
    "label_fraction",
    "seed",
    "nmse_action",
    "probe_controllable_loss",
    "probe_stochastic_loss",
    "agreement",
    "return",
    "full_bc_return",
    "normalised_return",
]


@dataclass(frozen=True)
class Study:
    """The study's settings; ``QUICK`` is a scaled-down copy for the tests."""

    # (name, noise_intensity, action_leak ρ) of each setting.
    settings: tuple[tuple[str, float, float], ...] = (
        ("none", 0.0, 0.0),  # control: no noise row at all
        ("iid", 1.0, 0.0),  # i.i.d. noise row, uncorrelated with the action
        ("correlated", 1.0, 0.8),  # the action leaks into the noise row
    )
    epsilon: float = 0.3  # snaking policy's exploration: enough action variety to learn from
    fractions: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1)
    seeds: tuple[int, ...] = (0, 1, 2)
    episodes: int = 100
    episode_length: int = 100
    lam_steps: int = 4000
    policy_steps: int = 1500
    rollout_episodes: int = 16
    action_weight: float = 1.0  # λ_a of laom+labels


FULL = Study()
QUICK = Study(
    settings=(("none", 0.0, 0.0), ("correlated", 1.0, 0.8)),
    fractions=(0.01, 0.1),
    seeds=(0, 1),
    episodes=30,
    episode_length=60,
    lam_steps=300,
    policy_steps=300,
    rollout_episodes=4,
)


def _dataset(study: Study, setting: tuple[str, float, float], seed: int, root: Path) -> Path:
    """Collect (or reuse) the dataset of one setting and seed, with labels to spare."""
    config = CollectConfig(
        env="GridLAM-v0",
        env_kwargs={"noise_intensity": setting[1], "action_leak": setting[2]},
        policy="snaking",
        epsilon=study.epsilon,
        episodes=study.episodes,
        episode_length=study.episode_length,
        label_fraction=min(1.0, 2 * max(study.fractions)),  # the split takes some away
        seed=seed,
    )
    path = root / config.default_dataset_id()
    if not (path / "data" / "metadata.json").is_file():
        path = collect(config, root=root, progress=False).path
    return path


def run_setting(study: Study, setting: tuple[str, float, float], root: Path) -> list[dict]:
    """Every method, label fraction and seed of one setting; one row each."""
    label, noise, rho = setting
    torch.set_num_threads(1)
    start = time.perf_counter()
    seeds, fractions = list(study.seeds), list(study.fractions)
    base = PipelineConfig(policy_steps=study.policy_steps, rollout_episodes=study.rollout_episodes)
    splits = {s: DataSplit(_dataset(study, setting, s, root), base.held_out, s) for s in seeds}
    # The labelled subsets, nested across fractions (the same seed draws them).
    labelled = {(s, f): splits[s].with_labels(f) for s in seeds for f in fractions}
    grid = [(s, f) for s in seeds for f in fractions]
    spec = splits[seeds[0]].spec

    # Stage 1 and 2: the LAMs and their latents, (method, seed, fraction) -> z train/test.
    def lam_config(name: str, head: bool):
        cls = get_lam(name)
        options = {**cls.pipeline_defaults, "steps": study.lam_steps}
        if head:
            options.update(action_head=True, action_weight=study.action_weight)
        return cls.Config(**options)

    groups = {  # the unsupervised LAMs read no labels: one model per seed serves every fraction
        "vq": ("vq", False, [splits[s] for s in seeds], seeds, [(s, None) for s in seeds]),
        "laom": ("laom", False, [splits[s] for s in seeds], seeds, [(s, None) for s in seeds]),
        "laom+labels": ("laom", True, [labelled[k] for k in grid], [s for s, _ in grid], grid),
    }
    latents, probes = {}, {}
    for method, (name, head, group, group_seeds, keys) in groups.items():
        lam = get_lam(name).train(lam_config(name, head), group, group_seeds, device="cpu")
        for part in ("train", "test"):
            obs = np.stack([getattr(sp, part).obs() for sp in group])
            far = np.stack([getattr(sp, part).far_obs(lam.lookahead) for sp in group])
            for key, z in zip(keys, lam.latents(obs, far), strict=True):
                latents[method, *key, part] = z
        for (s, f), sp in zip(keys, group, strict=True):
            probes[method, s, f] = evaluate_latents(
                latents[method, s, f, "train"],
                latents[method, s, f, "test"],
                sp.train,
                sp.test,
                True,
                spec.action_dim,
                s,
            )
        print(
            f"  {label:<10} {method:<12} LAM ×{len(group)} {time.perf_counter() - start:6.1f} s",
            flush=True,
        )

    # Stage 3: latent policies (one per trained LAM), and the two BC baselines.
    lam_keys = [(m, s, None) for m in ("vq", "laom") for s in seeds] + [
        ("laom+labels", s, f) for s, f in grid
    ]
    flat = {s: splits[s].train.obs().reshape(len(splits[s].train), -1) for s in seeds}
    truth = {s: splits[s].train.oracle["action"] for s in seeds}
    every = np.ones((len(lam_keys), len(truth[seeds[0]])), dtype=bool)
    common = dict(steps=study.policy_steps, width=base.width)
    latent_policy = fit_policy(
        np.stack([flat[s] for _, s, _ in lam_keys]),
        np.stack([latents[k + ("train",)] for k in lam_keys]),
        every,
        "regression",
        seeds=[s for _, s, _ in lam_keys],
        **common,
    )
    bc_keys = [("labelled_bc", s, f) for s, f in grid] + [("full_bc", s, None) for s in seeds]
    bc = fit_policy(
        np.stack([flat[s] for _, s, _ in bc_keys]),
        np.stack([truth[s] for _, s, _ in bc_keys]),
        np.stack(
            [labelled[s, f].train.label_mask if f is not None else every[0] for _, s, f in bc_keys]
        ),
        "classification",
        seeds=[s for _, s, _ in bc_keys],
        d_out=spec.action_dim,
        **common,
    )

    # Stage 4: decoders, one per (method, seed, fraction), each on its labelled subset.
    dec_keys = [(m, s, f) for m in METHODS for s, f in grid]

    def lam_of(m, s, f):
        return (m, s, f if m == "laom+labels" else None)

    decoder = fit_decoder(
        np.stack([latents[lam_of(*k) + ("train",)] for k in dec_keys]),
        np.stack([labelled[s, f].train.actions for _, s, f in dec_keys]),  # visible labels
        np.stack([labelled[s, f].train.label_mask for _, s, f in dec_keys]),
        True,
        spec.action_dim,
        study.policy_steps,
        [s for _, s, _ in dec_keys],
        base.width,
    )
    # Each decoder copy composed with the latent policy of its own LAM.
    per_decoder = latent_policy.select([lam_keys.index(lam_of(*k)) for k in dec_keys])

    # Stage 5: agreement on held-out episodes and returns, every policy at once.
    data = splits[seeds[0]].data
    results = {}
    for name, keys, act in (
        ("composed", dec_keys, composed(per_decoder, decoder)),
        ("bc", bc_keys, bc.act),
    ):
        obs = torch.from_numpy(np.stack([splits[s].test.obs() for _, s, _ in keys])).flatten(2)
        truth_test = np.stack([splits[s].test.oracle["action"] for _, s, _ in keys])
        results[name] = evaluate_policies(
            data, {name: act}, obs, truth_test, study.rollout_episodes, seed=12_345
        )[name]
        results[name]["keys"] = keys

    full_return = {
        s: results["bc"]["return"][i] for i, (n, s, _) in enumerate(bc_keys) if n == "full_bc"
    }
    rows = []
    for name in ("composed", "bc"):
        r = results[name]
        for i, (method, s, f) in enumerate(r["keys"]):
            if method == "full_bc":
                continue
            probe = probes.get(lam_of(method, s, f), {}) if name == "composed" else {}
            rows.append(
                {
                    "setting": label,
                    "noise_intensity": noise,
                    "action_leak": rho,
                    "method": method,
                    "label_fraction": f,
                    "seed": s,
                    "nmse_action": probe.get("nmse_action", math.nan),
                    "probe_controllable_loss": probe.get("probe_controllable_loss", math.nan),
                    "probe_stochastic_loss": probe.get("probe_stochastic_loss", math.nan),
                    "agreement": float(r["agreement"][i]),
                    "return": float(r["return"][i]),
                    "full_bc_return": float(full_return[s]),
                    "normalised_return": float(r["return"][i] / full_return[s]),
                }
            )
    print(f"  {label:<10} done in {time.perf_counter() - start:.1f} s", flush=True)
    return rows


def aggregate(rows: list[dict], setting: str, method: str, metric: str):
    """(label fractions, mean, standard error over seeds) of ``metric``."""
    by_f = defaultdict(list)
    for r in rows:
        if r["setting"] == setting and r["method"] == method:
            by_f[r["label_fraction"]].append(r[metric])
    xs = np.array(sorted(by_f))
    stats = np.array([mean_stderr(by_f[x]) for x in xs]).reshape(-1, 2)
    return xs, stats[:, 0], stats[:, 1]


LABELS = {
    "vq": "VQ LAM (LAPO-style)",
    "laom": "LAOM-style, no labels",
    "laom+labels": "LAOM-style + labels",
    "labelled_bc": "BC on labelled subset",
}


TITLES = {
    "none": "no noise row (control)",
    "iid": "i.i.d. noise row (ρ = 0)",
    "correlated": "the action leaks into the noise row",
}


def _settings(rows: list[dict]) -> list[tuple[str, float, float]]:
    """(name, noise_intensity, ρ) of the settings in ``rows``, in the study's order."""
    found = {(r["setting"], r["noise_intensity"], r["action_leak"]) for r in rows}
    order = list(TITLES)
    return sorted(found, key=lambda s: (order.index(s[0]) if s[0] in order else 99, s))


def plot(rows: list[dict], path: Path) -> None:
    settings = _settings(rows)
    seeds = len({r["seed"] for r in rows})
    fig, axes = plt.subplots(2, len(settings), figsize=(5 * len(settings), 8), squeeze=False)
    for col, (name, noise, rho) in enumerate(settings):
        for row, (metric, ylabel) in enumerate(
            (
                ("normalised_return", "return / return of BC on full labels"),
                ("nmse_action", "probe nmse of the true action (one-hot)"),
            )
        ):
            ax = axes[row, col]
            for method in (*METHODS, "labelled_bc"):
                if metric == "nmse_action" and method == "labelled_bc":
                    continue
                xs, m, e = aggregate(rows, name, method, metric)
                style = "--" if method == "labelled_bc" else "-"
                (line,) = ax.plot(xs, m, style, marker="o", label=LABELS[method])
                ax.fill_between(xs, m - e, m + e, color=line.get_color(), alpha=0.2)
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"{x:.1%}" for x in xs])
            ax.minorticks_off()
            title = f"{TITLES.get(name, name)}\nnoise {noise:g}, ρ = {rho:g}"
            ax.set(xlabel="label fraction", ylabel=ylabel, title=title)
            ax.set_ylim(-0.05, 1.15)
        axes[0, col].legend(fontsize=8)
    fig.suptitle(f"Label budget on the grid (mean ± s.e. over {seeds} seeds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(rows: list[dict]) -> str:
    """The mean ± s.e. table, and LAOM with vs without labels in each setting."""
    lines = [
        f"{'setting':<11}{'method':<13}{'fraction':>9}{'probe nmse(a)':>18}{'norm. return':>17}"
    ]
    settings = _settings(rows)
    for name, _, _ in settings:
        for method in (*METHODS, "labelled_bc"):
            xs, m, e = aggregate(rows, name, method, "normalised_return")
            _, pm, pe = aggregate(rows, name, method, "nmse_action")
            for i, x in enumerate(xs):
                probe = "—" if math.isnan(pm[i]) else f"{pm[i]:.3f} ± {pe[i]:.3f}"
                lines.append(
                    f"{name:<11}{method:<13}{x:>9.1%}{probe:>18}{m[i]:>10.3f} ± {e[i]:.3f}"
                )
    lines.append("")
    lines.append("Means over label fractions and seeds (normalised return; probe nmse of a):")
    for name, _, _ in settings:
        cells = {}
        for method in (*METHODS, "labelled_bc"):
            values = [r for r in rows if r["setting"] == name and r["method"] == method]
            cells[method] = (
                np.mean([r["normalised_return"] for r in values]),
                np.mean([r["nmse_action"] for r in values]),
            )
        gain = cells["laom+labels"][0] - cells["laom"][0]
        lines.append(
            f"  {name:<10}: return vq {cells['vq'][0]:.3f}, laom {cells['laom'][0]:.3f}, "
            f"laom+labels {cells['laom+labels'][0]:.3f} (labels: {gain:+.3f}), BC on the "
            f"labelled subset {cells['labelled_bc'][0]:.3f}; probe vq {cells['vq'][1]:.3f}, "
            f"laom {cells['laom'][1]:.3f}, laom+labels {cells['laom+labels'][1]:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced study for the tests")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/label_budget"), help="output folder"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (one per setting)")
    args = parser.parse_args(argv)
    study = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    root = (args.out / "datasets").resolve()
    start = time.perf_counter()
    print(
        f"label-budget study ({'quick' if args.quick else 'full'}): settings "
        f"{[name for name, _, _ in study.settings]}, fractions "
        f"{study.fractions}, seeds {study.seeds}, {study.episodes}×{study.episode_length} "
        "transitions per dataset"
    )
    for setting in study.settings:  # collect first, in this process: workers only read
        for seed in study.seeds:
            _dataset(study, setting, seed, root)
    if args.workers > 1:
        n = len(study.settings)
        with ProcessPoolExecutor(min(args.workers, n), get_context("fork")) as pool:
            parts = list(pool.map(run_setting, [study] * n, study.settings, [root] * n))
    else:
        parts = [run_setting(study, setting, root) for setting in study.settings]
    rows = [row for part in parts for row in part]
    csv_path = args.out / "label_budget.csv"
    write_csv(rows, csv_path, COLUMNS)
    rows = read_csv(csv_path, text=("setting", "method"))
    png = args.out / "label_budget.png"
    plot(rows, png)
    print(f"wrote {csv_path} ({len(rows)} rows) and {png}")
    print(summary(rows))
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
