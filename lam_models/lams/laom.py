"""LAOM as published: continuous latent, a future offset drawn per example, prediction of
the EMA target's embedding of the next observation.

Nikulin et al., "Latent action learning requires supervision in the presence of
distractors" (docs/protocols.md, "LAOM"). For a transition at t, with a future offset j drawn
uniformly from 1…k_max per example::

    s_t, s_{t+j} = φ(Aug(o_t)), φ(Aug(o_{t+j}))        one shared encoder (ResNet CNN)
    z            = IDM(s_t, s_{t+j})                    continuous latent, no quantisation
    ŝ_{t+1}      = FDM(sg(s_t), z)                      prediction in latent space
    loss         = ‖ŝ_{t+1} − φ̄(Aug(o_{t+1}))‖² / d_s
                   + λ_a ‖E z(o_t, o_{t+1}) − a_t‖² / d_a   (a separate labelled batch)
    φ̄            ← (1 − τ) φ̄ + τ φ                       after every update; no gradient

- φ: :class:`lam_models.nn.ResNetEncoder` (IMPALA-style stages of convolution, max-pool
  and residual blocks, ending in a LayerNorm) on images; an MLP ending in a LayerNorm on
  vectors (the linear environment). φ̄, the target encoder, is its exponential moving
  average with rate τ = ``target_tau`` (0.001 as published: φ̄ moves 0.1% of the way to φ
  per update).
- The IDM sees o_t and o_{t+j} with j ~ U{1, …, k_max} per example (``k_max`` = 10 as
  published; beyond the episode's end o_{t+j} is its last frame); the FDM always predicts
  the embedding of o_{t+1}. Its observation input is detached, so φ learns only through
  the IDM.
- Every frame (o_t, o_{t+j}, o_{t+1}) is augmented on its own
  (:func:`lam_models.augment.augment_frames`): a random shift of up to ``shift`` pixels
  each way, edges replicated, on images; an offset κ on vectors.
- E: a linear head z → a (one-hot on the grid), trained with weight λ_a
  (``action_weight``, 0.001 as published) on a separate batch of ``label_batch_size``
  (128) labelled transitions (o_t, o_{t+1}) every update, so it learns even when 0.5% of
  the data is labelled. Adam gives E's own weights full-size steps whatever λ_a is; λ_a
  scales how much the labels shape z.
- Relabelling (:attr:`LAOMLAM.lookahead` = 1): z(o_t, o_{t+1}).

The package's earlier LAOM-style model (an MLP encoder, a fixed look-ahead k, the FDM
predicting φ̄(o_{t+k}), one augmentation shared by a pair, EMA decay 0.99, d_z = 8) is
the variant ``laom-mlp`` (:mod:`lam_models.lams.laom_mlp`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lam_envs.utils.config import Checked, option
from lam_models.augment import augment_frames, mixed_augment_frames
from lam_models.encoders import StridedConvEncoder
from lam_models.lams import fields
from lam_models.lams.base import LAM, TrainingLog, register_lam
from lam_models.nn import (
    EnsembleLinear,
    EnsembleMLP,
    EnsembleModule,
    ResNetEncoder,
    reset_copies,
)
from lam_models.seeding import Stream, torch_generator
from lam_models.split import DataSplit, Transitions, labelled_mean

__all__ = [
    "LAOMConfig",
    "LAOMLAM",
    "LAOMNet",
    "TargetEncoderNet",
    "action_head_loss",
    "action_regression_targets",
    "make_encoder",
]


#: ``variant``: the authors' LAOM (the default) and the package's earlier one.
LAOM_VARIANTS = ("authors", "package")
#: What ``variant="package"`` sets: the package's laom before it followed the authors' code.
PACKAGE_VARIANT = {
    "encoder": "resnet",
    "frame_stack": 1,
    "labelled_offset": "next",
    "augmentation": "shift",
}
SCALES = ("cpu", "paper")
#: What ``scale="paper"`` sets: the released run's sizes (dunnolab/laom,
#: configs/laom-labels.yaml: encoder_scale 6 × channels (16, 32, 32), 2 residual blocks,
#: heads of 1,024, latent 8,192, batch 256, learning rate 1e-4; the labelled batch 128).
PAPER_SIZES = {
    "channels": (96, 192, 192),
    "blocks": 2,
    "width": 1024,
    "latent_dim": 8192,
    "batch_size": 256,
    "label_batch_size": 128,
    "lr": 1e-4,
}


@dataclass
class LAOMConfig(fields.ActionHead, Checked):
    """Hyper-parameters of the published LAOM and its trainer. Defaults are the published
    ones where docs/protocols.md gives them (k_max, τ, d_z, per-frame augmentation, λ_a, the
    labelled batch); the encoder's and MLPs' sizes and the optimiser's are the package's."""

    latent_dim: int = option(
        8192, "d_z, dimension of the continuous latent z (published 8,192)", low=1
    )
    embed_dim: int = option(256, "d_s, dimension of the encoder's output (the FDM's target)", low=1)
    channels: tuple[int, ...] = fields.channels()
    blocks: int = fields.blocks()
    stem: int = fields.stem("the published encoder")
    width: int = option(256, "hidden units of the IDM and FDM MLPs (and the vector encoder)", low=1)
    k_max: int = option(10, "the IDM's future offset j is uniform in 1..k_max per example", low=1)
    target_tau: float = option(
        0.001, "τ: the target encoder moves τ of the way to φ per update", above=0, high=1
    )
    augment: bool = fields.augment_frames()
    shift: int = fields.shift()
    kappa: float = fields.kappa()
    action_head: bool = fields.action_head()
    action_weight: float = option(
        0.001, "λ_a, weight of the head's loss (published 0.001)", low=0.0
    )
    label_batch_size: int = fields.label_batch_size(128)
    lr: float = fields.lr(3e-4)
    batch_size: int = fields.batch_size()
    steps: int = fields.steps(5000)
    log_every: int = fields.log_every()
    variant: str = option(
        "authors",
        "authors: as the authors' code runs it; package: the package's earlier laom (sets "
        "encoder=resnet, frame_stack=1, labelled_offset=next, augmentation=shift)",
        choices=LAOM_VARIANTS,
    )
    encoder: str = option(
        "conv",
        "conv: strided-conv stages flattened, no LayerNorm (the authors'); resnet: max-pool "
        "stages, a linear map to embed_dim and a LayerNorm (the package's)",
        choices=("conv", "resnet"),
    )
    frame_stack: int = option(3, "frames o_{t-h+1..t} stacked on channels (images)", low=1)
    labelled_offset: str = option(
        "future",
        "the head's pair: future (o_t, o_{t+j}), j drawn as the IDM's; next (o_t, o_{t+1})",
        choices=("future", "next"),
    )
    augmentation: str = option(
        "mixed",
        "images: mixed (per image one of shift/rotate/perspective/two/none) or shift",
        choices=("mixed", "shift"),
    )
    rotate_degrees: float = option(90.0, "largest rotation of the mixed augmentation", low=0.0)
    perspective: float = option(
        0.5, "distortion of the mixed augmentation's perspective warp", low=0.0, high=1.0
    )
    scale: str = option(
        "cpu", "cpu: the sizes given; paper: the authors' released sizes", choices=SCALES
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant == "package":
            for name, value in PACKAGE_VARIANT.items():
                setattr(self, name, value)
        if self.scale == "paper":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name, value in PAPER_SIZES.items():
                if getattr(self, name) not in (defaults[name], value):
                    raise ValueError(
                        f"scale='paper' sets {name} = {value!r}; got {name} = "
                        f"{getattr(self, name)!r} (give scale='cpu' to choose sizes)"
                    )
                setattr(self, name, value)


def make_encoder(c: Any, m: int, obs_shape: tuple[int, ...]) -> EnsembleModule:
    """φ for M copies: the ResNet CNN on images (C, H, W), an MLP on vectors; both end in
    a LayerNorm without affine parameters. ``(M, B, *obs_shape) -> (M, B, embed_dim)``."""
    if len(obs_shape) == 3:
        return ResNetEncoder(
            m, obs_shape[0], c.channels, c.blocks, c.embed_dim, obs_shape[1:], c.stem
        )
    return _Flat(EnsembleMLP(m, math.prod(obs_shape), c.width, c.embed_dim, norm=True))


def laom_encoder(c: LAOMConfig, m: int, obs_shape: tuple[int, ...]) -> EnsembleModule:
    """φ of ``laom``: on images with ``frame_stack`` h frames stacked on channels, the
    authors' strided-conv encoder (``encoder="conv"``) or the package's ResNet
    (:func:`make_encoder`); on vectors the MLP."""
    if len(obs_shape) != 3:
        return make_encoder(c, m, obs_shape)
    stacked = (obs_shape[0] * c.frame_stack, *obs_shape[1:])
    if c.encoder == "resnet":
        return make_encoder(c, m, stacked)
    return StridedConvEncoder(m, stacked[0], c.channels, c.blocks, stacked[1:], c.stem)


class _Flat(EnsembleModule):
    """An MLP on (M, B, *obs) flattened to (M, B, d_o)."""

    def __init__(self, mlp: EnsembleMLP):
        super().__init__(mlp.num_models)
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(2))


class TargetEncoderNet(nn.Module):
    """Online encoder φ, target encoder φ̄, IDM, FDM and head E, M copies, layout (M, B, ...):
    what the LAOM variants share (each says how φ̄ follows φ: :meth:`update_target`).

    Copy m's initial weights depend only on ``seeds[m]``; φ̄ starts equal to φ and has
    ``requires_grad = False``. ``action_weights`` (M,) is λ_a per copy.
    """

    def __init__(self, c: Any, encoder: EnsembleModule, action_dim, seeds, action_weights):
        super().__init__()
        m = len(seeds)
        self.encoder = encoder
        d_s = getattr(encoder, "out_dim", c.embed_dim)  # a flattened encoder has its own
        self.idm_head = EnsembleMLP(m, 2 * d_s, c.width, c.latent_dim)
        self.fdm_head = EnsembleMLP(m, d_s + c.latent_dim, c.width, d_s)
        self.action_head = EnsembleLinear(m, c.latent_dim, action_dim)
        reset_copies(self, seeds)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.register_buffer("action_weights", torch.tensor(action_weights, dtype=torch.float32))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the target encoder (which only follows φ)."""
        return [p for name, p in self.named_parameters() if not name.startswith("target_")]

    def embed(self, o: torch.Tensor, target: bool = False) -> torch.Tensor:
        """φ(o) (or φ̄(o)): (M, B, *obs_shape) -> (M, B, d_s)."""
        return (self.target_encoder if target else self.encoder)(o)

    def idm(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """z = IDM(φ(o_t), φ(o_{t+j})) -> (M, B, d_z)."""
        return self.idm_head(torch.cat([self.embed(o), self.embed(o_far)], dim=-1))

    def update_target(self) -> None:
        """Move φ̄ toward φ (after every update)."""
        raise NotImplementedError


class LAOMNet(TargetEncoderNet):
    """The published LAOM's networks: φ the ResNet CNN (an MLP on vectors), φ̄ its EMA at
    rate τ (:meth:`update_target`)."""

    def __init__(self, c: LAOMConfig, obs_shape, action_dim, seeds, action_weights):
        encoder = laom_encoder(c, len(seeds), tuple(obs_shape))
        super().__init__(c, encoder, action_dim, seeds, action_weights)
        self.target_tau = c.target_tau

    @torch.no_grad()
    def update_target(self) -> None:
        """φ̄ ← (1 − τ) φ̄ + τ φ."""
        for target, online in zip(
            self.target_encoder.parameters(), self.encoder.parameters(), strict=True
        ):
            target.lerp_(online.detach(), self.target_tau)


@register_lam("laom")
class LAOMLAM(LAM):
    """LAOM as published (ResNet encoder, j ~ U{1..k_max}, FDM → φ̄(o_{t+1}), EMA τ,
    per-frame augmentation, optional head E on a separate labelled batch)."""

    Config = LAOMConfig
    per_copy = ("action_weight", "action_head")
    # the label-budget study's CPU encoder (~a tenth of the published one's cost per
    # update); the published shift (4 pixels of 64) to scale
    cpu_sizes = {
        "all": {"channels": (16,), "blocks": 1, "embed_dim": 64, "width": 128,
                "latent_dim": 128, "batch_size": 32, "label_batch_size": 32, "shift": 0},
        "image": {"stem": 4, "shift": 2},
    }  # fmt: skip
    pipeline_defaults = {}
    Net: type[TargetEncoderNet] = LAOMNet  # the variant's networks

    def build(self) -> nn.Module:
        return self.Net(
            self.config,
            self.spec.obs_shape,
            self.spec.action_dim,
            self.seeds,
            [c.effective_action_weight for c in self.configs],
        )

    def _kappa(self) -> float | None:
        """κ of the augmentation: on vectors; None (shifts) on images."""
        return None if len(self.spec.obs_shape) == 3 else self.config.kappa

    @property
    def frame_stack(self) -> int:
        """h, the frames stacked into one input of φ (images; 1 on vectors)."""
        return self.config.frame_stack if len(self.spec.obs_shape) == 3 else 1

    def _augment(self, frames: list[torch.Tensor], generators) -> list[torch.Tensor]:
        c = self.config
        if not c.augment:
            return frames
        if c.augmentation == "mixed" and self._kappa() is None:
            mixed = (c.shift, c.rotate_degrees, c.perspective)
            return mixed_augment_frames(frames, generators, *mixed)
        return augment_frames(frames, generators, c.shift, self._kappa())

    def check_batch(self, batch: Any, batch_size: int) -> None:
        """The base checks, on the newest frame of each stacked input."""
        c = self.spec.obs_shape[0]
        if self.frame_stack > 1:
            newest = [getattr(batch, k)[:, :, -c:] for k in ("obs", "next_obs", "far_obs")]
            batch = batch._replace(obs=newest[0], next_obs=newest[1], far_obs=newest[2])
        super().check_batch(batch, batch_size)

    def _check_labels(self, data) -> bool:
        """Whether any copy trains its head; refuses a supervised copy without labels."""
        weights = self.module.action_weights
        supervised = bool((weights > 0).any())
        if supervised and not bool(data.has_labels.cpu()[weights.cpu() > 0].all()):
            raise ValueError(
                "the action head needs labelled transitions, and the data of a copy has none "
                "(collect with --label-fraction > 0, or drop the head)"
            )
        return supervised

    def fit(self, data, progress: bool = False) -> None:
        """The training loop of the LAOM variants; a variant says how it draws a batch
        (``_sample``), what its latent loss is (``_latent_loss``) and which
        labelled pairs train the head (``_labelled``)."""
        c, net = self.config, self.module
        supervised = self._check_labels(data)
        weights = net.action_weights
        optimiser = torch.optim.Adam(net.trainable_parameters(), lr=c.lr)
        generators = [torch_generator(s, Stream.AUGMENT) for s in self.seeds]
        log = TrainingLog(self, c.steps, c.log_every, progress, unit="update")
        for step in range(c.steps):
            batch = self._sample(data)
            if step == 0:
                self.check_batch(batch, c.batch_size)
            latent_loss, target = self._latent_loss(batch, generators)  # (M,), φ̄'s embedding
            action = torch.zeros_like(latent_loss)
            point = {}
            if supervised:
                labelled, lo, lo_far = self._labelled(data, generators)
                action = action_head_loss(net.action_head(net.idm(lo, lo_far)), labelled, self.spec)
                if log.due(step):  # at log points only: no host sync per update
                    point["label_grad_ratio"] = gradient_ratio(
                        weights * action, latent_loss, list(net.encoder.parameters())
                    )
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
            log.step(step, **point)

    def _sample(self, data) -> Transitions:
        c = self.config
        if self.frame_stack == 1:  # the call of the package's laom
            return data.sample(c.batch_size, offset=c.k_max, uniform_offset=True)
        h = self.frame_stack
        return data.sample(c.batch_size, offset=c.k_max, uniform_offset=True, history=h)

    def _latent_loss(self, batch: Transitions, generators) -> tuple[torch.Tensor, torch.Tensor]:
        """‖FDM(sg(φ(o_t)), IDM(φ(o_t), φ(o_{t+j}))) − φ̄(o_{t+1})‖² / d_s per copy, and the
        target φ̄(o_{t+1}), every frame augmented on its own."""
        net = self.module
        o, o_far, o_next = self._augment([batch.obs, batch.far_obs, batch.next_obs], generators)
        s = net.embed(o)
        z = net.idm_head(torch.cat([s, net.embed(o_far)], dim=-1))
        with torch.no_grad():
            target = net.embed(o_next, target=True)
        predicted = net.fdm_head(torch.cat([s.detach(), z], dim=-1))
        return (predicted - target).pow(2).mean((1, 2)), target

    def _labelled(self, data, generators) -> tuple[Transitions, torch.Tensor, torch.Tensor]:
        """A labelled batch and the pair the head reads z of, augmented: (o_t, o_{t+j}) with
        j drawn as for the IDM (``labelled_offset="future"``, the authors'), or (o_t,
        o_{t+1}) (``"next"``)."""
        c, h = self.config, self.frame_stack
        if c.labelled_offset == "next":
            labelled = data.sample_labelled(c.label_batch_size, **({"history": h} if h > 1 else {}))
            pair = [labelled.obs, labelled.next_obs]
        else:
            draw = {"offset": c.k_max, "uniform_offset": True, "history": h}
            labelled = data.sample_labelled(c.label_batch_size, **draw)
            pair = [labelled.obs, labelled.far_obs]
        lo, lo_far = self._augment(pair, generators)
        return labelled, lo, lo_far

    def encode(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """z; with stacked frames, of (M, N, h·C, H, W) inputs, or of single frames (M, N, C,
        H, W), each repeated h times (no history, as at an episode's start)."""
        h = self.frame_stack
        if h > 1:
            o, o_far = (self._stack_input(x) for x in (o, o_far))
        return self.module.idm(o, o_far)

    def _stack_input(self, x: torch.Tensor) -> torch.Tensor:
        h, c = self.frame_stack, self.spec.obs_shape[0]
        if self._folded:  # latents() of stacked inputs: h frames folded into the batch axis
            return x.reshape(x.shape[0], -1, h * c, *x.shape[-2:])
        return x.repeat(1, 1, h, 1, 1) if x.shape[2] == c else x

    _folded = False

    @torch.no_grad()
    def latents(self, o, o_far, chunk: int = 8192) -> np.ndarray:
        """As :meth:`LAM.latents`; with stacked frames (``frame_stack`` h > 1) o and o_far may
        also be stacked, (N, h·C, H, W) (:meth:`~lam_models.split.Part.obs` with
        ``history``); single frames (N, C, H, W) are read as without history."""
        o, o_far = torch.as_tensor(o), torch.as_tensor(o_far)
        h, shape = self.frame_stack, self.spec.obs_shape
        if h == 1 or o.shape[-3] == shape[0] or o.shape != o_far.shape:
            return super().latents(o, o_far, chunk)
        lead = o.shape[:-3]
        fold = (*lead[:-1], lead[-1] * h, *shape) if lead else o.shape
        self._folded = True
        try:
            return super().latents(o.reshape(fold), o_far.reshape(fold), chunk * h)
        finally:
            self._folded = False

    def metrics(self, splits: list[DataSplit]) -> list[dict[str, Any]]:
        """The package's probes (:func:`lam_models.evaluation.scoring.evaluate_latents`), the head's
        held-out accuracy (grid) or nmse (linear) when trained, and the training state."""
        results = super().metrics(splits)
        for m, (split, result) in enumerate(zip(splits, results, strict=True)):
            if self.configs[m].action_head:
                result.update(self._head_metrics(m, split))
            history = self.history[m]
            result.update(
                final_latent_loss=history["latent_loss"][-1],
                embed_std=history["embed_std"][-1],
                labelled_transitions=split.labelled,
            )
        return results

    @torch.no_grad()
    def _head_metrics(self, m: int, split: DataSplit) -> dict[str, float]:
        test = split.test
        z = self.part_latents(test)
        z_m = torch.from_numpy(z).to(self.device)
        pred = self.module.action_head(z_m)[m].cpu().numpy()
        truth = test.oracle["action"]
        if self.spec.discrete:
            return {"head_accuracy": float((pred.argmax(-1) == truth).mean())}
        variance = float(truth.var(0).sum())
        return {"head_nmse": float(np.square(pred - truth).sum(-1).mean() / variance)}

    @classmethod
    def format_metrics(cls, metrics: dict[str, Any]) -> str:
        lines = [super().format_metrics(metrics)]
        if "head_accuracy" in metrics:
            lines.append(f"action head: held-out accuracy {metrics['head_accuracy']:.4f}")
        if "head_nmse" in metrics:
            lines.append(f"action head: held-out nmse {metrics['head_nmse']:.4f}")
        lines.append(
            f"final latent loss {metrics['final_latent_loss']:.5f}; target embedding std "
            f"{metrics['embed_std']:.3f} (near 0: collapsed)"
        )
        return "\n".join(lines)


def gradient_ratio(
    head: torch.Tensor, latent: torch.Tensor, shared: list[nn.Parameter]
) -> torch.Tensor:
    """Per copy, ‖∂ head/∂θ‖ / ‖∂ latent/∂θ‖ over the ``shared`` parameters θ (the
    encoder's, leading axis M): how hard the label head's term (λ_a-weighted) pulls on the
    encoder beside the latent loss. head, latent: (M,) losses; the graph is kept."""
    norms = []
    for loss in (head, latent):
        grads = torch.autograd.grad(loss.sum(), shared, retain_graph=True, allow_unused=True)
        squares = [g.pow(2).flatten(1).sum(1) for g in grads if g is not None]
        norms.append(torch.stack(squares).sum(0).sqrt() if squares else torch.zeros_like(loss))
    return norms[0] / norms[1].clamp_min(1e-30)


def action_head_loss(prediction: torch.Tensor, labelled: Transitions, spec: Any) -> torch.Tensor:
    """The action head's term: mean over the labelled transitions of ‖head(z) − a‖² / d_a
    (a one-hot on the grid), per copy: (M,)."""
    a = action_regression_targets(labelled.actions, spec.discrete, spec.action_dim)
    return labelled_mean((prediction - a).pow(2).mean(-1), labelled.label_mask)


def action_regression_targets(actions: torch.Tensor, discrete: bool, dim: int) -> torch.Tensor:
    """Regression targets of visible actions (one-hot on the grid), zeros where unlabelled."""
    if discrete:
        return F.one_hot(actions.clamp_min(0), dim).float() * (actions >= 0)[..., None]
    return torch.nan_to_num(actions.float())
