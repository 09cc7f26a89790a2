"""Label-budget study on the distracting grid: does supervision during LAM training help?

    python examples/label_budget_study.py                  # default (CPU sizes; docs/reproductions)
    python examples/label_budget_study.py --scale paper    # the published sizes (a GPU)
    python examples/label_budget_study.py --quick          # reduced, for the tests

The distractor paper's comparison (docs/protocols.md, "LAOM") on the 32×32 distracting grid:
the clean grid (control), each distractor alone (other agents, a moving background, camera
shake, colour drift of the agent) and all four together. In each setting these methods go
through the LAPO-style pipeline at label fractions {0.5, 1, 2.5, 5, 10}% of the
trajectories (whole train episodes, nested across fractions), several seeds:

- ``vq``: the package's VQ LAM (LAPO-style), unsupervised (at the CPU sizes: LAOM's budget of
  400 updates of 32);
- ``laom``: LAOM as published (:mod:`lam_models.lams.laom`), unsupervised;
- ``laom+labels``: LAOM with its linear action head on a separate labelled batch (λ_a as
  published, 0.001);
- ``idm``: an inverse dynamics model trained on the labelled transitions alone, its
  predicted actions relabel the data (:mod:`lam_models.lams.idm`);
- ``labelled_bc``: behaviour cloning on the labelled transitions alone.

Each LAM relabels the train transitions with z(o_t, o_{t+1}); a latent policy π(z | o) is
cloned on all of them; a decoder from the policy's output π(o) to the action is fitted on
the labelled subset (the published pipeline); the composed policy is rolled out. Reported
per method, setting, fraction and seed: the linear-probe nmse of the true action from z
(held-out episodes), the probe nmse of the distractors' change over the transition (what
z holds that it should not), agreement with the behaviour policy, and the return
normalised by BC on fully labelled data (the same seed's). Writes ``<out>/label_budget.csv``,
``<out>/label_budget_return.png`` and ``<out>/label_budget_probe.png`` (one panel per
setting, one line per method), and prints a mean ± s.e. table and the paper's headline
comparisons. The unsupervised LAMs read no labels: one model per seed serves every
fraction. Seeds (and fractions) of a method train as one batched model; settings run in
``--workers`` processes with one torch thread each, or as Ray tasks (``--ray``,
docs/running-at-scale.md); each setting's rows are cached under ``<out>/cache`` as it ends
(``--cache``), so a rerun trains only the settings that are missing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs import DISTRACTOR_SETTINGS, ENV_IDS  # noqa: E402
from lam_envs.collect import CollectConfig, collect  # noqa: E402
from lam_envs.utils.cli import Parser, run_main  # noqa: E402
from lam_models import sweep  # noqa: E402
from lam_models._commands import COMMAND_ERRORS, report_error  # noqa: E402
from lam_models.data import LAMDataset  # noqa: E402
from lam_models.evaluation.metrics import mean_stderr  # noqa: E402
from lam_models.evaluation.scoring import evaluate_latents  # noqa: E402
from lam_models.lams.base import get_lam  # noqa: E402
from lam_models.pipeline.bc import PolicyFit, actor_outputs, fit_decoder, fit_policy  # noqa: E402
from lam_models.pipeline.rollout import composed, evaluate_policies  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.split import DataSplit  # noqa: E402


@dataclass(frozen=True)
class Method:
    """A method of the study: a registered LAM (with options), trained once per seed
    (``per_fraction`` False: it reads no labels) or once per seed and label fraction."""

    lam: str
    per_fraction: bool
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""


#: The LAM methods, found by their registered LAM (lam_models.lams.base.get_lam); "labelled_bc"
#: (BC on the labelled subset) is always run beside them.
METHODS: dict[str, Method] = {
    "vq": Method("vq", False, {}, "VQ LAM (LAPO-style)"),
    "laom": Method("laom", False, {}, "LAOM, no labels"),
    "laom+labels": Method("laom", True, {"action_head": True}, "LAOM + labels (head, λ_a)"),
    "idm": Method("idm", True, {}, "IDM on the labelled subset"),
}
BASELINE = "labelled_bc"
LABELS = {**{k: m.label for k, m in METHODS.items()}, BASELINE: "BC on the labelled subset"}

#: What each setting's distractors change over a transition (oracle fields; their probe
#: nmse from z is ``nmse_distractor``: 1 = z holds none of it).
NUISANCE = {
    "clean": (),
    "other_agents": ("other_actions",),
    "correlated_agents": ("other_actions",),
    "background": ("background_velocity",),
    "shake": ("shake:change",),
    "colour_drift": ("agent_intensity:change",),
    "all": ("other_actions", "background_velocity", "shake:change", "agent_intensity:change"),
}
ENV_OF_PRESET = {preset: env_id for env_id, (kind, preset) in ENV_IDS.items() if kind == "grid"}

COLUMNS = [
    "setting",
    "env",
    "method",
    "label_fraction",
    "labelled_transitions",
    "seed",
    "nmse_action",
    "nmse_distractor",
    "agreement",
    "return",
    "full_bc_return",
    "normalised_return",
]


@dataclass(frozen=True)
class Study:
    """The study's sizes. ``lam`` holds each registered LAM's options (over its defaults)."""

    # all distractors first: with 2 workers, clean and all finish first
    settings: tuple[str, ...] = (
        "clean",
        "all",
        "other_agents",
        "background",
        "shake",
        "colour_drift",
    )
    methods: tuple[str, ...] = ("vq", "laom", "laom+labels", "idm")
    fractions: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1)
    seeds: tuple[int, ...] = (0, 1, 2)
    epsilon: float = 0.3  # snaking policy's exploration: enough action variety to learn from
    episodes: int = 100
    episode_length: int = 100
    policy_steps: int = 600
    policy_width: int = 64
    rollout_episodes: int = 16
    lam: dict[str, dict[str, Any]] = field(default_factory=dict)


# The CPU sizes: LAOM's encoder cuts the 32×32 image into 4×4 patches and has one stage
# (ResNet blocks on 8×8), d_z = 128, batches of 32, 400 updates (the IDM 300); τ, k_max, λ_a, the
# per-frame augmentation and the separate labelled batch as published.
_CPU_ENCODER = {"channels": (16,), "blocks": 1, "stem": 4, "embed_dim": 64, "width": 128}
DEFAULT = Study(
    lam={
        "laom": {
            **_CPU_ENCODER,
            "latent_dim": 128,
            "shift": 2,
            "batch_size": 32,
            "label_batch_size": 32,
            "steps": 400,
        },
        "idm": {**_CPU_ENCODER, "shift": 2, "batch_size": 32, "steps": 300},
        # LAOM's budget (400 updates of 32); its grouped convolutions on 32×32 frames take
        # about 50 ms per update of 32 on one CPU thread (280 at its own batch of 128)
        "vq": {"steps": 400, "batch_size": 32},
    }
)
# The published sizes (docs/protocols.md): d_z = 8,192, the IMPALA-style encoder at full
# resolution, batches of 128 and 128 labelled; larger datasets and longer training (a GPU).
PAPER = Study(
    methods=("vq", "laom", "laom+labels", "idm"),
    episodes=1000,
    policy_steps=5000,
    policy_width=256,
    rollout_episodes=32,
    lam={
        "laom": {"steps": 20_000},
        "idm": {"steps": 10_000},
        "vq": {"steps": 16_000},
    },
)
QUICK = Study(
    settings=("clean", "shake"),
    fractions=(0.05, 0.1),
    seeds=(0, 1),
    episodes=24,
    episode_length=40,
    policy_steps=200,
    rollout_episodes=4,
    lam={
        "laom": {
            **_CPU_ENCODER,
            "latent_dim": 16,
            "batch_size": 16,
            "label_batch_size": 16,
            "steps": 40,
            "action_weight": 1.0,
        },
        "idm": {**_CPU_ENCODER, "batch_size": 16, "steps": 40},
        "vq": {"steps": 20, "batch_size": 16},
    },
)
SCALES = {"default": DEFAULT, "paper": PAPER, "quick": QUICK}


def _dataset(study: Study, setting: str, seed: int, root: Path) -> Path:
    """Collect (or reuse) the dataset of one setting and seed, every transition labelled
    (the split hides all but the chosen episodes' labels)."""
    config = CollectConfig(
        env=ENV_OF_PRESET[DISTRACTOR_SETTINGS[setting]],
        policy="snaking",
        epsilon=study.epsilon,
        episodes=study.episodes,
        episode_length=study.episode_length,
        label_fraction=1.0,
        seed=seed,
    )
    path = root / config.default_dataset_id()
    if not (path / "data" / "metadata.json").is_file():
        path = collect(config, root=root, progress=False).path
    return path


def _lam_config(study: Study, method: Method):
    cls = get_lam(method.lam)
    options = {**cls.pipeline_defaults, **study.lam.get(method.lam, {}), **method.options}
    return cls.Config(**options)


def run_setting(study: Study, setting: str, root: Path, device: str = "cpu") -> list[dict]:
    """Every method, label fraction and seed of one setting; one row each."""
    if device == "cpu":
        torch.set_num_threads(1)
    start = time.perf_counter()
    seeds, fractions = list(study.seeds), list(study.fractions)
    held_out = 0.1
    splits = {
        s: DataSplit(_dataset(study, setting, s, root), held_out, s, label_unit="episode")
        for s in seeds
    }
    labelled = {(s, f): splits[s].with_labels(f) for s in seeds for f in fractions}
    spec = splits[seeds[0]].spec
    grid = [(s, f) for s in seeds for f in fractions]

    def lam_key(method: str, s: int, f: float) -> tuple:
        return (method, s, f if METHODS[method].per_fraction else None)

    # Stage 1 and 2: each LAM (seeds and fractions batched) and its latents.
    latents: dict[tuple, np.ndarray] = {}
    probes: dict[tuple, dict] = {}
    for name in study.methods:
        method = METHODS[name]
        keys = grid if method.per_fraction else [(s, None) for s in seeds]
        group = [labelled[s, f] if f is not None else splits[s] for s, f in keys]
        lam = get_lam(method.lam).train(
            _lam_config(study, method), group, [s for s, _ in keys], device
        )
        h = lam.frame_stack  # stacked frames (laom): each with its history
        for part in ("train", "test"):
            obs = np.stack([getattr(sp, part).obs(history=h) for sp in group])
            nxt = np.stack([getattr(sp, part).next_obs(history=h) for sp in group])
            for (s, f), z in zip(keys, lam.latents(obs, nxt), strict=True):
                latents[name, s, f, part] = z
        for (s, f), sp in zip(keys, group, strict=True):
            probes[name, s, f] = evaluate_latents(
                latents[name, s, f, "train"],
                latents[name, s, f, "test"],
                sp.train,
                sp.test,
                spec.discrete,
                spec.action_dim,
                s,
                nuisance=NUISANCE[setting],
            )
        del lam
        print(
            f"  {setting:<13} {name:<12} ×{len(keys):<3} {time.perf_counter() - start:7.1f} s",
            flush=True,
        )

    # Stage 3-5 per seed (its dataset's observations shared by every copy of that seed).
    rows = []
    for s in seeds:
        train, test = splits[s].train, splits[s].test
        flat = train.obs().reshape(len(train), -1)
        common = dict(steps=study.policy_steps, width=study.policy_width, device=device)
        policies: dict[str, Any] = {}
        row_keys: dict[str, list[tuple]] = {}
        for name in study.methods:
            per_fraction = METHODS[name].per_fraction
            lam_fs = fractions if per_fraction else [None]
            latent_policy = fit_policy(
                flat,
                np.stack([latents[name, s, f, "train"] for f in lam_fs]),
                np.ones((len(lam_fs), len(train)), bool),
                "regression",
                seeds=[s] * len(lam_fs),
                **common,
            )
            actor = actor_outputs(latent_policy, flat)  # (copies, N, d_z)
            index = [lam_fs.index(f if per_fraction else None) for f in fractions]
            decoder = fit_decoder(
                actor[index],
                np.stack([labelled[s, f].train.actions for f in fractions]),
                np.stack([labelled[s, f].train.label_mask for f in fractions]),
                PolicyFit(
                    spec.discrete,
                    spec.action_dim,
                    study.policy_steps,
                    [s] * len(fractions),
                    study.policy_width,
                    device,
                ),
            )
            policies[name] = composed(latent_policy.select(index), decoder)
            row_keys[name] = [(name, s, f) for f in fractions]
        bc = fit_policy(
            flat,
            train.oracle["action"],
            np.stack(
                [labelled[s, f].train.label_mask for f in fractions] + [np.ones(len(train), bool)]
            ),
            "classification",
            seeds=[s] * (len(fractions) + 1),
            d_out=spec.action_dim,
            **common,
        )
        policies[BASELINE] = bc.select(range(len(fractions))).act
        test_obs = torch.from_numpy(test.obs().reshape(len(test), -1))
        results = {}
        for group, copies in (
            (policies, len(fractions)),
            ({"full_bc": bc.select([len(fractions)]).act}, 1),
        ):
            results |= evaluate_policies(
                splits[s].data,
                group,
                test_obs[None].expand(copies, *test_obs.shape),
                test.oracle["action"],
                study.rollout_episodes,
                seed=12_345,
            )
        full_return = float(results["full_bc"]["return"][0])
        for name in (*study.methods, BASELINE):
            for i, f in enumerate(fractions):
                probe = probes.get(lam_key(name, s, f), {}) if name != BASELINE else {}
                nuisance = [probe[f"nmse_{k}"] for k in NUISANCE[setting] if f"nmse_{k}" in probe]
                finite = [v for v in nuisance if math.isfinite(v)]
                rows.append(
                    {
                        "setting": setting,
                        "env": splits[s].data.env_id,
                        "method": name,
                        "label_fraction": f,
                        "labelled_transitions": labelled[s, f].labelled,
                        "seed": s,
                        "nmse_action": probe.get("nmse_action", math.nan),
                        "nmse_distractor": float(np.mean(finite)) if finite else math.nan,
                        "agreement": float(results[name]["agreement"][i]),
                        "return": float(results[name]["return"][i]),
                        "full_bc_return": full_return,
                        "normalised_return": float(results[name]["return"][i]) / full_return
                        if full_return
                        else math.nan,
                    }
                )
    print(f"  {setting:<13} done in {time.perf_counter() - start:.1f} s", flush=True)
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


def _order(values: Sequence[str], reference: Sequence[str]) -> list[str]:
    return sorted(
        set(values), key=lambda v: (list(reference).index(v) if v in reference else 99, v)
    )


def plot(rows: list[dict], path: Path, metric: str, ylabel: str) -> None:
    """One panel per setting, one line per method (mean ± s.e. over seeds)."""
    settings = _order([r["setting"] for r in rows], list(DISTRACTOR_SETTINGS))
    methods = _order([r["method"] for r in rows], [*METHODS, BASELINE])
    if metric.startswith("nmse"):
        methods = [m for m in methods if m != BASELINE]
    seeds = len({r["seed"] for r in rows})
    cols = min(3, len(settings))
    nrows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.8 * nrows), squeeze=False)
    for ax, setting in zip(axes.flat, settings, strict=False):
        for method in methods:
            xs, m, e = aggregate(rows, setting, method, metric)
            style = "--" if method == BASELINE else "-"
            (line,) = ax.plot(xs, m, style, marker="o", label=LABELS.get(method, method))
            ax.fill_between(xs, m - e, m + e, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:.1%}" for x in xs])
        ax.minorticks_off()
        ax.set(xlabel="labelled trajectories", ylabel=ylabel, title=setting.replace("_", " "))
        ax.set_ylim(-0.05, 1.15)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Label budget on the distracting grid (mean ± s.e., {seeds} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mean(rows, setting, method, metric, fraction=None) -> float:
    values = [
        r[metric]
        for r in rows
        if r["setting"] == setting
        and r["method"] == method
        and (fraction is None or r["label_fraction"] == fraction)
    ]
    return float(np.mean(values)) if values else math.nan


def summary(rows: list[dict]) -> str:
    """The mean ± s.e. table, and the paper's three headline comparisons per setting."""
    settings = _order([r["setting"] for r in rows], list(DISTRACTOR_SETTINGS))
    methods = _order([r["method"] for r in rows], [*METHODS, BASELINE])
    lines = [
        f"{'setting':<14}{'method':<13}{'labels':>7}{'probe nmse(a)':>17}"
        f"{'nmse(distr.)':>14}{'norm. return':>17}"
    ]
    for setting in settings:
        for method in methods:
            xs, m, e = aggregate(rows, setting, method, "normalised_return")
            _, pm, pe = aggregate(rows, setting, method, "nmse_action")
            _, dm, _ = aggregate(rows, setting, method, "nmse_distractor")
            for i, x in enumerate(xs):
                probe = "—" if math.isnan(pm[i]) else f"{pm[i]:.3f} ± {pe[i]:.3f}"
                distr = "—" if math.isnan(dm[i]) else f"{dm[i]:.3f}"
                lines.append(
                    f"{setting:<14}{method:<13}{x:>7.1%}{probe:>17}{distr:>14}"
                    f"{m[i]:>10.3f} ± {e[i]:.3f}"
                )
    lines += ["", "The paper's comparisons (means over fractions and seeds unless said):"]
    for setting in settings:
        cell = {m: _mean(rows, setting, m, "normalised_return") for m in methods}
        probe = {m: _mean(rows, setting, m, "nmse_action") for m in methods}
        parts = [f"  {setting:<13}:"]
        if "vq" in probe and "laom" in probe:
            parts.append(f"probe nmse(a) LAOM {probe['laom']:.3f} vs LAPO/VQ {probe['vq']:.3f};")
        elif "laom" in probe:
            parts.append(f"probe nmse(a) LAOM {probe['laom']:.3f} (no VQ run);")
        if "laom+labels" in cell and "laom" in cell:
            ratio = cell["laom+labels"] / cell["laom"] if cell["laom"] > 0 else math.inf
            parts.append(
                f"return LAOM+labels {cell['laom+labels']:.3f} vs LAOM-then-decode "
                f"{cell['laom']:.3f} (×{ratio:.2f});"
            )
        others = ", ".join(
            f"{m} {cell[m]:.3f}" for m in methods if m not in ("laom", "laom+labels")
        )
        best = max(cell, key=lambda m: cell[m])
        parts.append(f"{others}; best {best} at {cell[best]:.3f} of BC on all labels")
        lines.append(" ".join(parts))
    return "\n".join(lines)


def _parse_list(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise ValueError(
            f"unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}"
        )
    return items


#: The runner's defaults here: two worker processes on the CPU.
RUNNER = sweep.RunnerOptions(workers=2, device="cpu")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="default", help="sizes")
    parser.add_argument("--quick", action="store_true", help="the same as --scale quick")
    parser.add_argument("--out", type=Path, default=Path("outputs/label_budget"), help="folder")
    parser.add_argument("--methods", help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--settings", help=f"comma-separated, of {', '.join(DISTRACTOR_SETTINGS)}")
    sweep.add_runner_flags(parser, RUNNER)
    args = parser.parse_args(argv)
    try:
        study = SCALES["quick" if args.quick else args.scale]
        if args.methods:
            study = dataclasses.replace(
                study, methods=_parse_list(args.methods, list(METHODS), "method")
            )
        if args.settings:
            names = _parse_list(args.settings, list(DISTRACTOR_SETTINGS), "setting")
            study = dataclasses.replace(study, settings=names)
        runner = sweep.runner_options(args, RUNNER)
        device = runner.resolved_device()
        for name in study.methods:
            _lam_config(study, METHODS[name])  # every method's LAM registered, options valid
    except ValueError as error:
        parser.error(str(error))
    if device != "cpu" and runner.ray is None:
        runner = dataclasses.replace(runner, workers=1)  # one GPU here: one setting at a time
    csv_path = args.out / "label_budget.csv"
    if csv_path.exists() and not runner.overwrite:
        parser.error(f"{csv_path} exists; use --overwrite to replace it, or another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    root = (args.out / "datasets").resolve()
    start = time.perf_counter()
    print(
        f"label-budget study ({'quick' if args.quick else args.scale}): settings "
        f"{list(study.settings)}, methods {[*study.methods, BASELINE]}, fractions "
        f"{list(study.fractions)} of trajectories, seeds {list(study.seeds)}, "
        f"{study.episodes}×{study.episode_length} transitions per dataset, device {device}",
        flush=True,
    )
    fingerprints = defaultdict(list)
    for setting in study.settings:  # collect first, in this process: workers only read
        for seed in study.seeds:
            path = _dataset(study, setting, seed, root)
            fingerprints[setting].append(LAMDataset(path).fingerprint)
    tasks = [
        sweep.Task(
            setting,
            run_setting,
            (study, setting, root, device),
            kind="setting",
            detail=f"{len(study.methods) + 1} methods × {len(study.seeds)} seeds",
            key={
                "label_budget": dataclasses.asdict(dataclasses.replace(study, settings=())),
                "setting": setting,
                "data": fingerprints[setting],
            },
        )
        for setting in study.settings
    ]
    try:
        parts = sweep.execute(tasks, runner, cache=sweep.ResultCache(runner.cache_folder(args.out)))
    except COMMAND_ERRORS as error:
        return report_error(error)
    rows = [row for part in parts for row in part]
    tmp = csv_path.with_suffix(".tmp.csv")
    write_csv(rows, tmp, COLUMNS)
    tmp.replace(csv_path)
    rows = read_csv(csv_path, text=("setting", "env", "method"))
    for metric, ylabel, name in (
        ("normalised_return", "return / BC on all labels", "label_budget_return.png"),
        ("nmse_action", "probe nmse of the action (one-hot)", "label_budget_probe.png"),
    ):
        plot(rows, args.out / name, metric, ylabel)
    print(f"wrote {csv_path} ({len(rows)} rows), label_budget_return.png, label_budget_probe.png")
    print(summary(rows))
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(lambda: main())
