"""The published grid VQ LAM (``vq-published``): the model, data use and training behind
the paper's Table 1, as the authors' released code runs them (docs/protocols.md, "Grid VQ
LAM"). The package's own VQ LAM (``vq``, :mod:`lam_models.lams.vq`) is a different model;
this module reuses its scoring, metrics and pictures.

The model, M copies batched (layout (M, B, ...)); each copy has its own batch norm::

    e(x)   = flatten ReLU conv3×3(64→1) AvgPool2 BN ReLU conv3×3(64→64) BN ReLU conv3×3(1→64) x
             one frame (1, 4, 4) -> 4 numbers (position-aware), called on o and on o' apart
    latent = MLP([e(o), e(o')])           8 -> 512 -> ReLU -> 512 -> ReLU -> 16
    k      = argmin_j ‖latent − c_j‖       5 codes c_j ∈ R^16, initialised N(0, 1)
    z      = latent + sg(c_k − latent)     straight-through
    ô'     = FDM([o, z as 4×4])            no skip connection (see :class:`PublishedUNet`)
    loss   = ‖ô' − o'‖² + 0.1 ‖sg(latent) − c_k‖² + 0.025 ‖latent − sg(c_k)‖²
             + 0.1 mean over labelled examples of ‖z − sg(c_a)‖²  (action prediction)

(squared norms averaged over their elements). Adam, lr 1e-4, batch 1,024; 1,600 updates
by default: the released code's 400 epochs, each one random frame pair of every one of the
3,800 training trajectories (4 batches). The text's 16k updates is ``--steps 16000``.

- Codebook (as released): not an optimiser parameter, so the codebook loss moves nothing
  and only the dead-code reset moves the codes: every ``reset_epochs`` (5) epochs the last
  batch of the epoch is checked; a code chosen by fewer than ``dead_code_share`` (0.1%) of
  it gets a mark; marks accumulate until a reset; a code with more than
  ``dead_code_checks`` (3) marks moves to the pre-quantised latent of the batch row with
  the code's index. ``reset_schedule="every-update"`` is the package's earlier reading (a
  named variant); ``learn_codebook`` makes the codes Adam parameters.
- Data: one random frame pair per example (:meth:`CopyBatches.sample`, uniform over the
  train transitions: every trajectory has 200 frames, so the same as a random pair of a
  random trajectory); labelled examples come at their natural rate (no oversampling).
  Labels are given per trajectory by the dataset (``label_unit = "episode"``).
- Action prediction (``label_mechanism="detached"``, as released): code k is pre-assigned
  to action k; a labelled example's FDM receives the action's code c_a detached, so it
  sends no reconstruction gradient to the IDM; the straight-through output z is pulled
  toward c_a (weight 0.1); codebook and commitment terms stay on the chosen code; no code
  is reset while labels are used. ``"straight-through"`` is the earlier reading (a variant).
- Augmentation: ``noise_copy``, the released code's copy of the noise row (the IDM sees o
  with o′'s noise row; the FDM's target is o′ with o's noise row), and ``augment``, the
  text's one-column periodic shift, left or right (one shift shared by both IDM inputs,
  another by the FDM input and its target).
- The published losses are measured while training: the FDM's per-pixel error over the
  last ``score_updates`` (40) updates, on the training batch or on ``score_dataset``'s
  batches (:class:`~lam_models.lams.training_score.TrainingScore`).

Seeds: copy m draws its initial weights and codes from its seed's ``MODEL_INIT`` and
``CODEBOOK`` streams, its batches from ``BATCHES``, its shifts from ``AUGMENT`` and its
random code resets (the variant's) from ``CODEBOOK`` (:mod:`lam_models.seeding`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lam_envs.utils.config import Checked, option
from lam_models.lams import fields
from lam_models.lams.base import TrainingLog, register_lam
from lam_models.lams.training_score import TrainingScore
from lam_models.lams.vq import VQLAM, VQPrediction, action_loss, vq_inputs
from lam_models.nn import (
    EnsembleBatchNorm2d,
    EnsembleConv2d,
    EnsembleLinear,
    EnsembleModule,
    avg_pool2,
    reset_copies,
    upsample2,
)
from lam_models.seeding import Stream, torch_generator
from lam_models.split import labelled_mean

__all__ = [
    "PublishedEncoder",
    "PublishedUNet",
    "PublishedVQConfig",
    "PublishedVQLAM",
    "PublishedVQNet",
]


@dataclass
class PublishedVQConfig(Checked):
    """Hyper-parameters of the published grid VQ LAM (defaults: the released code's,
    docs/protocols.md)."""

    codebook_size: int = fields.codebook_size()
    latent_dim: int = option(
        16,
        "D, dimension of the latent and the codes (the FDM reads it as an image of the "
        "frame's shape: H·W on the 4×4 grid, H·W/s² at pixel scale s)",
        low=1,
    )
    encoder_width: int = option(64, "channels of the per-frame CNN encoder", low=1)
    mlp_width: int = option(512, "width of the IDM's two hidden layers", low=1)
    fdm_width: int = option(64, "channels of the FDM's UNet", low=1)
    codebook_weight: float = option(0.1, "weight of the codebook loss ‖sg(latent) − c‖²", low=0.0)
    commitment_weight: float = option(
        0.025, "β, weight of the commitment loss ‖latent − sg(c)‖²", low=0.0
    )
    learn_codebook: bool = option(
        False,
        "make the codes Adam parameters moved by the codebook loss (the release moves "
        "them only by the dead-code reset)",
    )
    dead_code_share: float = option(
        0.001,
        "a code chosen by less than this share of a checked batch gets one mark",
        low=0.0,
        high=1.0,
    )
    dead_code_checks: int = option(3, "reset a code once it has more than this many marks", low=0)
    reset_schedule: str = option(
        "released",
        "released: check the last batch of every 5th epoch, marks accumulate until a reset, "
        "the code moves to the latent of the batch row with its index; every-update (a "
        "variant): check every batch, reset after more than dead_code_checks dead batches in "
        "a row, to a random latent of the batch",
        choices=("released", "every-update"),
    )
    reset_epochs: int = option(5, "released schedule: check every this many epochs", low=1)
    fdm_skip: bool = option(
        False,
        "a variant: concatenate a full-resolution skip in the FDM's UNet (the released FDM "
        "has none)",
    )
    augment: bool = option(
        False, "the text's augmentation: a ±1-column periodic shift (never 0) per pair"
    )
    noise_copy: bool = option(
        False,
        "the released code's augmentation: the IDM sees o with o′'s noise row, the FDM's "
        "target is o′ with o's noise row",
    )
    noise_copy_fdm_input: str = option(
        "o",
        "with noise_copy, what the FDM reads: o (the protocol's reading) or idm (the IDM's "
        "o, which carries o′'s noise row, so the FDM cannot copy the target's noise row: a "
        "hypothesis for the published augmentation row's stochastic loss, a variant)",
        choices=("o", "idm"),
    )
    action_prediction: bool = option(
        False,
        "pre-assign code k to action k; labelled examples feed their action's code to "
        "the FDM and pull the latent toward it",
    )
    action_weight: float = option(0.1, "λ_a, weight of the action pull", low=0.0)
    label_mechanism: str = option(
        "detached",
        "detached (released): a labelled example's FDM gets its action's code detached, the "
        "straight-through output is pulled to it, no code reset while labels are used; "
        "straight-through (a variant): the FDM gets the action's code through the "
        "straight-through path, the latent is pulled and committed to it, resets go on",
        choices=("detached", "straight-through"),
    )
    score_updates: int = fields.score_updates()
    score_dataset: str = fields.score_dataset(
        "score those updates on batches of this dataset (id or path; the policy row: the "
        "uniform-policy data) instead of the training batch",
    )
    steps: int = fields.steps(
        1600, "Adam updates (released: 400 epochs × 4 batches; the text: 16000)"
    )
    batch_size: int = fields.batch_size(1024)
    lr: float = fields.lr(1e-4)
    log_every: int = fields.log_every(50)


def _conv(m: int, c_in: int, c_out: int, size: tuple[int, int]) -> EnsembleConv2d:
    """3×3, zero padding 1; grouped (one F.conv2d call) at 64 channels, where it is fastest
    (otherwise the layer's own choice by image size)."""
    grouped = True if max(c_in, c_out) >= 32 else None
    return EnsembleConv2d(m, c_in, c_out, 3, size, padding=1, grouped=grouped)


def latent_scale(latent_dim: int, image_size: tuple[int, int]) -> int:
    """The integer s with latent_dim = (H/s)·(W/s), s dividing H and W: the FDM reads the
    latent as an (H/s)×(W/s) image upsampled by s (s = 1 on the published 4×4 grid; at
    pixel scale 8, 32×32 frames, the default D = 16 is a 4×4 image of 8×8 blocks)."""
    h, w = image_size
    s = round(math.sqrt(h * w / latent_dim))
    if s < 1 or h % s or w % s or (h // s) * (w // s) != latent_dim:
        raise ValueError(
            f"the FDM reads the latent as an image of the frame's shape, so latent_dim must be "
            f"(H/s)·(W/s) for an integer s dividing H = {h} and W = {w} (e.g. {h * w}), "
            f"got {latent_dim}"
        )
    return s


class PublishedEncoder(EnsembleModule):
    """The per-frame encoder: ``(M, B, C, H, W) -> (M, B, H·W/4)``.

    conv3×3(C→w) → ReLU → BN → conv3×3(w→w) → ReLU → BN → AvgPool 2 → conv3×3(w→1) →
    ReLU → flatten: 4 numbers for a 4×4 frame, one per 2×2 quarter (position-aware).
    """

    def __init__(self, m: int, channels: int, width: int, image_size: tuple[int, int]):
        super().__init__(m)
        half = (image_size[0] // 2, image_size[1] // 2)
        self.conv1, self.bn1 = _conv(m, channels, width, image_size), EnsembleBatchNorm2d(m, width)
        self.conv2, self.bn2 = _conv(m, width, width, image_size), EnsembleBatchNorm2d(m, width)
        self.conv3 = _conv(m, width, 1, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn1(F.relu(self.conv1(x)))
        h = self.bn2(F.relu(self.conv2(h)))
        return F.relu(self.conv3(avg_pool2(h))).flatten(2)


class PublishedUNet(EnsembleModule):
    """The FDM's "UNet" as released: ``(M, B, C_in, H, W) -> (M, B, C_out, H, W)``, output ≥ 0.

    conv(C_in→w) → ReLU → BN → conv(w→w) → ReLU → BN → AvgPool 2 → conv(w→w) → ReLU → BN →
    nearest upsample ×2 → conv(w→w) → ReLU → BN → conv(w→C_out) → ReLU; 3×3 convolutions with
    zero padding. The released model has **no skip connection**: everything ô' needs passes
    the pooled half-resolution map. ``skip`` (a variant) concatenates the full-resolution map
    after the second convolution to the upsampled one (the fourth convolution is 2w→w).
    """

    def __init__(
        self,
        m: int,
        c_in: int,
        c_out: int,
        width: int,
        image_size: tuple[int, int],
        skip: bool = False,
    ):
        super().__init__(m)
        half = (image_size[0] // 2, image_size[1] // 2)
        self.skip = skip
        self.conv1, self.bn1 = _conv(m, c_in, width, image_size), EnsembleBatchNorm2d(m, width)
        self.conv2, self.bn2 = _conv(m, width, width, image_size), EnsembleBatchNorm2d(m, width)
        self.conv3, self.bn3 = _conv(m, width, width, half), EnsembleBatchNorm2d(m, width)
        self.conv4 = _conv(m, (2 if skip else 1) * width, width, image_size)
        self.bn4 = EnsembleBatchNorm2d(m, width)
        self.out = _conv(m, width, c_out, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.bn2(F.relu(self.conv2(self.bn1(F.relu(self.conv1(x))))))
        h = upsample2(self.bn3(F.relu(self.conv3(avg_pool2(full)))))
        if self.skip:
            h = torch.cat([h, full], dim=2)
        h = self.bn4(F.relu(self.conv4(h)))
        return F.relu(self.out(h))


class PublishedVQNet(nn.Module):
    """Encoder, IDM head, codebook (M, K, D) and FDM of M copies; copy m's initial weights
    and codes depend only on ``seeds[m]``."""

    def __init__(self, config: PublishedVQConfig, obs_shape: tuple[int, int, int], seeds):
        super().__init__()
        c, h, w = obs_shape
        m, d, width = len(seeds), config.latent_dim, config.mlp_width
        self.image_size = (h, w)
        self.latent_scale = latent_scale(config.latent_dim, (h, w))
        self.encoder = PublishedEncoder(m, c, config.encoder_width, (h, w))
        features = 2 * (h // 2) * (w // 2)
        self.hidden1 = EnsembleLinear(m, features, width)
        self.hidden2 = EnsembleLinear(m, width, width)
        self.head = EnsembleLinear(m, width, d)
        self.fdm_unet = PublishedUNet(m, c + 1, c, config.fdm_width, (h, w), skip=config.fdm_skip)
        self.codebook = nn.Parameter(torch.empty(m, config.codebook_size, d))
        reset_copies(self, seeds, lambda seed: torch_generator(seed, Stream.MODEL_INIT))
        for index, seed in enumerate(seeds):
            with torch.no_grad():
                codes = torch.randn(
                    config.codebook_size, d, generator=torch_generator(seed, Stream.CODEBOOK)
                )
                self.codebook[index] = codes

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent: (M, B, C, H, W) × 2 -> (M, B, D). The encoder is called
        on o and on o' separately, as released (its batch norm sees each set on its own)."""
        h = torch.cat([self.encoder(o), self.encoder(o_next)], dim=-1)
        return self.head(F.relu(self.hidden2(F.relu(self.hidden1(h)))))

    def nearest(self, latent: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code: (M, B, D) -> (M, B) int64."""
        codebook = self.codebook.detach()
        distance = torch.baddbmm(
            codebook.pow(2).sum(-1)[:, None, :], latent.detach(), codebook.transpose(1, 2), alpha=-2
        )
        return distance.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors of indices (M, B) -> (M, B, D) (differentiable in the codebook)."""
        models = torch.arange(self.codebook.shape[0], device=codes.device)
        return self.codebook[models[:, None], codes]

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ô' from o (M, B, C, H, W) and z (M, B, D) read as a one-channel image: H×W on
        the 4×4 grid; (H/s)×(W/s), each value an s×s block, at pixel scale s."""
        s = self.latent_scale
        z_map = z.reshape(*z.shape[:2], 1, self.image_size[0] // s, self.image_size[1] // s)
        if s > 1:
            z_map = z_map.repeat_interleave(s, dim=-1).repeat_interleave(s, dim=-2)
        return self.fdm_unet(torch.cat([o, z_map], dim=2))

    def forward(self, o: torch.Tensor, o_next: torch.Tensor) -> VQPrediction:
        latent = self.idm(o, o_next)
        codes = self.nearest(latent)
        return VQPrediction(self.fdm(o, self.lookup(codes)), codes, latent)

    @torch.no_grad()
    def reset_dead_codes(
        self,
        latent: torch.Tensor,
        counts: torch.Tensor,
        marks: torch.Tensor,
        config: PublishedVQConfig,
        generators: list[torch.Generator],
    ) -> torch.Tensor:
        """One dead-code check of the batch of ``latent`` (M, B, D), whose chosen codes
        ``counts`` (M, K); ``marks`` (M, K) is updated in place. A code chosen by fewer than
        ``dead_code_share`` of the batch is dead. Returns the number reset per copy, (M,).

        ``released``: a dead code gets a mark; marks accumulate (only a reset clears them);
        a code with more than ``dead_code_checks`` marks moves to the pre-quantised latent
        of the batch row with the code's own index. ``every-update`` (a variant): ``marks``
        counts dead checks in a row (a used code clears it), and a code past
        ``dead_code_checks`` moves to a random row of the batch, drawn from its copy's
        generator on the CPU."""
        dead = counts < config.dead_code_share * latent.shape[1]
        if config.reset_schedule == "released":
            marks.add_(dead.long())
        else:
            marks.add_(1).masked_fill_(~dead, 0)
        reset = marks > config.dead_code_checks
        if config.reset_schedule == "released":  # without reading the device (no sync)
            rows = torch.arange(reset.shape[1], device=latent.device) % latent.shape[1]
            self.codebook.copy_(torch.where(reset[..., None], latent[:, rows], self.codebook))
            marks.masked_fill_(reset, 0)
        elif reset.any():
            for m in torch.nonzero(reset.any(-1)).flatten().tolist():
                ks = torch.nonzero(reset[m]).flatten()
                rows = torch.randint(latent.shape[1], (len(ks),), generator=generators[m])
                self.codebook[m, ks] = latent[m, rows.to(latent.device)]
                marks[m, ks] = 0
        return reset.sum(-1)


@register_lam("vq-published")
class PublishedVQLAM(VQLAM):
    """The published grid VQ LAM of Table 1, as released.

    Per-frame CNN with batch norm, MLP IDM, 5 codes moved only by the dead-code reset,
    FDM without a skip on [o, z as 4×4] (docs/protocols.md, "Grid VQ LAM")."""

    Config = PublishedVQConfig
    kinds = ("grid",)
    # Table 1's small budget's batch (its 1,024: ~7× slower per update); not on images,
    # where its full-resolution 64-channel convolutions are dozens of times slower
    cpu_sizes = {"all": {"batch_size": 128}, "image": None}
    pipeline_defaults = {}

    def build(self) -> nn.Module:
        c = self.config
        self._check_codebook()
        shape = self.spec.obs_shape
        if len(shape) != 3 or shape[1] % 2 or shape[2] % 2:
            raise ValueError(
                f"the published VQ LAM needs images (C, H, W), H and W even, got {shape}"
            )
        latent_scale(c.latent_dim, shape[1:])  # raises unless the latent fits the frame
        return PublishedVQNet(c, shape, self.seeds)

    def codebook(self) -> torch.Tensor:
        return self.module.codebook.detach()

    def fit(self, data, progress: bool = False) -> None:
        c, net, m = self.config, self.module, self.num_copies
        self._check_labels(data)
        released_labels = c.action_prediction and c.label_mechanism == "detached"
        # As released the codes are no optimiser parameter: the codebook loss moves nothing.
        net.codebook.requires_grad_(c.learn_codebook)
        optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=c.lr)
        augment_generators = [torch_generator(s, Stream.AUGMENT) for s in self.seeds]
        # The reset draws follow the initial codes on each copy's CODEBOOK stream.
        code_generators = [torch_generator(s, Stream.CODEBOOK) for s in self.seeds]
        for g in code_generators:
            torch.randn(c.codebook_size, c.latent_dim, generator=g)
        # An epoch of the released code: one random frame pair of every training trajectory
        # (data that do not say how many trajectories they hold: one update), the last batch
        # partial (3,800 pairs at 1,024: 3 full batches and 728). Here every batch is full,
        # and the dead-code check reads the first `last_batch` rows of the epoch's last one.
        trajectories = getattr(data, "train_episodes", c.batch_size)
        epoch = math.ceil(trajectories / c.batch_size)
        last_batch = trajectories - (epoch - 1) * c.batch_size
        marks = torch.zeros(m, c.codebook_size, dtype=torch.long, device=self.device)
        counts_window = torch.zeros(m, c.codebook_size, device=self.device)
        reset_window = torch.zeros(m, device=self.device)
        score = TrainingScore(data, c.steps, c.score_updates, c.score_dataset, self.device)
        log = TrainingLog(self, c.steps, c.log_every, progress, unit="update")
        for step in range(c.steps):
            batch = data.sample(c.batch_size)  # labelled examples at their natural rate
            if step == 0:
                self.check_batch(batch, c.batch_size)
            idm_o, idm_next, fdm_o, target = vq_inputs(
                batch,
                c,
                augment_generators,
                nonzero_shift=True,  # the text: left or right, never none
                fdm_reads_idm=c.noise_copy_fdm_input == "idm",  # a hypothesis (see its help)
            )
            latent = net.idm(idm_o, idm_next)
            codes = net.nearest(latent)
            committed = codes
            if c.action_prediction and not released_labels:
                # The straight-through variant: a labelled example's action code replaces
                # the chosen one on every path (FDM input, codebook and commitment terms).
                committed = torch.where(batch.label_mask, batch.actions, codes)
            code = net.lookup(committed)
            z = latent + (code - latent).detach()  # straight-through estimator
            codebook_loss = (latent.detach() - code).pow(2).flatten(1).mean(-1)
            commitment = (latent - code.detach()).pow(2).flatten(1).mean(-1)
            pull = torch.zeros_like(commitment)
            fed = z
            if released_labels:
                # A labelled example's FDM gets its action's code, detached (no reconstruction
                # gradient reaches the IDM from it); the straight-through output is pulled
                # toward that code. Codebook and commitment terms stay on the chosen code.
                action_code = net.lookup(batch.actions.clamp(min=0)).detach()
                fed = torch.where(batch.label_mask[..., None], action_code, z)
                pull = labelled_mean((z - action_code).pow(2).mean(-1), batch.label_mask)
            elif c.action_prediction:
                pull = action_loss(latent, net.codebook, batch.actions, batch.label_mask)
            pred = net.fdm(fdm_o, fed)
            recon = (pred - target).pow(2).flatten(1).mean(-1)
            loss = recon + c.codebook_weight * codebook_loss + c.commitment_weight * commitment
            loss = loss + c.action_weight * pull
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()  # summed over copies: each copy gets its own gradient
            optimiser.step()
            score.record(step, pred, target, net, c.batch_size)  # the published losses
            counts = F.one_hot(codes, c.codebook_size).sum(1).float()
            if c.reset_schedule == "released":
                checked = (step + 1) % epoch == 0 and (step // epoch) % c.reset_epochs == 0
            else:
                checked = True
            if checked and not released_labels:  # no reset at all while labels are used
                rows = last_batch if c.reset_schedule == "released" else c.batch_size
                seen = counts if rows == c.batch_size else F.one_hot(
                    codes[:, :rows], c.codebook_size).sum(1).float()  # fmt: skip
                reset_window += net.reset_dead_codes(
                    latent.detach()[:, :rows], seen, marks, c, code_generators
                )
            counts_window += counts
            log.add(
                loss=loss,
                fdm_loss=recon,
                codebook_loss=codebook_loss,
                commitment_loss=commitment,
                action_loss=pull,
            )
            self._log_codes(log, step, counts_window, reset_window)
        score.save(self.history)

    def encode(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """The quantised latent: the chosen code's vector (M, N, D)."""
        net = self.module
        return net.lookup(net.nearest(net.idm(o, o_far))).detach()
