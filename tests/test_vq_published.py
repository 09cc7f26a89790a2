"""The published grid VQ LAM (lam_models.lams.vq_published) and its blocks (lam_models.nn):
the architecture as released (docs/protocols.md: no skip in the FDM, the encoder called on
each frame set alone), the codebook handling (moved only by the dead-code reset, on the
released schedule, unless learned), action prediction feeding the true action's code
detached with no reset, the losses scored during training, both augmentations, batch norm
per copy, seeds from named streams; and each package variant kept beside them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lam_models.lams.base import get_lam, load_lam
from lam_models.lams.vq_published import PublishedVQConfig, PublishedVQLAM
from lam_models.nn import EnsembleBatchNorm2d, EnsembleConv2d, avg_pool2, upsample2
from lam_models.split import DataSpec, DataSplit, Transitions

SPEC = DataSpec("grid", (1, 4, 4), True, 5)
SMALL = dict(encoder_width=8, mlp_width=16, fdm_width=8, batch_size=32, log_every=5)


class Data:
    """Random grid-like transitions for M copies, labelled with probability ``labelled``;
    remembers every batch it gave."""

    spec = SPEC
    train_episodes = 100  # an epoch: ceil(100 / batch size) updates

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


def spy_on(monkeypatch, method: str, record) -> None:
    """Every net PublishedVQLAM builds calls ``record(net, *args)`` before its ``method``."""
    real_build = PublishedVQLAM.build

    def build(self):
        net = real_build(self)
        real = getattr(net, method)

        def spy(*args):
            record(net, *args)
            return real(*args)

        setattr(net, method, spy)
        return net

    monkeypatch.setattr(PublishedVQLAM, "build", build)


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
    # As released the FDM has no skip connection: its 4th convolution reads 64 channels.
    assert net.fdm_unet.conv4.in_channels == 64 and not net.fdm_unet.skip
    skip = PublishedVQLAM(PublishedVQConfig(fdm_skip=True), SPEC, [0], "cpu").module.fdm_unet
    assert skip.conv4.in_channels == 128  # the variant concatenates the full-resolution map
    assert net.hidden1.weight.shape == (2, 8, 512) and net.hidden2.weight.shape == (2, 512, 512)
    c = PublishedVQConfig()
    assert (c.codebook_weight, c.commitment_weight, c.action_weight) == (0.1, 0.025, 0.1)
    assert (c.lr, c.batch_size, c.steps) == (1e-4, 1024, 1600)
    assert not c.learn_codebook and not c.fdm_skip
    assert (c.reset_schedule, c.reset_epochs, c.dead_code_share, c.dead_code_checks) == (
        "released",
        5,
        0.001,
        3,
    )
    assert (c.label_mechanism, c.score_updates, c.score_dataset) == ("detached", 40, "")


def test_without_the_skip_the_fdm_output_depends_on_o_only_through_the_pooled_map():
    """No skip: two frames with the same 2×2 average-pooled features give the same ô'
    (checked on the block: an input that differs inside a pooling cell but pools equal)."""
    unet = PublishedVQLAM(PublishedVQConfig(**SMALL), SPEC, [0], "cpu").module.fdm_unet
    unet.eval()
    calls = []
    real = unet.conv3.forward
    unet.conv3.forward = lambda x: calls.append(x.shape) or real(x)
    unet(torch.rand(1, 3, 2, 4, 4))
    assert calls == [(1, 3, 8, 2, 2)]  # the only path: the pooled half-resolution map


def test_the_encoder_sees_o_and_o_next_in_separate_calls():
    lam = PublishedVQLAM(PublishedVQConfig(**SMALL), SPEC, [0], "cpu")
    calls = []
    real = lam.module.encoder.forward
    lam.module.encoder.forward = lambda x: calls.append(x.shape) or real(x)
    lam.module.idm(torch.rand(1, 6, 1, 4, 4), torch.rand(1, 6, 1, 4, 4))
    assert calls == [(1, 6, 1, 4, 4)] * 2  # batch norm sees each set of 6 on its own


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
    # The every-update variant at share 1: every code not chosen by the whole batch is dead
    # and reset after one check.
    always = dict(SMALL, steps=6, dead_code_share=1.0, dead_code_checks=0)
    reset = train(PublishedVQConfig(**always, reset_schedule="every-update"), Data(1))
    assert not torch.equal(reset.module.codebook, initial.module.codebook)
    assert 6 * 4 <= sum(reset.history[0]["revived"]) <= 6 * 5


def test_the_released_reset_checks_the_last_batch_of_every_fifth_epoch(monkeypatch):
    checked = []
    spy_on(monkeypatch, "reset_dead_codes", lambda net, *a: checked.append(a[1].sum().item()))
    steps = []
    real_sample = Data.sample
    monkeypatch.setattr(Data, "sample", lambda self, b, **k: steps.append(b) or real_sample(
        self, b, **k))  # fmt: skip
    # 100 training trajectories at batch 32: an epoch is 4 updates; checks after epochs
    # 0, 5 and 10 (updates 4, 24, 44), each on that epoch's last, partial batch as released
    # (100 − 3·32 = 4 pairs: the first 4 rows of the last full batch drawn here).
    train(PublishedVQConfig(**dict(SMALL, steps=48)), Data(1))
    assert len(checked) == 3 and checked == [4.0] * 3
    checked.clear()
    train(PublishedVQConfig(**dict(SMALL, steps=48), reset_schedule="every-update"), Data(1))
    assert len(checked) == 48


def test_released_marks_accumulate_and_reset_to_the_batch_row_of_the_codes_index():
    lam = PublishedVQLAM(PublishedVQConfig(**SMALL), SPEC, [0], "cpu")
    config = lam.config  # share 0.1%, more than 3 marks, released schedule
    net, generators = lam.module, [torch.Generator().manual_seed(0)]
    latent = torch.randn(1, 1000, 16)
    dead = torch.tensor([[998.0, 1.0, 1.0, 0.0, 0.0]])  # 1 in 1000 is not below 0.1%
    alive = torch.tensor([[996.0, 1.0, 1.0, 1.0, 1.0]])
    marks = torch.zeros(1, 5, dtype=torch.long)
    before = net.codebook.detach().clone()
    for counts in (dead, alive, dead, dead):  # a used code keeps its marks
        assert net.reset_dead_codes(latent, counts, marks, config, generators).item() == 0
    assert marks.tolist() == [[0, 0, 0, 3, 3]]
    assert net.reset_dead_codes(latent, dead, marks, config, generators).item() == 2
    assert torch.equal(net.codebook[0, :3], before[0, :3])
    for k in (3, 4):  # code k moves to the pre-quantised latent of batch row k
        assert torch.equal(net.codebook[0, k], latent[0, k])
    assert marks.tolist() == [[0, 0, 0, 0, 0]]


def test_the_every_update_variant_resets_after_dead_checks_in_a_row():
    lam = PublishedVQLAM(PublishedVQConfig(**SMALL, reset_schedule="every-update"), SPEC, [0],
                         "cpu")  # fmt: skip
    config, net, generators = lam.config, lam.module, [torch.Generator().manual_seed(0)]
    latent = torch.randn(1, 1000, 16)
    dead = torch.tensor([[998.0, 1.0, 1.0, 0.0, 0.0]])
    alive = torch.tensor([[996.0, 1.0, 1.0, 1.0, 1.0]])
    checks = torch.zeros(1, 5, dtype=torch.long)
    for counts in (dead, dead, alive, dead, dead, dead):  # a used code clears its count
        assert net.reset_dead_codes(latent, counts, checks, config, generators).item() == 0
    assert checks.tolist() == [[0, 0, 0, 3, 3]]
    assert net.reset_dead_codes(latent, dead, checks, config, generators).item() == 2
    for k in (3, 4):  # onto random encoder outputs of the batch
        assert (net.codebook[0, k] == latent[0]).all(-1).any()


def _spy_fdm(monkeypatch, seen):
    def record(net, o, z):
        seen.append((z.detach().clone(), z.requires_grad, net.codebook.detach().clone()))

    spy_on(monkeypatch, "fdm", record)


def test_labelled_examples_feed_their_actions_code_detached_and_pull_the_output(monkeypatch):
    seen = []
    _spy_fdm(monkeypatch, seen)
    config = PublishedVQConfig(**dict(SMALL, steps=3), action_prediction=True)
    data = Data(2, labelled=0.3)
    lam = train(config, data, seeds=(0, 1))
    assert len(seen) == 3 and all(v > 0 for v in lam.history[0]["action_loss"])
    for (z, _, codebook), batch in zip(seen, data.batches, strict=True):
        for m in range(2):
            mask = batch.label_mask[m]
            assert mask.any()
            torch.testing.assert_close(z[m, mask], codebook[m, batch.actions[m, mask]])


def test_a_labelled_example_sends_no_reconstruction_gradient_to_the_idm():
    """Every example labelled, only the reconstruction loss: as released the IDM and the
    encoder get no gradient at all (the FDM gets each action's code detached); the
    straight-through variant moves them."""
    quiet = dict(SMALL, steps=3, codebook_weight=0.0, commitment_weight=0.0, action_weight=0.0)
    start = PublishedVQLAM(PublishedVQConfig(**quiet), SPEC, [0], "cpu").module.state_dict()
    for mechanism, moves in (("detached", False), ("straight-through", True)):
        config = PublishedVQConfig(**quiet, action_prediction=True, label_mechanism=mechanism)
        after = train(config, Data(1, labelled=1.0)).module.state_dict()
        for name in ("hidden1.weight", "head.weight", "encoder.conv1.weight"):
            assert torch.equal(after[name], start[name]) != moves, (mechanism, name)
        assert not torch.equal(after["fdm_unet.out.weight"], start["fdm_unet.out.weight"])


def test_the_released_pull_is_the_distance_of_the_chosen_code_to_the_actions_code():
    """The pull reads the straight-through output: its value is ‖c_k − c_a‖² / D (the
    chosen code's), averaged over the labelled examples."""
    config = PublishedVQConfig(**dict(SMALL, steps=1, log_every=1), action_prediction=True)
    data = Data(1, labelled=0.5)
    lam = train(config, data)
    net, batch = lam.module, data.batches[0]
    with torch.no_grad():
        fresh = PublishedVQLAM(config, SPEC, [0], "cpu").module  # the weights it started from
        fresh.train()
        codes = fresh.nearest(fresh.idm(batch.obs, batch.next_obs))[0]
        c = net.codebook[0]  # unchanged by training (no reset with labels)
        mask = batch.label_mask[0]
        expected = (c[codes[mask]] - c[batch.actions[0, mask]]).pow(2).mean(-1).mean()
    assert lam.history[0]["action_loss"][0] == pytest.approx(expected.item(), rel=1e-5)


def test_no_code_is_reset_while_labels_are_used():
    always = dict(SMALL, steps=6, dead_code_share=1.0, dead_code_checks=0)
    initial = PublishedVQLAM(PublishedVQConfig(**always), SPEC, [0], "cpu").module.codebook
    for mechanism, reset in (("detached", False), ("straight-through", True)):
        config = PublishedVQConfig(
            **always, reset_schedule="every-update", action_prediction=True,
            label_mechanism=mechanism,
        )  # fmt: skip
        lam = train(config, Data(1, labelled=0.3))
        assert torch.equal(lam.module.codebook, initial) != reset, mechanism


def test_the_published_losses_are_the_last_updates_training_errors():
    from lam_models.lams.training_score import TrainingScore

    data = Data(2)
    score = TrainingScore(data, steps=10, updates=3, dataset="", device="cpu")
    assert [score.due(s) for s in (6, 7, 9)] == [False, True, True]
    target = torch.zeros(2, 5, 1, 4, 4)
    for value in (1.0, 2.0):
        pred = torch.zeros_like(target)
        pred[..., :3, :] = value  # controllable rows
        pred[..., 3, :] = 0.5  # the noise row
        score.add(pred, target)
    histories = [{}, {}]
    score.save(histories)
    result = [TrainingScore.read(h) for h in histories]
    assert result[0]["scored_controllable_mse"] == pytest.approx((1 + 4) / 2)
    assert result[1]["scored_stochastic_mse"] == pytest.approx(0.25)
    assert result[0]["scored_updates"] == 2 and result[0]["scored_on"] == "training batches"
    lam = train(PublishedVQConfig(**dict(SMALL, steps=7, score_updates=3)), Data(1))
    assert TrainingScore.read(lam.history[0])["scored_updates"] == 3


def test_the_noise_copy_hides_the_noise_change_from_the_idm(monkeypatch):
    inputs = []
    spy_on(monkeypatch, "idm", lambda net, o, o_next: inputs.append((o, o_next)))
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
        "lam_models.lams.vq.augment_pair",  # vq_inputs, which vq-published calls
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


def test_the_noise_copy_variant_feeds_the_fdm_the_idms_o(monkeypatch):
    """``noise_copy_fdm_input="idm"``: the FDM reads o with o′'s noise row (as the IDM does),
    so the target's noise row (o's) is not in its input; by default it reads o itself."""
    for choice, row_of in (("o", "obs"), ("idm", "next_obs")):
        seen = []
        spy_on(monkeypatch, "fdm", lambda net, x, z, seen=seen: seen.append(x))
        data = Data(1)
        config = PublishedVQConfig(**dict(SMALL, steps=2), noise_copy=True,
                                   noise_copy_fdm_input=choice)  # fmt: skip
        train(config, data)
        for frames, batch in zip(seen, data.batches, strict=True):
            torch.testing.assert_close(frames[..., 3, :], getattr(batch, row_of)[..., 3, :])
            torch.testing.assert_close(frames[..., :3, :], batch.obs[..., :3, :])
        monkeypatch.undo()


def test_scoring_another_datasets_batches_leaves_the_model_as_training_left_it(lam_datasets):
    """The policy row's scored batches run in training mode (batch norm uses their own
    statistics) but must not move the running statistics the held-out metrics use."""
    from lam_models.lams.training_score import TrainingScore
    from lam_models.split import CopyBatches

    split = DataSplit(lam_datasets["grid"], held_out=0.1, seed=0)
    data = CopyBatches([split], [0])
    score = TrainingScore(data, steps=4, updates=2, dataset=lam_datasets["grid"], device="cpu")
    lam = PublishedVQLAM(PublishedVQConfig(**SMALL), SPEC, [0], "cpu")
    net = lam.module
    net.train()
    before = {k: v.clone() for k, v in net.named_buffers()}
    score.add_batch(16, lambda b: net(b.obs, b.next_obs).pred_next, net)
    for name, value in net.named_buffers():
        assert torch.equal(value, before[name]), name
    result = {}
    score.save([result])
    assert TrainingScore.read(result)["scored_on"] == lam_datasets["grid"]
    assert np.isfinite(TrainingScore.read(result)["scored_controllable_mse"])
