"""``idm``: an inverse dynamics model trained on the labelled subset alone.

The baseline of the distractor paper's label-budget comparison: instead of learning a
latent from every transition and decoding it with the labels, learn the action itself from
the labelled transitions only::

    â_t = IDM(φ(Aug(o_t)), φ(Aug(o_{t+1})))       φ as LAOM's (ResNet CNN or MLP)
    loss = cross-entropy(â_t, a_t)   (discrete)   or   ‖â_t − a_t‖² / d_a   (vectors)

Its "latent" z is â_t (the action logits on the grid), so the LAPO-style pipeline turns it
into the usual IDM-then-BC recipe: relabel every transition with z, clone π(z | o) on all
of them, and decode (a map the labelled subset pins down at once). It reads labels only,
through ``sample_labelled``; the unlabelled transitions reach it only as BC's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lam_envs.utils.config import Checked, option
from lam_models.augment import augment_frames
from lam_models.lams import fields
from lam_models.lams.base import LAM, TrainingLog, register_lam
from lam_models.lams.laom import make_encoder
from lam_models.nn import EnsembleMLP, reset_copies
from lam_models.seeding import Stream, torch_generator
from lam_models.split import labelled_mean

__all__ = ["IDMConfig", "IDMLAM", "IDMNet"]


@dataclass
class IDMConfig(Checked):
    """Hyper-parameters of the supervised IDM (the encoder's as LAOM's)."""

    embed_dim: int = option(256, "dimension of the encoder's output", low=1)
    channels: tuple[int, ...] = fields.channels()
    blocks: int = fields.blocks()
    stem: int = fields.stem("LAOM's encoder")
    width: int = option(256, "hidden units of the IDM's MLP (and the vector encoder)", low=1)
    augment: bool = fields.augment_frames()
    shift: int = fields.shift()
    kappa: float = fields.kappa()
    lr: float = fields.lr(3e-4)
    batch_size: int = fields.batch_size(help="labelled transitions per update")
    steps: int = fields.steps(2000)
    log_every: int = fields.log_every()


class IDMNet(nn.Module):
    """φ and the MLP head (φ(o), φ(o')) -> â, M copies; copy m initialised from seeds[m]."""

    def __init__(self, c: IDMConfig, obs_shape, action_dim: int, seeds):
        super().__init__()
        m = len(seeds)
        self.encoder = make_encoder(c, m, tuple(obs_shape))
        self.head = EnsembleMLP(m, 2 * c.embed_dim, c.width, action_dim)
        reset_copies(self, seeds)

    def forward(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(o), self.encoder(o_next)], dim=-1))


@register_lam("idm")
class IDMLAM(LAM):
    """An IDM trained on the labelled subset alone; z = the predicted action (logits)."""

    Config = IDMConfig

    def build(self) -> nn.Module:
        return IDMNet(self.config, self.spec.obs_shape, self.spec.action_dim, self.seeds)

    def fit(self, data: Any, progress: bool = False) -> None:
        c, net = self.config, self.module
        if not bool(data.has_labels.all()):
            raise ValueError(
                "the idm LAM learns from labelled transitions only, and the data of a copy has "
                "none (collect with --label-fraction > 0)"
            )
        optimiser = torch.optim.Adam(net.parameters(), lr=c.lr)
        generators = [torch_generator(s, Stream.AUGMENT) for s in self.seeds]
        kappa = None if len(self.spec.obs_shape) == 3 else c.kappa
        log = TrainingLog(self, c.steps, c.log_every, progress, unit="update")
        for step in range(c.steps):
            batch = data.sample_labelled(c.batch_size)
            if step == 0:
                self.check_batch(batch, c.batch_size)
            o, o_next = batch.obs, batch.next_obs
            if c.augment:
                o, o_next = augment_frames([o, o_next], generators, c.shift, kappa)
            out = net(o, o_next)
            if self.spec.discrete:
                loss = F.cross_entropy(
                    out.flatten(0, 1), batch.actions.clamp_min(0).flatten(), reduction="none"
                ).view(out.shape[:2])
            else:
                loss = (out - torch.nan_to_num(batch.actions)).pow(2).mean(-1)
            loss = labelled_mean(loss, batch.label_mask)
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            log.add(loss=loss)
            log.step(step)

    def encode(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        return self.module(o, o_far)
