"""LAOM as published (lam_models.lams.laom): what makes it the published method; and the
EMA target encoder it shares with its variant laom-mlp (lam_models.lams.laom_mlp)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lam_models import augment
from lam_models.lams.laom import LAOMLAM, LAOMConfig, LAOMNet
from lam_models.lams.laom_mlp import LAOMMLPLAM, LAOMMLPConfig, LAOMMLPNet
from lam_models.split import DataSpec, Transitions

SPEC = DataSpec("grid", (1, 8, 8), True, 5)
TINY = LAOMConfig(
    latent_dim=16,
    embed_dim=8,
    channels=(4,),
    blocks=1,
    width=16,
    steps=5,
    batch_size=16,
    label_batch_size=8,
    log_every=1,
)


class RandomData:
    """Random images (8×8 unless ``side``): o_t, o_{t+1} and o_{t+j} all different; every one
    labelled. Records the arguments of each draw."""

    def __init__(self, copies: int = 1, side: int = 8):
        self.spec = DataSpec("grid", (1, side, side), True, 5)
        self.num_copies = copies
        self.has_labels = torch.ones(copies, dtype=torch.bool)
        self.rng = np.random.default_rng(0)
        self.calls, self.batches = [], []

    def _batch(self, n: int, history: int = 1) -> Transitions:
        c, h, w = self.spec.obs_shape
        o, nxt, far = (
            torch.from_numpy(self.rng.random((self.num_copies, n, history * c, h, w), np.float32))
            for _ in range(3)
        )
        actions = torch.from_numpy(self.rng.integers(5, size=(self.num_copies, n)))
        batch = Transitions(o, nxt, far, actions, torch.ones(self.num_copies, n, dtype=bool))
        self.batches.append(batch)
        return batch

    def sample(self, batch_size, **kwargs):
        self.calls.append(("sample", kwargs))
        return self._batch(batch_size, kwargs.get("history", 1))

    def sample_labelled(self, batch_size, **kwargs):
        self.calls.append(("labelled", kwargs))
        return self._batch(batch_size, kwargs.get("history", 1))


@pytest.mark.parametrize(("variant", "history"), [("authors", {"history": 3}), ("package", {})])
def test_the_future_offset_is_drawn_per_example_from_1_to_k_max(variant, history):
    data = RandomData()
    config = LAOMConfig(**{**TINY.__dict__, "k_max": 7, "variant": variant})
    LAOMLAM.train(config, data, [0], device="cpu")
    draws = [kw for what, kw in data.calls if what == "sample"]
    assert draws == [{"offset": 7, "uniform_offset": True, **history}] * TINY.steps


def test_offsets_are_uniform_over_1_to_k_max():
    from lam_models.split import _offsets

    g = torch.Generator().manual_seed(0)
    j = _offsets(torch.zeros(50_000, dtype=torch.long), 10, True, g)
    counts = torch.bincount(j, minlength=11)
    assert counts[0] == 0 and j.max() == 10
    np.testing.assert_allclose(counts[1:].numpy() / len(j), 0.1, atol=0.01)


def test_the_fdm_target_is_the_target_encoder_of_the_next_observation(monkeypatch):
    seen = []  # (input, target?) of every encoder call
    embed = LAOMNet.embed

    def spy(self, o, target=False):
        seen.append((o, target))
        return embed(self, o, target)

    monkeypatch.setattr(LAOMNet, "embed", spy)
    data = RandomData()
    config = LAOMConfig(**{**TINY.__dict__, "augment": False, "steps": 1})
    LAOMLAM.train(config, data, [0], device="cpu")
    batch = data.batches[0]
    targets = [o for o, is_target in seen if is_target]
    online = [o for o, is_target in seen if not is_target]
    assert len(targets) == 1 and targets[0] is batch.next_obs  # φ̄(o_{t+1}), not φ̄(o_{t+j})
    assert online[0] is batch.obs and online[1] is batch.far_obs  # the IDM sees (o_t, o_{t+j})


@pytest.mark.parametrize("method", ["laom", "laom-mlp"])
def test_the_target_encoder_is_an_ema_of_the_online_one_and_gets_no_gradient(method, monkeypatch):
    """φ̄_0 = φ_0 (same seed, same initial weights); then φ̄ ← (1 − τ) φ̄ + τ φ every update:
    laom's τ is target_tau, laom-mlp's 1 − ema_decay (its default 0.99 here)."""
    if method == "laom":
        lam_class, net_class, side = LAOMLAM, LAOMNet, 8
        config = LAOMConfig(**{**TINY.__dict__, "action_head": True, "target_tau": 0.2})
        tau = 0.2
    else:
        lam_class, net_class, side = LAOMMLPLAM, LAOMMLPNet, 4
        small = dict(steps=5, batch_size=16, label_batch_size=8, log_every=1, action_head=True)
        config = LAOMMLPConfig(**small)
        tau = 1 - config.ema_decay
    snapshots = []  # the online encoder φ after each update, when the target follows it
    update = net_class.update_target

    def recording(self):
        snapshots.append([p.detach().clone() for p in self.encoder.parameters()])
        update(self)

    monkeypatch.setattr(net_class, "update_target", recording)
    data = RandomData(side=side)
    trained = lam_class.train(config, data, [3], device="cpu").module
    assert len(snapshots) == config.steps == 5
    fresh = lam_class(config, data.spec, [3], "cpu").module
    expected = [p.detach() for p in fresh.encoder.parameters()]  # φ̄_0 = φ_0
    for online in snapshots:
        expected = [(1 - tau) * e + tau * p for e, p in zip(expected, online, strict=True)]
    for got, want, online in zip(
        trained.target_encoder.parameters(), expected, trained.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, online)  # it lags: not a copy of φ
        assert not got.requires_grad and got.grad is None
    trainable = {id(p) for p in trained.trainable_parameters()}
    assert not any(id(p) in trainable for p in trained.target_encoder.parameters())


def test_the_defaults_are_the_published_ones():
    assert LAOMConfig().target_tau == 0.001 and LAOMConfig().k_max == 10  # as published
    assert LAOMConfig().latent_dim == 8192 and LAOMConfig().action_weight == 0.001


def test_every_frame_is_augmented_on_its_own(monkeypatch):
    calls = []
    real = augment.augment_frames

    def spy(frames, generators, pad, kappa=None):
        out = real(frames, generators, pad, kappa)
        calls.append((frames, out, pad))
        return out

    monkeypatch.setattr("lam_models.lams.laom.augment_frames", spy)
    config = LAOMConfig(**{**TINY.__dict__, "shift": 2, "variant": "package"})
    LAOMLAM.train(config, RandomData(), [0], device="cpu")
    frames, out, pad = calls[0]
    assert len(frames) == 3 and pad == 2  # o_t, o_{t+j}, o_{t+1}
    # The same image in three frames: shifted differently in each (independent draws).
    image = torch.zeros(1, 256, 1, 8, 8)
    image[..., 3, 4] = 1.0
    g = [torch.Generator().manual_seed(0)]
    a, b, c = real([image, image, image], g, pad=2)
    where = [x[0, :, 0].flatten(1).argmax(1) for x in (a, b, c)]
    assert (where[0] != where[1]).float().mean() > 0.7 and (where[1] != where[2]).any()
    rows, cols = where[0] // 8, where[0] % 8
    assert rows.min() == 1 and rows.max() == 5 and cols.min() == 2 and cols.max() == 6


def test_shift_images_is_replicate_pad_and_crop():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    dy, dx = torch.tensor([2, -1]), torch.tensor([-3, 1])
    out = augment.shift_images(x, dy, dx)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="replicate")
    for i in range(2):
        top, left = 3 - int(dy[i]), 3 - int(dx[i])
        torch.testing.assert_close(out[i], padded[i, :, top : top + 6, left : left + 6])


def test_copies_trained_together_equal_copies_trained_alone():
    config = LAOMConfig(**{**TINY.__dict__, "action_head": True, "steps": 3})

    class Shared(RandomData):
        """Copy m's batches depend only on its seed (as CopyBatches' do)."""

        def __init__(self, seeds):
            super().__init__(len(seeds))
            self.gens = [np.random.default_rng(s) for s in seeds]

        def _batch(self, n, history=1):
            parts = [
                [torch.from_numpy(g.random((n, history, 8, 8), dtype=np.float32)) for _ in range(3)]
                + [torch.from_numpy(g.integers(5, size=n))]
                for g in self.gens
            ]
            o, nxt, far, a = (torch.stack(x) for x in zip(*parts, strict=True))
            return Transitions(o, nxt, far, a, torch.ones(len(self.gens), n, dtype=bool))

    together = LAOMLAM.train(config, Shared([4, 7]), [4, 7], device="cpu")
    alone = LAOMLAM.train(config, Shared([7]), [7], device="cpu")
    x = torch.rand(1, 32, 1, 8, 8)
    z_together = together.latents(x[0], x[0])[1]
    z_alone = alone.latents(x[0], x[0])[0]
    np.testing.assert_allclose(z_together, z_alone, rtol=1e-4, atol=1e-5)
    assert not np.allclose(together.latents(x[0], x[0])[0], z_alone, atol=1e-3)


def test_relabelling_uses_the_next_observation():
    lam = LAOMLAM(TINY, SPEC, [0], "cpu")
    assert lam.lookahead == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"k_max": 0}, "k_max must be >= 1, got 0"),
        ({"target_tau": 0.0}, "target_tau must be in (0, 1], got 0.0"),
        ({"target_tau": float("nan")}, "target_tau"),
        ({"channels": ()}, "channels must be a non-empty tuple"),
        ({"shift": -1}, "shift must be >= 0, got -1"),
        ({"latent_dim": 0}, "latent_dim must be >= 1, got 0"),
    ],
)
def test_bad_configurations_are_refused(options, message):
    with pytest.raises(ValueError, match=None) as info:
        LAOMConfig(**options)
    assert message in str(info.value)
