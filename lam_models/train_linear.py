"""Train the linear LAM, probe its latent, and save the run.

    python -m lam_models.train linear --dataset ID_OR_PATH --latent-dim 8
    python -m lam_models.train linear --env LinearLAM-v0 -k sigma_exo=2.0 --latent-dim 8

The pipeline, top to bottom (SPEC, "Linear LAM" and "Metrics"):

1. Data. Either a Minari dataset made by ``lam_envs.collect`` (split by episode into train
   and held-out; the train split is loaded once and sampled at random when it fits in memory,
   read in shuffled chunks otherwise), or fresh transitions streamed from the native vector
   env (``EnvStream``; one-step episodes by default, so o ~ N(0, I)). ``train_transitions``
   optionally fixes a training pool drawn once from the stream instead of fresh batches.
2. Training. ``train_linear_lam``: Adam on the loss ‖ô' − Aug2(o')‖² + λ_a·‖E z − a‖².
   Several configurations with the same latent dimension train as one batched model
   (:func:`train_and_evaluate_many`); the CLI trains one.
3. Evaluation. Least-squares probes (closed form) from the latent to a, q, ε and o, fitted
   on training transitions and measured on held-out ones, for the true latent z = C o + D o'
   and the surrogate z̃ = B⁺(ô' − o); LLO = −nmse(q) + nmse(ε) + nmse(o). For a stream the
   probes use random-policy transitions of the same environment (same X, Y), whatever the
   training policy, as the SPEC's χ sweep asks. The reconstruction loss (no augmentation) is
   measured on training data beside the analytic PCA minimum of the same data's o' − o.
4. Saving. ``model.pt`` and ``run.json`` (configuration and metrics) via ``save_run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lam_envs
from lam_envs.cli import Parser, derive_seed, parse_value
from lam_envs.linear import LinearLAMConfig as EnvConfig
from lam_envs.validate import check_choice, check_float, check_fraction, check_int
from lam_models.data import DatasetError, EnvStream, LAMDataset
from lam_models.linear import LinearLAM, LinearLAMConfig, optimality_gap, train_linear_lam
from lam_models.metrics import linear_probe_report
from lam_models.runs import save_run

__all__ = ["TrainLinearConfig", "main", "train_and_evaluate", "train_and_evaluate_many"]

PROBE_TARGETS = ("a", "q", "eps", "o")
_CHUNK_BATCHES = 32  # training batches drawn from the data source at a time
_IN_MEMORY_BYTES = 2 << 30  # a dataset train split below this is loaded once
_PROBE_FIT_MAX = 50_000  # transitions of a dataset's train split the probes are fitted on


@dataclass
class TrainLinearConfig:
    """Everything one linear-LAM run needs; saved in ``run.json``.

    Data (``dataset`` set: read it; otherwise stream fresh transitions from ``env``):
        dataset: Minari id or path of a ``lam_envs.collect`` dataset of a LinearLAM env.
        held_out: share of a dataset's episodes held out for measuring the probes, in (0, 1).
        env, env_kwargs: stream: environment id and its parameters (d_o, sigma_exo, ...).
        policy, chi: stream: behaviour policy ("random" or "linear") and its determinism χ.
        label_fraction: stream: share of transitions whose action the learner sees.
        episode_length: stream: steps per episode (1: every o ~ N(0, I)).
        train_transitions: stream: draw a training pool of this many transitions once and
            sample batches from it; None: fresh transitions at every step.
        eval_transitions: stream: held-out transitions the probes are measured on (and, when
            there is no training pool, the number they are fitted on).
    Model (SPEC symbols):
        latent_dim: d_z, in [1, d_o].  kappa: augmentation scale κ >= 0.
        action_head: train the head E on labelled transitions, with weight λ_a = action_weight.
    Optimisation: steps, batch_size, lr (Adam with a cosine schedule), seed.
    """

    dataset: str | None = None
    held_out: float = 0.1
    env: str = "LinearLAM-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: str = "random"
    chi: float | None = None
    label_fraction: float = 1.0
    episode_length: int = 1
    train_transitions: int | None = None
    eval_transitions: int = 4096
    latent_dim: int = 8
    kappa: float = 0.0
    action_head: bool = False
    action_weight: float = 1.0
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-2
    seed: int = 0

    def __post_init__(self) -> None:
        # latent_dim's upper bound d_o is checked once the data is open.
        check_int("latent_dim", self.latent_dim, low=1)
        check_float("kappa", self.kappa, low=0.0)
        check_float("action_weight", self.action_weight, low=0.0)
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_float("lr", self.lr, low=0.0)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        check_int("seed", self.seed, low=0)
        check_int("eval_transitions", self.eval_transitions, low=2)
        if self.dataset is None:
            check_choice("environment", self.env, lam_envs.ENV_IDS)
            if lam_envs.ENV_IDS[self.env][0] != "linear":
                raise ValueError(f"environment {self.env!r} is not a LinearLAM environment")
            check_choice("policy", self.policy, ("random", "linear"))
            if self.chi is not None:
                check_fraction("chi", self.chi)
            check_fraction("label_fraction", self.label_fraction)
            check_int("episode_length", self.episode_length, low=1)
            if self.train_transitions is not None:
                check_int("train_transitions", self.train_transitions, low=self.batch_size)
            if self.action_head and self.label_fraction == 0:
                raise ValueError(
                    "label_fraction = 0 gives no labelled transitions, but the action head "
                    "needs some; give label_fraction > 0 or drop the action head"
                )
        else:
            if not 0 < self.held_out < 1:
                raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")


# --------------------------------------------------------------------------------------------
# Data sources
# --------------------------------------------------------------------------------------------


def _probe_set(learn: dict[str, np.ndarray], oracle: dict[str, np.ndarray]) -> dict:
    """Inputs and probe targets of a set of transitions: o, o_next, a, q, eps (numpy)."""
    return {
        "o": learn["obs"],
        "o_next": learn["next_obs"],
        "a": oracle["action"],
        "q": oracle["q"],
        "eps": oracle["eps"],
    }


class StreamSource:
    """Fresh transitions from the native vector env (``EnvStream``)."""

    def __init__(self, config: TrainLinearConfig):
        self.config = c = config
        self.env_config = EnvConfig.from_preset(
            c.env_kwargs.get("preset", lam_envs.ENV_IDS[c.env][1]),
            **{k: v for k, v in c.env_kwargs.items() if k != "preset"},
        )
        self.d_o, self.d_a = self.env_config.d_o, self.env_config.d_a
        self.description = f"stream {c.env} {c.env_kwargs or ''} policy {c.policy}" + (
            f" χ={c.chi}" if c.chi is not None else ""
        )
        knobs = {"chi": c.chi} if c.policy == "linear" and c.chi is not None else {}
        self._train_kwargs = dict(
            policy=c.policy,
            episode_length=c.episode_length,
            label_fraction=c.label_fraction,
            policy_knobs=knobs,
            **c.env_kwargs,
        )
        self._stream: EnvStream | None = None
        self._pool: dict[str, np.ndarray] | None = None
        self._pool_oracle: dict[str, np.ndarray] | None = None
        self._rng = np.random.default_rng(derive_seed(c.seed, 3))
        if c.train_transitions is not None:
            self._pool, self._pool_oracle = self._draw(
                c.train_transitions, derive_seed(c.seed, 0), **self._train_kwargs
            )

    def _draw(self, n: int, seed: int, **kwargs) -> tuple[dict, dict]:
        """n transitions from a new stream, in batches of at most 8192 parallel envs."""
        stream = EnvStream(self.config.env, min(n, 8192), seed=seed, **kwargs)
        parts = [stream.next_numpy() for _ in range(math.ceil(n / stream.env.num_envs))]
        learn = {k: np.concatenate([p[0][k] for p in parts])[:n] for k in parts[0][0]}
        oracle = {k: np.concatenate([p[1][k] for p in parts])[:n] for k in ("action", "q", "eps")}
        return learn, oracle

    def train_chunk(self, n: int) -> dict[str, np.ndarray]:
        """n training transitions: obs, next_obs, actions (NaN unlabelled), label_mask."""
        if self._pool is not None:
            index = self._rng.integers(len(self._pool["obs"]), size=n)
            return {k: v[index] for k, v in self._pool.items()}
        if self._stream is None:
            self._stream = EnvStream(
                self.config.env, n, seed=derive_seed(self.config.seed, 0), **self._train_kwargs
            )
        return self._stream.next_numpy()[0]

    def eval_sets(self) -> dict[str, dict[str, np.ndarray]]:
        """probe_fit, probe_test (random policy) and recon (training data) sets."""
        c = self.config
        random_kwargs = dict(self._train_kwargs, policy="random", policy_knobs={})
        random_policy = c.policy == "random" or not c.chi
        if self._pool is not None:
            recon = {"o": self._pool["obs"], "o_next": self._pool["next_obs"]}
            if random_policy and c.episode_length == 1:
                fit = _probe_set(self._pool, self._pool_oracle)
            else:
                fit = _probe_set(
                    *self._draw(len(self._pool["obs"]), derive_seed(c.seed, 1), **random_kwargs)
                )
        else:
            learn, _ = self._draw(c.eval_transitions, derive_seed(c.seed, 4), **self._train_kwargs)
            recon = {"o": learn["obs"], "o_next": learn["next_obs"]}
            fit = _probe_set(
                *self._draw(c.eval_transitions, derive_seed(c.seed, 1), **random_kwargs)
            )
        test = _probe_set(*self._draw(c.eval_transitions, derive_seed(c.seed, 2), **random_kwargs))
        return {"probe_fit": fit, "probe_test": test, "recon": recon}


class DatasetSource:
    """A ``lam_envs.collect`` dataset of a linear env, split by episode."""

    def __init__(self, config: TrainLinearConfig):
        self.config = c = config
        self.data = data = LAMDataset(c.dataset)
        data.require("linear")
        self.train_episodes, self.test_episodes = data.split(c.held_out, seed=c.seed)
        self.d_o = int(data.observation_shape[0])
        fields = {f.name for f in dataclasses.fields(EnvConfig)}
        kwargs = {k: v for k, v in data.env_kwargs.items() if k in fields}
        self.env_config = EnvConfig.from_preset(data.env_kwargs.get("preset"), **kwargs)
        self.d_a = self.env_config.d_a
        self.description = f"dataset {data.dataset_id} ({data.env_id})"
        self._rng = np.random.default_rng(derive_seed(c.seed, 0))
        n_train = data.num_transitions(self.train_episodes)
        in_memory = n_train * (2 * self.d_o + self.d_a + 1) * 4 <= _IN_MEMORY_BYTES
        # Fast path: the whole train split in memory, batches drawn by random index.
        self._train = data.read_numpy(self.train_episodes) if in_memory else None
        self._batches = (
            None
            if in_memory
            else data.batches(
                c.batch_size, self.train_episodes, seed=derive_seed(c.seed, 0), epochs=None
            )
        )
        if c.action_head:
            labelled = (
                int(self._train["label_mask"].sum())
                if in_memory
                else int(data.metadata["lam_envs"].get("labelled", 0))
            )
            if labelled == 0:
                raise ValueError(
                    f"dataset {data.dataset_id!r} has no labelled transitions in its train "
                    f"split (label fraction {data.collect_config.get('label_fraction')}), but "
                    "the action head needs some; drop --action-head"
                )

    def train_chunk(self, n: int) -> dict[str, np.ndarray]:
        if self._train is not None:
            index = self._rng.integers(len(self._train["obs"]), size=n)
            return {k: v[index] for k, v in self._train.items()}
        parts = [next(self._batches) for _ in range(math.ceil(n / self.config.batch_size))]
        keys = ("obs", "next_obs", "actions", "label_mask")
        return {key: torch.cat([getattr(p, key) for p in parts])[:n].numpy() for key in keys}

    def _probe_set(self, episodes: np.ndarray) -> dict[str, np.ndarray]:
        return _probe_set(self.data.read_numpy(episodes), self.data.oracle(episodes))

    def eval_sets(self) -> dict[str, dict[str, np.ndarray]]:
        fit_episodes = self.train_episodes
        most = max(1, _PROBE_FIT_MAX // self.data.episode_length)
        if len(fit_episodes) > most:
            rng = np.random.default_rng(derive_seed(self.config.seed, 1))
            fit_episodes = np.sort(rng.choice(fit_episodes, most, replace=False))
        fit = self._probe_set(fit_episodes)
        return {
            "probe_fit": fit,
            "probe_test": self._probe_set(self.test_episodes),
            "recon": {"o": fit["o"], "o_next": fit["o_next"]},
        }


def open_source(config: TrainLinearConfig) -> StreamSource | DatasetSource:
    """The data source of ``config``, with ``latent_dim`` checked against its d_o."""
    source = DatasetSource(config) if config.dataset is not None else StreamSource(config)
    check_int("latent_dim", config.latent_dim, low=1, high=source.d_o)
    return source


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


def _model_config(configs: list[TrainLinearConfig], sources: list) -> LinearLAMConfig:
    """One batched LinearLAMConfig for configurations that can train together."""
    first = configs[0]
    for c in configs[1:]:
        for name in ("latent_dim", "steps", "batch_size", "lr"):
            if getattr(c, name) != getattr(first, name):
                raise ValueError(
                    f"configurations trained together must share {name}; "
                    f"got {getattr(first, name)} and {getattr(c, name)}"
                )
    d_os = {s.d_o for s in sources}
    if len(d_os) > 1:
        raise ValueError(f"configurations trained together must share d_o; got {sorted(d_os)}")
    head = any(c.action_head for c in configs)
    d_as = {s.d_a for s, c in zip(sources, configs, strict=True) if c.action_head}
    if len(d_as) > 1:
        raise ValueError(f"models with an action head must share d_a; got {sorted(d_as)}")
    return LinearLAMConfig(
        d_o=d_os.pop(),
        d_a=d_as.pop() if head else max(s.d_a for s in sources),
        d_z=first.latent_dim,
        kappa=tuple(c.kappa for c in configs),
        action_weight=tuple(c.action_weight if c.action_head else 0.0 for c in configs),
        use_action_head=head,
        lr=first.lr,
        batch_size=first.batch_size,
        steps=first.steps,
        seed=first.seed,
        num_models=len(configs),
    )


def _sampler(sources: list, model_config: LinearLAMConfig):
    """sample_batch(step) for the trainer: every model its own data, (M, N, ·) tensors.

    Draws ``_CHUNK_BATCHES`` batches per source at a time. Actions are NaN-padded to the
    model's d_a (only models without the head can have a smaller d_a; they never read it).
    """
    M, B, d_a = len(sources), model_config.batch_size, model_config.d_a
    chunk: dict[str, torch.Tensor] = {}

    def refill() -> None:
        parts = [s.train_chunk(_CHUNK_BATCHES * B) for s in sources]
        for key in ("obs", "next_obs", "label_mask"):
            stacked = np.stack([p[key] for p in parts])
            chunk[key] = torch.from_numpy(stacked).view(M, _CHUNK_BATCHES, B, *stacked.shape[2:])
        actions = np.full((M, _CHUNK_BATCHES * B, d_a), np.nan, dtype=np.float32)
        for m, p in enumerate(parts):
            actions[m, :, : p["actions"].shape[1]] = p["actions"]
        chunk["actions"] = torch.from_numpy(actions).view(M, _CHUNK_BATCHES, B, d_a)

    def sample_batch(step: int):
        k = step % _CHUNK_BATCHES
        if k == 0:
            refill()
        return (
            chunk["obs"][:, k].float(),
            chunk["next_obs"][:, k].float(),
            chunk["actions"][:, k],
            chunk["label_mask"][:, k].bool(),
        )

    return sample_batch


def _stack(sets: list[dict[str, np.ndarray]], key: str) -> torch.Tensor:
    return torch.from_numpy(np.stack([s[key] for s in sets]).astype(np.float32))


@torch.no_grad()
def _evaluate(model: LinearLAM, sources: list) -> list[dict[str, Any]]:
    """Probe reports (true and surrogate latent) and the optimality gap of every model."""
    evals = [s.eval_sets() for s in sources]
    results: list[dict[str, Any]] = [{} for _ in sources]

    def per_model(set_name: str, fn) -> list:
        """fn(o, o_next) -> (M, ...) on each model's own set (stacked when sizes agree)."""
        sets = [e[set_name] for e in evals]
        if len({len(s["o"]) for s in sets}) == 1:
            out = fn(_stack(sets, "o"), _stack(sets, "o_next"))
            return [out[m] for m in range(len(sets))]
        return [
            fn(torch.from_numpy(s["o"]).float(), torch.from_numpy(s["o_next"]).float())[m]
            for m, s in enumerate(sets)
        ]

    for kind, latent in (("true", model.latent), ("surrogate", model.surrogate_latent)):
        z_fit, z_test = per_model("probe_fit", latent), per_model("probe_test", latent)
        for m, e in enumerate(evals):
            targets = [
                {k: e[part][k] for k in PROBE_TARGETS} for part in ("probe_fit", "probe_test")
            ]
            report = linear_probe_report(z_fit[m], z_test[m], *targets, latent_name=kind)
            results[m][kind] = report
    gaps = per_model("recon", lambda o, o_next: torch.stack(optimality_gap(model, o, o_next), 1))
    for m, gap in enumerate(gaps):
        loss, minimum, _ = (float(v) for v in gap)
        delta = evals[m]["recon"]["o_next"] - evals[m]["recon"]["o"]
        scale = float(np.square(delta, dtype=np.float64).sum(-1).mean())
        # With no noise and d_z >= d_a the minimum is 0: a relative gap says nothing there.
        relative = (loss - minimum) / minimum if minimum > 1e-6 * scale else math.nan
        results[m].update(recon_loss=loss, analytic_loss=minimum, relative_gap=relative)
    return results


def train_and_evaluate_many(
    configs: list[TrainLinearConfig], progress: bool = False
) -> tuple[LinearLAM, list[dict[str, Any]]]:
    """Train one model per configuration as one batched ``LinearLAM``, and evaluate each.

    The configurations must share latent_dim, steps, batch_size, lr and d_o; each has its own
    data (environment, policy, noise, seed), κ and λ_a. The initialisation is drawn from the
    first configuration's seed. Returns the batched model and, per configuration, a dict:
    {"true": probe report, "surrogate": probe report, "recon_loss", "analytic_loss",
    "relative_gap", "final_train_loss", "data"}.
    """
    sources = [open_source(c) for c in configs]
    model_config = _model_config(configs, sources)
    model, history = train_linear_lam(
        model_config, _sampler(sources, model_config), progress=progress
    )
    results = _evaluate(model, sources)
    tail = max(1, model_config.steps // 20)
    for m, (result, source) in enumerate(zip(results, sources, strict=True)):
        result["final_train_loss"] = float(history.loss[-tail:, m].mean())
        result["data"] = source.description
        result["d_o"], result["d_a"] = source.d_o, source.d_a
        result["d_b"] = source.env_config.d_b
        result["sigma_iid"] = source.env_config.sigma_iid
        result["sigma_exo"] = source.env_config.sigma_exo
    return model, results


def train_and_evaluate(
    config: TrainLinearConfig, progress: bool = False
) -> tuple[LinearLAM, dict[str, Any]]:
    """Train and evaluate one linear LAM; see :func:`train_and_evaluate_many`."""
    model, results = train_and_evaluate_many([config], progress=progress)
    return model, results[0]


# --------------------------------------------------------------------------------------------
# Report and command line
# --------------------------------------------------------------------------------------------


def format_report(config: TrainLinearConfig, metrics: dict[str, Any]) -> str:
    """The metrics as a small table: one row per latent (true z, surrogate B⁺(ô' − o))."""
    c = config
    head = "off" if not c.action_head else f"λ_a={c.action_weight:g}"
    lines = [
        f"linear LAM  d_o={metrics['d_o']} d_a={metrics['d_a']} d_z={c.latent_dim} "
        f"κ={c.kappa:g} action head {head}; {c.steps} Adam steps, batch {c.batch_size}",
        f"data: {metrics['data']}",
        "probes: least squares, fitted on training transitions, nmse on held-out ones"
        + ("" if c.dataset else " (random policy)"),
        "",
        f"{'latent':<26}{'nmse_a':>8}{'nmse_q':>8}{'nmse_eps':>10}{'nmse_o':>8}{'LLO':>8}",
    ]
    names = {"true": "true z = C o + D o'", "surrogate": "surrogate B⁺(ô' − o)"}
    for kind in ("true", "surrogate"):
        r = metrics[kind]
        eps = f"{r['nmse_eps']:.4f}" + ("*" if r["eps_zero_variance"] else " ")
        lines.append(
            f"{names[kind]:<26}{r['nmse_a']:>8.4f}{r['nmse_q']:>8.4f}{eps:>10}"
            f"{r['nmse_o']:>8.4f}{r['llo']:>8.4f}"
        )
    if metrics["true"]["eps_zero_variance"]:
        lines.append("* ε = 0 in this data: nmse(ε) is taken as 1 (SPEC)")
    gap = metrics["relative_gap"]
    gap_text = f"gap {gap:+.2%}" if math.isfinite(gap) else "minimum is 0"
    lines += [
        "",
        f"recon loss {metrics['recon_loss']:.5g} (training data, no augmentation); "
        f"analytic minimum {metrics['analytic_loss']:.5g}; {gap_text}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d = TrainLinearConfig()
    p = Parser(
        prog="python -m lam_models.train linear",
        description="Train the linear LAM on a dataset or on fresh transitions from the "
        "environment; print probe metrics; save model.pt and run.json.",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", metavar="ID_OR_PATH", help="Minari id or path of a dataset")
    data.add_argument(
        "--env", help=f"stream fresh transitions from this environment (default {d.env})"
    )
    p.add_argument(
        "--env-kwarg",
        "-k",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="stream: environment parameter, repeatable (e.g. -k d_o=64 -k sigma_exo=2.0)",
    )
    p.add_argument("--policy", default=d.policy, help="stream: behaviour policy, random or linear")
    p.add_argument("--chi", type=float, help="stream: linear policy determinism χ in [0, 1]")
    p.add_argument(
        "--label-fraction",
        type=float,
        default=d.label_fraction,
        help=f"stream: share of transitions with a visible action (default {d.label_fraction})",
    )
    p.add_argument(
        "--episode-length",
        type=int,
        default=d.episode_length,
        help="stream: steps per episode (default 1: every o ~ N(0, I))",
    )
    p.add_argument(
        "--train-transitions",
        type=int,
        help="stream: train on a fixed pool of this many transitions (default: fresh ones)",
    )
    p.add_argument(
        "--eval-transitions",
        type=int,
        default=d.eval_transitions,
        help=f"stream: held-out transitions the probes are scored on ({d.eval_transitions})",
    )
    p.add_argument(
        "--held-out",
        type=float,
        default=d.held_out,
        help=f"dataset: share of episodes held out for the probes (default {d.held_out})",
    )
    p.add_argument(
        "--latent-dim", type=int, default=d.latent_dim, help="d_z, latent dimension in [1, d_o]"
    )
    p.add_argument("--kappa", type=float, default=d.kappa, help="augmentation scale κ >= 0")
    p.add_argument(
        "--action-head", action="store_true", help="train the action head E on labelled data"
    )
    p.add_argument(
        "--action-weight",
        type=float,
        default=d.action_weight,
        help=f"λ_a, weight of the action-head loss (default {d.action_weight})",
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"Adam steps (default {d.steps})")
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"batch size ({d.batch_size})"
    )
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of data, split and model")
    p.add_argument(
        "--out", type=Path, help="run folder (default runs/linear/<data>-dz<d_z>-s<seed>)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for these small models on a busy CPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainLinearConfig:
    env_kwargs = {}
    for item in args.env_kwarg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env-kwarg expects KEY=VALUE, got {item!r}")
        env_kwargs[key] = parse_value(value)
    if args.dataset is not None and env_kwargs:
        raise ValueError("--env-kwarg applies to streamed data, not to --dataset")
    return TrainLinearConfig(
        dataset=args.dataset,
        held_out=args.held_out,
        env=args.env or TrainLinearConfig.env,
        env_kwargs=env_kwargs,
        policy=args.policy,
        chi=args.chi,
        label_fraction=args.label_fraction,
        episode_length=args.episode_length,
        train_transitions=args.train_transitions,
        eval_transitions=args.eval_transitions,
        latent_dim=args.latent_dim,
        kappa=args.kappa,
        action_head=args.action_head,
        action_weight=args.action_weight,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )


def default_out(config: TrainLinearConfig) -> Path:
    name = Path(config.dataset).name if config.dataset else config.env
    name = name.replace("/", "_")
    return Path("runs") / "linear" / f"{name}-dz{config.latent_dim}-s{config.seed}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        torch.set_num_threads(check_int("threads", args.threads, low=1))
        config = config_from_args(args)
        start = time.perf_counter()
        model, metrics = train_and_evaluate(config, progress=not args.quiet)
        elapsed = time.perf_counter() - start
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(config, metrics))
    out = args.out or default_out(config)
    path = save_run(
        out,
        "linear",
        model,
        config,
        metrics,
        model_config=model.config,
        elapsed_seconds=elapsed,
    )
    print(f"saved {path.parent}/ (model.pt, run.json) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
