"""Behaviour cloning for the LAPO-style pipeline: the latent policy π(z | o), the decoder
z -> a, and the two baselines π(a | o), all ensembles of M small MLPs trained together.

On image observations the policies may see the image through convolutions first
(``image_shape=(C, H, W)``, :class:`ConvTrunk`): M small strided CNNs, then the MLP head.

Copy m draws its minibatches from its own stream (:class:`~lam_models.seeding.Stream`
``POLICY_BATCHES`` of its seed); a CNN policy's copy m also draws its initial weights from
its own ``POLICY_INIT`` stream, so its result does not depend on the copies it is trained
with. (An MLP policy's copy m starts from the initialisation of index m, whatever its
seed: see :func:`fit_policy`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lam_envs.utils.outputs import write_atomically
from lam_envs.utils.validate import check_choice
from lam_models.lams.training import progress_bar
from lam_models.nn import EnsembleConv2d, EnsembleMLP, EnsembleModule, reset_copies
from lam_models.seeding import Stream, torch_generator

__all__ = [
    "CNN_CHANNELS",
    "ConvTrunk",
    "Policy",
    "PolicyFit",
    "actor_outputs",
    "bc_policies",
    "fit_decoder",
    "fit_policy",
    "load_policy",
    "save_policy",
]


#: The channels of :class:`ConvTrunk`'s stride-2 3×3 convolutions (ReLU after each): a
#: 32×32 image becomes 32 channels of 4×4, 512 features for the MLP head.
CNN_CHANNELS = (16, 32, 32)


class ConvTrunk(EnsembleModule):
    """M small strided CNNs: flattened images (M, B, C·H·W) -> features (M, B, out_dim).

    Each of :data:`CNN_CHANNELS` is a 3×3 convolution with stride 2 and zero padding 1
    (halving H and W, rounding up), then a ReLU; the last feature map is flattened. The
    convolutions are grouped over the M copies (:class:`~lam_models.nn.EnsembleConv2d`).
    """

    def __init__(self, num_models: int, image_shape: Sequence[int]) -> None:
        super().__init__(num_models)
        channels, h, w = (int(s) for s in image_shape)
        self.image_shape = (channels, h, w)
        size, convs = (h, w), []
        for out in CNN_CHANNELS:
            conv = EnsembleConv2d(num_models, channels, out, 3, size, 2, 1, grouped=True)
            convs.append(conv)
            size, channels = conv.out_size, out
        self.convs = nn.ModuleList(convs)
        self.out_dim = channels * size[0] * size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unflatten(-1, self.image_shape)
        for conv in self.convs:
            h = F.relu(conv(h))
        return h.flatten(2)


def _image_shape(image_shape: Sequence[int] | None, d_in: int) -> tuple[int, int, int] | None:
    """``image_shape`` as (C, H, W) ints, checked against the flattened input size."""
    if image_shape is None:
        return None
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1 or shape[0] * shape[1] * shape[2] != d_in:
        raise ValueError(
            f"image_shape must be (C, H, W) with C·H·W = {d_in} inputs, got {image_shape!r:.80}"
        )
    return shape


class Policy(nn.Module):
    """M MLPs from an input x (M, N, d_in) to a regression output or action logits.

    Inputs are standardised with per-copy statistics of the data it was fitted on (all rows
    of x, labelled or not); regression outputs are fitted standardised and returned in their
    own units. ``kind``: ``"regression"`` (MSE) or ``"classification"`` (cross-entropy,
    ``forward`` gives logits).

    ``image_shape`` (C, H, W), with C·H·W = d_in: x holds flattened images, which a
    :class:`ConvTrunk` turns into features for the MLP (a CNN policy). Its inputs are
    standardised by one mean and one standard deviation per copy over all pixels (a
    per-pixel scale would change the relative contrast the convolutions share across
    positions, and a pixel constant in the data would divide by ~0 where it is not).
    """

    def __init__(
        self,
        num_models: int,
        d_in: int,
        d_out: int,
        width: int,
        kind: str,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        check_choice("policy kind", kind, ("regression", "classification"))
        self.kind, self.d_in, self.d_out, self.width = kind, d_in, d_out, width
        self.image_shape = _image_shape(image_shape, d_in)
        self.encoder = None if self.image_shape is None else ConvTrunk(num_models, self.image_shape)
        features = d_in if self.encoder is None else self.encoder.out_dim
        self.net = EnsembleMLP(num_models, features, width, d_out)
        for name, dim in (
            ("in_mean", d_in),
            ("in_std", d_in),
            ("out_mean", d_out),
            ("out_std", d_out),
        ):
            fill = torch.ones if name.endswith("std") else torch.zeros
            self.register_buffer(name, fill(num_models, 1, dim))

    @property
    def device(self) -> torch.device:
        return self.in_mean.device

    def spec(self) -> dict[str, Any]:
        """The constructor's arguments (``image_shape`` only for a CNN policy)."""
        spec = {
            "num_models": self.net.num_models,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "width": self.width,
            "kind": self.kind,
        }
        if self.image_shape is not None:
            spec["image_shape"] = list(self.image_shape)
        return spec

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.in_mean) / self.in_std
        return self.net(x if self.encoder is None else self.encoder(x))

    def select(self, index: Sequence[int]) -> Policy:
        """A new ensemble of the copies ``index`` (repeats allowed), in that order."""
        policy = Policy(**{**self.spec(), "num_models": len(index)}).to(self.device)
        policy.load_state_dict({k: v[list(index)] for k, v in self.state_dict().items()})
        return policy.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, d_in) -> (M, N, d_out): predictions (regression) or logits."""
        y = self.raw(x.to(self.device, torch.float32))
        return y * self.out_std + self.out_mean if self.kind == "regression" else y

    @torch.no_grad()
    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Actions: argmax of the logits (classification) or the prediction (regression)."""
        y = self(x)
        return y.argmax(-1) if self.kind == "classification" else y


def _per_copy(array: np.ndarray, copies: int, item_ndim: int) -> torch.Tensor:
    """(N, *item) shared by every copy, or (M, N, *item), as (M, N, *item) (expanded)."""
    t = torch.as_tensor(array)
    if t.ndim == item_ndim + 1:
        t = t[None].expand(copies, *t.shape)
    if t.ndim != item_ndim + 2 or t.shape[0] != copies:
        raise ValueError(f"expected (N, ...) or ({copies}, N, ...) items, got {tuple(t.shape)}")
    return t


def fit_policy(
    x: np.ndarray,
    y: np.ndarray,
    support: np.ndarray,
    kind: str,
    *,
    steps: int,
    seeds: Sequence[int],
    width: int = 64,
    batch_size: int = 128,
    lr: float = 1e-3,
    d_out: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    name: str = "policy",
    image_shape: Sequence[int] | None = None,
) -> Policy:
    """Fit M policies: copy m on the rows ``support[m]`` of its (x[m], y[m]).

    x: (N, d_in) shared or (M, N, d_in); y: (N, d_y)/(M, N, d_y) floats (regression) or
    (N,)/(M, N) int class indices (classification, ``d_out`` classes); support (M, N) bool.
    Each update draws ``batch_size`` of each copy's own rows (with replacement). The
    settings after ``kind`` are keywords.

    ``image_shape`` (C, H, W): x holds flattened images and the policies are CNNs
    (:class:`Policy`); copy m's weights, convolutions and head, are drawn from its seed's
    ``POLICY_INIT`` stream. Without it, copy m of the MLP keeps the initialisation that
    :class:`~lam_models.nn.EnsembleLinear` gives index m (``reset_copy`` on the
    :class:`~lam_models.nn.EnsembleMLP` re-draws nothing): the MLP policies' results are
    kept as they have been, but their initial weights depend on the copy's place, not its
    seed.
    """
    m = len(seeds)
    support = np.asarray(support, bool).reshape(m, -1)
    empty = [i for i in range(m) if not support[i].any()]
    if empty:
        raise ValueError(f"copies {empty} have no transition to fit on")
    x_t = _per_copy(np.asarray(x, np.float32), m, 1).float().to(device)
    classification = kind == "classification"
    y_t = _per_copy(np.asarray(y), m, 0 if classification else 1)
    y_t = (y_t.long() if classification else y_t.float()).to(device)
    # Rows outside the support may hold a sentinel (NaN, −1): zero them so none reaches a sum.
    inside = torch.from_numpy(support).to(device)
    y_t = torch.where(inside if classification else inside[..., None], y_t, 0)
    d_out = d_out if classification else y_t.shape[-1]
    policy = Policy(m, x_t.shape[-1], d_out, width, kind, image_shape)
    if policy.encoder is not None:  # an MLP keeps its index's initialisation (see above)
        reset_copies(policy, seeds, lambda seed: torch_generator(seed, Stream.POLICY_INIT))
    policy.to(device)
    rows = torch.arange(m, device=device)[:, None]
    with torch.no_grad():
        over = 1 if policy.encoder is None else (1, 2)  # per input, or one scale per image
        policy.in_mean.copy_(x_t.mean(over, keepdim=True).expand_as(policy.in_mean))
        policy.in_std.copy_(x_t.std(over, keepdim=True).clamp(min=1e-6).expand_as(policy.in_std))
        if not classification:
            w = inside[..., None].float()
            mean = (y_t * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
            var = ((y_t - mean).pow(2) * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
            policy.out_mean.copy_(mean)
            policy.out_std.copy_(var.sqrt().clamp(min=1e-6))
    generators = [torch_generator(seed, Stream.POLICY_BATCHES) for seed in seeds]
    pools = [torch.from_numpy(np.flatnonzero(s)) for s in support]
    optimiser = torch.optim.Adam(policy.parameters(), lr=lr)
    bar = progress_bar(steps, f"{name} ×{m}", "step", progress)
    for _ in range(steps):
        index = torch.stack(
            [
                p[torch.randint(len(p), (batch_size,), generator=g)]
                for p, g in zip(pools, generators, strict=True)
            ]
        ).to(device)
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
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return policy.eval()


@dataclass(frozen=True)
class PolicyFit:
    """How stages 3 and 4 fit their M policies (:func:`bc_policies`, :func:`fit_decoder`):
    the action space (``discrete``, ``num_actions``), the updates, one seed per copy, the
    MLPs' width, the device and whether a progress bar shows. ``image_shape`` (C, H, W):
    the policies on observations are CNNs (:func:`fit_policy`); the decoder, which reads
    latents, stays an MLP."""

    discrete: bool
    num_actions: int
    steps: int
    seeds: Sequence[int]
    width: int
    device: torch.device | str = "cpu"
    progress: bool = False
    image_shape: Sequence[int] | None = None

    @property
    def action_kind(self) -> str:
        """The policy kind of an action target."""
        return "classification" if self.discrete else "regression"

    def __call__(
        self, x: np.ndarray, y: np.ndarray, support: np.ndarray, kind: str, name: str
    ) -> Policy:
        """:func:`fit_policy` with these settings."""
        return fit_policy(
            x,
            y,
            support,
            kind,
            steps=self.steps,
            seeds=self.seeds,
            width=self.width,
            d_out=self.num_actions,
            device=self.device,
            progress=self.progress,
            name=name,
            image_shape=self.image_shape,
        )


def bc_policies(
    obs: np.ndarray,
    z: np.ndarray,
    actions: np.ndarray,
    true_actions: np.ndarray,
    labelled: np.ndarray,
    fit: PolicyFit,
) -> dict[str, Policy]:
    """Stage 3 for M copies: the latent policy π(z | o) on every transition, and the baselines
    π(a | o) on the labelled subset and on all transitions (true actions).

    obs (M, N, d_o) flattened, z (M, N, d_z), actions (M, N[, d_a]) the visible actions (read
    where ``labelled`` (M, N) is True), true_actions the oracle's (the fully labelled
    baseline only).
    """
    kind = fit.action_kind
    everything = np.ones(labelled.shape, dtype=bool)
    return {
        "latent_policy": fit(obs, z, everything, "regression", "π(z | o)"),
        "labelled_bc": fit(obs, actions, labelled, kind, "BC, labelled"),
        "full_bc": fit(obs, true_actions, everything, kind, "BC, all"),
    }


def fit_decoder(z: np.ndarray, actions: np.ndarray, labelled: np.ndarray, fit: PolicyFit) -> Policy:
    """Stage 4 for M copies: the decoder z -> a, fitted on the labelled subset only.

    z (M, N, d_z); actions (M, N[, d_a]), read only where ``labelled`` (M, N) is True.
    """
    if not np.asarray(labelled).reshape(len(fit.seeds), -1).any(1).all():
        raise ValueError("the decoder needs labelled transitions; a copy has none")
    fit = dataclasses.replace(fit, image_shape=None)  # z is no image
    return fit(z, actions, labelled, fit.action_kind, "decoder")


@torch.no_grad()
def actor_outputs(policy: Policy, obs: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """The policy's outputs on observations (M, N, d_in) (or (N, d_in), shared), in chunks:
    (M, N, d_out) float32 numpy. The decoder's inputs in the published LAOM pipeline."""
    x = torch.as_tensor(obs)
    if x.ndim == 2:
        x = x[None].expand(policy.net.num_models, *x.shape)
    parts = [policy(x[:, i : i + chunk]).float().cpu() for i in range(0, x.shape[1], chunk)]
    return torch.cat(parts, dim=1).numpy()


def check_policy(policy: Policy, path: Path) -> None:
    """Refuse a policy with NaN or infinite weights (``ValueError`` naming ``path``)."""
    from lam_models.lams.training import check_finite_state

    check_finite_state(policy.state_dict(), path, "policy weights")


def save_policy(path: Path, policy: Policy) -> None:
    """Write a policy (spec and weights) atomically; NaN or infinite weights are refused
    before anything is written."""
    check_policy(policy, path)
    record = {"spec": policy.spec(), "state": policy.state_dict()}

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a Python file: a full disk is an OSError, not torch's
            torch.save(record, f)

    write_atomically(path, write)  # a full disk leaves no temporary file


def load_policy(path: Path, device: torch.device | str = "cpu") -> Policy:
    """A policy written by :func:`save_policy` (weights only)."""
    from lam_models.lams.training import check_finite_state, load_state, load_weights

    saved = load_weights(path, device)
    try:
        policy = Policy(**saved["spec"])
    except (KeyError, TypeError, ValueError, RuntimeError, MemoryError) as error:
        raise ValueError(f"{path} is not a policy saved by lam_models ({error!s:.200})") from None
    load_state(policy, saved.get("state"), path, "a policy")
    check_finite_state(saved["state"], path, "policy weights")
    return policy.to(device).eval()
