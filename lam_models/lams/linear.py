"""The linear latent action model: config, model, training loop, closed-form optimum, metrics.

For a transition (o, o') with o, o' ∈ R^{d_o}:

    z  = C·Aug1(o) + D·Aug1(o')            IDM,  C, D ∈ R^{d_z×d_o}
    ô' = A·Aug2(o) + B·z                   FDM,  A ∈ R^{d_o×d_o}, B ∈ R^{d_o×d_z}
    â  = E·z                               action head (optional), E ∈ R^{d_a×d_z}

    loss = ‖ô' − Aug2(o')‖² + λ_a·‖E·z − a‖²      (action term on labelled transitions only)

Aug_i(x) = x + κ_i with κ_i ~ N(0, κ²I) (:func:`lam_models.augment.vector_offsets`): one draw
κ_1 per transition shared by both IDM inputs, an independent draw κ_2 shared by the FDM
input and the target. κ = 0 turns augmentation off.

Loss convention (the package's one choice): each term is the per-transition squared error
*summed over dimensions*, then *averaged over the batch* (the action term over the labelled
transitions of the batch only). The reconstruction term is then E‖ô' − o'‖², the quantity
whose minimum :func:`analytic_optimum` gives in closed form (a sum of eigenvalues), so the two
compare directly. The published code averages each term over its dimensions instead
(``nn.MSELoss``): recon/d_o + w·action/d_a = (recon + w·(d_o/d_a)·action)/d_o. Adam is
invariant to the overall factor 1/d_o (up to its ε = 1e-8), so the published weight w is
λ_a = w·d_o/d_a here (:func:`published_action_weight`: w = 1 at d_o = 128, d_a = 8 is
λ_a = 16), and a reconstruction-only run is the same under both conventions.

The data: a dataset split (:class:`~lam_models.split.DataSplit`) or fresh transitions streamed
from the native vector env (:class:`StreamSource`: no dataset on disk; one-step episodes by
default, so o ~ N(0, I)), or fresh batches drawn from the formulas
(:mod:`lam_models.lams.linear_fresh`, the published figures' protocol). Metrics
(:meth:`LinearLAM.metrics`): least-squares probes of the true latent z = C o + D o' and of the
surrogate z̃ = B⁺(ô' − o) for a, q, ε and o, LLO, and the reconstruction loss beside the
analytic optimum of the same data.

Three latents (:data:`LATENTS`, :meth:`LinearNet.latent`): ``true`` z (d_z dims); ``change``
ô' − o (d_o dims), the published figures' "surrogate latent", what the FDM's prediction says
changed; ``surrogate`` z̃ = B⁺(ô' − o) (d_z dims), the package's surrogate, the same change
in latent coordinates. ô' − o = (A − I)o + B z: at the optimum A + B(C + D) = I it lies in
B's column space, where B⁺ loses nothing, and a linear probe reads the same from both; short
of it, ``change`` also holds the part of (A − I)o outside B's columns, which ``surrogate``
projects away.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

import lam_envs
from lam_envs.envs.linear import LinearLAMConfig as EnvConfig
from lam_envs.utils.validate import check_choice, check_float, check_fraction, check_int
from lam_models.augment import vector_offsets
from lam_models.data import EnvStream
from lam_models.evaluation.metrics import linear_probe_report
from lam_models.flags import option
from lam_models.lams.base import LAM, TrainingLog, _select_copies, register_lam
from lam_models.seeding import Stream, derive_seed, numpy_rng, torch_generator
from lam_models.split import DataSpec, DataSplit, Transitions

__all__ = [
    "AnalyticOptimum",
    "LATENTS",
    "LinearConfig",
    "LinearLAM",
    "LinearNet",
    "StreamSource",
    "analytic_optimum",
    "analytic_optimum_from_moment",
    "optimality_gap",
    "published_action_weight",
]

LR_SCHEDULES = ("constant", "cosine")
INITS = ("normal", "uniform")
#: The latents a linear LAM offers to probes (module docstring): name -> width ("d_z"/"d_o").
LATENTS = {"true": "d_z", "change": "d_o", "surrogate": "d_z"}
_PROBE_FIT_MAX = 50_000  # transitions of a dataset's train split the probes are fitted on
FAR_FROM_OPTIMUM = 0.1  # a relative gap above this is reported as a warning


@dataclass
class LinearConfig:
    """Hyper-parameters of the linear LAM and its Adam trainer (the papers' symbols)."""

    latent_dim: int = option(8, "d_z, the latent dimension, in [1, d_o]")
    kappa: float = option(0.0, "κ >= 0, scale of the augmentation Aug1/Aug2 (0: off)")
    action_head: bool = option(False, "train the action head E on the labelled transitions")
    action_weight: float = option(1.0, "λ_a >= 0, weight of the action head's loss")
    steps: int = option(1500, "Adam updates")
    batch_size: int = option(128, "transitions per update")
    lr: float = option(3e-2, "Adam learning rate")
    lr_schedule: str = option("cosine", "cosine (anneal to 0, lets Adam settle) or constant")
    init_scale: float = option(0.1, "s: parameters start at scale s / sqrt(fan_in) (see --init)")
    init: str = option(
        "normal",
        "normal: N(0, s²/fan_in); uniform: U(−s/√fan_in, s/√fan_in), torch's nn.Linear default "
        "at s = 1 (the published runs)",
    )
    head_bias: bool = option(False, "give the action head a bias (the published F6c head)")
    log_every: int = option(100, "training-curve resolution, in updates")

    def __post_init__(self) -> None:
        check_int("latent_dim", self.latent_dim, low=1)
        check_float("kappa", self.kappa, low=0.0)
        check_float("action_weight", self.action_weight, low=0.0)
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("log_every", self.log_every, low=1)
        for name in ("lr", "init_scale"):
            if not check_float(name, getattr(self, name), low=0.0) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("init", self.init, INITS)
        for name in ("action_head", "head_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def effective_action_weight(self) -> float:
        """λ_a, or 0 without the head."""
        return self.action_weight if self.action_head else 0.0


class LossTerms(NamedTuple):
    """Per-copy loss terms, each (M,)."""

    total: Tensor  # reconstruction + λ_a · action
    reconstruction: Tensor  # E‖ô' − Aug2(o')‖²
    action: Tensor  # mean over labelled transitions of ‖E z − a‖²; 0 without labels or head


class _ThinProduct(torch.autograd.Function):
    """x @ wᵀ for x (M, N, k), w (M, n, k) with k small (z·Bᵀ), whose gradients are computed
    as k-row products: on a CPU those run several times faster than the k-column products
    autograd would use (g·w and gᵀ·x)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return x @ w.mT

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        grad_x = (w.mT @ grad.mT).mT if ctx.needs_input_grad[0] else None  # = grad · w
        grad_w = (x.mT @ grad).mT if ctx.needs_input_grad[1] else None  # = gradᵀ · x
        return grad_x, grad_w


class _SquaredNorm(torch.autograd.Function):
    """‖r_m‖² of each copy of r (M, N, d) -> (M,), in one pass each way (the gradient
    2·r·g is one multiplication; autograd's square-then-sum makes three passes)."""

    @staticmethod
    def forward(ctx, r: Tensor) -> Tensor:
        ctx.save_for_backward(r)
        return torch.linalg.vecdot(r.flatten(1), r.flatten(1))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (r,) = ctx.saved_tensors
        return r * (2 * grad)[:, None, None]


class LinearNet(nn.Module):
    """M linear LAMs as batched tensors (leading dimension M): A (M, d_o, d_o),
    B (M, d_o, d_z), C and D (M, d_z, d_o), E (M, d_a, d_z) or None, and the head's bias
    e (M, d_a) or None. Buffers ``kappa``, ``action_weight`` (M,) and ``head_bias`` (M, 1):
    1 where the copy's head has a bias, 0 where its e is held at 0. Inputs (N, d_o) shared by
    all copies or (M, N, d_o); outputs (M, N, ·). Vectors are rows: C·x is ``x @ C.mT``."""

    def __init__(self, d_o, d_a, d_z, seeds, init_scale, kappas, action_weights, head: bool,
                 head_biases=None, init: str = "normal"):  # fmt: skip
        super().__init__()
        # Each copy from its own seed, on the CPU (the same start on every device), drawn in
        # a fixed order: A, B, C, D, E, e.
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        head_biases = head_biases or [False] * len(seeds)

        def init_all(*shape: int, fan_in: int | None = None) -> nn.Parameter:
            scale = init_scale / math.sqrt(fan_in or shape[-1])
            if init == "uniform":  # torch's nn.Linear default (kaiming_uniform, a = √5) at s = 1
                draws = [(torch.rand(shape, generator=g) * 2 - 1) * scale for g in generators]
            else:
                draws = [torch.randn(shape, generator=g) * scale for g in generators]
            return nn.Parameter(torch.stack(draws))

        self.A = init_all(d_o, d_o)
        self.B = init_all(d_o, d_z)
        self.C = init_all(d_z, d_o)
        self.D = init_all(d_z, d_o)
        self.E = init_all(d_a, d_z) if head else None
        self.e = init_all(d_a, fan_in=d_z) if head and any(head_biases) else None
        self.register_buffer("kappa", torch.tensor(kappas, dtype=torch.float32))
        self.register_buffer("action_weight", torch.tensor(action_weights, dtype=torch.float32))
        self.register_buffer("head_bias", torch.tensor(head_biases, dtype=torch.float32)[:, None])
        self.augment = any(k > 0 for k in kappas)  # decided once: no branch on tensor values

    def idm(self, o: Tensor, o_next: Tensor) -> Tensor:
        """z = C·o + D·o' -> (M, N, d_z). Computed transposed, C·oᵀ: products with d_z rows
        run several times faster on a CPU than with d_z columns (and so do their gradients)."""
        return (self.C @ o.mT + self.D @ o_next.mT).mT

    def predict(self, o: Tensor, z: Tensor) -> Tensor:
        """FDM ô' = A·o + B·z -> (M, N, d_o)."""
        return o @ self.A.mT + z @ self.B.mT

    def head(self, z: Tensor) -> Tensor:
        """The action head â = E z (+ e where the copy's head has a bias) -> (M, N, d_a)."""
        a = z @ self.E.mT
        return a if self.e is None else a + (self.e * self.head_bias)[:, None]

    def change(self, o: Tensor, o_next: Tensor) -> Tensor:
        """ô' − o -> (M, N, d_o): the published figures' surrogate latent."""
        return self.predict(o, self.idm(o, o_next)) - o

    def surrogate_latent(self, o: Tensor, o_next: Tensor) -> Tensor:
        """z̃ = B⁺(ô' − o): what the FDM's prediction says changed, in latent coordinates.
        For the over-parameterised model (A ≠ I, C ≠ −D) the true z also carries o, which
        A·o then cancels; z̃ removes that part."""
        return self.change(o, o_next) @ torch.linalg.pinv(self.B).mT

    def latent(self, kind: str, o: Tensor, o_next: Tensor) -> Tensor:
        """The latent ``kind`` of :data:`LATENTS` ("true", "change" or "surrogate")."""
        if kind == "true":
            return self.idm(o, o_next)
        if kind == "change":
            return self.change(o, o_next)
        if kind == "surrogate":
            return self.surrogate_latent(o, o_next)
        raise ValueError(f"unknown latent {kind!r}; allowed: {', '.join(LATENTS)}")

    def loss(self, batch: Transitions, generators: list[torch.Generator],
             draw_of_copy: list[int] | None = None) -> LossTerms:  # fmt: skip
        """Training loss with augmentation κ (when > 0), per copy (M,). Copy m draws its
        augmentation from ``generators[m]``, or from ``generators[draw_of_copy[m]]``
        (:func:`~lam_models.augment.vector_offsets`)."""
        o, o_next = batch.obs, batch.next_obs
        z = self.idm(o, o_next)
        fdm_o, target = o, o_next
        if self.augment:  # Aug1 = κ1 on both IDM inputs, Aug2 = κ2 on the FDM input and target
            m, scale = self.kappa.shape[0], self.kappa[:, None, None]
            shape = (m, *o.shape[-2:])
            u1 = vector_offsets(shape, generators, self.kappa, draw_of_copy, o.device, unit=True)
            u2 = vector_offsets(shape, generators, self.kappa, draw_of_copy, o.device, unit=True)
            # C(o + κ1) + D(o' + κ1) = C o + D o' + (C + D) κ1, by linearity
            z = z + scale * ((self.C + self.D) @ u1.mT).mT
            fdm_o = torch.addcmul(o.expand(m, *o.shape[-2:]), u2, scale)
            target = torch.addcmul(o_next.expand(m, *o.shape[-2:]), u2, scale)
        # ô' − target = A·fdm_o + B·z − target, in two fused multiply-adds (memory passes,
        # not arithmetic, bound this step on a CPU).
        residual = torch.baddbmm(target, fdm_o, self.A.mT, beta=-1) + _ThinProduct.apply(z, self.B)
        reconstruction = _SquaredNorm.apply(residual) / residual.shape[-2]
        if self.E is None:
            return LossTerms(reconstruction, reconstruction, torch.zeros_like(reconstruction))
        # Replace unlabelled actions before any arithmetic: NaN · 0 is NaN, and a NaN in the
        # graph poisons the gradient even if masked out afterwards.
        mask = batch.label_mask
        a = torch.where(mask[..., None], batch.actions, 0.0)
        err = torch.where(mask, (self.head(z) - a).square().sum(-1), 0.0)
        action = err.sum(-1) / mask.sum(-1).clamp_min(1)
        return LossTerms(reconstruction + self.action_weight * action, reconstruction, action)

    @torch.no_grad()
    def reconstruction_loss(self, o: Tensor, o_next: Tensor) -> Tensor:
        """E‖ô' − o'‖² without augmentation, (M,): compare to the analytic optimum."""
        return (self.predict(o, self.idm(o, o_next)) - o_next).square().sum(-1).mean(-1)


# --------------------------------------------------------------------------------------------
# Evaluation sets: a dataset's held-out episodes, or fresh streamed transitions
# --------------------------------------------------------------------------------------------


def _probe_set(o, o_next, oracle) -> dict[str, np.ndarray]:
    return {
        "o": o.reshape(len(o), -1),
        "o_next": o_next.reshape(len(o), -1),
        "a": oracle["action"],
        "q": oracle["q"],
        "eps": oracle["eps"],
    }


def _eval_sets(source, seed: int) -> dict[str, Any]:
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
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    preset = kwargs.get("preset", lam_envs.ENV_IDS.get(env_id, ("linear", None))[1])
    return EnvConfig.from_preset(preset, **{k: v for k, v in kwargs.items() if k in fields})


@dataclass
class StreamConfig:
    """Fresh transitions from the native vector env instead of a dataset (linear only)."""

    env: str = option("LinearLAM-v0", "stream fresh transitions from this environment")
    env_kwargs: dict[str, Any] = option(
        dict,
        "an environment parameter (d_o, sigma_exo, ...), repeatable",
        flags=("--env-kwarg", "-k"),
    )
    policy: str = option("random", "behaviour policy: random or linear")
    chi: float | None = option(None, "linear policy determinism χ in [0, 1]")
    episode_length: int = option(1, "steps per episode (1: every o ~ N(0, I))")
    train_transitions: int | None = option(
        None, "train on a fixed pool of this many transitions (default: fresh ones)"
    )

    def __post_init__(self) -> None:
        check_choice("environment", self.env, lam_envs.ENV_IDS)
        if lam_envs.ENV_IDS[self.env][0] != "linear":
            raise ValueError(f"environment {self.env!r} is not a LinearLAM environment")
        check_choice("policy", self.policy, ("random", "linear"))
        if self.chi is not None:
            check_fraction("chi", self.chi)
        check_int("episode_length", self.episode_length, low=1)
        if self.train_transitions is not None:
            check_int("train_transitions", self.train_transitions, low=1)


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
            self._chunk[key] = stacked.view(m, self._CHUNK, batch_size, *stacked.shape[2:]).to(
                self.device
            )
        actions = np.full((m, n, d_a), np.nan, dtype=np.float32)
        for i, p in enumerate(parts):  # NaN-pad: only copies without the head differ in d_a
            actions[i, :, : p["actions"].shape[1]] = p["actions"]
        self._chunk["actions"] = torch.from_numpy(actions).view(m, self._CHUNK, batch_size, d_a)
        self._chunk["actions"] = self._chunk["actions"].to(self.device)
        self._chunk["obs"] = self._chunk["obs"].float()
        self._chunk["next_obs"] = self._chunk["next_obs"].float()
        self._chunk["label_mask"] = self._chunk["label_mask"].bool()
        self._next, self._batch_size = 0, batch_size


@register_lam("linear")
class LinearLAM(LAM):
    """The linear LAM on flattened observations."""

    Config = LinearConfig
    stream_config = StreamConfig
    per_copy = ("kappa", "action_weight", "action_head", "head_bias")
    pipeline_defaults = {"steps": 3000, "kappa": 0.1}

    def build(self) -> nn.Module:
        c, d_o = self.config, int(np.prod(self.spec.obs_shape))
        check_int("latent_dim", c.latent_dim, low=1, high=d_o)
        head = any(cfg.action_head for cfg in self.configs)
        return LinearNet(
            d_o,
            self.spec.action_dim,
            c.latent_dim,
            self.seeds,
            c.init_scale,
            [cfg.kappa for cfg in self.configs],
            [cfg.effective_action_weight for cfg in self.configs],
            head,
            [cfg.head_bias and cfg.action_head for cfg in self.configs],
            c.init,
        )

    @classmethod
    def open_stream(cls, stream: StreamConfig, seed: int, label_fraction, eval_transitions):
        """Fresh transitions instead of a dataset (``python -m lam_models.train linear --env``)."""
        return StreamSource(
            stream, seed, 1.0 if label_fraction is None else label_fraction, eval_transitions
        )

    @classmethod
    def batches(cls, data, seeds, device):
        if all(isinstance(d, StreamSource) for d in data):
            return StreamBatches(data, device)
        return super().batches(data, seeds, device)

    def fit(self, data, progress: bool = False) -> None:
        c, net = self.config, self.module
        heads = [cfg.action_head for cfg in self.configs]
        if any(heads) and not bool(data.has_labels.cpu()[torch.tensor(heads)].all()):
            raise ValueError(
                "the action head needs labelled transitions, and the data has none (collect "
                "with --label-fraction > 0, or drop --action-head)"
            )
        optimizer = torch.optim.Adam(net.parameters(), lr=c.lr, fused=True)  # one kernel
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.steps)
            if c.lr_schedule == "cosine"
            else None
        )
        # Copies of one seed draw the same augmentation (their generators would be equal):
        # one generator per distinct seed.
        distinct = sorted(set(self.seeds))
        generators = [torch_generator(s, Stream.AUGMENT) for s in distinct]
        draw_of_copy = [distinct.index(s) for s in self.seeds]
        log = TrainingLog(self, c.steps, c.log_every, progress)
        for step in range(c.steps):
            batch = data.sample(c.batch_size)
            if step == 0:
                self.check_batch(batch, c.batch_size)
            batch = _flat(batch, self.spec.action_dim)
            terms = net.loss(batch, generators, draw_of_copy)
            optimizer.zero_grad(set_to_none=True)
            terms.total.sum().backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            log.add(loss=terms.total, reconstruction=terms.reconstruction, action=terms.action)
            log.step(step)

    def encode(self, o: Tensor, o_far: Tensor) -> Tensor:
        return self.module.idm(o.flatten(2), o_far.flatten(2))

    def copy(self, index) -> LinearLAM:
        """A new LAM of the copies ``index``; a subset without heads drops E and e (unused)."""
        index = list(index)
        other = type(self)([self.configs[i] for i in index], self.spec,
                           [self.seeds[i] for i in index], self.device)  # fmt: skip
        keys = other.module.state_dict().keys()
        state = _select_copies(self.module, index)
        other.module.load_state_dict({k: v for k, v in state.items() if k in keys})
        other.history = [self.history[i] for i in index]
        return other

    @torch.no_grad()
    def surrogate(self, o: np.ndarray, o_next: np.ndarray) -> np.ndarray:
        """z̃ = B⁺(ô' − o) of (M, N, d_o) or (N, d_o) transitions -> (M, N, d_z) numpy."""
        t = [torch.as_tensor(x, dtype=torch.float32, device=self.device) for x in (o, o_next)]
        return self.module.surrogate_latent(*t).cpu().numpy()

    def metrics(self, sources) -> list[dict[str, Any]]:
        """Per copy: probes of the true z and the surrogate z̃ (fitted on training transitions,
        measured on held-out ones: random-policy ones for a stream), the reconstruction loss
        beside the analytic optimum of the same data, and the data's parameters."""
        results = []
        for m, source in enumerate(sources):
            sets = _eval_sets(source, self.seeds[m])
            result: dict[str, Any] = {}
            for kind in ("true", "surrogate"):
                z = {}
                for part in ("probe_fit", "probe_test"):
                    o = torch.as_tensor(sets[part]["o"], device=self.device)
                    o_next = torch.as_tensor(sets[part]["o_next"], device=self.device)
                    with torch.no_grad():
                        latent = (
                            self.module.idm(o, o_next)
                            if kind == "true"
                            else self.module.surrogate_latent(o, o_next)
                        )
                    z[part] = latent[m].cpu().numpy()
                targets = [
                    {k: sets[p][k] for k in ("a", "q", "eps", "o")}
                    for p in ("probe_fit", "probe_test")
                ]
                result[kind] = linear_probe_report(
                    z["probe_fit"], z["probe_test"], *targets, latent_name=kind
                )
            recon = sets["recon"]
            o = torch.as_tensor(recon["o"], device=self.device)
            o_next = torch.as_tensor(recon["o_next"], device=self.device)
            loss = float(self.module.reconstruction_loss(o, o_next)[m])
            minimum = analytic_optimum(
                recon["o_next"] - recon["o"], self.config.latent_dim
            ).min_loss
            scale = float(np.square(recon["o_next"] - recon["o"], dtype=np.float64).sum(-1).mean())
            # With no noise and d_z >= d_a the minimum is 0: a relative gap says nothing there.
            gap = (loss - minimum) / minimum if minimum > 1e-6 * scale else math.nan
            env = sets["env_config"]
            history = self.history[m]
            result.update(
                recon_loss=loss,
                analytic_loss=minimum,
                relative_gap=gap,
                final_train_loss=history["loss"][-1] if history.get("loss") else math.nan,
                data=sets["description"],
                d_o=env.d_o,
                d_a=env.d_a,
                d_b=env.d_b,
                sigma_iid=env.sigma_iid,
                sigma_exo=env.sigma_exo,
            )
            results.append(result)
        return results

    @classmethod
    def format_metrics(cls, metrics: dict[str, Any]) -> str:
        """One row per latent (true z, surrogate z̃) and the optimality gap."""
        lines = [
            f"data: {metrics['data']} (d_o={metrics['d_o']}, d_a={metrics['d_a']})",
            "probes: least squares, fitted on training transitions, nmse on held-out ones",
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
            lines.append("* ε = 0 in this data: nmse(ε) is taken as 1")
        gap = metrics["relative_gap"]
        gap_text = f"gap {gap:+.2%}" if gap is not None and math.isfinite(gap) else "minimum is 0"
        lines += [
            "",
            f"recon loss {metrics['recon_loss']:.5g} (training data, no augmentation); "
            f"analytic minimum {metrics['analytic_loss']:.5g}; {gap_text}",
        ]
        if gap is not None and math.isfinite(gap) and gap > FAR_FROM_OPTIMUM:
            lines.append(
                f"warning: the reconstruction loss ends {gap:.0%} above the analytic optimum "
                "(a random policy's optimum: with another policy the gap can be real); train "
                "longer (--steps) or with another learning rate (--lr)"
            )
        return "\n".join(lines)


def _flat(batch: Transitions, action_dim: int) -> Transitions:
    """Observations as vectors (M, B, d_o); actions as float rows (one-hot on the grid; the
    rows of unlabelled −1 entries are never read)."""
    actions = batch.actions
    if not actions.is_floating_point():
        actions = torch.nn.functional.one_hot(actions.clamp_min(0), action_dim).float()
    return Transitions(
        batch.obs.flatten(2),
        batch.next_obs.flatten(2),
        batch.far_obs.flatten(2),
        actions,
        batch.label_mask,
    )


# --------------------------------------------------------------------------------------------
# Analytic optimum
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticOptimum:
    """Closed-form optimum of the linear LAM (float64 tensors).

    min_loss: the minimum of E‖ô' − o'‖², the sum of the eigenvalues beyond the top d_z.
    eigenvalues: (d_o,) eigenvalues of E[(o'−o)(o'−o)ᵀ], descending.
    A: (d_o, d_o) = I.  B: (d_o, d_z) top-d_z eigenvectors.  D = Bᵀ.  C = −D.
    """

    min_loss: float
    eigenvalues: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor


def analytic_optimum(delta: Tensor | np.ndarray, d_z: int) -> AnalyticOptimum:
    """PCA optimum of the linear LAM from samples ``delta`` = o' − o of shape (N, d_o).

    When the change o' − o = q + ε is uncorrelated with o (a random policy), the best linear
    LAM predicts ô' = o + P(o' − o), P the projector onto the top-d_z eigenvectors of
    Σ = E[(o'−o)(o'−o)ᵀ], and its loss is the sum of Σ's remaining eigenvalues (Eckart–Young).
    The model has no bias, so Σ is the uncentred second moment; it equals Cov(q + ε) when the
    change has zero mean, as under the random policy. Computed in float64.
    """
    delta = torch.as_tensor(delta).to(torch.float64)
    if delta.ndim != 2 or delta.shape[0] == 0:
        raise ValueError(f"delta must have shape (N, d_o) with N >= 1, got {tuple(delta.shape)}")
    if not torch.isfinite(delta).all():
        raise ValueError("delta holds NaN or infinite values; the data is not finite")
    return analytic_optimum_from_moment(delta.mT @ delta / delta.shape[0], d_z)


def analytic_optimum_from_moment(moment: Tensor | np.ndarray, d_z: int) -> AnalyticOptimum:
    """As :func:`analytic_optimum`, from Σ = E[(o'−o)(o'−o)ᵀ] (or a covariance), (d_o, d_o)."""
    moment = torch.as_tensor(moment).to(torch.float64)
    if moment.ndim != 2 or moment.shape[0] != moment.shape[1]:
        raise ValueError(f"moment must be a square (d_o, d_o) matrix, got {tuple(moment.shape)}")
    d_o = moment.shape[0]
    d_z = check_int("d_z", d_z, low=1, high=d_o)
    eigenvalues, eigenvectors = torch.linalg.eigh((moment + moment.mT) / 2)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    B = eigenvectors[:, :d_z]
    return AnalyticOptimum(
        min_loss=float(eigenvalues[d_z:].sum()),
        eigenvalues=eigenvalues,
        A=torch.eye(d_o, dtype=torch.float64),
        B=B,
        C=-B.mT,
        D=B.mT.clone(),
    )


def published_action_weight(d_o: int, d_a: int, weight: float = 1.0) -> float:
    """λ_a of this package's loss (sums over dimensions) that reproduces the published loss
    recon/d_o + ``weight``·action/d_a (means over dimensions): ``weight``·d_o/d_a, since the
    published loss is this one divided by d_o, and Adam's steps do not see that factor."""
    check_int("d_o", d_o, low=1)
    check_int("d_a", d_a, low=1)
    return check_float("weight", weight, low=0.0) * d_o / d_a


class OptimalityGap(NamedTuple):
    """How far trained copies are from the analytic optimum on one evaluation set."""

    loss: Tensor  # (M,) E‖ô' − o'‖² of each copy, no augmentation
    minimum: Tensor  # (M,) analytic minimum on the same data
    relative: Tensor  # (M,) (loss − minimum) / minimum


def optimality_gap(lam: LinearLAM, o: Tensor, o_next: Tensor) -> OptimalityGap:
    """Evaluate ``lam`` on (o, o') of shape (N, d_o) or (M, N, d_o) against the PCA optimum
    of the same transitions (no sampling offset; slightly negative on a finite sample, where
    o and o' − o are not exactly uncorrelated)."""
    o, o_next = (torch.as_tensor(x, dtype=torch.float32, device=lam.device) for x in (o, o_next))
    loss = lam.module.reconstruction_loss(o, o_next).double().cpu()
    delta = (o_next - o).detach().cpu()
    if delta.ndim == 2:
        delta = delta.expand(lam.num_copies, *delta.shape)
    d_z = lam.config.latent_dim
    minimum = torch.tensor([analytic_optimum(d, d_z).min_loss for d in delta], dtype=torch.float64)
    return OptimalityGap(loss, minimum, (loss - minimum) / minimum)
