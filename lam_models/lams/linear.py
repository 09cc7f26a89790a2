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

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lam_envs.utils.config import Checked, option
from lam_envs.utils.validate import check_int
from lam_models.augment import vector_offsets
from lam_models.evaluation.metrics import linear_probe_report
from lam_models.lams import fields
from lam_models.lams.base import LAM, TrainingLog, _select_copies, register_lam
from lam_models.lams.linear_data import (
    StreamBatches,
    StreamConfig,
    StreamSource,
    eval_sets,
)
from lam_models.lams.linear_optimum import (
    AnalyticOptimum,
    OptimalityGap,
    analytic_optimum,
    analytic_optimum_from_moment,
    optimality_gap,
    published_action_weight,
)
from lam_models.seeding import Stream, torch_generator
from lam_models.split import Transitions

__all__ = [
    "AnalyticOptimum",
    "LATENTS",
    "LinearConfig",
    "LinearLAM",
    "LinearNet",
    "OptimalityGap",
    "StreamConfig",
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
FAR_FROM_OPTIMUM = 0.1  # a relative gap above this is reported as a warning


@dataclass
class LinearConfig(fields.ActionHead, Checked):
    """Hyper-parameters of the linear LAM and its Adam trainer (the papers' symbols)."""

    latent_dim: int = option(8, "d_z, the latent dimension, in [1, d_o]", low=1)
    kappa: float = fields.kappa(0.0, "κ >= 0, scale of the augmentation Aug1/Aug2 (0: off)")
    action_head: bool = option(False, "train the action head E on the labelled transitions")
    action_weight: float = option(1.0, "λ_a >= 0, weight of the action head's loss", low=0.0)
    steps: int = fields.steps(1500)
    batch_size: int = fields.batch_size()
    lr: float = fields.lr(3e-2)
    lr_schedule: str = option(
        "cosine", "cosine (anneal to 0, lets Adam settle) or constant", choices=LR_SCHEDULES
    )
    init_scale: float = option(
        0.1, "s: parameters start at scale s / sqrt(fan_in) (see --init)", above=0
    )
    init: str = option(
        "normal",
        "normal: N(0, s²/fan_in); uniform: U(−s/√fan_in, s/√fan_in), torch's nn.Linear default "
        "at s = 1 (the published runs)",
        choices=INITS,
    )
    head_bias: bool = option(False, "give the action head a bias (the published F6c head)")
    log_every: int = fields.log_every()


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
            sets = eval_sets(source, self.seeds[m])
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
