"""The LAPO-style pipeline: a LAM's latents as pseudo-actions, then a few labels to act.

    python -m lam_models.pipeline --dataset ID --lam vq --out runs/pipeline/vq
    python -m lam_models.pipeline --out runs/pipeline/vq --stage bc     # one stage, from disk

Five stages (SPEC, "LAPO-style pipeline"), each writing one sub-folder of the run folder,
each able to run on its own from the previous stage's artefacts:

1. ``lam``: train a LAM (``linear``, ``vq`` or ``laom``) on the train split; its IDM sees
   (o_t, o_{t+k}). Probe metrics of its latent (:func:`lam_models.train_laom.evaluate_latents`).
2. ``relabel``: z for every transition of the dataset (train and held-out), no augmentation.
   The VQ LAM's z is its quantised code vector; the linear LAM's is z = C o + D o'.
3. ``bc``: the latent policy π(z | o), an MLP regressing z from o on every train transition;
   and the two baselines, action policies π(a | o) cloned from the labelled subset alone and
   from fully labelled data (the oracle's actions: the reference the pipeline is scored by).
4. ``decoder``: an MLP from z to the real action, fitted on the labelled subset only.
5. ``rollout``: the composed policy a = decoder(π(o)) (argmax on the grid) and the baselines
   in the dataset's environment (same parameters), returns over ``rollout_episodes``
   episodes, and their agreement with the behaviour policy's actions on held-out episodes
   (accuracy on the grid; 1 − nmse(a) on the linear env).

The labelled subset is ``label_fraction`` of the train transitions, drawn (nested: a smaller
fraction is a subset of a larger one for the same seed) from the dataset's labelled ones;
``None`` keeps all of them. Every stage is seeded from ``seed``, so running the stages one by
one gives exactly what ``--stage all`` gives.

The stage functions work on M copies at once (different seeds, label fractions or LAMs of the
same kind), which ``examples/label_budget_study.py`` uses; a run folder holds one copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lam_envs.cli import Parser
from lam_envs.validate import check_choice, check_fraction, check_int
from lam_models.data import DatasetError, LAMDataset
from lam_models.laom import LAOMLAM, EnsembleMLP, LAOMConfig, latents, train_laom_lams
from lam_models.linear import LinearLAM, LinearLAMConfig, train_linear_lam
from lam_models.runs import load_run, save_run
from lam_models.train_laom import (
    action_dim,
    action_targets,
    evaluate_latents,
    load_transitions,
    make_samplers,
    per_copy,
)
from lam_models.vq import VQLAM, VQLAMConfig, predict, train_vq_lams

__all__ = [
    "LAMS",
    "STAGES",
    "CopyData",
    "PipelineConfig",
    "PipelineError",
    "Policy",
    "TrainedLAM",
    "agreement",
    "bc_policies",
    "choose_labels",
    "composed",
    "evaluate_policies",
    "fit_decoder",
    "fit_policy",
    "load_copy",
    "format_results",
    "main",
    "rollout_returns",
    "run_pipeline",
    "run_stage",
    "train_lam",
]

LAMS = ("linear", "vq", "laom")
STAGES = ("lam", "relabel", "bc", "decoder", "rollout")
RESULTS = "results.json"


class PipelineError(ValueError):
    """A stage that cannot run: missing artefacts, or a run folder made with other settings."""


@dataclass
class PipelineConfig:
    """Everything a pipeline run needs; saved as ``config.json`` in the run folder.

    dataset: Minari id or path of a ``lam_envs.collect`` dataset.
    lam: which LAM: ``linear`` (on flattened observations), ``vq`` (grid only), ``laom``.
    label_fraction: share of train transitions whose label the decoder and the labelled
        baseline may use, in (0, 1], at most the dataset's labelled share; None: all labels.
    held_out: share of episodes held out (agreement and probes), in (0, 1).
    seed: seed of split, label subset, models and rollouts.
    latent_dim: d_z (the VQ LAM's code dimension).   k: the IDM's look-ahead, >= 1.
    augment: the LAM's augmentation (shifts on images; κ = 0.1 Gaussian shifts on vectors).
    action_weight: λ_a, the LAM's own supervision on the labelled subset (LAOM: linear head;
        linear: head E; VQ: action prediction); 0 = unsupervised LAM.
    lam_steps, policy_steps: updates of the LAM, and of each policy and decoder.
    width: hidden units of the policies and the decoder.
    rollout_episodes: episodes each policy is rolled out for.
    """

    dataset: str = ""
    lam: str = "vq"
    label_fraction: float | None = None
    held_out: float = 0.1
    seed: int = 0
    latent_dim: int = 8
    k: int = 1
    augment: bool = True
    action_weight: float = 0.0
    lam_steps: int = 3000
    policy_steps: int = 1500
    width: int = 64
    rollout_episodes: int = 32

    def __post_init__(self) -> None:
        check_choice("LAM", self.lam, LAMS)
        if self.label_fraction is not None:
            fraction = check_fraction("label_fraction", self.label_fraction)
            if fraction == 0:
                raise ValueError(
                    "label_fraction must be in (0, 1], got 0: the decoder needs labels"
                )
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k (the IDM's look-ahead) must be an integer >= 1, got {self.k!r}")
        check_int("seed", self.seed, low=0)
        for name in ("latent_dim", "lam_steps", "policy_steps", "width", "rollout_episodes"):
            check_int(name, getattr(self, name), low=1)
        if not self.action_weight >= 0:
            raise ValueError(f"action_weight must be >= 0, got {self.action_weight}")

    @classmethod
    def quick(cls, **overrides: Any) -> PipelineConfig:
        """A configuration small enough for tests and demos (seconds, not minutes)."""
        return cls(**{"lam_steps": 400, "policy_steps": 400, "rollout_episodes": 8, **overrides})


# --------------------------------------------------------------------------------------------
# Data: one copy's split and its labelled subset
# --------------------------------------------------------------------------------------------


@dataclass
class CopyData:
    """One copy's transitions: train and held-out sets (:func:`load_transitions`), and the
    labelled subset of the train set it may use (bool (N_train,))."""

    train: dict[str, Any]
    test: dict[str, Any]
    labelled: np.ndarray


def choose_labels(label_mask: np.ndarray, fraction: float | None, seed: int) -> np.ndarray:
    """The labelled subset: round(fraction · N) (at least 1) of the dataset's labelled train
    transitions ``label_mask`` (N,), the first ones of a seeded permutation, so subsets are
    nested across fractions. ``None``: every labelled transition."""
    available = np.flatnonzero(label_mask)
    if fraction is None:
        return label_mask.copy()
    n = len(label_mask)
    wanted = max(1, round(fraction * n))
    if wanted > len(available):
        raise ValueError(
            f"label fraction {fraction:g} out of range: it needs {wanted} labelled train "
            f"transitions but the dataset has {len(available)} of {n} "
            f"({len(available) / n:.2%}); collect with a larger --label-fraction"
        )
    chosen = np.random.default_rng([seed, 17]).permutation(available)[:wanted]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def load_copy(data: LAMDataset, config: PipelineConfig) -> CopyData:
    """Split ``data`` by episode (seeded) and choose the labelled subset."""
    train_episodes, test_episodes = data.split(config.held_out, seed=config.seed)
    train = load_transitions(data, train_episodes, config.k)
    test = load_transitions(data, test_episodes, config.k)
    return CopyData(
        train, test, choose_labels(train["label_mask"], config.label_fraction, config.seed)
    )


def _stack(copies: Sequence[CopyData], part: str, key: str) -> np.ndarray:
    return np.stack([getattr(c, part)[key] for c in copies])


def _flat(x: torch.Tensor, item_ndim: int) -> torch.Tensor:
    """(..., *item) -> (..., prod(item)): observations as vectors for the MLPs."""
    return x.flatten(x.ndim - item_ndim)


# --------------------------------------------------------------------------------------------
# Stage 1: the LAM (three kinds behind one interface)
# --------------------------------------------------------------------------------------------


@dataclass
class TrainedLAM:
    """M trained LAMs of one kind and how to get their latents.

    ``model``: a batched ``LAOMLAM`` or ``LinearLAM``, or a list of single ``VQLAM``.
    """

    method: str
    model: Any
    model_config: Any

    def latents(self, o: np.ndarray, o_far: np.ndarray) -> np.ndarray:
        """z of M copies' transitions: o, o_far (M, N, *obs_shape) -> (M, N, d_z) float32."""
        o_t, far_t = torch.from_numpy(o).float(), torch.from_numpy(o_far).float()
        if self.method == "laom":
            return latents(self.model, o_t, far_t).numpy()
        if self.method == "linear":
            with torch.no_grad():
                return self.model.latent(o_t.flatten(2), far_t.flatten(2)).numpy()
        out = []
        for m, single in enumerate(self.model):
            codes = predict(single, o_t[m], far_t[m]).codes
            out.append(single.quantiser.codebook[0, codes].numpy())
        return np.stack(out)

    def state(self) -> dict[str, torch.Tensor]:
        if self.method == "vq":
            return {
                f"{m}.{k}": v for m, s in enumerate(self.model) for k, v in s.state_dict().items()
            }
        return self.model.state_dict()


def _visible_targets(copy: CopyData, discrete: bool, num_actions: int) -> np.ndarray:
    """Action targets (:func:`action_targets`) of the copy's labelled subset, zeros elsewhere:
    read from the dataset's visible ``actions``, never from the oracle."""
    shown = np.where(copy.labelled, copy.train["actions"].T, -1 if discrete else np.nan).T
    return action_targets(shown, discrete, num_actions)


def _vq_samplers(copies, batch_size, seeds):
    """One ``sample_batch`` per copy for ``train_vq_lams``: (o, o_{t+k}, a, label_mask)."""
    samplers = []
    for c, seed in zip(copies, seeds, strict=True):
        o, far = torch.from_numpy(c.train["obs"]).float(), torch.from_numpy(c.train["far_obs"])
        shown = np.where(c.labelled, c.train["actions"], -1)
        a, mask = torch.from_numpy(shown).long(), torch.from_numpy(c.labelled)
        generator = torch.Generator().manual_seed(seed + 7_919)

        def sample(step, o=o, far=far, a=a, mask=mask, g=generator):
            index = torch.randint(len(o), (batch_size,), generator=g)
            return o[index], far[index].float(), a[index], mask[index]

        samplers.append(sample)
    return samplers


def train_lam(
    config: PipelineConfig,
    copies: Sequence[CopyData],
    seeds: Sequence[int],
    action_weights: Sequence[float],
    discrete: bool,
    num_actions: int,
    progress: bool = False,
) -> TrainedLAM:
    """Train M = len(copies) LAMs of kind ``config.lam`` together, copy m on its own data.

    ``action_weights``: λ_a per copy (the LAOM trainer allows them to differ; the linear and
    VQ trainers take one value, the first). Labels come only from each copy's subset.
    """
    seeds, m = list(seeds), len(copies)
    obs_shape = copies[0].train["obs"].shape[1:]
    if config.lam == "laom":
        model_config = LAOMConfig(
            obs_shape=tuple(obs_shape),
            latent_dim=config.latent_dim,
            k=config.k,
            augment=config.augment,
            action_weight=max(action_weights),
            action_dim=num_actions,
            steps=config.lam_steps,
            seed=seeds[0],
        )
        targets = np.stack([_visible_targets(c, discrete, num_actions) for c in copies])
        samplers = make_samplers(
            _stack(copies, "train", "obs"), _stack(copies, "train", "far_obs"), targets,
            np.stack([c.labelled for c in copies]), model_config.batch_size,
            model_config.label_batch_size, seeds,
        )  # fmt: skip
        model, _ = train_laom_lams(model_config, seeds, *samplers, action_weights, progress)
        return TrainedLAM("laom", model, model_config)
    if config.lam == "vq":
        if len(obs_shape) != 3:
            raise ValueError(f"the VQ LAM needs image (grid) observations, got shape {obs_shape}")
        model_config = VQLAMConfig(
            code_dim=config.latent_dim,
            obs_shape=tuple(obs_shape),
            augment=config.augment,
            action_weight=float(action_weights[0]),
            num_actions=num_actions,
            steps=config.lam_steps,
            seed=seeds[0],
        )
        samplers = _vq_samplers(copies, model_config.batch_size, seeds)
        models, _ = train_vq_lams(model_config, seeds, samplers, progress)
        return TrainedLAM("vq", models, model_config)
    # linear: z = C o + D o' on flattened observations; the head E predicts one-hot actions.
    d_o = int(np.prod(obs_shape))
    weight = float(action_weights[0])
    model_config = LinearLAMConfig(
        d_o=d_o,
        d_a=num_actions,
        d_z=min(config.latent_dim, d_o),
        kappa=0.1 if config.augment else 0.0,
        action_weight=weight,
        use_action_head=weight > 0,
        steps=config.lam_steps,
        seed=seeds[0],
        num_models=m,
    )
    obs = torch.from_numpy(_stack(copies, "train", "obs")).float().flatten(2)
    far = torch.from_numpy(_stack(copies, "train", "far_obs")).float().flatten(2)
    targets = np.stack([_visible_targets(c, discrete, num_actions) for c in copies])
    labelled = torch.from_numpy(np.stack([c.labelled for c in copies]))
    shown = torch.where(labelled[..., None], torch.from_numpy(targets), torch.nan)
    rows = torch.arange(m)[:, None]
    generator = torch.Generator().manual_seed(seeds[0] + 7_919)

    def sample_batch(step: int):
        index = torch.randint(obs.shape[1], (m, model_config.batch_size), generator=generator)
        return obs[rows, index], far[rows, index], shown[rows, index], labelled[rows, index]

    model, _ = train_linear_lam(model_config, sample_batch, progress=progress)
    return TrainedLAM("linear", model, model_config)


def _rebuild_lam(method: str, model_config: dict, seeds: list[int], weights, state) -> TrainedLAM:
    """A TrainedLAM from a saved configuration and state dict."""
    if method == "laom":
        config = LAOMConfig(**model_config)
        model = LAOMLAM(config, seeds, weights)
        model.load_state_dict(state)
        model.eval()
    elif method == "vq":
        config = VQLAMConfig(**{**model_config, "obs_shape": tuple(model_config["obs_shape"])})
        model = []
        for m, seed in enumerate(seeds):
            single = VQLAM(config, [seed])
            prefix = f"{m}."
            single.load_state_dict(
                {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            )
            model.append(single.eval())
    else:
        config = LinearLAMConfig(**model_config)
        model = LinearLAM(config)
        model.load_state_dict(state)
    return TrainedLAM(method, model, config)


# --------------------------------------------------------------------------------------------
# Stages 3 and 4: policies and the decoder (ensembles of small MLPs)
# --------------------------------------------------------------------------------------------


class Policy(nn.Module):
    """M MLPs from an input x (M, N, d_in) to a regression output or action logits.

    Inputs are standardised with per-copy statistics of the data it was fitted on (all rows
    of x, labelled or not); regression outputs are fitted standardised and returned in their
    own units. ``kind``: ``"regression"`` (MSE) or ``"classification"`` (cross-entropy,
    ``forward`` gives logits).
    """

    def __init__(self, num_models: int, d_in: int, d_out: int, width: int, kind: str) -> None:
        super().__init__()
        check_choice("policy kind", kind, ("regression", "classification"))
        self.kind, self.d_in, self.d_out, self.width = kind, d_in, d_out, width
        self.net = EnsembleMLP(num_models, d_in, width, d_out)
        for name, dim in (
            ("in_mean", d_in),
            ("in_std", d_in),
            ("out_mean", d_out),
            ("out_std", d_out),
        ):
            fill = torch.ones if name.endswith("std") else torch.zeros
            self.register_buffer(name, fill(num_models, 1, dim))

    def spec(self) -> dict[str, Any]:
        return {"num_models": self.net.num_models, "d_in": self.d_in, "d_out": self.d_out,
                "width": self.width, "kind": self.kind}  # fmt: skip

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.in_mean) / self.in_std)

    def select(self, index: Sequence[int]) -> Policy:
        """A new ensemble of the copies ``index`` (repeats allowed), in that order."""
        policy = Policy(len(index), self.d_in, self.d_out, self.width, self.kind)
        policy.load_state_dict({k: v[list(index)] for k, v in self.state_dict().items()})
        return policy.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, d_in) -> (M, N, d_out): predictions (regression) or logits."""
        y = self.raw(x.float())
        return y * self.out_std + self.out_mean if self.kind == "regression" else y

    @torch.no_grad()
    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Actions: argmax of the logits (classification) or the prediction (regression)."""
        y = self(x)
        return y.argmax(-1) if self.kind == "classification" else y


def fit_policy(
    x: np.ndarray,
    y: np.ndarray,
    support: np.ndarray,
    kind: str,
    steps: int,
    seeds: Sequence[int],
    width: int = 64,
    batch_size: int = 128,
    lr: float = 1e-3,
    d_out: int | None = None,
) -> Policy:
    """Fit M policies: copy m on the rows ``support[m]`` of its (x[m], y[m]).

    x: (N, d_in) shared or (M, N, d_in); y: (N, d_y)/(M, N, d_y) floats (regression) or
    (N,)/(M, N) int class indices (classification, ``d_out`` classes); support (M, N) bool.
    Each update draws ``batch_size`` of each copy's own rows (with replacement).
    """
    m = len(seeds)
    support = np.asarray(support, bool).reshape(m, -1)
    empty = [i for i in range(m) if not support[i].any()]
    if empty:
        raise ValueError(f"copies {empty} have no transition to fit on")
    x_t = per_copy(np.asarray(x, np.float32), m, 1).float()
    classification = kind == "classification"
    y_t = per_copy(np.asarray(y), m, 0 if classification else 1)
    y_t = y_t.long() if classification else y_t.float()
    # Rows outside the support may hold a sentinel (NaN, −1): zero them so none reaches a sum.
    inside = torch.from_numpy(support)
    y_t = torch.where(inside if classification else inside[..., None], y_t, 0)
    d_out = d_out if classification else y_t.shape[-1]
    policy = Policy(m, x_t.shape[-1], d_out, width, kind)
    rows = torch.arange(m)[:, None]
    with torch.no_grad():
        policy.in_mean.copy_(x_t.mean(1, keepdim=True))
        policy.in_std.copy_(x_t.std(1, keepdim=True).clamp(min=1e-6))
        if not classification:
            w = inside[..., None].float()
            mean = (y_t * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
            var = ((y_t - mean).pow(2) * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
            policy.out_mean.copy_(mean)
            policy.out_std.copy_(var.sqrt().clamp(min=1e-6))
    generator = torch.Generator().manual_seed(seeds[0] + 104_729)
    for m_index, seed in enumerate(seeds):
        policy.net.reset_copy(m_index, torch.Generator().manual_seed(seed + 31))
    pools = [torch.from_numpy(np.flatnonzero(s)) for s in support]
    optimiser = torch.optim.Adam(policy.net.parameters(), lr=lr)
    for _ in range(steps):
        index = torch.stack(
            [p[torch.randint(len(p), (batch_size,), generator=generator)] for p in pools]
        )
        out = policy.raw(x_t[rows, index])
        target = y_t[rows, index]
        if classification:
            loss = F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none")
            loss = loss.view(m, -1).mean(1)
        else:
            loss = ((out - (target - policy.out_mean) / policy.out_std) ** 2).mean((1, 2))
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
    return policy.eval()


def _save_policy(path: Path, policy: Policy) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"spec": policy.spec(), "state": policy.state_dict()}, tmp)
    tmp.replace(path)


def _load_policy(path: Path) -> Policy:
    saved = torch.load(path, weights_only=True)
    policy = Policy(**saved["spec"])
    policy.load_state_dict(saved["state"])
    return policy.eval()


# --------------------------------------------------------------------------------------------
# Stage 5: evaluation — agreement and rollouts
# --------------------------------------------------------------------------------------------


def agreement(actions: np.ndarray, truth: np.ndarray, discrete: bool) -> np.ndarray:
    """Per copy: share of the behaviour policy's actions matched (grid), or 1 − nmse(a).

    actions: (M, N) or (M, N, d_a) predictions; truth: (N,)/(N, d_a) or per copy (M, N, ...).
    """
    truth = np.broadcast_to(truth, actions.shape)
    if discrete:
        return (actions == truth).mean(1)
    variance = truth.var(1).sum(-1)
    return 1 - np.square(actions - truth).sum(-1).mean(1) / variance


def rollout_returns(
    data: LAMDataset,
    act: Callable[[np.ndarray], np.ndarray],
    num_copies: int,
    episodes: int,
    seed: int,
) -> np.ndarray:
    """Mean episode return of M policies in the dataset's environment, (M,).

    All M × ``episodes`` environments step together in one native vector env with the
    dataset's environment id and parameters and its episode length. ``act(obs)`` maps
    observations (M, episodes, *obs_shape) to actions (M, episodes[, d_a]).
    """
    length = data.episode_length
    env = gym.make_vec(
        data.env_id, num_envs=num_copies * episodes, max_episode_steps=length, **data.env_kwargs
    )
    obs, _ = env.reset(seed=seed)
    total = np.zeros(num_copies * episodes)
    for _ in range(length):
        action = np.asarray(act(obs.reshape(num_copies, episodes, *obs.shape[1:])))
        obs, reward, _, _, _ = env.step(action.reshape(num_copies * episodes, *action.shape[2:]))
        total += reward
    env.close()
    return total.reshape(num_copies, episodes).mean(1)


# --------------------------------------------------------------------------------------------
# The run folder: one stage at a time
# --------------------------------------------------------------------------------------------


class _Run:
    """A run folder: its configuration, dataset, split and the artefacts of each stage."""

    def __init__(self, out_dir: Path, config: PipelineConfig):
        self.out, self.config = Path(out_dir), config
        self.data = LAMDataset(config.dataset)
        self.copy = load_copy(self.data, config)
        self.discrete = self.data.discrete
        self.num_actions = action_dim(self.data)
        self.obs_ndim = len(self.data.observation_shape)

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

    def obs(self, part: str) -> torch.Tensor:
        return _flat(torch.from_numpy(getattr(self.copy, part)["obs"])[None].float(), self.obs_ndim)


def _stage_lam(run: _Run, progress: bool) -> dict[str, Any]:
    c, copy = run.config, run.copy
    if c.lam == "vq":
        run.data.require("grid")
    if c.action_weight > 0 and not copy.labelled.any():
        raise PipelineError(f"dataset {run.data.dataset_id!r} has no labelled train transition")
    lam = train_lam(c, [copy], [c.seed], [c.action_weight], run.discrete, run.num_actions, progress)
    z_train = lam.latents(copy.train["obs"][None], copy.train["far_obs"][None])[0]
    z_test = lam.latents(copy.test["obs"][None], copy.test["far_obs"][None])[0]
    metrics = evaluate_latents(
        z_train, z_test, copy.train, copy.test, run.discrete, run.num_actions, c.seed
    )
    folder = run.folder("lam")
    save_run(folder, c.lam, None, c, metrics, model_config=lam.model_config)
    torch.save(lam.state(), folder / "model.pt")
    return metrics


def _load_lam(run: _Run) -> TrainedLAM:
    folder = run.need("lam", "run.json", "model.pt")
    record = load_run(folder)
    state = torch.load(folder / "model.pt", weights_only=True)
    c = run.config
    return _rebuild_lam(
        record["method"], record["model_config"], [c.seed], [c.action_weight], state
    )


def _stage_relabel(run: _Run) -> dict[str, Any]:
    lam = _load_lam(run)
    copy = run.copy
    z = {
        part: lam.latents(getattr(copy, part)["obs"][None], getattr(copy, part)["far_obs"][None])[0]
        for part in ("train", "test")
    }
    folder = run.folder("relabel")
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "latents.npz", z_train=z["train"], z_test=z["test"])
    metrics = {"transitions": {k: len(v) for k, v in z.items()}, "latent_dim": z["train"].shape[1]}
    save_run(folder, "relabel", None, run.config, metrics)
    return metrics


def _latents(run: _Run) -> dict[str, np.ndarray]:
    folder = run.need("relabel", "latents.npz")
    with np.load(folder / "latents.npz") as saved:
        return {k: saved[k] for k in saved.files}


def bc_policies(
    obs: np.ndarray,
    z: np.ndarray,
    actions: np.ndarray,
    true_actions: np.ndarray,
    labelled: np.ndarray,
    discrete: bool,
    num_actions: int,
    steps: int,
    seeds: Sequence[int],
    width: int,
) -> dict[str, Policy]:
    """Stage 3 for M copies: the latent policy π(z | o) on every transition, and the baselines
    π(a | o) on the labelled subset and on all transitions (true actions).

    obs (M, N, d_o) flattened, z (M, N, d_z), actions (M, N[, d_a]) the dataset's visible
    actions (read where ``labelled`` (M, N) is True), true_actions the oracle's (for the
    fully labelled baseline only).
    """
    kind = "classification" if discrete else "regression"
    everything = np.ones(labelled.shape, dtype=bool)
    common = dict(steps=steps, width=width, d_out=num_actions)
    return {
        "latent_policy": fit_policy(obs, z, everything, "regression", seeds=seeds, **common),
        "labelled_bc": fit_policy(obs, actions, labelled, kind, seeds=seeds, **common),
        "full_bc": fit_policy(obs, true_actions, everything, kind, seeds=seeds, **common),
    }


def _stage_bc(run: _Run) -> dict[str, Any]:
    c, copy = run.config, run.copy
    z = _latents(run)["z_train"]
    policies = bc_policies(
        run.obs("train").numpy(), z[None], copy.train["actions"][None],
        copy.train["oracle"]["action"][None], copy.labelled[None], run.discrete,
        run.num_actions, c.policy_steps, [c.seed], c.width,
    )  # fmt: skip
    folder = run.folder("bc")
    folder.mkdir(parents=True, exist_ok=True)
    for name, policy in policies.items():
        _save_policy(folder / f"{name}.pt", policy)
    metrics = {"labelled_transitions": int(copy.labelled.sum()), "train_transitions": len(z)}
    save_run(folder, "bc", None, c, metrics)
    return metrics


def fit_decoder(
    z: np.ndarray, actions: np.ndarray, labelled: np.ndarray, discrete: bool, num_actions: int,
    steps: int, seeds: Sequence[int], width: int,
) -> Policy:  # fmt: skip
    """Stage 4 for M copies: the decoder z -> a, fitted on the labelled subset only.

    z (M, N, d_z); actions (M, N[, d_a]), read only where ``labelled`` (M, N) is True.
    """
    if not np.asarray(labelled).reshape(len(seeds), -1).any(1).all():
        raise PipelineError("the decoder needs labelled transitions; a copy has none")
    kind = "classification" if discrete else "regression"
    return fit_policy(
        z, actions, labelled, kind, steps=steps, seeds=seeds, width=width, d_out=num_actions
    )


def _stage_decoder(run: _Run) -> dict[str, Any]:
    c, copy = run.config, run.copy
    if not copy.labelled.any():
        raise PipelineError(
            f"dataset {run.data.dataset_id!r} has no labelled transition in its train split: "
            "the decoder stage needs some (collect with --label-fraction > 0)"
        )
    z = _latents(run)["z_train"]
    decoder = fit_decoder(
        z[None], copy.train["actions"][None], copy.labelled[None], run.discrete,
        run.num_actions, c.policy_steps, [c.seed], c.width,
    )  # fmt: skip
    folder = run.folder("decoder")
    folder.mkdir(parents=True, exist_ok=True)
    _save_policy(folder / "decoder.pt", decoder)
    metrics = {"labelled_transitions": int(copy.labelled.sum())}
    save_run(folder, "decoder", None, c, metrics)
    return metrics


def evaluate_policies(
    data: LAMDataset,
    policies: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    test_obs: torch.Tensor,
    test_actions: np.ndarray,
    obs_ndim: int,
    episodes: int,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Stage 5: for each named policy (flattened obs (M, N, d_o) -> actions (M, N[, d_a])),
    its agreement on the held-out transitions and its mean return in the environment, (M,)."""
    results = {}
    for name, act in policies.items():
        predicted = act(test_obs).numpy()
        m = predicted.shape[0]

        def act_env(obs: np.ndarray, act=act) -> np.ndarray:
            return act(_flat(torch.from_numpy(obs).float(), obs_ndim)).numpy()

        results[name] = {
            "agreement": agreement(predicted, test_actions, data.discrete),
            "return": rollout_returns(data, act_env, m, episodes, seed),
        }
    return results


def composed(latent_policy: Policy, decoder: Policy) -> Callable[[torch.Tensor], torch.Tensor]:
    """The composed policy a = decoder(π(o)), on flattened observations (M, N, d_o)."""
    return lambda obs: decoder.act(latent_policy(obs))


def _stage_rollout(run: _Run) -> dict[str, Any]:
    c = run.config
    bc = run.need("bc", "latent_policy.pt", "labelled_bc.pt", "full_bc.pt")
    decoder = _load_policy(run.need("decoder", "decoder.pt") / "decoder.pt")
    loaded = {
        name: _load_policy(bc / f"{name}.pt")
        for name in ("latent_policy", "labelled_bc", "full_bc")
    }
    policies = {
        "composed": composed(loaded["latent_policy"], decoder),
        "labelled_bc": loaded["labelled_bc"].act,
        "full_bc": loaded["full_bc"].act,
    }
    results = evaluate_policies(
        run.data, policies, run.obs("test"), run.copy.test["oracle"]["action"], run.obs_ndim,
        c.rollout_episodes, c.seed,
    )  # fmt: skip
    metrics = {name: {k: float(v[0]) for k, v in r.items()} for name, r in results.items()}
    full = metrics["full_bc"]["return"]
    metrics["normalised_return"] = metrics["composed"]["return"] / full if full else float("nan")
    save_run(run.folder("rollout"), "rollout", None, c, metrics)
    return metrics


_STAGE_FUNCTIONS = {
    "lam": lambda run, progress: _stage_lam(run, progress),
    "relabel": lambda run, progress: _stage_relabel(run),
    "bc": lambda run, progress: _stage_bc(run),
    "decoder": lambda run, progress: _stage_decoder(run),
    "rollout": lambda run, progress: _stage_rollout(run),
}


def _saved_config(out_dir: Path) -> PipelineConfig | None:
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        return None
    return PipelineConfig(**json.loads(path.read_text()))


def run_stage(
    stage: str, out_dir: str | Path, config: PipelineConfig | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run one stage (or ``"all"``) in the run folder ``out_dir``; return its metrics.

    ``config`` is required for the first stage (``lam`` or ``all``), which saves it as
    ``config.json``; later stages read it from there (a different ``config`` is an error).
    ``all`` returns the summary also saved as ``results.json``.
    """
    check_choice("stage", stage, (*STAGES, "all"))
    out = Path(out_dir)
    saved = _saved_config(out)
    if stage in ("lam", "all"):
        if config is None:
            raise PipelineError(f"stage {stage!r} needs a configuration (at least --dataset)")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    else:
        if saved is None:
            raise PipelineError(
                f"missing artefacts: {str(out)!r} has no config.json; run the pipeline from "
                f"--stage lam (or all) into that folder first"
            )
        if config is not None and config != saved:
            diff = [
                f"{f.name}={getattr(config, f.name)!r} (folder: {getattr(saved, f.name)!r})"
                for f in dataclasses.fields(config)
                if getattr(config, f.name) != getattr(saved, f.name)
            ]
            raise PipelineError(
                f"run folder {str(out)!r} was made with other settings: {', '.join(diff)}; "
                "use a new --out"
            )
        config = saved
    run = _Run(out, config)
    if stage != "all":
        return _STAGE_FUNCTIONS[stage](run, progress)
    start = time.perf_counter()
    lam_metrics = {}
    for name in STAGES:
        metrics = _STAGE_FUNCTIONS[name](run, progress)
        if name == "lam":
            lam_metrics = metrics
    summary = summarise(config, lam_metrics, metrics, time.perf_counter() - start)
    save_run(out, "pipeline", None, config, summary)
    (out / "run.json").replace(out / RESULTS)
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
    **settings: Any,
) -> dict[str, Any]:
    """Run all five stages on ``dataset`` with the LAM ``lam`` into ``out_dir``; return the
    summary (see :func:`format_results`). ``quick``: small step counts (seconds);
    ``settings``: any other :class:`PipelineConfig` field."""
    make = PipelineConfig.quick if quick else PipelineConfig
    config = make(dataset=str(dataset), lam=lam, **settings)
    return run_stage("all", out_dir, config, progress)


def format_results(summary: dict[str, Any]) -> str:
    """The summary as a small table: return and agreement of the composed policy and the two
    baselines, the normalised return, and the LAM's action probe."""
    fraction = summary["label_fraction"]
    labels = "all labels" if fraction is None else f"label fraction {fraction:g}"
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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = PipelineConfig()
    p = Parser(
        prog="python -m lam_models.pipeline",
        description="LAPO-style pipeline: train a LAM, relabel, clone a latent policy, decode "
        "latents to actions with the labelled subset, roll out; beside BC on the labelled "
        "subset and on fully labelled data. Prints and saves results.json.",
        argument_default=argparse.SUPPRESS,  # so that later stages know which flags were given
    )
    p.add_argument("--dataset", metavar="ID_OR_PATH", help="Minari id or path of a dataset")
    p.add_argument("--lam", help=f"which LAM: {', '.join(LAMS)} (default {d.lam})")
    p.add_argument(
        "--stage", default="all", help=f"stage to run: {'|'.join(STAGES)}|all (default all)"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (one sub-folder per stage)")
    p.add_argument(
        "--label-fraction", type=float, help="share of train transitions labelled (default: all)"
    )
    p.add_argument("--held-out", type=float, help=f"share of episodes held out ({d.held_out})")
    p.add_argument("--seed", type=int, help=f"seed of everything (default {d.seed})")
    p.add_argument("--latent-dim", type=int, help=f"d_z (default {d.latent_dim})")
    p.add_argument("--k", type=int, help=f"IDM look-ahead k >= 1 (default {d.k})")
    p.add_argument("--no-augment", action="store_true", help="turn the LAM's augmentation off")
    p.add_argument("--action-weight", type=float, help="λ_a of the LAM's supervision (0: none)")
    p.add_argument("--lam-steps", type=int, help=f"LAM updates (default {d.lam_steps})")
    p.add_argument("--policy-steps", type=int, help=f"policy/decoder updates ({d.policy_steps})")
    p.add_argument("--width", type=int, help=f"hidden units of policies ({d.width})")
    p.add_argument(
        "--rollout-episodes", type=int, help=f"episodes per policy ({d.rollout_episodes})"
    )
    p.add_argument("--quick", action="store_true", help="small step counts (seconds)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace, out: Path) -> PipelineConfig | None:
    """The configuration the flags describe, on top of the run folder's (later stages)."""
    given = {
        k: v
        for k, v in vars(args).items()
        if k not in ("stage", "out", "threads", "quiet", "quick")
    }
    if given.pop("no_augment", False):
        given["augment"] = False
    saved = _saved_config(out)
    if args.stage in ("lam", "all"):
        if "dataset" not in given:
            raise PipelineError(f"--stage {args.stage} needs --dataset")
        make = PipelineConfig.quick if getattr(args, "quick", False) else PipelineConfig
        return make(**given)
    if saved is None or not given:
        return None
    return PipelineConfig(**{**dataclasses.asdict(saved), **given})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        torch.set_num_threads(check_int("threads", args.threads, low=1))
        check_choice("stage", args.stage, (*STAGES, "all"))
        config = config_from_args(args, args.out)
        result = run_stage(args.stage, args.out, config, progress=not getattr(args, "quiet", False))
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.stage == "all":
        print(format_results(result))
        print(f"saved {args.out}/ (config.json, one folder per stage, {RESULTS})")
    else:
        print(f"stage {args.stage}: {json.dumps(result, default=float)}")
        print(f"saved {args.out / args.stage}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
