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

import math
from dataclasses import dataclass

import torch

from lam_envs.utils.config import Checked, option
from lam_models.augment import augment_pair
from lam_models.lams import fields
from lam_models.lams.base import register_lam
from lam_models.lams.laom import LAOMLAM, TargetEncoderNet
from lam_models.nn import EnsembleMLP
from lam_models.split import Transitions

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


class LAOMMLPNet(TargetEncoderNet):
    """Online encoder φ (an MLP ending in a LayerNorm), target encoder φ̄ (EMA of φ), IDM,
    FDM and head E, M copies, as :class:`~lam_models.lams.laom.TargetEncoderNet`."""

    def __init__(self, c: LAOMMLPConfig, obs_shape, action_dim, seeds, action_weights):
        encoder = EnsembleMLP(len(seeds), math.prod(obs_shape), c.width, c.embed_dim, norm=True)
        super().__init__(c, encoder, action_dim, seeds, action_weights)
        self.ema_decay = c.ema_decay

    def embed(self, o: torch.Tensor, target: bool = False) -> torch.Tensor:
        """φ(o) (or φ̄(o)) of the flattened observation: (M, B, *obs_shape) -> (M, B, d_s)."""
        return super().embed(o.flatten(2), target)

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
    """The package's LAOM-style LAM (MLP encoder, fixed k, EMA decay; training loop and
    metrics as ``laom``)."""

    Config = LAOMMLPConfig
    per_copy = ("action_weight", "action_head")
    cpu_sizes = {}  # its own defaults (not LAOM's encoder sizes)
    pipeline_defaults = {}
    Net = LAOMMLPNet

    frame_stack = 1  # one frame per input

    @property
    def lookahead(self) -> int:
        return self.config.k

    def _augment(self, frames: list[torch.Tensor], generators) -> list[torch.Tensor]:
        """Aug: one draw shared by a pair (o, o′)."""
        if not self.config.augment:
            return frames
        return list(augment_pair(*frames, generators, self._kappa()))

    def _sample(self, data) -> Transitions:
        return data.sample(self.config.batch_size, offset=self.config.k)

    def _latent_loss(self, batch: Transitions, generators) -> tuple[torch.Tensor, torch.Tensor]:
        """‖FDM(sg(φ(Aug2 o_t)), IDM(φ(Aug1 o_t), φ(Aug1 o_{t+k}))) − φ̄(Aug2 o_{t+k})‖² / d_s
        per copy, and the target φ̄(Aug2 o_{t+k})."""
        net = self.module
        idm_o, idm_far = self._augment([batch.obs, batch.far_obs], generators)
        fdm_o, fdm_far = self._augment([batch.obs, batch.far_obs], generators)
        z = net.idm(idm_o, idm_far)
        with torch.no_grad():
            target = net.embed(fdm_far, target=True)
        return (net.fdm(fdm_o, z) - target).pow(2).mean((1, 2)), target

    def _labelled(self, data, generators) -> tuple[Transitions, torch.Tensor, torch.Tensor]:
        """A labelled batch and its pair (o_t, o_{t+k}), augmented (Aug1)."""
        labelled = data.sample_labelled(self.config.label_batch_size, offset=self.config.k)
        lo, lo_far = self._augment([labelled.obs, labelled.far_obs], generators)
        return labelled, lo, lo_far
