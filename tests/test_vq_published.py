"""The published grid VQ LAM (lam_models.lams.vq_published) and its blocks (lam_models.nn):
the architecture as PROTOCOLS.md describes it, the codebook handling (moved only by the
dead-code reset unless learned), action prediction feeding the true action's code, both
augmentations, batch norm per copy, seeds from named streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lam_models.lam import get_lam, load_lam
from lam_models.lams.vq_published import PublishedVQConfig, PublishedVQLAM
from lam_models.nn import EnsembleBatchNorm2d, EnsembleConv2d, avg_pool2, upsample2
from lam_models.split import DataSpec, DataSplit, Transitions

SPEC = DataSpec("grid", (1, 4, 4), True, 5)
SMALL = dict(encoder_width=8, mlp_width=16, fdm_width=8, batch_size=32, log_every=5)


class Data:
    """Random grid-like transitions for M copies, labelled with probability ``labelled``;
    remembers every batch it gave."""

    spec = SPEC

    def __init__(self, copies: int, labelled: float = 0.0, seed: int = 0):
        self.num_copies, self.labelled = copies, labelled
        self.generator = torch.Generator().manual_seed(seed)
        self.has_labels = torch.full((copies,), labelled > 0)
        self.batches: list[Transitions] = []

    def sample(self, batch_size: int, **kwargs) -> Transitions:
        assert not kwargs.get("labelled_share"), "labels must come at their natural rate"
        shape = (self.num_copies, batch_size)
        g = self.generator
        o = (torch.rand(*shape, 1, 4, 4, generator=g) < 0.3).float()
        o_next = (torch.rand(*shape, 1, 4, 4, generator=g) < 0.3).float()
        actions = torch.randint(5, shape, generator=g)
        mask = torch.rand(shape, generator=g) < self.labelled
        batch = Transitions(o, o_next, o_next, torch.where(mask, actions, -1), mask)
        self.batches.append(batch)
        return batch


def train(config: PublishedVQConfig, data: Data, seeds=(0,)) -> PublishedVQLAM:
    return PublishedVQLAM.train(config, data, list(seeds), device="cpu")


def test_the_published_architecture():
    lam = PublishedVQLAM(PublishedVQConfig(), SPEC, [0, 1], "cpu")
    net = lam.module
    o = torch.rand(2, 7, 1, 4, 4)
    assert net.encoder(o).shape == (2, 7, 4)  # 4 numbers per frame, from the 2×2 level
    assert net.idm(o, o).shape == (2, 7, 16)  # a 16-d latent
    assert net.codebook.shape == (2, 5, 16)  # 5 codes
    assert net.fdm_unet.conv1.in_channels == 2  # [o, latent as 4×4]
    pred = net.fdm(o, torch.randn(2, 7, 16))
    assert pred.shape == (2, 7, 1, 4, 4) and (pred >= 0).all()  # ReLU output
    widths = {m.out_channels for m in net.modules() if isinstance(m, EnsembleConv2d)}
    assert widths == {64, 1}
    assert net.hidden1.weight.shape == (2, 8, 512) and net.hidden2.weight.shape == (2, 512, 512)
    c = PublishedVQConfig()
    assert (c.codebook_weight, c.commitment_weight, c.action_weight) == (0.1, 0.025, 0.1)
    assert (c.lr, c.batch_size, c.steps) == (1e-4, 1024, 1600)
    assert not c.learn_codebook


def test_the_encoder_is_position_aware():
    """Unlike ours (global max-pool), the same move in two places gives two encodings."""
    lam = PublishedVQLAM(PublishedVQConfig(), SPEC, [0], "cpu")
    lam.module.eval()
    frames = torch.zeros(1, 2, 1, 4, 4)
    frames[0, 0, 0, 0, 0] = frames[0, 1, 0, 2, 3] = 1.0
    e = lam.module.encoder(frames)
    assert not torch.allclose(e[0, 0], e[0, 1])


def test_as_released_only_the_dead_code_reset_moves_the_codebook():
    never_reset = dict(SMALL, steps=10, dead_code_checks=10**6)
    lam = train(PublishedVQConfig(**never_reset), Data(1))
    initial = PublishedVQLAM(PublishedVQConfig(**never_reset), SPEC, [0], "cpu")
    assert torch.equal(lam.module.codebook, initial.module.codebook)  # untouched
    learned = train(PublishedVQConfig(**never_reset, learn_codebook=True), Data(1))
    assert not torch.equal(learned.module.codebook, initial.module.codebook)
    # Share 1: every code not chosen by the whole batch is dead, and reset after one check.
    always = dict(SMALL, steps=6, dead_code_share=1.0, dead_code_checks=0)
    reset = train(PublishedVQConfig(**always), Data(1))
    assert not torch.equal(reset.module.codebook, initial.module.codebook)
    assert 6 * 4 <= sum(reset.history[0]["revived"]) <= 6 * 5


def test_a_code_is_reset_after_more_than_the_allowed_dead_checks():
    lam = PublishedVQLAM(PublishedVQConfig(**SMALL), SPEC, [0], "cpu")
    config = lam.config  # share 0.1%, 3 checks
    net, generators = lam.module, [torch.Generator().manual_seed(0)]
    latent = torch.randn(1, 1000, 16)
    counts = torch.tensor([[998.0, 1.0, 1.0, 0.0, 0.0]])  # 1 in 1000 is not below 0.1%
    checks = torch.zeros(1, 5, dtype=torch.long)
    before = net.codebook.detach().clone()
    for _ in range(3):
        assert net.reset_dead_codes(latent, counts, checks, config, generators).item() == 0
    assert checks.tolist() == [[0, 0, 0, 3, 3]]
    assert net.reset_dead_codes(latent, counts, checks, config, generators).item() == 2
    assert torch.equal(net.codebook[0, :3], before[0, :3])
    for k in (3, 4):  # moved onto encoder outputs of the batch
        assert (net.codebook[0, k] == latent[0]).all(-1).any()
    assert checks.tolist() == [[0, 0, 0, 0, 0]]


def test_labelled_examples_feed_their_actions_code_and_pull_the_latent(monkeypatch):
    config = PublishedVQConfig(**dict(SMALL, steps=3), action_prediction=True)
    data = Data(2, labelled=0.3)
    seen = []
    real_build = PublishedVQLAM.build

    def build(self):
        net = real_build(self)
        fdm = net.fdm

        def spy(o, z):
            seen.append((z.detach().clone(), net.codebook.detach().clone()))
            return fdm(o, z)

        net.fdm = spy
        return net

    monkeypatch.setattr(PublishedVQLAM, "build", build)
    lam = train(config, data, seeds=(0, 1))
    assert len(seen) == 3 and all(v > 0 for v in lam.history[0]["action_loss"])
    for (z, codebook), batch in zip(seen, data.batches, strict=True):
        for m in range(2):
            mask = batch.label_mask[m]
            assert mask.any()
            torch.testing.assert_close(z[m, mask], codebook[m, batch.actions[m, mask]])


def test_the_noise_copy_hides_the_noise_change_from_the_idm(monkeypatch):
    inputs = []
    real_build = PublishedVQLAM.build

    def build(self):
        net = real_build(self)
        idm = net.idm
        net.idm = lambda o, o_next: inputs.append((o, o_next)) or idm(o, o_next)
        return net

    monkeypatch.setattr(PublishedVQLAM, "build", build)
    data = Data(1)
    train(PublishedVQConfig(**dict(SMALL, steps=2), noise_copy=True), data)
    for (o, o_next), batch in zip(inputs, data.batches, strict=True):
        torch.testing.assert_close(o[..., 3, :], o_next[..., 3, :])  # no noise change seen
        torch.testing.assert_close(o[..., :3, :], batch.obs[..., :3, :])  # the rest is o
        assert not torch.equal(batch.obs[..., 3, :], batch.next_obs[..., 3, :])


def test_the_shift_augmentation_goes_through_augment_pair(monkeypatch):
    from lam_models import augment

    calls = []
    real = augment.augment_pair
    monkeypatch.setattr(
        "lam_models.lams.vq_published.augment_pair",
        lambda *a, **k: calls.append(a[0].shape) or real(*a, **k),
    )
    train(PublishedVQConfig(**dict(SMALL, steps=3), augment=True), Data(1))
    assert len(calls) == 6  # one shift for the IDM pair, another for the FDM pair, every step


def test_a_copy_trains_as_it_would_alone():
    """Batch norm, initialisation, codes, batches and resets are each copy's own."""
    config = PublishedVQConfig(**dict(SMALL, steps=8), augment=True)
    pair = train(config, Data(2, seed=5), seeds=(3, 4))
    data = Data(2, seed=5)  # the same batches; copy 1 alone sees copy 1's half
    alone_data = Data(1)
    alone_data.sample = lambda b, **k: Transitions(*(x[1:] for x in data.sample(b, **k)))
    alone = train(config, alone_data, seeds=(4,))
    for (name, a), b in zip(
        pair.copy([1]).module.state_dict().items(), alone.module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_seeds_come_from_named_streams():
    a = PublishedVQLAM(PublishedVQConfig(**SMALL), SPEC, [0, 1, 0], "cpu").module.state_dict()
    for key, value in a.items():
        if value.is_floating_point() and "running" not in key and "bn" not in key:
            assert torch.equal(value[0], value[2]), key  # same seed, same start
            assert not torch.equal(value[0], value[1]), key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(latent_dim=8), r"latent_dim must be \(H/s\)·\(W/s\).*e\.g\. 16"),
        (dict(codebook_size=4, action_prediction=True), "codebook_size must be >= 5"),
    ],
)
def test_a_model_that_cannot_fit_the_data_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PublishedVQLAM(PublishedVQConfig(**kwargs), SPEC, [0], "cpu")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(lr=0.0), "lr"),
        (dict(dead_code_share=2.0), "dead_code_share"),
        (dict(batch_size=0), "batch_size"),
        (dict(noise_copy="yes"), "noise_copy"),
    ],
)
def test_bad_config_raises_naming_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name) as error:
        PublishedVQConfig(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(error.value)


def test_it_trains_from_a_dataset_scores_on_both_scales_and_reloads(lam_datasets, tmp_path):
    """Registered as ``vq-published``: trains on a split, scores, saves, reloads, draws."""
    cls = get_lam("vq-published")
    assert cls is PublishedVQLAM
    split = DataSplit(lam_datasets["grid"], held_out=0.1, seed=0)
    config = PublishedVQConfig(**dict(SMALL, steps=10), action_prediction=True)
    lam = cls.train(config, [split], [0], device="cpu")
    metrics = lam.metrics([split])[0]
    for key in (
        "controllable_loss",
        "controllable_loss_noaction",
        "stochastic_loss",
        "stochastic_loss_noaction",
        "perplexity",
        "action_accuracy",
    ):
        assert np.isfinite(metrics[key]), key
    ratio = metrics["controllable_mse"] / metrics["noaction_mse_controllable"]
    assert metrics["controllable_loss_noaction"] == pytest.approx(ratio)
    lam.save(tmp_path / "run", metrics)
    again = load_lam(tmp_path / "run", device="cpu").metrics([split])[0]
    assert again["controllable_loss"] == pytest.approx(metrics["controllable_loss"], rel=1e-6)
    paths = lam.plots(tmp_path, [split])
    assert [p.name for p in paths] == ["transitions.png", "codes.png"]
    assert all(p.stat().st_size > 5000 for p in paths)


# ------------------------------------------------------------------------- blocks (nn.py)


def test_grouped_convolution_equals_the_dense_one():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 4, 4)
    for circular in (False, True):
        dense = EnsembleConv2d(3, 4, 6, 3, (4, 4), padding=1, circular=circular)
        grouped = EnsembleConv2d(3, 4, 6, 3, (4, 4), padding=1, circular=circular, grouped=True)
        grouped.load_state_dict(dense.state_dict())
        torch.testing.assert_close(grouped(x), dense(x), rtol=1e-5, atol=1e-5)


def test_grouped_transposed_convolution_equals_the_dense_one():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 2, 2)
    dense = EnsembleConv2d(3, 4, 6, 2, (2, 2), stride=2, transposed=True, grouped=False)
    grouped = EnsembleConv2d(3, 4, 6, 2, (2, 2), stride=2, transposed=True, grouped=True)
    grouped.load_state_dict(dense.state_dict())
    torch.testing.assert_close(grouped(x), dense(x), rtol=1e-5, atol=1e-5)


def test_convolutions_on_large_images_are_grouped_by_default():
    # The dense form's matrix grows as (H·W)²: on 32×32 frames it would not fit.
    assert not EnsembleConv2d(2, 8, 8, 3, (4, 4), padding=1).grouped
    big = EnsembleConv2d(2, 8, 8, 3, (32, 32), padding=1)
    assert big.grouped and big.taps is None
    assert big(torch.randn(2, 3, 8, 32, 32)).shape == (2, 3, 8, 32, 32)


def test_the_published_model_on_the_distracting_grid_reads_the_latent_at_cell_scale():
    # Pixel scale 8 (32×32 frames): the 16-d latent is a 4×4 image of 8×8 blocks.
    spec = DataSpec("grid", (1, 32, 32), True, 5)
    net = PublishedVQLAM(PublishedVQConfig(**SMALL), spec, [0], "cpu").module
    assert net.latent_scale == 8
    seen = {}
    net.fdm_unet.register_forward_hook(lambda _, inputs, out: seen.update(x=inputs[0]))
    z = torch.randn(1, 3, 16)
    assert net.fdm(torch.rand(1, 3, 1, 32, 32), z).shape == (1, 3, 1, 32, 32)
    z_map = seen["x"][:, :, 1]
    torch.testing.assert_close(z_map[..., ::8, ::8], z.reshape(1, 3, 4, 4))
    torch.testing.assert_close(z_map, upsample2(upsample2(upsample2(z.reshape(1, 3, 4, 4)))))
    o = torch.rand(1, 3, 1, 32, 32)
    assert net.idm(o, o).shape == (1, 3, 16)
    with pytest.raises(ValueError, match="latent_dim must be"):
        PublishedVQLAM(PublishedVQConfig(latent_dim=15), spec, [0], "cpu")


def test_ensemble_batch_norm_is_one_batch_norm_per_copy():
    torch.manual_seed(0)
    bn = EnsembleBatchNorm2d(3, 4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
    x = torch.randn(3, 16, 4, 2, 2) * torch.tensor([1.0, 3.0, 0.1])[:, None, None, None, None]
    refs = [torch.nn.BatchNorm2d(4) for _ in range(3)]
    for m, ref in enumerate(refs):
        ref.load_state_dict(
            {
                "weight": bn.weight[m],
                "bias": bn.bias[m],
                "running_mean": torch.zeros(4),
                "running_var": torch.ones(4),
                "num_batches_tracked": torch.tensor(0),
            }
        )
    y = bn(x)
    for m, ref in enumerate(refs):
        torch.testing.assert_close(y[m], ref(x[m]))
        torch.testing.assert_close(bn.running_var[m], ref.running_var)
    bn.eval()
    for ref in refs:
        ref.eval()
    y = bn(x)
    for m, ref in enumerate(refs):
        torch.testing.assert_close(y[m], ref(x[m]))


def test_pooling_and_upsampling():
    x = torch.arange(32.0).reshape(2, 1, 4, 4)
    torch.testing.assert_close(avg_pool2(x), F.avg_pool2d(x, 2))
    torch.testing.assert_close(upsample2(x), F.interpolate(x, scale_factor=2.0, mode="nearest"))
