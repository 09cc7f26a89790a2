"""Label-budget study on the distracting grid: does supervision during LAM training help?

    python examples/label_budget_study.py                  # default (CPU sizes; docs/reproductions)
    python examples/label_budget_study.py --scale paper    # the published sizes (a GPU)
    python examples/label_budget_study.py --quick          # reduced, for the tests

The distractor paper's comparison (docs/protocols.md, "LAOM") on the goal task of the 32×32
distracting grid (docs/environments/grid.md): the agent walks to a goal cell drawn in the
image, a new goal each time it gets there. By default two settings: ``goal``, the clean
control, and ``goal_lights``, the main distracting preset (three wide lights whose
brightness walks at random, a fresh step every step). In each setting these methods go
through the LAPO-style pipeline at label fractions {1, 2.5, 10}% of the trajectories
(whole train episodes, nested across fractions), three seeds:

- ``vq``: the package's VQ LAM (LAPO-style), unsupervised;
- ``laom``: LAOM as the authors' code runs it (:mod:`lam_models.lams.laom`), unsupervised;
- ``laom+labels``: LAOM with its linear action head on a separate labelled batch (λ_a as
  published, 0.001);
- ``idm``: an inverse dynamics model trained on the labelled transitions alone, its
  predicted actions relabel the data (:mod:`lam_models.lams.idm`);
- ``labelled_bc``: behaviour cloning on the labelled transitions alone;
- ``full_bc``: behaviour cloning on every transition with its true action (the yardstick).

Each LAM relabels the train transitions with z(o_t, o_{t+1}); a latent policy π(z | o) (a
CNN on the image) is cloned on all of them; a decoder from its output to the action is
fitted on the labelled subset (the published pipeline); the composed policy is rolled out.
BC on all labels also runs on every ``--well-posed`` preset. Writes ``<out>/label_budget.csv``
(probe nmse of the action and of the distractors' change, agreement, return normalised by
BC on all labels), ``label_budget_return.png``, ``label_budget_probe.png`` and
``label_budget_summary.txt`` (the table, the testbed's checks and the paper's two findings).
Seeds and fractions of a method train as one batched model; settings run in ``--workers``
processes or as Ray tasks (``--ray``), each cached under ``<out>/cache`` as it ends. The
earlier snaking-grid settings (``clean`` … ``all``) stay available with ``--settings``.
docs/reproductions/label-budget.md says more.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lam_envs import DISTRACTOR_SETTINGS, ENV_IDS  # noqa: E402
from lam_envs.collect import CollectConfig, collect  # noqa: E402
from lam_envs.utils.cli import Parser, run_main  # noqa: E402
from lam_models import sweep  # noqa: E402
from lam_models._commands import COMMAND_ERRORS, report_error  # noqa: E402
from lam_models.data import LAMDataset  # noqa: E402
from lam_models.evaluation.scoring import evaluate_latents  # noqa: E402
from lam_models.lams.base import get_lam  # noqa: E402
from lam_models.pipeline.bc import PolicyFit, actor_outputs, fit_decoder, fit_policy  # noqa: E402
from lam_models.pipeline.rollout import composed, evaluate_policies  # noqa: E402
from lam_models.runs import read_csv, write_csv  # noqa: E402
from lam_models.split import DataSplit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its report, beside it
import label_budget_report as report  # noqa: E402


@dataclass(frozen=True)
class Method:
    """A method of the study: a registered LAM (with options), trained once per seed
    (``per_fraction`` False: it reads no labels) or once per seed and label fraction."""

    lam: str
    per_fraction: bool
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""


#: The LAM methods, found by their registered LAM (lam_models.lams.base.get_lam); "labelled_bc"
#: (BC on the labelled subset) and "full_bc" (BC on all labels) always run beside them.
METHODS: dict[str, Method] = {
    "vq": Method("vq", False, {}, "VQ LAM (LAPO-style)"),
    "laom": Method("laom", False, {}, "LAOM, no labels"),
    "laom+labels": Method("laom", True, {"action_head": True}, "LAOM + labels (head, λ_a)"),
    "idm": Method("idm", True, {}, "IDM on the labelled subset"),
}
BASELINE, FULL = "labelled_bc", "full_bc"
LABELS = {
    **{k: m.label for k, m in METHODS.items()},
    BASELINE: "BC on the labelled subset",
    FULL: "BC on all labels",
}


@dataclass(frozen=True)
class Setting:
    """A setting: a grid preset, the behaviour policy that collects it, and what its
    distractors change over a transition (oracle fields; their probe nmse from z is
    ``nmse_distractor``: 1 = z holds none of it)."""

    preset: str
    policy: str = "goal"
    epsilon: float = 0.2
    nuisance: tuple[str, ...] = ("distractor_change",)


#: The goal task's presets (the policy walks to the goal; ε = 0.2 of random actions), then
#: the earlier snaking grid's (ε = 0.3), kept as controls.
_SNAKE = {"policy": "snaking", "epsilon": 0.3}
SETTINGS: dict[str, Setting] = {
    "goal": Setting("goal", nuisance=()),
    "goal_lights": Setting("goal_lights"),
    "goal_blobs": Setting("goal_blobs"),
    "goal_agents": Setting("goal_agents"),
    "goal_correlated_agents": Setting("goal_correlated_agents"),
    "goal_distracting": Setting("goal_distracting"),
    "clean": Setting("clean", **_SNAKE, nuisance=()),
    "other_agents": Setting("other_agents", **_SNAKE, nuisance=("other_actions",)),
    "correlated_agents": Setting("correlated_agents", **_SNAKE, nuisance=("other_actions",)),
    "background": Setting("background", **_SNAKE, nuisance=("background_velocity",)),
    "shake": Setting("shake", **_SNAKE, nuisance=("shake:change",)),
    "colour_drift": Setting("colour_drift", **_SNAKE, nuisance=("agent_intensity:change",)),
    "all": Setting(
        "distracting",
        **_SNAKE,
        nuisance=("other_actions", "background_velocity", "shake:change", "agent_intensity:change"),
    ),
}
#: The clean control and the main distracting preset, which the summary's checks read.
CONTROL, MAIN = "goal", "goal_lights"
ENV_OF_PRESET = {preset: env_id for env_id, (kind, preset) in ENV_IDS.items() if kind == "grid"}
assert {s.preset for s in SETTINGS.values()} <= set(ENV_OF_PRESET)
assert set(DISTRACTOR_SETTINGS) <= set(SETTINGS)

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
    "behaviour_return",
]


@dataclass(frozen=True)
class Study:
    """The study's sizes. ``lam`` holds each registered LAM's options (over its
    ``cpu_sizes`` and defaults); ``well_posed``: the presets where only BC on all labels
    runs (a preset of ``settings`` runs everything)."""

    settings: tuple[str, ...] = (MAIN, CONTROL)
    well_posed: tuple[str, ...] = (
        "goal_blobs",
        "goal_agents",
        "goal_correlated_agents",
        "goal_distracting",
    )
    methods: tuple[str, ...] = ("vq", "laom", "laom+labels", "idm")
    fractions: tuple[float, ...] = (0.01, 0.025, 0.1)
    seeds: tuple[int, ...] = (0, 1, 2)
    episodes: int = 200
    episode_length: int = 100
    policy_steps: int = 1000  # BC on all labels, CNN: the greedy policy's return from ~100
    policy_width: int = 64
    policy_encoder: str = "cnn"  # the policies π(z | o), π(a | o) see the image through a CNN
    rollout_episodes: int = 16
    lam_steps: int = 4000
    cpu_sizes: bool = True  # each LAM's cpu_sizes under ``lam``'s options
    lam: dict[str, dict[str, Any]] = field(default_factory=dict)


# The CPU sizes: each LAM's own ``cpu_sizes`` (laom: a strided-conv encoder cutting the
# 32×32 image into 4×4 patches, one 16-channel stage, d_z = 128, batches of 32 and 32
# labelled; vq: batches of 32), 4,000 updates each; τ, k_max, λ_a, the frame stack and the
# per-frame augmentation as the authors run them.
_CPU_IDM = {"channels": (16,), "blocks": 1, "stem": 4, "embed_dim": 64, "width": 128}
DEFAULT = Study(lam={"idm": {**_CPU_IDM, "shift": 2, "batch_size": 32}})
# The published sizes (docs/protocols.md): d_z = 8,192, the authors' encoder at full
# resolution, batches of 256 and 128 labelled; larger datasets and longer training (a GPU).
PAPER = Study(
    episodes=1000,
    policy_steps=5000,
    policy_width=256,
    rollout_episodes=32,
    lam_steps=20_000,
    cpu_sizes=False,
    lam={"laom": {"scale": "paper"}},
)
QUICK = Study(
    well_posed=("goal_agents",),
    fractions=(0.025, 0.1),
    seeds=(0, 1),
    episodes=24,
    episode_length=40,
    policy_steps=150,
    rollout_episodes=4,
    lam_steps=30,
    lam={
        "laom": {"latent_dim": 16, "batch_size": 16, "label_batch_size": 16},
        "idm": {**_CPU_IDM, "batch_size": 16},
        "vq": {"batch_size": 16},
    },
)
SCALES = {"default": DEFAULT, "paper": PAPER, "quick": QUICK}


def _dataset(study: Study, setting: str, seed: int, root: Path) -> Path:
    """Collect (or reuse) the dataset of one setting and seed, every transition labelled
    (the split hides all but the chosen episodes' labels)."""
    spec = SETTINGS[setting]
    config = CollectConfig(
        env=ENV_OF_PRESET[spec.preset],
        policy=spec.policy,
        epsilon=spec.epsilon,
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
    sizes = (cls.cpu_options(image=True) or {}) if study.cpu_sizes else {}
    options = {
        **cls.pipeline_defaults,
        **sizes,
        "steps": study.lam_steps,
        **study.lam.get(method.lam, {}),
        **method.options,
    }
    return cls.Config(**options)


def _policy_options(study: Study, spec, device: str) -> dict[str, Any]:
    """The keywords of :func:`fit_policy` for policies on observations."""
    image = {"image_shape": tuple(spec.obs_shape)} if study.policy_encoder == "cnn" else {}
    return dict(steps=study.policy_steps, width=study.policy_width, device=device, **image)


def _row(setting, split, method, fraction, labelled, seed, probe, result, i, full, behaviour):
    """One row of the CSV (``result``: a method's agreements and returns, copy ``i``)."""
    finite = [
        v
        for k in SETTINGS[setting].nuisance
        if math.isfinite(v := probe.get(f"nmse_{k}", math.nan))
    ]
    ret = float(result["return"][i])
    return {
        "setting": setting,
        "env": split.data.env_id,
        "method": method,
        "label_fraction": fraction,
        "labelled_transitions": labelled,
        "seed": seed,
        "nmse_action": probe.get("nmse_action", math.nan),
        "nmse_distractor": float(np.mean(finite)) if finite else math.nan,
        "agreement": float(result["agreement"][i]),
        "return": ret,
        "full_bc_return": full,
        "normalised_return": ret / full if full else math.nan,
        "behaviour_return": behaviour,
    }


def _behaviour_return(split: DataSplit) -> float:
    """The behaviour policy's mean return per episode in the dataset."""
    data = split.data
    return float(data.outcomes()["reward"].sum() / len(data.episodes))


def _test_inputs(test, copies: int) -> torch.Tensor:
    obs = torch.from_numpy(test.obs().reshape(len(test), -1))
    return obs[None].expand(copies, *obs.shape)


def run_well_posed(study: Study, setting: str, root: Path, device: str = "cpu") -> list[dict]:
    """BC on all labels alone (one copy per seed): whether the preset is learnable."""
    if device == "cpu":
        torch.set_num_threads(1)
    seeds = list(study.seeds)
    splits = [
        DataSplit(_dataset(study, setting, s, root), 0.1, s, label_unit="episode") for s in seeds
    ]
    flats = np.stack([sp.train.obs().reshape(len(sp.train), -1) for sp in splits])
    bc = fit_policy(
        flats,
        np.stack([sp.train.oracle["action"] for sp in splits]),
        np.ones(flats.shape[:2], bool),
        "classification",
        seeds=seeds,
        d_out=splits[0].spec.action_dim,
        **_policy_options(study, splits[0].spec, device),
    )
    rows = []
    for i, (s, sp) in enumerate(zip(seeds, splits, strict=True)):
        result = evaluate_policies(
            sp.data,
            {FULL: bc.select([i]).act},
            _test_inputs(sp.test, 1),
            sp.test.oracle["action"],
            study.rollout_episodes,
            seed=12_345,
        )[FULL]
        full = float(result["return"][0])
        rows.append(
            _row(
                setting, sp, FULL, 1.0, len(sp.train), s, {}, result, 0, full, _behaviour_return(sp)
            )
        )
    return rows


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
                nuisance=SETTINGS[setting].nuisance,
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
        common = _policy_options(study, spec, device)
        policies: dict[str, Any] = {}
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
            decoder = fit_decoder(  # an MLP on the actor's output, as published
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
        results = {}
        for group, copies in (
            (policies, len(fractions)),
            ({FULL: bc.select([len(fractions)]).act}, 1),
        ):
            results |= evaluate_policies(
                splits[s].data,
                group,
                _test_inputs(test, copies),
                test.oracle["action"],
                study.rollout_episodes,
                seed=12_345,
            )
        full = float(results[FULL]["return"][0])
        behaviour = _behaviour_return(splits[s])
        for name in (*study.methods, BASELINE):
            for i, f in enumerate(fractions):
                probe = probes.get(lam_key(name, s, f), {}) if name != BASELINE else {}
                count = labelled[s, f].labelled
                rows.append(
                    _row(
                        setting,
                        splits[s],
                        name,
                        f,
                        count,
                        s,
                        probe,
                        results[name],
                        i,
                        full,
                        behaviour,
                    )
                )
        rows.append(
            _row(
                setting, splits[s], FULL, 1.0, len(train), s, {}, results[FULL], 0, full, behaviour
            )
        )
    print(f"  {setting:<13} done in {time.perf_counter() - start:.1f} s", flush=True)
    return rows


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
    parser.add_argument(
        "--settings",
        help=f"comma-separated, of {', '.join(SETTINGS)} (default: {', '.join(DEFAULT.settings)})",
    )
    parser.add_argument(
        "--well-posed",
        help="presets where only BC on all labels runs, comma-separated (default: "
        f"{', '.join(DEFAULT.well_posed)}; 'none' for none)",
    )
    sweep.add_runner_flags(parser, RUNNER)
    args = parser.parse_args(argv)
    try:
        study = SCALES["quick" if args.quick else args.scale]
        if args.methods:
            study = dataclasses.replace(
                study, methods=_parse_list(args.methods, list(METHODS), "method")
            )
        if args.settings:
            names = _parse_list(args.settings, list(SETTINGS), "setting")
            study = dataclasses.replace(study, settings=names)
        if args.well_posed:
            names = (
                ()
                if args.well_posed == "none"
                else _parse_list(args.well_posed, list(SETTINGS), "setting")
            )
            study = dataclasses.replace(study, well_posed=names)
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
        f"{list(study.settings)} (BC on all labels also on {list(study.well_posed)}), "
        f"methods {[*study.methods, BASELINE, FULL]}, fractions "
        f"{list(study.fractions)} of trajectories, seeds {list(study.seeds)}, "
        f"{study.episodes}×{study.episode_length} transitions per dataset, device {device}",
        flush=True,
    )
    bc_only = [p for p in study.well_posed if p not in study.settings]
    fingerprints = defaultdict(list)
    for setting in (*study.settings, *bc_only):  # collect first, here: workers only read
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
    ] + [
        sweep.Task(
            f"{setting} (BC on all labels)",
            run_well_posed,
            (study, setting, root, device),
            kind="setting",
            detail=f"{len(study.seeds)} seeds",
            key={
                "label_budget_bc": dataclasses.asdict(
                    dataclasses.replace(study, settings=(), well_posed=(), methods=(), lam={})
                ),
                "setting": setting,
                "data": fingerprints[setting],
            },
        )
        for setting in bc_only
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
        ("nmse_action", "probe nmse: action (—), distractors (⋯×)", "label_budget_probe.png"),
    ):
        report.plot(rows, args.out / name, metric, ylabel, LABELS, [*SETTINGS])
    elapsed = time.perf_counter() - start
    text = report.summary(rows, [*SETTINGS], [*METHODS, BASELINE], CONTROL, MAIN)
    text += f"\n\nelapsed {elapsed:.1f} s ({runner.workers} workers, device {device})\n"
    (args.out / "label_budget_summary.txt").write_text(text)
    print(
        f"wrote {csv_path} ({len(rows)} rows), label_budget_return.png, label_budget_probe.png, "
        "label_budget_summary.txt"
    )
    print(text, end="")
    return 0


if __name__ == "__main__":
    run_main(lambda: main())
