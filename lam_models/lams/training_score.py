"""The published Table 1 losses: the FDM's per-pixel error measured during training.

The authors' results (docs/protocols.md, "Grid VQ LAM") are not held-out scores: they are
the FDM's per-pixel squared error on the controllable rows (rows 0–2 of the 4×4 grid) and
on the noise row (row 3), averaged over the last 40 updates (10 epochs) of training-mode
batches. The scored batch is the training batch, or, for the policy row, a batch of
another dataset (the uniform-policy data the snaking model is scored on), passed through
the model in training mode without a gradient.

    score = TrainingScore(data, steps, updates=40, dataset="", device=device)  # in fit
    ...                                                  # after each optimiser step:
    score.record(step, pred_next, target, net, batch_size)   # the training batch's ô', o'
    score.save(lam.history)                              # per copy, read by metrics

The normalisers of the published table are applied by the reproduction (see
:func:`lam_models.evaluation.metrics.published_table1_losses`): the model reports raw errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from lam_models.seeding import Stream
from lam_models.split import CopyBatches, DataSplit

__all__ = ["TrainingScore"]


class TrainingScore:
    """Per-pixel FDM errors (controllable rows, noise rows) of M copies over the last
    ``updates`` updates of a training run of ``steps`` updates.

    ``dataset``: "" scores the training batch (:meth:`add`); a dataset id or path scores a
    batch of that dataset's train part (same held-out share and split seed as the copy's
    training split) at each scored update (:meth:`add_batch`), drawn from the copies'
    ``SCORE_BATCHES`` streams. The bottom quarter of an image's rows is its noise row (row 3
    of the 4×4 grid; rows 3s..4s−1 at pixel scale s).
    """

    def __init__(self, data: Any, steps: int, updates: int, dataset: str, device):
        self.first = max(0, steps - updates)
        self.dataset = dataset
        self.sums = torch.zeros(data.num_copies, 2, device=device)
        self.count = 0
        self.batches: CopyBatches | None = None
        if dataset:
            reference = data.splits[0]
            split = DataSplit(dataset, held_out=reference.held_out, seed=reference.seed)
            if split.spec.obs_shape != data.spec.obs_shape:
                raise ValueError(
                    f"the score dataset {dataset!r} has observations of shape "
                    f"{split.spec.obs_shape}, the training data {data.spec.obs_shape}"
                )
            self.batches = CopyBatches(
                [split] * data.num_copies, data.seeds, device, stream=Stream.SCORE_BATCHES
            )

    def due(self, step: int) -> bool:
        """Whether update ``step`` (0-based) is scored."""
        return step >= self.first

    def record(
        self,
        step: int,
        pred_next: torch.Tensor,
        target: torch.Tensor,
        net: torch.nn.Module,
        batch_size: int,
    ) -> None:
        """After update ``step``'s optimiser step: when it is scored, add the training
        batch's errors (``pred_next`` and ``target``, (M, B, C, H, W)), or those of a batch
        of the score dataset run through ``net`` (``net(o, o_next).pred_next``)."""
        if not self.due(step):
            return
        if self.batches is None:
            self.add(pred_next, target)
        else:
            self.add_batch(batch_size, lambda b: net(b.obs, b.next_obs).pred_next, net)

    def add(self, pred_next: torch.Tensor, target: torch.Tensor) -> None:
        """Add one update's errors: ``pred_next`` and ``target`` (M, B, C, H, W)."""
        error = (pred_next.detach() - target).pow(2)
        split = error.shape[-2] * 3 // 4
        controllable = error[..., :split, :].flatten(1).mean(-1)
        noise = error[..., split:, :].flatten(1).mean(-1)
        self.sums += torch.stack([controllable, noise], dim=-1)
        self.count += 1

    @torch.no_grad()
    def add_batch(
        self, batch_size: int, predict: Callable[[Any], torch.Tensor], module: torch.nn.Module
    ) -> None:
        """Score a batch of the score dataset: ``predict(batch) -> ô'`` (M, B, C, H, W), run
        by the caller with ``module`` as it trains (training mode: batch norm normalises by
        the scored batch's own statistics, as the released code's second loader does). The
        module's buffers (batch norm's running statistics) are restored afterwards, so the
        scoring leaves the model exactly as training left it."""
        assert self.batches is not None
        batch = self.batches.sample(batch_size)
        buffers = {name: b.clone() for name, b in module.named_buffers()}
        self.add(predict(batch), batch.next_obs)
        for name, b in module.named_buffers():
            b.copy_(buffers[name])

    def save(self, histories: list[dict[str, list]]) -> None:
        """Store each copy's result in its training history (``scored_*`` keys, one value
        each), which a saved run keeps: :meth:`read` finds them after a reload."""
        if not self.count:
            return
        on = self.dataset or "training batches"
        for history, (c, n) in zip(histories, (self.sums / self.count).cpu().tolist(), strict=True):
            history["scored_controllable_mse"] = [c]
            history["scored_stochastic_mse"] = [n]
            history["scored_updates"] = [self.count]
            history["scored_on"] = [on]

    @staticmethod
    def read(history: dict[str, list]) -> dict[str, Any]:
        """A copy's ``scored_controllable_mse``, ``scored_stochastic_mse`` (per-pixel,
        averaged over the scored updates), ``scored_updates`` and ``scored_on`` from its
        history; NaN, 0 and "" when nothing was scored."""
        if "scored_controllable_mse" not in history:
            return {
                "scored_controllable_mse": math.nan,
                "scored_stochastic_mse": math.nan,
                "scored_updates": 0,
                "scored_on": "",
            }
        keys = ("scored_controllable_mse", "scored_stochastic_mse", "scored_updates", "scored_on")
        return {key: history[key][-1] for key in keys}
