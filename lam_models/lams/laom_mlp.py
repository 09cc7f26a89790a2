"""``laom-mlp``: the package's LAOM-*style* model (continuous latent, latent-space prediction,
EMA target), kept as a variant of the published LAOM (:mod:`lam_models.lams.laom`).

The distractor paper's modification of LAPO (Nikulin et al., "Latent action learning
requires supervision in the presence of distractors"). For a pair
(o_t, o_{t+k}) with look-ahead k >= 1::

    s_t, s_{t+k} = φ(Aug1(o_t)), φ(Aug1(o_{t+k}))     online encoder (MLP + LayerNorm)
    z            = IDM(s_t, s_{t+k})                     continuous latent, no quantisation
    ŝ_{t+k}      = FDM(sg(φ(Aug2(o_t))), z)              prediction in latent space
    loss         = ‖ŝ_{t+k} − sg(φ̄(Aug2(o_{t+k})))‖² / d_s
                   + λ_a ‖E z − a_t‖² / d_a               (on a separate labelled batch)
    φ̄            ← τ φ̄ + (1 − τ) φ                       after every update; never by gradient

- φ̄ is the target encoder: an exponential moving average (decay τ = ``ema_decay``) of the
  online encoder φ. The FDM predicts φ̄'s embedding of the future observation instead of
  its pixels; as in LAOM the FDM's observation input is detached, so φ learns only through
  the IDM, and a LayerNorm without affine parameters ends φ (fixed scale, so the embedding
  cannot shrink to zero).
- Aug1, Aug2 (:func:`lam_models.augment.augment_pair`): ±1-column periodic shifts on images,
  Gaussian offsets of scale κ on vectors; Aug1 shared by both IDM inputs, Aug2 by the FDM
  input and its target.
- E: the optional linear head from z to the true action (one-hot for discrete actions),
  trained with weight λ_a on a separate batch of ``label_batch_size`` labelled transitions
  every update, so it learns even when 0.5% of the data is labelled.

It differs from the published LAOM (``laom``) in an MLP encoder, a fixed look-ahead k
instead of one drawn per example, the FDM predicting φ̄(o_{t+k}) instead of φ̄(o_{t+1}),
one augmentation shared by a pair instead of one per frame, an EMA decay of 0.99
(τ = 0.01) and d_z = 8; it trains in seconds on the 4×4 grid and on vectors.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from lam_envs.utils.config import Checked, option
from lam_models.augment import augment_pair
from lam_models.lams import fields
from lam_models.lams.base import TrainingLog, register_lam
from lam_models.lams.laom import LAOMLAM, action_head_loss
from lam_models.nn import EnsembleLinear, EnsembleMLP, EnsembleModule
from lam_models.seeding import Stream, torch_generator

__all__ = ["LAOMMLPConfig", "LAOMMLPLAM", "LAOMMLPNet"]


@dataclass
class LAOMMLPConfig(fields.ActionHead, Checked):
    """Hyper-parameters of the ``laom-mlp`` LAM and its trainer (the papers' symbols)."""

    latent_dim: int = option(8, "d_z, dimension of the continuous latent z", low=1)
    embed_dim: int = option(32, "d_s, dimension of the encoder's space (the FDM's target)", low=1)
    width: int = option(64, "hidden units of the encoder, IDM and FDM", low=1)
    k: int = option(1, "look-ahead: the IDM sees (o_t, o_t+k)", low=1)
    ema_decay: float = option(0.99, "τ of the target encoder, in (0, 1)", above=0, below=1)
    augment: bool = option(True, "augmentation Aug1/Aug2 (shifts on images, κ on vectors)")
    kappa: float = fields.kappa()
    action_head: bool = fields.action_head()
    action_weight: float = option(1.0, "λ_a, weight of the head's loss", low=0.0)
    label_batch_size: int = fields.label_batch_size(32)
    lr: float = fields.lr(1e-3)
    batch_size: int = fields.batch_size()
    steps: int = fields.steps(3000)
    log_every: int = fields.log_every()


class LAOMMLPNet(nn.Module):
    """Online encoder φ, target encoder φ̄ (EMA of φ), IDM, FDM and head E, M copies.

    Copy m's initial weights depend only on ``seeds[m]``; φ̄ starts equal to φ and has
    ``requires_grad = False``. ``action_weights`` (M,) is λ_a per copy. Layout (M, B, ...).
    """

    def __init__(self, c: LAOMMLPConfig, obs_shape, action_dim, seeds, action_weights):
        super().__init__()
        m, d_in = len(seeds), math.prod(obs_shape)
        self.encoder = EnsembleMLP(m, d_in, c.width, c.embed_dim, norm=True)
        self.idm_head = EnsembleMLP(m, 2 * c.embed_dim, c.width, c.latent_dim)
        self.fdm_head = EnsembleMLP(m, c.embed_dim + c.latent_dim, c.width, c.embed_dim)
        self.action_head = EnsembleLinear(m, c.latent_dim, action_dim)
        for index, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(seed)
            for module in self.modules():
                if isinstance(module, EnsembleModule):
                    module.reset_copy(index, generator)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.register_buffer("action_weights", torch.tensor(action_weights, dtype=torch.float32))
        self.ema_decay = c.ema_decay

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the target encoder (which only follows φ by EMA)."""
        return [p for name, p in self.named_parameters() if not name.startswith("target_")]

    def embed(self, o: torch.Tensor, target: bool = False) -> torch.Tensor:
        """φ(o) (or φ̄(o)): (M, B, *obs_shape) -> (M, B, d_s)."""
        encoder = self.target_encoder if target else self.encoder
        return encoder(o.flatten(2))

    def idm(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """z = IDM(φ(o_t), φ(o_{t+k})) -> (M, B, d_z)."""
        return self.idm_head(torch.cat([self.embed(o), self.embed(o_far)], dim=-1))

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ŝ_{t+k} = FDM(sg(φ(o_t)), z) -> (M, B, d_s)."""
        return self.fdm_head(torch.cat([self.embed(o).detach(), z], dim=-1))

    @torch.no_grad()
    def update_target(self) -> None:
        """φ̄ ← τ φ̄ + (1 − τ) φ."""
        tau = self.ema_decay
        for target, online in zip(
            self.target_encoder.parameters(), self.encoder.parameters(), strict=True
        ):
            target.mul_(tau).add_(online.detach(), alpha=1 - tau)


@register_lam("laom-mlp")
class LAOMMLPLAM(LAOMLAM):
    """The package's LAOM-style LAM (MLP encoder, fixed k, EMA decay; metrics as ``laom``)."""

    Config = LAOMMLPConfig
    per_copy = ("action_weight", "action_head")
    cpu_sizes = {}  # its own defaults (not LAOM's encoder sizes)
    pipeline_defaults = {}

    @property
    def lookahead(self) -> int:
        return self.config.k

    def build(self) -> nn.Module:
        return LAOMMLPNet(
            self.config,
            self.spec.obs_shape,
            self.spec.action_dim,
            self.seeds,
            [c.effective_action_weight for c in self.configs],
        )

    def _kappa(self):
        return None if len(self.spec.obs_shape) == 3 else self.config.kappa

    def fit(self, data, progress: bool = False) -> None:
        c, net = self.config, self.module
        supervised = self._check_labels(data)
        weights = net.action_weights
        optimiser = torch.optim.Adam(net.trainable_parameters(), lr=c.lr)
        generators = [torch_generator(s, Stream.AUGMENT) for s in self.seeds]
        log = TrainingLog(self, c.steps, c.log_every, progress, unit="update")
        kappa = self._kappa()
        for step in range(c.steps):
            batch = data.sample(c.batch_size, offset=c.k)
            if step == 0:
                self.check_batch(batch, c.batch_size)
            o, o_far = batch.obs, batch.far_obs
            if c.augment:
                idm_o, idm_far = augment_pair(o, o_far, generators, kappa)
                fdm_o, fdm_far = augment_pair(o, o_far, generators, kappa)
            else:
                idm_o, idm_far, fdm_o, fdm_far = o, o_far, o, o_far
            z = net.idm(idm_o, idm_far)
            with torch.no_grad():
                target = net.embed(fdm_far, target=True)
            latent_loss = (net.fdm(fdm_o, z) - target).pow(2).mean((1, 2))  # (M,)
            action = torch.zeros_like(latent_loss)
            if supervised:
                labelled = data.sample_labelled(c.label_batch_size, offset=c.k)
                lo, lo_far = labelled.obs, labelled.far_obs
                if c.augment:
                    lo, lo_far = augment_pair(lo, lo_far, generators, kappa)
                action = action_head_loss(net.action_head(net.idm(lo, lo_far)), labelled, self.spec)
            loss = latent_loss + weights * action
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            net.update_target()
            log.add(
                loss=loss,
                latent_loss=latent_loss,
                action_loss=action,
                embed_std=target.std(1).mean(-1),
            )
            log.step(step)
