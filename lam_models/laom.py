"""LAOM-style latent action model: continuous latent, latent-space prediction, EMA target.

The distractor paper's modification of LAPO (Nikulin et al., "Latent action learning
requires supervision in the presence of distractors"; SPEC, "LAOM-style LAM"). For a pair
(o_t, o_{t+k}) with look-ahead k >= 1::

    s_t, s_{t+k} = φ(Aug1(o_t)), φ(Aug1(o_{t+k}))     online encoder (MLP + LayerNorm)
    z            = IDM(s_t, s_{t+k})                     continuous latent, no quantisation
    ŝ_{t+k}      = FDM(sg(φ(Aug2(o_t))), z)              prediction in latent space
    loss         = ‖ŝ_{t+k} − sg(φ̄(Aug2(o_{t+k})))‖² / d_s
                   + λ_a ‖E z − a_t‖² / d_a               (labelled transitions only)
    φ̄            ← τ φ̄ + (1 − τ) φ                       after every update; never by gradient

- φ̄ is the target encoder: an exponential moving average (decay τ = ``ema_decay``) of the
  online encoder φ. The FDM predicts φ̄'s embedding of the future observation instead of
  its pixels, so it need not model pixel detail; as in LAOM the FDM's observation input is
  detached, so φ learns only through the IDM (what z must carry), and a LayerNorm without
  affine parameters ends φ (fixed scale, so the embedding cannot shrink to zero).
- Aug1, Aug2: on images (the grid) the ±1-column periodic shifts of the VQ LAM
  (:func:`lam_models.vq.shift_columns`), Aug1 shared by both IDM inputs, Aug2 by the FDM
  input and its target; on vectors (the linear environment) additive Gaussian shifts
  x + κ_i with κ_i ~ N(0, κ²I), shared the same way.
- E: the optional linear head from z to the true action (one-hot for discrete actions),
  trained on the small labelled subset with weight λ_a (``action_weight``; 0 = off). Each
  update draws a separate batch of ``label_batch_size`` labelled transitions, so the head
  is trained at every update even when 0.5% of the data is labelled.

Several seeds (and λ_a values) train as one batched computation: the networks hold M
independent copies (:mod:`lam_models.nn`), every loss is summed over copies, and Adam is
elementwise, so each copy's updates are those it would get alone.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lam_models.nn import EnsembleLinear, EnsembleModule
from lam_models.vq import draw_shifts, shift_columns

__all__ = [
    "EnsembleMLP",
    "LAOMConfig",
    "LAOMLAM",
    "UnlabelledSampler",
    "LabelledSampler",
    "far_observations",
    "latents",
    "train_laom_lams",
]

_LOSSES = ("loss", "latent_loss", "action_loss")

UnlabelledSampler = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""``sample(step) -> (o_t, o_{t+k})``, each (M, B, *obs_shape) float32."""

LabelledSampler = Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
"""``sample(step) -> (o_t, o_{t+k}, a, valid)``: (M, B_l, *obs_shape) ×2, targets a
(M, B_l, d_a) float32 (one-hot for discrete actions), valid (M, B_l) bool (False for
copies without labels)."""


@dataclass(frozen=True)
class LAOMConfig:
    """Hyper-parameters of the LAOM-style LAM and its trainer (SPEC symbols in brackets).

    obs_shape: (C, H, W) for images (the grid) or (d_o,) for vectors.
    latent_dim: d_z, dimension of the continuous latent z.
    embed_dim: d_s, dimension of the encoder's latent space (the FDM's prediction target).
    width: hidden units of the encoder, IDM and FDM (one hidden layer each).
    k: look-ahead of the IDM, which sees (o_t, o_{t+k}); k >= 1.
    ema_decay: τ of the target encoder φ̄ ← τ φ̄ + (1 − τ) φ, in (0, 1).
    augment: Aug1/Aug2 on (column shifts for images, Gaussian shifts of scale κ for vectors).
    kappa: κ, scale of the Gaussian shifts for vector observations.
    action_weight: λ_a >= 0 of the linear head E (0: no supervision).
    action_dim: d_a, output size of E (number of actions when discrete).
    label_batch_size: labelled transitions per update for the head's loss.
    lr, batch_size, steps: Adam learning rate, transitions per update, number of updates.
    seed: seed of a single model (batched training takes a list of seeds).
    log_every: history resolution, in updates.
    """

    obs_shape: tuple[int, ...] = (1, 4, 4)
    latent_dim: int = 8
    embed_dim: int = 32
    width: int = 64
    k: int = 1
    ema_decay: float = 0.99
    augment: bool = True
    kappa: float = 0.1
    action_weight: float = 0.0
    action_dim: int = 5
    label_batch_size: int = 32
    lr: float = 1e-3
    batch_size: int = 128
    steps: int = 3000
    seed: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs_shape", tuple(self.obs_shape))
        for name in (
            "latent_dim",
            "embed_dim",
            "width",
            "k",
            "action_dim",
            "label_batch_size",
            "batch_size",
            "steps",
            "log_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if len(self.obs_shape) not in (1, 3) or not all(
            isinstance(s, int) and s >= 1 for s in self.obs_shape
        ):
            raise ValueError(f"obs_shape must be (C, H, W) or (d_o,), got {self.obs_shape!r}")
        if not (isinstance(self.ema_decay, int | float) and 0 < self.ema_decay < 1):
            raise ValueError(
                f"ema_decay must be in the open interval (0, 1), got {self.ema_decay!r}"
            )
        for name in ("kappa", "action_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False, got {self.augment!r}")

    @property
    def images(self) -> bool:
        """Whether observations are images (C, H, W) rather than vectors."""
        return len(self.obs_shape) == 3


class EnsembleMLP(EnsembleModule):
    """M copies of in -> width -> ReLU -> out, optionally ending in a LayerNorm (no affine):
    ``(M, B, d_in) -> (M, B, d_out)``."""

    def __init__(self, m: int, d_in: int, width: int, d_out: int, norm: bool = False) -> None:
        super().__init__(m)
        self.hidden = EnsembleLinear(m, d_in, width)
        self.out = EnsembleLinear(m, width, d_out)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(F.relu(self.hidden(x)))
        return F.layer_norm(y, y.shape[-1:]) if self.norm else y


class LAOMLAM(nn.Module):
    """Online encoder φ, target encoder φ̄ (EMA of φ), IDM, FDM and head E, M copies.

    Copy m's initial weights depend only on ``seeds[m]``; φ̄ starts equal to φ. The target's
    parameters have ``requires_grad = False`` and are changed only by :meth:`update_target`.
    ``action_weights`` (M,) is λ_a per copy (default: ``config.action_weight`` for all).
    Methods work in the ensemble layout (M, B, ...).
    """

    def __init__(
        self,
        config: LAOMConfig,
        seeds: Sequence[int] | None = None,
        action_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        seeds = [config.seed] if seeds is None else list(seeds)
        if not seeds:
            raise ValueError("seeds must hold at least one seed, got an empty sequence")
        m = len(seeds)
        weights = [config.action_weight] * m if action_weights is None else list(action_weights)
        if len(weights) != m or any(not (math.isfinite(w) and w >= 0) for w in weights):
            raise ValueError(f"give one finite λ_a >= 0 per seed ({m}), got {weights!r}")
        self.config, self.seeds, self.num_models = config, seeds, m
        c = config
        d_in = math.prod(c.obs_shape)
        self.encoder = EnsembleMLP(m, d_in, c.width, c.embed_dim, norm=True)
        self.idm_head = EnsembleMLP(m, 2 * c.embed_dim, c.width, c.latent_dim)
        self.fdm_head = EnsembleMLP(m, c.embed_dim + c.latent_dim, c.width, c.embed_dim)
        self.action_head = EnsembleLinear(m, c.latent_dim, c.action_dim)
        for index, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(seed)
            for module in self.modules():
                if isinstance(module, EnsembleModule):
                    module.reset_copy(index, generator)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.register_buffer("action_weights", torch.tensor(weights, dtype=torch.float32))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the target encoder (which only follows φ by EMA)."""
        return [p for name, p in self.named_parameters() if not name.startswith("target_")]

    def embed(self, o: torch.Tensor, target: bool = False) -> torch.Tensor:
        """φ(o) (or φ̄(o)): (M, B, *obs_shape) -> (M, B, d_s)."""
        encoder = self.target_encoder if target else self.encoder
        return encoder(o.flatten(2))

    def idm(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """z = IDM(φ(o_t), φ(o_{t+k})): (M, B, *obs_shape) × 2 -> (M, B, d_z)."""
        return self.idm_head(torch.cat([self.embed(o), self.embed(o_far)], dim=-1))

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ŝ_{t+k} = FDM(sg(φ(o_t)), z): -> (M, B, d_s)."""
        return self.fdm_head(torch.cat([self.embed(o).detach(), z], dim=-1))

    def action_prediction(self, z: torch.Tensor) -> torch.Tensor:
        """E z: (M, B, d_z) -> (M, B, d_a)."""
        return self.action_head(z)

    @torch.no_grad()
    def update_target(self) -> None:
        """φ̄ ← τ φ̄ + (1 − τ) φ."""
        tau = self.config.ema_decay
        for target, online in zip(
            self.target_encoder.parameters(), self.encoder.parameters(), strict=True
        ):
            target.mul_(tau).add_(online.detach(), alpha=1 - tau)


# --------------------------------------------------------------------------- data


def far_observations(next_obs: np.ndarray, episode_length: int, k: int) -> np.ndarray:
    """o_{t+k} for every transition of whole episodes read in order (``read_numpy``).

    ``next_obs`` (E·L, ...) holds o_{t+1} of each transition, episodes of length L one after
    another. Transitions within k − 1 steps of their episode's end get the episode's last
    observation o_L (the furthest one there is).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k (the IDM's look-ahead) must be an integer >= 1, got {k!r}")
    if len(next_obs) % episode_length:
        raise ValueError(
            f"{len(next_obs)} transitions are not whole episodes of length {episode_length}"
        )
    steps = next_obs.reshape(-1, episode_length, *next_obs.shape[1:])
    index = np.minimum(np.arange(episode_length) + k - 1, episode_length - 1)
    return steps[:, index].reshape(next_obs.shape)


# --------------------------------------------------------------------------- training


def _augment(
    config: LAOMConfig, x: torch.Tensor, y: torch.Tensor, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmentation per transition shared by x and y (M, B, ...), per-copy streams."""
    if config.images:
        shifts = torch.stack([draw_shifts(x.shape[1:2], g) for g in generators])
        return shift_columns(x, shifts), shift_columns(y, shifts)
    noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in generators])
    noise = noise * config.kappa
    return x + noise, y + noise


def train_laom_lams(
    config: LAOMConfig,
    seeds: Sequence[int],
    sample_batch: UnlabelledSampler,
    sample_labelled: LabelledSampler | None = None,
    action_weights: Sequence[float] | None = None,
    progress: bool = False,
) -> tuple[LAOMLAM, list[dict[str, list[float]]]]:
    """Train M = len(seeds) LAOM-style LAMs together; return the batched model and histories.

    ``sample_batch(step)`` gives each copy its own (o_t, o_{t+k}) batch (M, B, ...);
    ``sample_labelled(step)`` its labelled batch for the head (needed when any λ_a > 0).
    ``action_weights``: λ_a per copy (default ``config.action_weight`` for every copy).
    Histories, per copy and per ``log_every`` window: ``step``, window means of ``loss``,
    ``latent_loss`` (the FDM's error in φ̄'s space) and ``action_loss``, ``embed_std``
    (mean over dimensions of the target embedding's std across the batch: near 0 means
    the embedding collapsed), cumulative ``seconds``.
    """
    model = LAOMLAM(config, seeds, action_weights)
    supervised = bool((model.action_weights > 0).any())
    if supervised and sample_labelled is None:
        raise ValueError("action_weight > 0 needs labelled transitions (sample_labelled)")
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=config.lr)
    generators = [torch.Generator().manual_seed(seed + 1_000_003) for seed in seeds]
    m = model.num_models
    histories = [{key: [] for key in ("step", *_LOSSES, "embed_std", "seconds")} for _ in seeds]
    window = {key: torch.zeros(m) for key in (*_LOSSES, "embed_std")}
    window_steps, start = 0, time.perf_counter()

    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"LAOM LAM ×{m}", unit="update")
    for step in steps:
        o, o_far = (t.float() for t in sample_batch(step))
        if config.augment:
            idm_o, idm_far = _augment(config, o, o_far, generators)
            fdm_o, fdm_far = _augment(config, o, o_far, generators)
        else:
            idm_o, idm_far, fdm_o, fdm_far = o, o_far, o, o_far
        z = model.idm(idm_o, idm_far)
        with torch.no_grad():
            target = model.embed(fdm_far, target=True)
        latent_loss = (model.fdm(fdm_o, z) - target).pow(2).mean((1, 2))  # (M,)
        action = torch.zeros(m)
        if supervised:
            lo, lo_far, a, valid = sample_labelled(step)
            if config.augment:
                lo, lo_far = _augment(config, lo.float(), lo_far.float(), generators)
            error = (model.action_prediction(model.idm(lo, lo_far)) - a).pow(2).mean(-1)
            action = (error * valid).sum(1) / valid.sum(1).clamp(min=1)
        loss = latent_loss + model.action_weights * action

        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        model.update_target()

        for key, value in (("loss", loss), ("latent_loss", latent_loss), ("action_loss", action)):
            window[key] += value.detach()
        window["embed_std"] += target.std(1).mean(-1)
        window_steps += 1
        if window_steps == config.log_every or step == config.steps - 1:
            seconds = time.perf_counter() - start
            for index, history in enumerate(histories):
                history["step"].append(step + 1)
                for key, value in window.items():
                    history[key].append(value[index].item() / window_steps)
                history["seconds"].append(seconds)
            for value in window.values():
                value.zero_()
            window_steps = 0
            if progress:
                steps.set_postfix(loss=f"{histories[0]['loss'][-1]:.4f}")
    model.eval()
    return model, histories


@torch.no_grad()
def latents(
    model: LAOMLAM, o: torch.Tensor, o_far: torch.Tensor, batch_size: int = 16384
) -> torch.Tensor:
    """z = IDM(φ(o_t), φ(o_{t+k})) without augmentation, (M, N, d_z).

    ``o``, ``o_far``: (N, *obs_shape) shared by every copy, or (M, N, *obs_shape).
    """
    shape = model.config.obs_shape
    if o.shape[-len(shape) :] != shape or o.shape != o_far.shape:
        raise ValueError(
            f"o and o_far must have shape (N, {shape}) or (M, N, {shape}), got "
            f"{tuple(o.shape)} and {tuple(o_far.shape)}"
        )
    if o.ndim == len(shape) + 1:
        expand = (model.num_models, *o.shape)
        o, o_far = o[None].expand(expand), o_far[None].expand(expand)
    parts = [
        model.idm(o[:, i : i + batch_size].float(), o_far[:, i : i + batch_size].float())
        for i in range(0, o.shape[1], batch_size)
    ]
    return torch.cat(parts, dim=1)
