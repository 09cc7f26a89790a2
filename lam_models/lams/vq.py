"""The package's own VQ latent action model for the grid ("ours", ``vq``): config, model,
training loop, metrics, pictures. The published model behind the paper's Table 1 is
``vq-published`` (:mod:`lam_models.lams.vq_published`), which reuses this module's
metrics and pictures.

The model::

    latent = IDM(Aug1(o), Aug1(o'))                 CNN over (o, o') stacked as 2 channels
    z      = quantise(latent)                        nearest of K codes, straight-through
    ô'     = FDM(Aug2(o), z)                         tiny UNet, z broadcast as extra channels
    loss   = ‖ô' − Aug2(o')‖²  +  β ‖latent − sg(z)‖²  +  λ_a ‖latent − sg(e_a)‖² (labelled)

This is the package's own architecture (``vq``), not the published one: its IDM is
translation invariant (:class:`lam_models.nn.ConvEncoder`: periodic 3×3 convolutions and a
global max-pool), so it describes a move rather than where it happened, and the codebook is
an EMA one (:class:`lam_models.nn.VectorQuantiser`: no codebook loss; dead codes revived
onto encoder outputs after ``dead_code_steps`` unused updates; usage and perplexity logged).

- Aug1, Aug2: random ±1-column periodic shifts (:func:`lam_models.augment.augment_pair`),
  Aug1 shared by both IDM inputs, Aug2 by the FDM input and its target. ``noise_copy``:
  the published code's other augmentation (:func:`lam_models.augment.copy_noise_row`),
  offered here too so that both models run the same table.
- Action prediction (``action_prediction``, weight λ_a = ``action_weight``): code k is
  pre-assigned to action k; on labelled transitions the pre-quantisation latent is pulled
  toward its true action's code e_a, and those transitions are quantised to e_a (for the
  FDM and the codebook's EMA), so code k's vector is fed by action k's latents. With 1%
  labels a batch of 128 holds about one labelled transition, too weak a pull against the
  noise row, so ``labelled_share`` of every batch is drawn from the labelled subset
  (measured on low noise, 5000 updates, 3 seeds: share 0 and λ_a = 1 left the best-map
  action accuracy at 0.36; share 0.1 and λ_a = 5 raised it to 0.55). The labels are still
  the same subset; they are reused more often.

Metrics (:meth:`VQLAM.metrics`, held-out transitions, no augmentation): the FDM's
controllable loss (rows 0–2) and stochastic loss (row 3) on both scales (over the variance
of its rows of o', and over the error of a predictor that knows o but not the action:
:func:`lam_models.evaluation.metrics.controllable_stochastic_loss`), the perplexity of the chosen
codes, and the accuracy of the best code→action map. Pictures: held-out transitions
(:func:`plot_transitions`) and what each code means (:func:`plot_codes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from lam_envs.utils.config import Checked, option
from lam_models.augment import augment_pair, copy_noise_row
from lam_models.evaluation.metrics import (
    code_action_accuracy,
    controllable_stochastic_loss,
    grid_mse,
    no_action_error,
    perplexity,
)
from lam_models.lams import fields
from lam_models.lams.base import LAM, TrainingLog, register_lam
from lam_models.lams.training_score import TrainingScore
from lam_models.nn import ConvEncoder, TinyUNet, VectorQuantiser, reset_copies
from lam_models.seeding import Stream, torch_generator
from lam_models.split import DataSplit, labelled_mean

__all__ = [
    "ACTION_NAMES",
    "VQConfig",
    "VQLAM",
    "VQNet",
    "VQPrediction",
    "action_loss",
    "batch_perplexity",
    "plot_codes",
    "plot_transitions",
]

#: Train transitions the no-action predictor of the metrics is estimated from, at most.
NO_ACTION_FIT = 100_000

ACTION_NAMES = ("stay", "up", "down", "left", "right")  # GridLAM's Discrete(5)


@dataclass
class VQConfig(Checked):
    """Hyper-parameters of the grid VQ LAM and its trainer (the papers' symbols)."""

    codebook_size: int = fields.codebook_size()
    latent_dim: int = option(8, "D, dimension of the latent and the codes", low=1)
    idm_width: int = option(16, "channels of the IDM's CNN and MLP", low=1)
    fdm_width: int = option(8, "channels of the FDM's UNet (twice that at its 2×2 level)", low=1)
    commitment_weight: float = option(0.25, "β, weight of the commitment loss", low=0.0)
    ema_decay: float = option(
        0.99, "γ, decay of the codebook's moving averages, in (0, 1)", above=0, below=1
    )
    dead_code_steps: int = option(100, "revive a code unused for this many updates", low=1)
    augment: bool = option(False, "random ±1-column periodic shifts (Aug1, Aug2)")
    noise_copy: bool = option(
        False,
        "the published code's augmentation: the IDM sees o with o′'s noise row, the "
        "FDM's target is o′ with o's noise row",
    )
    action_prediction: bool = option(
        False, "pre-assign code k to action k; pull labelled latents toward their action's code"
    )
    action_weight: float = option(5.0, "λ_a, weight of the action-prediction pull", low=0.0)
    labelled_share: float = option(
        0.1,
        "with action prediction: share of each batch drawn from the labelled subset",
        low=0.0,
        high=1.0,
    )
    steps: int = fields.steps(16_000)
    batch_size: int = fields.batch_size()
    lr: float = fields.lr(1e-3)
    log_every: int = fields.log_every()
    score_updates: int = fields.score_updates()
    score_dataset: str = fields.score_dataset(
        "score those updates on batches of this dataset (id or path) instead of the training batch"
    )

    @property
    def pull_weight(self) -> float:
        """λ_a, or 0 without action prediction."""
        return self.action_weight if self.action_prediction else 0.0


class VQPrediction(NamedTuple):
    """ô' (M, N, C, H, W), chosen code indices (M, N), pre-quantisation latents (M, N, D)."""

    pred_next: torch.Tensor
    codes: torch.Tensor
    latent: torch.Tensor


class VQNet(nn.Module):
    """IDM (CNN + vector quantiser) and FDM (tiny UNet), M copies, layout (M, B, ...);
    copy m's initial weights depend only on ``seeds[m]``."""

    def __init__(self, config: VQConfig, obs_shape: tuple[int, int, int], seeds: list[int]):
        super().__init__()
        c, h, w = obs_shape
        if h % 2 or w % 2:
            raise ValueError(f"the VQ LAM's UNet needs an even image size, got {obs_shape}")
        m, d = len(seeds), config.latent_dim
        self.idm_encoder = ConvEncoder(m, 2 * c, config.idm_width, d, (h, w))
        self.quantiser = VectorQuantiser(
            m, config.codebook_size, d, config.ema_decay, config.dead_code_steps
        )
        self.fdm_unet = TinyUNet(m, c + d, c, config.fdm_width, (h, w))
        reset_copies(self, seeds)

    def idm(self, o: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent: (M, B, C, H, W) × 2 -> (M, B, D)."""
        return self.idm_encoder(torch.cat([o, o_next], dim=2))

    def fdm(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ô' from o (M, B, C, H, W) and z (M, B, D), z broadcast over the image."""
        z_map = z[..., None, None].expand(*z.shape, *o.shape[-2:])
        return self.fdm_unet(torch.cat([o, z_map], dim=2))

    def forward(self, o: torch.Tensor, o_next: torch.Tensor) -> VQPrediction:
        """ô', codes and latents without augmentation."""
        latent = self.idm(o, o_next)
        codes = self.quantiser.nearest(latent)
        return VQPrediction(self.fdm(o, self.quantiser.lookup(codes)), codes, latent)


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
    return labelled_mean((latent - target).pow(2).mean(-1), label_mask)


def vq_inputs(
    batch: Any,
    c: Any,
    generators: list[torch.Generator],
    nonzero_shift: bool = False,
    fdm_reads_idm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The IDM's (o, o′), the FDM's o and its target o′ of a batch, after the config's
    ``noise_copy`` (the IDM sees o with o′'s noise row, the target is o′ with o's; with
    ``fdm_reads_idm`` the FDM reads the IDM's o) and ``augment`` (a periodic shift per
    pair, never 0 with ``nonzero_shift``)."""
    idm_o, idm_next, fdm_o, target = batch.obs, batch.next_obs, batch.obs, batch.next_obs
    if c.noise_copy:
        idm_o, target = copy_noise_row(idm_o, idm_next), copy_noise_row(target, fdm_o)
        if fdm_reads_idm:
            fdm_o = idm_o
    if c.augment:
        shift = {"nonzero_shift": nonzero_shift}
        idm_o, idm_next = augment_pair(idm_o, idm_next, generators, **shift)
        fdm_o, target = augment_pair(fdm_o, target, generators, **shift)
    return idm_o, idm_next, fdm_o, target


def batch_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of code-usage counts (..., K)."""
    p = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum(-1))


@register_lam("vq")
class VQLAM(LAM):
    """The package's own VQ LAM for the grid ("ours").

    A translation-invariant IDM and an EMA codebook; not the published model
    (``vq-published``)."""

    Config = VQConfig
    kinds = ("grid",)
    cpu_sizes = {"image": {"batch_size": 32}}  # its batch of 128: ~6× slower per update
    pipeline_defaults = {"steps": 3000, "augment": True}

    def build(self) -> nn.Module:
        self._check_codebook()
        if len(self.spec.obs_shape) != 3:
            raise ValueError(f"the VQ LAM needs images (C, H, W), got {self.spec.obs_shape}")
        return VQNet(self.config, self.spec.obs_shape, self.seeds)

    def _check_codebook(self) -> None:
        """Refuses action prediction with fewer codes than actions."""
        c = self.config
        if c.action_prediction and c.codebook_size < self.spec.action_dim:
            raise ValueError(
                f"action prediction pre-assigns code k to action k, so codebook_size must be "
                f">= {self.spec.action_dim} (the number of actions), got {c.codebook_size}"
            )

    def _check_labels(self, data) -> None:
        """Refuses action prediction on a copy's data without labels."""
        if self.config.action_prediction and not bool(data.has_labels.all()):
            raise ValueError(
                "action prediction needs labelled transitions, and the data of a copy has none "
                "(collect with --label-fraction > 0, or drop --action-prediction)"
            )

    @staticmethod
    def _log_codes(log: TrainingLog, step: int, counts: torch.Tensor, revived: torch.Tensor):
        """Ends an update's log entry; on a logged update also the perplexity, codes used
        and codes revived since the last one (``counts`` (M, K), ``revived`` (M,), which
        then restart from 0)."""
        if log.due(step):
            log.step(
                step,
                perplexity=batch_perplexity(counts),
                codes_used=(counts > 0).sum(-1),
                revived=revived,
            )
            counts.zero_()
            revived.zero_()
        else:
            log.step(step)

    def fit(self, data, progress: bool = False) -> None:
        c, net, m = self.config, self.module, self.num_copies
        self._check_labels(data)
        optimiser = torch.optim.Adam(net.parameters(), lr=c.lr)
        # Each copy draws its augmentations and codebook revivals from its own stream.
        generators = [torch_generator(s, Stream.AUGMENT) for s in self.seeds]
        share = c.labelled_share if c.action_prediction else 0.0
        log = TrainingLog(self, c.steps, c.log_every, progress, unit="update")
        counts_window = torch.zeros(m, c.codebook_size, device=self.device)
        revived_window = torch.zeros(m, device=self.device)
        score = TrainingScore(data, c.steps, c.score_updates, c.score_dataset, self.device)
        for step in range(c.steps):
            batch = data.sample(c.batch_size, labelled_share=share)
            if step == 0:
                self.check_batch(batch, c.batch_size)
            idm_o, idm_next, fdm_o, target = vq_inputs(batch, c, generators)
            latent = net.idm(idm_o, idm_next)
            if step == 0:
                net.quantiser.init_from_batch(latent.detach(), generators)
            codes = net.quantiser.nearest(latent.detach())
            if c.action_prediction:  # pre-assignment: a labelled transition uses code a
                codes = torch.where(batch.label_mask, batch.actions, codes)
            code_vectors = net.quantiser.lookup(codes)  # a buffer: no gradient
            z = latent + (code_vectors - latent).detach()  # straight-through estimator
            pred = net.fdm(fdm_o, z)
            fdm_loss = (pred - target).pow(2).flatten(1).mean(-1)
            commitment = (latent - code_vectors).pow(2).flatten(1).mean(-1)
            loss = fdm_loss + c.commitment_weight * commitment
            pull = torch.zeros_like(loss)
            if c.action_prediction:
                pull = action_loss(latent, net.quantiser.codebook, batch.actions, batch.label_mask)
                loss = loss + c.action_weight * pull
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()  # summed over copies: each copy gets its own gradient
            optimiser.step()
            score.record(step, pred, target, net, c.batch_size)  # the published losses
            counts, revived = net.quantiser.update(latent.detach(), codes, generators)
            counts_window += counts
            revived_window += revived
            log.add(loss=loss, fdm_loss=fdm_loss, commitment_loss=commitment, action_loss=pull)
            self._log_codes(log, step, counts_window, revived_window)
        score.save(self.history)

    @torch.no_grad()
    def predict(self, o: torch.Tensor, o_next: torch.Tensor, chunk: int = 8192) -> VQPrediction:
        """ô', codes and latents of held-out transitions (N, C, H, W), the same for every
        copy, -> (M, N, ...) on the CPU. No augmentation; the codebook is not updated."""
        self.module.eval()
        parts = []
        for begin in range(0, o.shape[0], chunk):
            a = o[begin : begin + chunk].to(self.device, torch.float32)
            b = o_next[begin : begin + chunk].to(self.device, torch.float32)
            shape = (self.num_copies, *a.shape)
            parts.append(self.module(a.expand(shape), b.expand(shape)))
        return VQPrediction(*(torch.cat([p[i] for p in parts], 1).cpu() for i in range(3)))

    def encode(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """The quantised latent: the chosen code's vector."""
        q = self.module.quantiser
        return q.lookup(q.nearest(self.module.idm(o, o_far)))

    def codebook(self) -> torch.Tensor:
        """The codes of every copy, (M, K, D) on the device."""
        return self.module.quantiser.codebook

    @torch.no_grad()
    def code_predictions(self, o: torch.Tensor) -> torch.Tensor:
        """ô' of observations o (N, C, H, W) with every code in turn fed to the FDM:
        (M, K, N, C, H, W) on the CPU. What code k means: ô' − o given code k."""
        self.module.eval()
        o = o.to(self.device, torch.float32).expand(self.num_copies, *o.shape)
        codes = self.codebook()
        return torch.stack(
            [
                self.module.fdm(o, codes[:, k, None].expand(-1, o.shape[1], -1)).cpu()
                for k in range(codes.shape[1])
            ],
            dim=1,
        )

    def metrics(self, splits: list[DataSplit]) -> list[dict[str, Any]]:
        """Per copy, on its split's held-out transitions (no augmentation):
        ``controllable_loss``, ``stochastic_loss`` (NaN without noise; over the signal's
        variance, the paper's text), ``controllable_loss_noaction`` and
        ``stochastic_loss_noaction`` (over the error of a predictor that knows o but not the
        action, estimated on the split's train transitions: the authors' code's scale; the
        two errors are ``noaction_mse_*``), the unnormalised per-pixel errors
        ``controllable_mse`` and ``stochastic_mse``, ``perplexity`` and
        ``codes_used`` of the chosen codes, ``action_accuracy`` (the best, i.e. majority,
        code→action map fitted on the scored transitions: with K × 5 cells and thousands of
        transitions this adds no measurable optimism; wall bumps look like "stay", so under
        a uniform policy the ceiling is about 0.77), with action prediction
        ``assigned_action_accuracy`` (code k = action k where the square moved; chance 0.2),
        and the raw errors of the published losses measured during training
        (:class:`~lam_models.lams.training_score.TrainingScore`: ``scored_controllable_mse``,
        ``scored_stochastic_mse``, ``scored_updates``, ``scored_on``, kept in the
        training history)."""
        k, num_actions = self.config.codebook_size, self.spec.action_dim
        results = []
        shared: dict[int, tuple[VQPrediction, Any]] = {}  # copies that share a split
        for m, split in enumerate(splits):
            test = split.test
            o, o_next = torch.from_numpy(test.obs()), torch.from_numpy(test.next_obs())
            if id(split) not in shared:  # every copy's prediction, and the no-action error
                fit = split.train.subset(np.arange(min(len(split.train), NO_ACTION_FIT)))
                shared[id(split)] = (
                    self.predict(o, o_next),
                    no_action_error(fit.obs(), fit.next_obs(), test.obs(), test.next_obs()),
                )
            prediction, noaction = shared[id(split)]
            pred = prediction.pred_next[m]
            losses = controllable_stochastic_loss(pred, o_next)
            on_noaction = controllable_stochastic_loss(pred, o_next, scale=noaction)
            mse = grid_mse(pred, o_next)
            codes = prediction.codes[m].numpy()
            actions = test.oracle["action"].astype(np.int64)
            history = self.history[m]
            last = {k: (v[-1] if v else math.nan) for k, v in history.items()}
            result: dict[str, Any] = {
                "controllable_loss": losses.controllable,
                "stochastic_loss": losses.stochastic,
                "controllable_loss_noaction": on_noaction.controllable,
                "stochastic_loss_noaction": on_noaction.stochastic,
                "controllable_mse": mse.controllable,
                "stochastic_mse": mse.stochastic,
                "noaction_mse_controllable": noaction.controllable,
                "noaction_mse_stochastic": noaction.stochastic,
                "perplexity": perplexity(codes, k),
                "codes_used": int(len(np.unique(codes))),
                "action_accuracy": code_action_accuracy(
                    codes, actions, codes, actions, k, num_actions
                ),
                "eval_transitions": len(codes),
                "train_loss": last.get("loss", math.nan),
                "train_perplexity": last.get("perplexity", math.nan),
                "codes_revived": int(sum(history.get("revived", []))),
                "data": split.describe(),
            }
            result.update(TrainingScore.read(history))
            if self.config.action_prediction:
                moved = (test.oracle["position"] != test.oracle["position_before"]).any(-1)
                result["assigned_action_accuracy"] = float((codes[moved] == actions[moved]).mean())
            results.append(result)
        return results

    @classmethod
    def format_metrics(cls, metrics: dict[str, Any]) -> str:
        def text(value: float | None) -> str:
            return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"

        lines = [
            f"data: {metrics['data']}",
            f"scored on {metrics['eval_transitions']:,} held-out transitions",
            "",
            "                     signal   no-action  (over the signal's variance; over the "
            "error of a predictor knowing o, not a)",
            f"controllable loss    {text(metrics['controllable_loss']):<8} "
            f"{text(metrics.get('controllable_loss_noaction')):<10} rows 0-2; lower: z holds "
            "more of the action",
            f"stochastic loss      {text(metrics['stochastic_loss']):<8} "
            f"{text(metrics.get('stochastic_loss_noaction')):<10} row 3; higher: z holds less "
            "noise (n/a: no noise)",
            f"codebook perplexity  {metrics['perplexity']:.3f}    ({metrics['codes_used']} codes "
            "used)",
            f"action accuracy      {metrics['action_accuracy']:.4f}   best code→action map "
            "(wall bumps look like stay: ceiling ≈ 0.77 under a uniform policy)",
        ]
        if "assigned_action_accuracy" in metrics:
            lines.append(
                f"assigned accuracy    {metrics['assigned_action_accuracy']:.4f}   code k = "
                "action k where the square moved (chance 0.2)"
            )
        return "\n".join(lines)

    def plots(self, folder: Path, splits: list[DataSplit]) -> list[Path]:
        return [
            plot_transitions(self, splits[0], folder / "transitions.png"),
            plot_codes(self, splits[0], folder / "codes.png"),
        ]


def plot_transitions(
    lam: VQLAM, split: DataSplit, path: str | Path, count: int = 6, title: str = "", copy: int = 0
) -> Path:
    """A PNG of ``count`` held-out transitions: o, o′ and the prediction ô′ (one column each),
    with the true action and the chosen code above each column, the noise row marked, and a
    colour scale for the pixel values.

    Picks the first transition of each true action in turn, so every action appears.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = split.test
    actions = test.oracle["action"]
    chosen: list[int] = []
    for i in range(len(actions)):
        if len(chosen) == count:
            break
        if actions[i] == len(chosen) % lam.spec.action_dim:
            chosen.append(i)
    o = torch.from_numpy(test.obs()[chosen])
    o_next = torch.from_numpy(test.next_obs()[chosen])
    prediction = lam.predict(o, o_next)
    top = float(max(o.max(), o_next.max(), 1.0))
    height = o.shape[-2]
    noise_row = height - 1  # the grid's last row is the exogenous noise
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.7 * len(chosen) + 1.2, 5.6), squeeze=False)
    image = None
    for j, i in enumerate(chosen):
        images = (o[j, 0], o_next[j, 0], prediction.pred_next[copy, j, 0])
        for row, (picture, name) in enumerate(
            zip(images, ("o", "o′ (true)", "ô′ (predicted)"), strict=True)
        ):
            ax = axes[row, j]
            image = ax.imshow(picture.numpy(), cmap="viridis", vmin=0.0, vmax=top)
            ax.axhline(noise_row - 0.5, color="white", lw=1.5, ls="--")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
                ax.set_yticks([noise_row], ["noise"], fontsize=7)
        axes[0, j].set_title(
            f"action: {ACTION_NAMES[actions[i]]}\ncode {int(prediction.codes[copy, j])}",
            fontsize=9,
        )
    fig.colorbar(image, ax=axes, shrink=0.6, label="pixel value (o, o′, ô′)")
    fig.suptitle(
        title
        or "held-out transitions: the true action and the chosen code over each column; "
        "below the dashed line, the noise row",
        fontsize=9,
    )
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_codes(
    lam: VQLAM,
    split: DataSplit,
    path: str | Path,
    title: str = "",
    copy: int = 0,
    examples: int = 5,
    eval_transitions: int = 2000,
) -> Path:
    """A PNG of what each code means: one row per code k, the FDM fed code k.

    Left: the mean predicted change ô' − o over held-out o's (red +, blue −: a move shows
    as a red cell beside a blue one; a noise pattern as colour in row 3). Right: o for
    ``examples`` held-out transitions with the square in different cells (top row), then
    ô' for each of them given code k. Each row is labelled with the share of held-out
    transitions whose IDM chose k and their most common true action.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = split.test
    n = min(len(test), eval_transitions)
    o = torch.from_numpy(test.obs()[:n])
    chosen = lam.predict(o, torch.from_numpy(test.next_obs()[:n])).codes[copy].numpy()
    actions = test.oracle["action"][:n]
    cells = test.oracle.get("position_before")
    picks: list[int] = []
    seen: set[tuple[int, ...]] = set()
    for i in range(n):  # examples with the square in distinct cells
        key = tuple(cells[i]) if cells is not None else (i,)
        if key not in seen:
            seen.add(key)
            picks.append(i)
        if len(picks) == examples:
            break
    predictions = lam.code_predictions(o)[copy][:, :, 0].numpy()  # (K, N, H, W)
    k_total, (h, w) = predictions.shape[0], predictions.shape[-2:]
    change = (predictions - o[None, :, 0].numpy()).mean(1)  # (K, H, W)

    def mosaic(tiles: list[list[np.ndarray]]) -> np.ndarray:
        """Rows of H×W tiles, one NaN pixel apart (drawn blank)."""
        out = np.full((len(tiles) * (h + 1) - 1, len(tiles[0]) * (w + 1) - 1), np.nan)
        for r, row in enumerate(tiles):
            for c, tile in enumerate(row):
                out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tile
        return out

    blank = np.full((h, w), np.nan)
    left = mosaic([[blank]] + [[change[k]] for k in range(k_total)])
    right = mosaic(
        [[o[i, 0].numpy() for i in picks]]
        + [[predictions[k, i] for i in picks] for k in range(k_total)]
    )
    bound = float(max(np.abs(change).max(), 1e-6))
    top = float(max(o.max(), predictions.max(), 1.0))
    fig, (ax_l, ax_r) = plt.subplots(
        1,
        2,
        figsize=(2.6 + 1.0 * len(picks), 1.0 * (k_total + 1)),
        gridspec_kw={"width_ratios": [1, len(picks)]},
    )
    diverging = plt.get_cmap("bwr").with_extremes(bad="0.8")  # the gaps between tiles
    grey = plt.get_cmap("gray").with_extremes(bad="#5b8fc7")
    ax_l.imshow(left, cmap=diverging, vmin=-bound, vmax=bound)
    ax_r.imshow(right, cmap=grey, vmin=0.0, vmax=top)
    ax_l.set_title("mean ô′ − o", fontsize=8)
    ax_r.set_title("top: o of held-out examples; below: ô′ given code k", fontsize=8)
    labels = ["o"]
    for k in range(k_total):
        mine = chosen == k
        label = f"code {k}: {mine.mean():.0%}"
        if mine.any():
            counts = np.bincount(actions[mine], minlength=len(ACTION_NAMES))
            label += f"\n{ACTION_NAMES[counts.argmax()]} {counts.max() / mine.sum():.0%}"
        labels.append(label)
    centres = [r * (h + 1) + (h - 1) / 2 for r in range(k_total + 1)]
    ax_l.set_yticks(centres, labels, fontsize=7)
    ax_l.set_xticks([])
    ax_r.set_xticks([])
    ax_r.set_yticks([])
    fig.suptitle(title or "what each code means: the FDM's ô′ given code k", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
