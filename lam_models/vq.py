"""VQ latent action model for the 4×4 grid (``GridLAM-v0``): config, model, trainer, eval.

The model (SPEC, "VQ LAM (grid)")::

    latent = IDM(Aug1(o), Aug1(o'))                 CNN over (o, o') stacked as 2 channels
    z      = quantise(latent)                        nearest of K codes, straight-through
    ô'     = FDM(Aug2(o), z)                         tiny UNet, z broadcast as extra channels
    loss   = ‖ô' − Aug2(o')‖²  +  β ‖latent − sg(z)‖²  +  λ_a ‖latent − sg(e_a)‖² (labelled)

- Codebook: EMA updates (no codebook loss), dead codes revived onto random encoder
  outputs of the current batch after ``dead_code_steps`` unused updates; usage and
  perplexity are logged in the history. See :class:`lam_models.nn.VectorQuantiser`.
- Aug1, Aug2: each a random shift of the image by −1, 0 or +1 columns (uniform), with
  periodic wrap; Aug1 is one shift shared by both IDM inputs of a transition, Aug2 an
  independent one shared by the FDM input and its target (:func:`augment_transitions`).
  The identity is among the shifts so the unshifted (test-time) images stay in the
  training distribution.
- Action prediction (``action_weight`` = λ_a > 0): code k is pre-assigned to action k,
  and on labelled transitions (``label_mask``) the pre-quantisation latent is pulled
  toward its true action's code e_a; those transitions are also quantised to e_a (for
  the FDM and the codebook's EMA), so code k's vector is fed by action k's latents.
  Unlabelled actions are −1 and never indexed. With few labels this does not yet
  align every seed reliably (see the tests).

Several seeds train as one batched computation (:func:`train_vq_lams`): the networks
hold M independent copies (batched matrix products; see :mod:`lam_models.nn`), every loss
is summed over copies, and Adam is elementwise, so each copy's updates are exactly those
it would get alone. On a 2-core CPU, 5 copies together run ≈ 2.3× faster than 5
sequential runs (``benchmarks/train_vq.py``: 268 vs 115 model-updates/s at batch 128,
one thread).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from lam_models.nn import ConvEncoder, EnsembleModule, TinyUNet, VectorQuantiser

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""(o (B,1,4,4) float32, o' (B,1,4,4), a (B,) int64, −1 unlabelled, label_mask (B,) bool)."""

SampleBatch = Callable[[int], Batch]
"""``sample_batch(step) -> (o, o_next, a, label_mask)``."""


@dataclass(frozen=True)
class VQLAMConfig:
    """Hyper-parameters of the grid VQ LAM and its trainer.

    Defaults are sized for a 2-core CPU: 16k updates of 5 seeds trained together take
    about 5 minutes on one core with ``torch.set_num_threads(1)`` (≈ 54 batched
    updates/s, ≈ 270 model-updates/s), so two such runs can share the two cores.
    """

    codebook_size: int = 5  # K, number of codes
    code_dim: int = 8  # D, dimension of the latent and the codes
    idm_width: int = 16  # channels of the IDM's CNN and MLP
    fdm_width: int = 8  # channels of the FDM's UNet (2× at its 2×2 level)
    obs_shape: tuple[int, int, int] = (1, 4, 4)  # (C, H, W); H and W even
    commitment_weight: float = 0.25  # β
    ema_decay: float = 0.99  # codebook EMA decay γ
    dead_code_steps: int = 100  # revive a code unused for this many consecutive updates
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 128  # transitions per update (per model)
    steps: int = 16_000  # number of updates
    augment: bool = False  # random ±1-column periodic shifts (Aug1, Aug2)
    action_weight: float = 0.0  # λ_a; > 0 pre-assigns code k to action k
    num_actions: int = 5  # size of the discrete action space (for action prediction)
    seed: int = 0  # seed of :func:`train_vq_lam` (train_vq_lams takes a list)
    log_every: int = 100  # history resolution, in updates

    def __post_init__(self) -> None:
        for name in (
            "codebook_size",
            "code_dim",
            "idm_width",
            "fdm_width",
            "dead_code_steps",
            "batch_size",
            "steps",
            "num_actions",
            "log_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("commitment_weight", "action_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.ema_decay, int | float) and 0 < self.ema_decay < 1):
            raise ValueError(
                f"ema_decay must be in the open interval (0, 1), got {self.ema_decay!r}"
            )
        shape = tuple(self.obs_shape)
        if (
            len(shape) != 3
            or not all(isinstance(s, int) and s >= 1 for s in shape)
            or shape[1] % 2
            or shape[2] % 2
        ):
            raise ValueError(
                f"obs_shape must be (C, H, W) with positive integers and H, W even, "
                f"got {self.obs_shape!r}"
            )
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False, got {self.augment!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.action_weight > 0 and self.codebook_size < self.num_actions:
            raise ValueError(
                f"action prediction (action_weight={self.action_weight!r}) pre-assigns code k "
                f"to action k, so codebook_size must be >= num_actions={self.num_actions}, "
                f"got codebook_size={self.codebook_size!r}"
            )


class VQLAMPrediction(NamedTuple):
    """Output of :func:`predict`; a leading model axis (M, ...) when M > 1."""

    pred_next: torch.Tensor  # ô', (N, C, H, W)
    codes: torch.Tensor  # chosen code index, (N,) int64
    latent: torch.Tensor  # pre-quantisation IDM output, (N, D)


class VQLAM(nn.Module):
    """IDM (CNN + vector quantiser) and FDM (tiny UNet), as M independent copies.

    Built from ``seeds`` (one per copy); copy m's initial weights depend only on
    ``seeds[m]``. Methods work in the ensemble layout ``(M, B, ...)``; use
    :func:`predict` for single images ``(N, C, H, W)``.
    """

    def __init__(self, config: VQLAMConfig, seeds: Sequence[int] | None = None) -> None:
        super().__init__()
        seeds = [config.seed] if seeds is None else list(seeds)
        if not seeds:
            raise ValueError("seeds must hold at least one seed, got an empty sequence")
        self.config, self.seeds, self.num_models = config, seeds, len(seeds)
        c, h, w = config.obs_shape
        m = self.num_models
        self.idm_encoder = ConvEncoder(m, 2 * c, config.idm_width, config.code_dim, (h, w))
        self.quantiser = VectorQuantiser(
            m, config.codebook_size, config.code_dim, config.ema_decay, config.dead_code_steps
        )
        self.fdm_unet = TinyUNet(m, c + config.code_dim, c, config.fdm_width, (h, w))
        for index, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(seed)
            for module in self.modules():
                if isinstance(module, EnsembleModule):
                    module.reset_copy(index, generator)

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent: (M, B, C, H, W) × 2 -> (M, B, D)."""
        return self.idm_encoder(torch.cat([o, o_next], dim=2))

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ô' from o (M, B, C, H, W) and z (M, B, D), z broadcast over the image."""
        z_map = z[..., None, None].expand(*z.shape, *o.shape[-2:])
        return self.fdm_unet(torch.cat([o, z_map], dim=2))

    def forward(
        self, o: torch.Tensor, o_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ô', codes, latent) without augmentation, in the (M, B, ...) layout."""
        latent = self.idm(o, o_next)
        codes = self.quantiser.nearest(latent)
        z = self.quantiser.lookup(codes)
        return self.fdm(o, z), codes, latent

    def split(self) -> list[VQLAM]:
        """The M copies as M independent single models (copies of the weights)."""
        state = self.state_dict()
        models = []
        for index, seed in enumerate(self.seeds):
            single = VQLAM(self.config, [seed])
            single.load_state_dict({k: v[index : index + 1].clone() for k, v in state.items()})
            models.append(single)
        return models


# --------------------------------------------------------------------------- augmentation


def shift_columns(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each image of ``x`` (..., C, H, W) along W by its own integer shift.

    ``shifts`` has shape ``x.shape[:-3]``; +1 moves content one column right, with the
    last column wrapping round to the first (as ``torch.roll(x, 1, dims=-1)``).
    """
    width = x.shape[-1]
    source = (torch.arange(width, device=x.device) - shifts[..., None]) % width
    source = source[..., None, None, :].expand(x.shape)
    return torch.gather(x, -1, source)


def draw_shifts(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Column shifts uniform over {−1, 0, +1}."""
    return torch.randint(-1, 2, shape, generator=generator)


def augment_transitions(
    o: torch.Tensor, o_next: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Aug1(o), Aug1(o'), Aug2(o), Aug2(o')) for a batch of transitions (N, C, H, W).

    Aug1: one shift per transition shared by the two IDM inputs; Aug2: an independent
    shift per transition shared by the FDM input and its target.
    """
    idm_shift = draw_shifts(o.shape[:-3], generator)
    fdm_shift = draw_shifts(o.shape[:-3], generator)
    return (
        shift_columns(o, idm_shift),
        shift_columns(o_next, idm_shift),
        shift_columns(o, fdm_shift),
        shift_columns(o_next, fdm_shift),
    )


# --------------------------------------------------------------------------- training


def _perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of code-usage counts (..., K)."""
    p = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum(-1))


def action_loss(
    latent: torch.Tensor, codebook: torch.Tensor, actions: torch.Tensor, label_mask: torch.Tensor
) -> torch.Tensor:
    """Mean over labelled transitions of ‖latent − sg(e_a)‖² / D, per copy: (M,).

    ``latent`` (M, B, D), ``codebook`` (M, K, D), ``actions`` (M, B) with −1 where
    unlabelled, ``label_mask`` (M, B). Copies with no labelled transition get 0.
    """
    safe_actions = torch.where(label_mask, actions, torch.zeros_like(actions))
    models = torch.arange(latent.shape[0], device=latent.device)
    target = codebook[models[:, None], safe_actions].detach()
    error = (latent - target).pow(2).mean(-1) * label_mask
    return error.sum(1) / label_mask.sum(1).clamp(min=1)


def _stack_batches(batches: list[Batch], config: VQLAMConfig) -> Batch:
    """Per-model batches -> (M, B, ...) tensors, checking shapes and labels."""
    o, o_next, actions, label_mask = (torch.stack(parts) for parts in zip(*batches, strict=True))
    expected = (len(batches), config.batch_size, *config.obs_shape)
    if tuple(o.shape) != expected or tuple(o_next.shape) != expected:
        raise ValueError(
            f"sample_batch must return o and o_next of shape "
            f"{(config.batch_size, *config.obs_shape)}, got {tuple(batches[0][0].shape)} "
            f"and {tuple(batches[0][1].shape)}"
        )
    label_mask = label_mask.to(torch.bool)
    labelled = actions[label_mask]
    if labelled.numel() and (labelled.min() < 0 or labelled.max() >= config.num_actions):
        raise ValueError(
            f"labelled actions must lie in [0, {config.num_actions}), got values "
            f"{labelled.min().item()}..{labelled.max().item()}"
        )
    return o.float(), o_next.float(), actions.long(), label_mask


def train_vq_lams(
    config: VQLAMConfig,
    seeds: Sequence[int],
    sample_batch: SampleBatch | Sequence[SampleBatch],
    progress: bool = False,
) -> tuple[list[VQLAM], list[dict[str, list[float]]]]:
    """Train one VQ LAM per seed, all M together as one batched computation.

    ``sample_batch(step)`` returns ``(o, o_next, a, label_mask)`` of shapes (B, C, H, W),
    (B, C, H, W), (B,) int64 (−1 where unlabelled) and (B,) bool, B = config.batch_size.
    Give one callable per seed, or one callable that is then called once per seed per
    step (in seed order), so a streaming sampler gives each model its own fresh data.

    Returns the M trained models (each a single-copy :class:`VQLAM`) and their histories:
    per ``log_every`` window, ``step``, the window means of ``loss``, ``fdm_loss``,
    ``commitment_loss`` and ``action_loss``, the ``perplexity`` and ``codes_used`` of
    the codes chosen in the window, the number of codes ``revived`` in the window, and
    the cumulative ``seconds``.
    """
    seeds = list(seeds)
    samplers = list(sample_batch) if isinstance(sample_batch, Sequence) else None
    if samplers is not None and len(samplers) != len(seeds):
        raise ValueError(
            f"give one sample_batch per seed: got {len(samplers)} for {len(seeds)} seeds"
        )
    model = VQLAM(config, seeds)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    # Each copy draws its augmentations and revivals from its own stream, so copy m
    # trains as it would alone with seed seeds[m].
    generators = [torch.Generator().manual_seed(seed + 1_000_003) for seed in seeds]
    num_models, k = len(seeds), config.codebook_size

    keys = ("loss", "fdm_loss", "commitment_loss", "action_loss")
    histories: list[dict[str, list[float]]] = [
        {key: [] for key in ("step", *keys, "perplexity", "codes_used", "revived", "seconds")}
        for _ in seeds
    ]
    window = {key: torch.zeros(num_models) for key in keys}
    window_counts = torch.zeros(num_models, k)
    window_revived = torch.zeros(num_models, dtype=torch.long)
    window_steps = 0
    start = time.perf_counter()

    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"VQ LAM ×{num_models}", unit="update")
    for step in steps:
        if samplers is None:
            batches = [sample_batch(step) for _ in seeds]
        else:
            batches = [sampler(step) for sampler in samplers]
        o, o_next, actions, label_mask = _stack_batches(batches, config)

        if config.augment:
            idm_shift = torch.stack([draw_shifts((config.batch_size,), g) for g in generators])
            fdm_shift = torch.stack([draw_shifts((config.batch_size,), g) for g in generators])
            idm_o, idm_o_next = shift_columns(o, idm_shift), shift_columns(o_next, idm_shift)
            fdm_o, target = shift_columns(o, fdm_shift), shift_columns(o_next, fdm_shift)
        else:
            idm_o, idm_o_next, fdm_o, target = o, o_next, o, o_next

        latent = model.idm(idm_o, idm_o_next)
        if step == 0:
            model.quantiser.init_from_batch(latent.detach(), generators)
        codes = model.quantiser.nearest(latent.detach())
        if config.action_weight > 0:
            # Pre-assignment: a labelled transition uses (and feeds the EMA of) code a.
            codes = torch.where(label_mask, actions, codes)
        code_vectors = model.quantiser.lookup(codes)  # a buffer: no gradient
        z = latent + (code_vectors - latent).detach()  # straight-through estimator
        pred = model.fdm(fdm_o, z)

        # Per-copy losses (M,), summed over copies so each copy gets its own gradient.
        fdm_loss = (pred - target).pow(2).flatten(1).mean(-1)
        commitment = (latent - code_vectors).pow(2).flatten(1).mean(-1)
        losses = {"fdm_loss": fdm_loss, "commitment_loss": commitment}
        loss = fdm_loss + config.commitment_weight * commitment
        if config.action_weight > 0:
            losses["action_loss"] = action_loss(
                latent, model.quantiser.codebook, actions, label_mask
            )
            loss = loss + config.action_weight * losses["action_loss"]
        losses["loss"] = loss

        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        counts, revived = model.quantiser.update(latent.detach(), codes, generators)

        for key, value in losses.items():
            window[key] += value.detach()
        window_counts += counts
        window_revived += revived
        window_steps += 1
        if window_steps == config.log_every or step == config.steps - 1:
            seconds = time.perf_counter() - start
            perplexity = _perplexity(window_counts)
            for m, history in enumerate(histories):
                history["step"].append(step + 1)
                for key in keys:
                    history[key].append(window[key][m].item() / window_steps)
                history["perplexity"].append(perplexity[m].item())
                history["codes_used"].append(int((window_counts[m] > 0).sum()))
                history["revived"].append(int(window_revived[m]))
                history["seconds"].append(seconds)
            for value in window.values():
                value.zero_()
            window_counts.zero_()
            window_revived.zero_()
            window_steps = 0
            if progress:
                steps.set_postfix(
                    loss=f"{histories[0]['loss'][-1]:.4f}",
                    perplexity=f"{histories[0]['perplexity'][-1]:.2f}",
                )
    model.eval()
    return model.split(), histories


def train_vq_lam(
    config: VQLAMConfig, sample_batch: SampleBatch, progress: bool = False
) -> tuple[VQLAM, dict[str, list[float]]]:
    """Train one VQ LAM with ``config.seed``; see :func:`train_vq_lams` for the arguments."""
    models, histories = train_vq_lams(config, [config.seed], [sample_batch], progress)
    return models[0], histories[0]


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(
    model: VQLAM, o: torch.Tensor, o_next: torch.Tensor, batch_size: int = 8192
) -> VQLAMPrediction:
    """ô', chosen codes and pre-quantisation latents for held-out transitions.

    ``o``, ``o_next``: (N, C, H, W) float, the same transitions for every copy. Outputs
    are (N, ...) for a single model and (M, N, ...) for an ensemble of M copies. No
    augmentation; the codebook is not updated.
    """
    outputs = []
    for begin in range(0, o.shape[0], batch_size):
        chunk = slice(begin, begin + batch_size)
        expand = (model.num_models, -1, -1, -1, -1)
        outputs.append(model(o[chunk].float().expand(expand), o_next[chunk].float().expand(expand)))
    pred, codes, latent = (torch.cat(parts, dim=1) for parts in zip(*outputs, strict=True))
    if model.num_models == 1:
        pred, codes, latent = pred[0], codes[0], latent[0]
    return VQLAMPrediction(pred_next=pred, codes=codes, latent=latent)


__all__ = [
    "VQLAM",
    "VQLAMConfig",
    "VQLAMPrediction",
    "action_loss",
    "augment_transitions",
    "draw_shifts",
    "predict",
    "shift_columns",
    "train_vq_lam",
    "train_vq_lams",
]
