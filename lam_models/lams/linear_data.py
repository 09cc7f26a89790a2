"""The linear LAM's data beyond a dataset split: fresh transitions streamed from the native
vector env (:class:`StreamConfig`, :class:`StreamSource`, :class:`StreamBatches`), and the
probe sets its metrics read from either source (:func:`eval_sets`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

import lam_envs
from lam_envs.envs.linear import LinearLAMConfig as EnvConfig
from lam_envs.utils.config import check_fields, option
from lam_envs.utils.validate import check_choice, check_fraction, check_int
from lam_models.data import EnvStream, to_device
from lam_models.seeding import Stream, derive_seed, numpy_rng
from lam_models.split import DataSpec, DataSplit, Transitions

__all__ = ["StreamBatches", "StreamConfig", "StreamSource", "env_config_of", "eval_sets"]

_PROBE_FIT_MAX = 50_000  # transitions of a dataset's train split the probes are fitted on


def _probe_set(o, o_next, oracle) -> dict[str, np.ndarray]:
    return {
        "o": o.reshape(len(o), -1),
        "o_next": o_next.reshape(len(o), -1),
        "a": oracle["action"],
        "q": oracle["q"],
        "eps": oracle["eps"],
    }


def eval_sets(source, seed: int) -> dict[str, Any]:
    """probe_fit, probe_test and recon sets (numpy), the env config and a description."""
    if isinstance(source, StreamSource):
        return source.eval_sets()
    split: DataSplit = source
    split.data.require("linear")
    train = split.train
    if len(train) > _PROBE_FIT_MAX:
        rows = np.sort(
            numpy_rng(seed, Stream.EVAL_SUBSET).choice(len(train), _PROBE_FIT_MAX, replace=False)
        )
        train = train.subset(rows)
    fit = _probe_set(train.obs(), train.next_obs(), train.oracle)
    test = _probe_set(split.test.obs(), split.test.next_obs(), split.test.oracle)
    return {
        "probe_fit": fit,
        "probe_test": test,
        "recon": {"o": fit["o"], "o_next": fit["o_next"]},
        "env_config": env_config_of(split.data.env_id, split.data.env_kwargs),
        "description": split.describe(),
    }


def env_config_of(env_id: str, kwargs: dict[str, Any]) -> EnvConfig:
    """The LinearLAM parameters of an environment id and its keyword arguments."""
    names = {f.name for f in dataclasses.fields(EnvConfig)}
    preset = kwargs.get("preset", lam_envs.ENV_IDS.get(env_id, ("linear", None))[1])
    return EnvConfig.from_preset(preset, **{k: v for k, v in kwargs.items() if k in names})


@dataclass
class StreamConfig:
    """Fresh transitions from the native vector env instead of a dataset (linear only)."""

    env: str = option("LinearLAM-v0", "stream fresh transitions from this environment")
    env_kwargs: dict[str, Any] = option(
        dict,
        "an environment parameter (d_o, sigma_exo, ...), repeatable",
        flags=("--env-kwarg", "-k"),
    )
    policy: str = option(
        "random", "behaviour policy: random or linear", choices=("random", "linear")
    )
    chi: float | None = option(None, "linear policy determinism χ in [0, 1]", low=0.0, high=1.0)
    episode_length: int = option(1, "steps per episode (1: every o ~ N(0, I))", low=1)
    train_transitions: int | None = option(
        None, "train on a fixed pool of this many transitions (default: fresh ones)", low=1
    )

    def __post_init__(self) -> None:
        check_choice("environment", self.env, lam_envs.ENV_IDS)
        if lam_envs.ENV_IDS[self.env][0] != "linear":
            raise ValueError(f"environment {self.env!r} is not a LinearLAM environment")
        check_fields(self)


class StreamSource:
    """Fresh transitions from the native vector env (``EnvStream``), for one copy.

    Training draws from a stream of the training policy (or from a fixed pool of
    ``train_transitions``); ``label_fraction`` of the transitions show their action. The
    probes are fitted and measured on ``eval_transitions`` fresh random-policy transitions
    of the same environment (same X, Y) whatever the training policy, as the χ sweep
    asks; the reconstruction loss is measured on training-policy data.
    """

    def __init__(
        self,
        config: StreamConfig,
        seed: int,
        label_fraction: float = 1.0,
        eval_transitions: int = 4096,
    ):
        self.config = c = config
        self.seed, self.label_fraction = seed, check_fraction("label_fraction", label_fraction)
        self.eval_transitions = check_int("eval_transitions", eval_transitions, low=2)
        self.env_config = env_config_of(c.env, c.env_kwargs)
        self.d_o, self.d_a = self.env_config.d_o, self.env_config.d_a
        self.spec = DataSpec("linear", (self.d_o,), False, self.d_a)
        self.description = f"stream {c.env} {c.env_kwargs or ''} policy {c.policy}" + (
            f" χ={c.chi}" if c.chi is not None else ""
        )
        knobs = {"chi": c.chi} if c.policy == "linear" and c.chi is not None else {}
        self._train_kwargs = dict(
            policy=c.policy,
            episode_length=c.episode_length,
            label_fraction=label_fraction,
            policy_knobs=knobs,
            **c.env_kwargs,
        )
        self._stream: EnvStream | None = None
        self._pool = self._pool_oracle = None
        self._rng = numpy_rng(seed, Stream.BATCHES)
        if c.train_transitions is not None:
            self._pool, self._pool_oracle = self._draw(
                c.train_transitions,
                derive_seed(seed, Stream.STREAM_TRAIN_POOL),
                **self._train_kwargs,
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
                self.config.env,
                n,
                seed=derive_seed(self.seed, Stream.BATCHES),
                **self._train_kwargs,
            )
        return self._stream.next_numpy()[0]

    def eval_sets(self) -> dict[str, Any]:
        c, n = self.config, self.eval_transitions
        random_kwargs = dict(self._train_kwargs, policy="random", policy_knobs={})
        random_policy = c.policy == "random" or not c.chi
        if self._pool is not None:
            recon = {"o": self._pool["obs"], "o_next": self._pool["next_obs"]}
            if random_policy and c.episode_length == 1:
                fit_learn, fit_oracle = self._pool, self._pool_oracle
            else:
                fit_learn, fit_oracle = self._draw(
                    len(self._pool["obs"]),
                    derive_seed(self.seed, Stream.EVAL_SUBSET),
                    **random_kwargs,
                )
        else:
            learn, _ = self._draw(
                n, derive_seed(self.seed, Stream.STREAM_RECON), **self._train_kwargs
            )
            recon = {"o": learn["obs"], "o_next": learn["next_obs"]}
            fit_learn, fit_oracle = self._draw(
                n, derive_seed(self.seed, Stream.EVAL_SUBSET), **random_kwargs
            )
        test_learn, test_oracle = self._draw(
            n, derive_seed(self.seed, Stream.STREAM_PROBE_TEST), **random_kwargs
        )
        return {
            "probe_fit": _probe_set(fit_learn["obs"], fit_learn["next_obs"], fit_oracle),
            "probe_test": _probe_set(test_learn["obs"], test_learn["next_obs"], test_oracle),
            "recon": recon,
            "env_config": self.env_config,
            "description": self.description,
        }


class StreamBatches:
    """The :class:`~lam_models.split.CopyBatches` interface over M stream sources: every copy
    its own fresh data (drawn 32 batches at a time)."""

    _CHUNK = 32

    def __init__(self, sources: list[StreamSource], device: torch.device):
        specs = {(s.d_o,) for s in sources}
        if len(specs) > 1:
            raise ValueError(f"copies trained together must share d_o; got {sorted(specs)}")
        self.sources, self.device = sources, device
        self.num_copies = len(sources)
        d_a = max(s.d_a for s in sources)
        self.spec = DataSpec("linear", (sources[0].d_o,), False, d_a)
        self._chunk: dict[str, Tensor] = {}
        self._next = self._CHUNK
        self._batch_size = None

    @property
    def has_labels(self) -> Tensor:
        return torch.tensor([s.label_fraction > 0 for s in self.sources])

    def sample(self, batch_size: int, offset: int = 1, uniform_offset=False, labelled_share=0.0):
        if self._next == self._CHUNK or batch_size != self._batch_size:
            self._refill(batch_size)
        k = self._next
        self._next += 1
        obs, nxt = self._chunk["obs"][:, k], self._chunk["next_obs"][:, k]
        return Transitions(
            obs, nxt, nxt, self._chunk["actions"][:, k], self._chunk["label_mask"][:, k]
        )

    def _refill(self, batch_size: int) -> None:
        m, n, d_a = self.num_copies, self._CHUNK * batch_size, self.spec.action_dim
        parts = [s.train_chunk(n) for s in self.sources]
        for key in ("obs", "next_obs", "label_mask"):
            stacked = torch.from_numpy(np.stack([p[key] for p in parts]))
            view = stacked.view(m, self._CHUNK, batch_size, *stacked.shape[2:])
            self._chunk[key] = to_device(view, self.device)
        actions = np.full((m, n, d_a), np.nan, dtype=np.float32)
        for i, p in enumerate(parts):  # NaN-pad: only copies without the head differ in d_a
            actions[i, :, : p["actions"].shape[1]] = p["actions"]
        self._chunk["actions"] = torch.from_numpy(actions).view(m, self._CHUNK, batch_size, d_a)
        self._chunk["actions"] = to_device(self._chunk["actions"], self.device)
        self._chunk["obs"] = self._chunk["obs"].float()
        self._chunk["next_obs"] = self._chunk["next_obs"].float()
        self._chunk["label_mask"] = self._chunk["label_mask"].bool()
        self._next, self._batch_size = 0, batch_size
