"""The LAPO-style pipeline: a LAM's latents as pseudo-actions, then a few labels to act.

    python -m lam_models.pipeline --dataset ID --lam vq --out runs/pipeline/vq
    python -m lam_models.pipeline --out runs/pipeline/vq --stage bc     # one stage, from disk

Five stages of the LAPO-style pipeline, each a function ``stage(run, progress) -> metrics``
that writes one sub-folder of the run folder and reads only the previous stages' artefacts,
so running them one by one gives exactly what ``--stage all`` gives:

1. ``lam``: train the LAM (any registered method, :func:`lam_models.lams.base.get_lam`) on the
   train split; score its latent with the package's probes (:mod:`lam_models.evaluation.scoring`).
2. ``relabel``: z for every train and held-out transition (no augmentation).
3. ``bc``: the latent policy π(z | o) on every train transition, and the two baselines
   π(a | o) cloned from the labelled subset alone and from fully labelled data
   (:mod:`lam_models.pipeline.bc`): MLPs on the flattened observation, or on image
   observations CNNs (``policy_encoder="cnn"``).
4. ``decoder``: an MLP to the real action, fitted on the labelled subset only, from z
   (``decoder_input="latent"``, the default) or from the latent policy's output π(o)
   (``"actor"``, the published LAOM pipeline: the decoder learns the inputs it will get).
5. ``rollout``: the composed policy a = decoder(π(o)) and the baselines in the dataset's
   environment, and their agreement with the behaviour policy on held-out episodes
   (:mod:`lam_models.pipeline.rollout`).

The data split (train / held-out episodes and the labelled subset) is a
:class:`~lam_models.split.DataSplit` seeded by the run's seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_envs.utils.outputs import check_path, claim_output_folder, write_atomically
from lam_envs.utils.validate import check_choice
from lam_models.lams.base import LAM, load_lam, resolve_device
from lam_models.pipeline.bc import (
    PolicyFit,
    actor_outputs,
    bc_policies,
    check_policy,
    fit_decoder,
    load_policy,
    save_policy,
)
from lam_models.pipeline.config import (
    DECODER_INPUTS,
    POLICY_ENCODERS,
    PipelineConfig,
    PipelineError,
)
from lam_models.pipeline.rollout import composed, evaluate_policies
from lam_models.runs import check_out_dir, plot_history, save_run
from lam_models.split import DataSplit

__all__ = [
    "DECODER_INPUTS",
    "POLICY_ENCODERS",
    "STAGES",
    "PipelineConfig",
    "PipelineError",
    "Run",
    "build_parser",
    "format_results",
    "main",
    "run_pipeline",
    "run_stage",
]

STAGES = ("lam", "relabel", "bc", "decoder", "rollout")
RESULTS = "results.json"


class Run:
    """A run folder: its configuration, dataset split, device and stage artefacts."""

    def __init__(
        self,
        out_dir: Path,
        config: PipelineConfig,
        device: str = "auto",
        trust: bool = False,
        tensorboard: Path | None = None,
    ):
        self.out, self.config = Path(out_dir), config
        self.device = resolve_device(device)
        self.tensorboard = tensorboard
        self.split = DataSplit(
            config.dataset,
            config.held_out,
            config.seed,
            label_fraction=config.label_fraction,
            trust_entry_point=trust,
        )
        self.data = self.split.data
        self.spec = self.split.spec

    def check_dataset(self, first: bool) -> None:
        """Record the dataset's fingerprint (first stage), or refuse a dataset that changed
        since (re-collected under the same id between two stages)."""
        path = self.out / "dataset.json"
        now = {"dataset": self.config.dataset, "fingerprint": self.data.fingerprint}
        if first:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(now, indent=2) + "\n")
            tmp.replace(path)
            return
        try:
            then = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise PipelineError(
                f"{str(path)!r} is missing or corrupt: run the pipeline from --stage lam again"
            ) from None
        if then.get("fingerprint") != now["fingerprint"]:
            raise PipelineError(
                f"dataset {self.config.dataset!r} changed since stage 'lam' ran in "
                f"{str(self.out)!r} (it was collected again); mixing the two would be wrong: "
                "run the pipeline again into a new --out"
            )

    def folder(self, stage: str) -> Path:
        return self.out / stage

    def need(self, stage: str, *files: str) -> Path:
        folder = self.folder(stage)
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise PipelineError(
                f"missing artefacts of stage {stage!r} in {str(folder)!r}: {', '.join(missing)}; "
                f"run `python -m lam_models.pipeline --out {self.out} --stage {stage}` first"
            )
        return folder

    def obs(self, part: str) -> np.ndarray:
        """The part's observations, flattened, with a copy axis: (1, N, d_o)."""
        o = getattr(self.split, part).obs()
        return o.reshape(1, len(o), -1)

    def latents(self) -> dict[str, np.ndarray]:
        """Stage relabel's latents, checked: z_train and z_test (N, d_z) float, finite, one
        row per transition of the split."""
        path = self.need("relabel", "latents.npz") / "latents.npz"
        try:
            with np.load(path, allow_pickle=False) as saved:
                z = {k: saved[k] for k in saved.files}
        except (OSError, ValueError, EOFError, KeyError) as error:
            raise PipelineError(f"{str(path)!r} is corrupt ({error!s:.200})") from None
        for part, key in (("train", "z_train"), ("test", "z_test")):
            rows = len(getattr(self.split, part))
            got = z.get(key)
            if got is None or got.ndim != 2 or len(got) != rows or got.dtype.kind != "f":
                raise PipelineError(
                    f"{str(path)!r} is corrupt: {key!r} is not a float (N, d_z) array of "
                    f"{rows} rows; run `--stage relabel` again"
                )
        check_finite_latents(z, path)
        return z

    def image_shape(self) -> tuple[int, ...] | None:
        """The observations' (C, H, W) when the policies are CNNs (``policy_encoder``
        ``"cnn"``), None for MLPs; refused on observations that are not images."""
        if self.config.policy_encoder == "mlp":
            return None
        shape = tuple(self.spec.obs_shape)
        if len(shape) != 3:
            raise PipelineError(
                f"--policy-encoder cnn needs image observations (C, H, W); dataset "
                f"{self.data.dataset_id!r} has observations of shape {shape}"
            )
        return shape

    def policy_fit(self, progress: bool) -> PolicyFit:
        """How stages bc and decoder fit their policies: the run's seed, steps, width and
        policy encoder."""
        c = self.config
        return PolicyFit(
            self.spec.discrete,
            self.spec.action_dim,
            c.policy_steps,
            [c.seed],
            c.width,
            self.device,
            progress,
            self.image_shape(),
        )

    def check_labels(self) -> None:
        if self.split.labelled == 0:
            raise PipelineError(
                f"dataset {self.data.dataset_id!r} has no labelled transition in its train "
                "split: the decoder stage needs some (collect with --label-fraction > 0)"
            )

    def check_environment(self) -> None:
        """The LAM handles the data's environment, and the rollouts may create it (one that
        lam_envs registers, or a trusted dataset): refused before a LAM trains for nothing."""
        lam = self.config.lam_class()
        if not lam.fits(self.split.kind):
            raise PipelineError(
                f"dataset {self.data.dataset_id!r} comes from {self.data.env_id}: the "
                f"{lam.name!r} LAM works on {' and '.join(lam.kinds)} data"
            )
        self.data.recover_environment().close()

    def save(self, stage: str, metrics: dict[str, Any]) -> dict[str, Any]:
        save_run(self.folder(stage), stage, None, self.config, metrics)
        return metrics


def stage_lam(run: Run, progress: bool) -> dict[str, Any]:
    """1. Train the LAM on the train split; probe its latent on held-out transitions."""
    c = run.config
    run.check_labels()  # refused before the LAM is trained: the decoder will need labels
    lam = c.lam_class().train(
        [c.lam_config], [run.split], [c.seed], run.device, progress, run.tensorboard
    )
    metrics = LAM.metrics(lam, [run.split])[0]
    lam.save(run.folder("lam"), metrics, pipeline_config=c)
    plot_history(lam.history[0], run.folder("lam") / "training.png", f"{c.lam} LAM")
    return metrics


def stage_relabel(run: Run, progress: bool) -> dict[str, Any]:
    """2. z of every train and held-out transition, z(o_t, o_{t+k})."""
    lam = load_lam(run.need("lam", "run.json", "model.pt"), run.device)
    z = {part: lam.part_latents(getattr(run.split, part))[0] for part in ("train", "test")}
    folder = run.folder("relabel")
    check_finite_latents(z, folder / "latents.npz")  # before anything is written
    folder.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, z_train=z["train"], z_test=z["test"])

    write_atomically(folder / "latents.npz", write)
    return run.save(
        "relabel",
        {"transitions": {k: len(v) for k, v in z.items()}, "latent_dim": int(z["train"].shape[1])},
    )


def stage_bc(run: Run, progress: bool) -> dict[str, Any]:
    """3. π(z | o) on every train transition; BC on the labelled subset and on all labels."""
    train = run.split.train
    policies = bc_policies(
        run.obs("train"),
        run.latents()["z_train"][None],
        train.actions[None],
        train.oracle["action"][None],
        train.label_mask[None],
        run.policy_fit(progress),
    )
    folder = run.folder("bc")
    for name, policy in policies.items():  # every one checked before any is written
        check_policy(policy, folder / f"{name}.pt")
    folder.mkdir(parents=True, exist_ok=True)
    for name, policy in policies.items():
        save_policy(folder / f"{name}.pt", policy)
    return run.save(
        "bc", {"labelled_transitions": run.split.labelled, "train_transitions": len(train)}
    )


def stage_decoder(run: Run, progress: bool) -> dict[str, Any]:
    """4. The decoder z -> a (or π(o) -> a) on the labelled subset only."""
    c, train = run.config, run.split.train
    run.check_labels()
    if c.decoder_input == "actor":
        bc = run.need("bc", "latent_policy.pt")
        policy = load_policy(bc / "latent_policy.pt", run.device)
        inputs = actor_outputs(policy, run.obs("train"))
    else:
        inputs = run.latents()["z_train"][None]
    fit = run.policy_fit(progress)
    decoder = fit_decoder(inputs, train.actions[None], train.label_mask[None], fit)
    folder = run.folder("decoder")
    check_policy(decoder, folder / "decoder.pt")
    folder.mkdir(parents=True, exist_ok=True)
    save_policy(folder / "decoder.pt", decoder)
    return run.save("decoder", {"labelled_transitions": run.split.labelled})


def stage_rollout(run: Run, progress: bool) -> dict[str, Any]:
    """5. Agreement on held-out episodes and returns in the environment."""
    c = run.config
    bc = run.need("bc", "latent_policy.pt", "labelled_bc.pt", "full_bc.pt")
    decoder = load_policy(run.need("decoder", "decoder.pt") / "decoder.pt", run.device)
    loaded = {
        name: load_policy(bc / f"{name}.pt", run.device)
        for name in ("latent_policy", "labelled_bc", "full_bc")
    }
    policies = {
        "composed": composed(loaded["latent_policy"], decoder),
        "labelled_bc": loaded["labelled_bc"].act,
        "full_bc": loaded["full_bc"].act,
    }
    results = evaluate_policies(
        run.data,
        policies,
        torch.from_numpy(run.obs("test")),
        run.split.test.oracle["action"],
        c.rollout_episodes,
        c.seed,
        progress,
    )
    metrics: dict[str, Any] = {
        name: {k: float(v[0]) for k, v in r.items()} for name, r in results.items()
    }
    full = metrics["full_bc"]["return"]
    metrics["normalised_return"] = metrics["composed"]["return"] / full if full else float("nan")
    return run.save("rollout", metrics)


def check_finite_latents(z: dict[str, np.ndarray], path: Path) -> None:
    """Refuse latents with NaN or infinite values (a diverged or corrupt LAM's)."""
    for key, value in z.items():
        bad = ~np.isfinite(value)
        if bad.any():
            row = int(np.flatnonzero(bad.reshape(len(value), -1).any(1))[0])
            raise PipelineError(
                f"latents {key!r} for {str(path)!r} are NaN or infinite (row {row} of "
                f"{len(value)}, {int(bad.sum())} values): the LAM's weights or the data are "
                "broken; nothing was saved"
            )


STAGE_FUNCTIONS: dict[str, Callable[[Run, bool], dict[str, Any]]] = {
    "lam": stage_lam,
    "relabel": stage_relabel,
    "bc": stage_bc,
    "decoder": stage_decoder,
    "rollout": stage_rollout,
}


def _saved_config(out_dir: Path) -> PipelineConfig | None:
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        return PipelineConfig(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise PipelineError(f"{path} is not a pipeline configuration ({error})") from None


def run_stage(
    stage: str,
    out_dir: str | Path,
    config: PipelineConfig | None = None,
    progress: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    trust: bool = False,
    tensorboard: Path | None = None,
) -> dict[str, Any]:
    """Run one stage (or ``"all"``) in the run folder ``out_dir``; return its metrics.

    ``config`` is required for the first stage (``lam`` or ``all``), which saves it as
    ``config.json`` and the dataset's fingerprint as ``dataset.json``; later stages read the
    configuration from there and refuse a dataset that changed since. A ``config`` that
    differs from the folder's is refused (for ``lam``/``all`` unless ``overwrite``), and so
    is a first stage into a file or a folder of other files (unless ``overwrite``).
    ``trust``: let the rollouts create an environment lam_envs does not register
    (``LAMDataset(trust_entry_point=True)``). ``all`` returns the summary also saved as
    ``results.json``.
    """
    check_choice("stage", stage, (*STAGES, "all"))
    out = check_path(out_dir, "--out")
    first = stage in ("lam", "all")
    if first and config is None:
        raise PipelineError(f"stage {stage!r} needs a configuration (at least --dataset)")
    if not first and not (out / "config.json").is_file():
        raise PipelineError(
            f"missing artefacts: {str(out)!r} has no config.json; run the pipeline from "
            "--stage lam (or all) into that folder first"
        )
    # The run folder is claimed for the stage: a second pipeline into it at the same time
    # is refused, whatever the stage, instead of both writing the same files.
    with claim_output_folder(out, overwrite=True) as out:
        return _run_stage(stage, out, config, progress, device, overwrite, trust, tensorboard)


def _run_stage(stage, out, config, progress, device, overwrite, trust, tensorboard) -> dict:
    saved = _saved_config(out)
    first = stage in ("lam", "all")
    if first and saved is None:  # a file, another command's folder, read-only: before work
        check_out_dir(out, overwrite)
    if not first and saved is None:
        raise PipelineError(
            f"missing artefacts: {str(out)!r} has no config.json; run the pipeline from "
            "--stage lam (or all) into that folder first"
        )
    if config is not None and saved is not None and config != saved and not (first and overwrite):
        hint = "use a new --out, or --overwrite" if first else "use a new --out"
        raise PipelineError(
            f"run folder {str(out)!r} was made with other settings: "
            f"{config.differences(saved)}; {hint}"
        )
    config = config if config is not None else saved
    run = Run(out, config, device, trust, tensorboard)
    if first:
        run.check_labels()  # before anything is written: the decoder will need labels
        run.image_shape()  # and the policies, images when they are CNNs
        run.check_environment()
        text = json.dumps(dataclasses.asdict(config), indent=2) + "\n"
        write_atomically(out / "config.json", lambda tmp: tmp.write_text(text))
    run.check_dataset(first)
    if stage != "all":
        return STAGE_FUNCTIONS[stage](run, progress)
    start = time.perf_counter()
    metrics = {name: STAGE_FUNCTIONS[name](run, progress) for name in STAGES}
    summary = summarise(config, metrics["lam"], metrics["rollout"], time.perf_counter() - start)
    save_run(out, "pipeline", None, config, summary, filename=RESULTS)
    return summary


def summarise(
    config: PipelineConfig, lam_metrics: dict, rollout_metrics: dict, seconds: float
) -> dict[str, Any]:
    """The pipeline's headline numbers in one flat dict."""
    return {
        "dataset": config.dataset,
        "lam": config.lam,
        "label_fraction": config.label_fraction,
        "seed": config.seed,
        "lam_probe": lam_metrics,
        **{
            f"{name}_{key}": rollout_metrics[name][key]
            for name in ("composed", "labelled_bc", "full_bc")
            for key in ("return", "agreement")
        },
        "normalised_return": rollout_metrics["normalised_return"],
        "seconds": seconds,
    }


def run_pipeline(
    dataset: str | Path,
    lam: str = "vq",
    out_dir: str | Path = "runs/pipeline",
    quick: bool = False,
    progress: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    trust: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Run all five stages on ``dataset`` with the LAM ``lam`` into ``out_dir``; return the
    summary (see :func:`format_results`). ``quick``: small step counts (seconds);
    ``settings``: any other :class:`PipelineConfig` field (e.g. ``lam_options``)."""
    make = PipelineConfig.quick if quick else PipelineConfig
    config = make(dataset=str(dataset), lam=lam, **settings)
    return run_stage("all", out_dir, config, progress, device, overwrite, trust)


def format_results(summary: dict[str, Any]) -> str:
    """The summary as a small table: return and agreement of the composed policy and the two
    baselines, the normalised return, and the LAM's action probe."""
    fraction = summary["label_fraction"]
    labels = "the dataset's labelled subset" if fraction is None else f"label fraction {fraction:g}"
    lines = [
        f"LAPO-style pipeline: {summary['lam']} LAM on {summary['dataset']} ({labels}, "
        f"seed {summary['seed']})",
        f"{'policy':<34}{'return':>10}{'agreement':>11}",
    ]
    names = {
        "composed": "composed  decoder(π(z | o))",
        "labelled_bc": "BC on the labelled subset",
        "full_bc": "BC on fully labelled data",
    }
    for key, name in names.items():
        lines.append(
            f"{name:<34}{summary[f'{key}_return']:>10.2f}{summary[f'{key}_agreement']:>11.3f}"
        )
    probe = summary["lam_probe"]
    lines.append(
        f"normalised return (composed / full BC) {summary['normalised_return']:.3f}; "
        f"LAM action probe nmse {probe['nmse_action']:.3f}; {summary['seconds']:.1f} s"
    )
    return "\n".join(lines)


from lam_models.pipeline.cli import build_parser, main  # noqa: E402  (the CLI runs stages)
