"""The laom-mlp variant (lam_models.lams.laom_mlp): its EMA target encoder."""

from __future__ import annotations

import numpy as np
import torch

from lam_models.lams.laom_mlp import LAOMMLPLAM as LAOMLAM
from lam_models.lams.laom_mlp import LAOMMLPConfig as LAOMConfig
from lam_models.lams.laom_mlp import LAOMMLPNet as LAOMNet
from lam_models.split import DataSpec, Transitions

SPEC = DataSpec("grid", (1, 4, 4), True, 5)
TINY = LAOMConfig(steps=5, batch_size=16, label_batch_size=8, log_every=1)


class RandomData:
    """Random images, every transition labelled."""

    spec, num_copies = SPEC, 1
    has_labels = torch.tensor([True])

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def _batch(self, n: int) -> Transitions:
        o = torch.from_numpy(self.rng.random((1, n, 1, 4, 4), dtype=np.float32))
        far = torch.from_numpy(self.rng.random((1, n, 1, 4, 4), dtype=np.float32))
        actions = torch.from_numpy(self.rng.integers(5, size=(1, n)))
        return Transitions(o, far, far, actions, torch.ones(1, n, dtype=torch.bool))

    def sample(self, batch_size, **_):
        return self._batch(batch_size)

    def sample_labelled(self, batch_size, **_):
        return self._batch(batch_size)


def test_target_encoder_is_an_ema_of_the_online_encoder_and_gets_no_gradient(monkeypatch):
    snapshots = []  # the online encoder φ after each update, when the target follows it
    update = LAOMNet.update_target

    def recording(self):
        snapshots.append([p.detach().clone() for p in self.encoder.parameters()])
        update(self)

    monkeypatch.setattr(LAOMNet, "update_target", recording)
    config = LAOMConfig(**{**TINY.__dict__, "action_head": True})
    trained = LAOMLAM.train(config, RandomData(), [3], device="cpu").module
    assert len(snapshots) == TINY.steps
    # φ̄_0 = φ_0 (same seed, same initial weights); then φ̄ ← τ φ̄ + (1 − τ) φ every update.
    fresh = LAOMLAM(config, SPEC, [3], "cpu").module
    expected = [p.detach() for p in fresh.encoder.parameters()]
    tau = TINY.ema_decay
    for online in snapshots:
        expected = [tau * e + (1 - tau) * p for e, p in zip(expected, online, strict=True)]
    for got, want, online in zip(
        trained.target_encoder.parameters(), expected, trained.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, online)  # it lags: not a copy of φ
        assert not got.requires_grad and got.grad is None
    trainable = {id(p) for p in trained.trainable_parameters()}
    assert not any(id(p) in trainable for p in trained.target_encoder.parameters())
