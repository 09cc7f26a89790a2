"""laom as the authors' code runs it (lam_models.lams.laom, variant "authors"): the labelled
pair's offset, the encoder without a LayerNorm, 3 stacked frames, the per-image choice of
augmentation, the label head's gradient ratio; and the "package" variant, the package's
earlier laom, number for number."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_laom import TINY, RandomData

from lam_models import augment
from lam_models.encoders import StridedConvEncoder
from lam_models.frames import stack_frames
from lam_models.lams.laom import LAOMLAM, PAPER_SIZES, LAOMConfig, LAOMNet
from lam_models.split import CopyBatches, DataSpec, Part


@pytest.mark.parametrize(
    ("variant", "draw", "partner"),
    [
        ("authors", {"offset": 10, "uniform_offset": True, "history": 3}, "far_obs"),
        ("package", {}, "next_obs"),
    ],
)
def test_the_labelled_pair_shares_the_unlabelled_offset(variant, draw, partner, monkeypatch):
    """The authors' head reads z(o_t, o_{t+j}), j drawn as the IDM's (U{1..k_max}); the
    package's z(o_t, o_{t+1})."""
    pairs = []
    idm = LAOMNet.idm

    def spy(self, o, o_far):
        pairs.append((o, o_far))
        return idm(self, o, o_far)

    monkeypatch.setattr(LAOMNet, "idm", spy)
    data = RandomData()
    config = LAOMConfig(
        **{**TINY.__dict__, "variant": variant, "action_head": True, "augment": False}
    )
    LAOMLAM.train(config, data, [0], device="cpu")
    labelled = [kw for what, kw in data.calls if what == "labelled"]
    assert labelled == [draw] * TINY.steps
    unlabelled = [kw for what, kw in data.calls if what == "sample"]
    assert all(kw["offset"] == 10 and kw["uniform_offset"] for kw in unlabelled)
    batch = data.batches[1]  # the first labelled batch (after the first unlabelled one)
    o, o_far = pairs[0]
    assert o is batch.obs and o_far is getattr(batch, partner)


def test_the_encoder_is_strided_convolutions_flattened_without_a_layer_norm():
    torch.manual_seed(0)
    encoder = StridedConvEncoder(1, 3, (4, 6), 1, (16, 16))
    assert encoder.out_dim == 6 * 4 * 4
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in encoder.modules())
    x = torch.rand(1, 5, 3, 16, 16)
    convs = [m for m in encoder.modules() if hasattr(m, "weight") and m.weight.dim() == 5]
    y = x[0]
    for stage in range(2):  # conv stride 2, then x + conv(relu6(conv(relu6(x))))
        down, c1, c2 = convs[3 * stage : 3 * stage + 3]
        y = F.conv2d(y, down.weight[0], down.bias[0], stride=2, padding=1)
        inner = F.conv2d(F.relu6(y), c1.weight[0], c1.bias[0], padding=1)
        y = y + F.conv2d(F.relu6(inner), c2.weight[0], c2.bias[0], padding=1)
    torch.testing.assert_close(encoder(x)[0], y.flatten(1), rtol=1e-5, atol=1e-5)
    # No normalisation: the embedding's scale follows the input's.
    small, large = encoder(0.1 * x).std(-1), encoder(10 * x).std(-1)
    assert (large > 5 * small).all()


def test_laom_builds_the_authors_encoder_on_stacked_frames_and_the_package_its_own():
    spec = DataSpec("grid", (1, 8, 8), True, 5)
    net = LAOMLAM(TINY, spec, [0], "cpu").module
    assert isinstance(net.encoder, StridedConvEncoder)
    assert net.encoder.stages[0].in_channels == 3  # o_{t-2}, o_{t-1}, o_t
    package = LAOMLAM(LAOMConfig(**{**TINY.__dict__, "variant": "package"}), spec, [0], "cpu")
    assert not isinstance(package.module.encoder, StridedConvEncoder)
    config = package.config
    assert (config.encoder, config.frame_stack, config.labelled_offset, config.augmentation) == (
        "resnet", 1, "next", "shift"
    )  # fmt: skip


def _toy_part(length: int = 5, episodes: int = 2) -> Part:
    """Frames whose pixels hold their own row number; transitions of whole episodes."""
    rows = episodes * (length + 1)
    frames = np.broadcast_to(
        np.arange(rows, dtype=np.float32)[:, None, None, None], (rows, 1, 2, 2)
    )
    per_episode = np.arange(episodes)[:, None] * (length + 1)
    start = (per_episode + np.arange(length)).reshape(-1)
    n = len(start)
    return Part(
        frames=np.ascontiguousarray(frames),
        start=start,
        last=np.repeat(per_episode[:, 0] + length, length),
        actions=np.zeros(n, np.int64),
        label_mask=np.ones(n, bool),
        oracle={},
        episodes=np.arange(episodes),
        first=np.repeat(per_episode[:, 0], length),
    )


def test_stacked_frames_repeat_the_first_frame_at_an_episode_start():
    part = _toy_part()
    stacked = part.obs(history=3)[:, :, 0, 0]  # (N, 3): the rows each channel came from
    np.testing.assert_array_equal(stacked[:3], [[0, 0, 0], [0, 0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(stacked[5:7], [[6, 6, 6], [6, 6, 7]])  # episode 2
    np.testing.assert_array_equal(part.next_obs(history=3)[0, :, 0, 0], [0, 0, 1])
    np.testing.assert_array_equal(part.far_obs(9, history=2)[0, :, 0, 0], [4, 5])  # its end
    np.testing.assert_array_equal(part.obs(), part.frames[part.start])  # h = 1: unchanged
    split = types.SimpleNamespace(train=part, spec=DataSpec("grid", (1, 2, 2), True, 5))
    batches = CopyBatches([split], [0])
    batch = batches.sample(64, offset=3, uniform_offset=True, history=3)
    rows = batch.obs[0, :, :, 0, 0].numpy()  # (B, 3)
    newest = rows[:, 2].astype(int)
    first = (newest // 6) * 6
    expected = np.stack([np.maximum(newest - k, first) for k in (2, 1, 0)], 1)
    np.testing.assert_array_equal(rows, expected)
    far = batch.far_obs[0, :, 2, 0, 0].numpy()
    assert ((far - newest >= 1) & (far - newest <= 3)).all()
    torch.testing.assert_close(
        torch.from_numpy(stack_frames(part.frames, part.start, part.first, 2)),
        torch.from_numpy(part.obs(history=2)),
    )


def test_each_image_gets_its_own_choice_of_augmentation():
    n, size, shift = 4000, 16, 3
    g = torch.Generator().manual_seed(0)
    choice, _ = augment.mixed_sampling(n, size, g, shift, 90.0, 0.5)
    counts = torch.bincount(choice, minlength=8).float() / n
    torch.testing.assert_close(counts, torch.full((8,), 1 / 8), atol=0.02, rtol=0)
    # The same image, 64 times in one batch: different outputs; "nothing" leaves it be,
    # a shift is DrQ's replicate-pad shift.
    image = torch.rand(1, 1, 1, size, size).expand(1, 64, 1, size, size).contiguous()
    (out,) = augment.mixed_augment_frames([image], [torch.Generator().manual_seed(1)], shift)
    g = torch.Generator().manual_seed(1)
    choice = torch.randint(8, (64,), generator=g)
    d = torch.randint(-shift, shift + 1, (64, 2), generator=g)
    distinct = {tuple(out[0, i].flatten()[:20].tolist()) for i in range(64)}
    assert len(distinct) > 40
    for i in range(64):
        if choice[i] == 0:
            torch.testing.assert_close(out[0, i], image[0, i])
        if choice[i] == 1:
            expected = augment.shift_images(image[0, i : i + 1], d[i, 1:], d[i, :1])
            torch.testing.assert_close(out[0, i : i + 1], expected, atol=1e-5, rtol=0)
    assert (choice == 0).any() and (choice == 1).any()


def test_a_rotation_turns_the_image():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 1, 4] = 1.0  # above the centre
    quarter = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    y = augment.warp_images(x, quarter)
    assert y[0, 0].argmax() != x[0, 0].argmax() and y[0, 0].max() == pytest.approx(1.0)
    assert torch.rot90(x[0, 0], 1).argmax() == y[0, 0].argmax() or (
        torch.rot90(x[0, 0], -1).argmax() == y[0, 0].argmax()
    )


def test_the_label_gradient_ratio_is_logged_and_scales_with_lambda():
    """At every log point, ‖∇_φ λ_a·head‖ / ‖∇_φ latent‖; twice λ_a, twice the ratio
    (measured before the first update, on the same batches)."""
    ratios = {}
    for weight in (0.001, 0.002):
        config = LAOMConfig(
            **{**TINY.__dict__, "action_head": True, "action_weight": weight, "steps": 4}
        )
        config.log_every = 2
        history = LAOMLAM.train(config, RandomData(), [0], device="cpu").history[0]
        assert history["step"] == [2, 4] and len(history["label_grad_ratio"]) == 2
        ratios[weight] = history["label_grad_ratio"]
    assert all(r > 0 for r in ratios[0.001])
    config = LAOMConfig(**{**TINY.__dict__, "action_head": True, "steps": 1, "log_every": 1})
    first = {
        w: LAOMLAM.train(
            LAOMConfig(**{**config.__dict__, "action_weight": w}), RandomData(), [0], device="cpu"
        ).history[0]["label_grad_ratio"][0]
        for w in (0.001, 0.002)
    }
    assert first[0.002] == pytest.approx(2 * first[0.001], rel=1e-4)
    unsupervised = LAOMLAM.train(TINY, RandomData(), [0], device="cpu").history[0]
    assert "label_grad_ratio" not in unsupervised


def test_the_package_variant_is_the_earlier_laom_number_for_number():
    """Recorded from the package's laom before the authors' variant became the default
    (same data, seed and sizes, one torch thread as in this suite). Equal to float32
    rounding: another CPU's kernels may sum in another order (seen: 1e-7 apart on AMD EPYC
    against the recording machine), a different model would be far off."""
    close = {"rel": 1e-5, "abs": 1e-6}
    config = LAOMConfig(
        **{**TINY.__dict__, "action_head": True, "steps": 6, "log_every": 3, "variant": "package"}
    )
    lam = LAOMLAM.train(config, RandomData(), [5], device="cpu")
    x = torch.from_numpy(np.random.default_rng(1).random((4, 1, 8, 8), np.float32))
    z = lam.latents(x, x.flip(-1))
    assert lam.history[0]["loss"] == pytest.approx([1.127799391746521, 1.103669285774231], **close)
    assert float(np.float64(z).sum()) == pytest.approx(2.836317256093025, **close)
    expected = [-0.053502440452575684, 0.21493364870548248, 0.044289201498031616]
    assert z[0, 0, :3].tolist() == pytest.approx(expected, **close)


def test_latents_take_stacked_or_single_frames():
    lam = LAOMLAM(TINY, DataSpec("grid", (1, 8, 8), True, 5), [0], "cpu")
    x = torch.rand(6, 1, 8, 8)
    stacked = x.repeat(1, 3, 1, 1)  # a history of the same frame: as at an episode start
    np.testing.assert_allclose(lam.latents(x, x.flip(-1)), lam.latents(stacked, stacked.flip(-1)))
    moving = torch.rand(6, 3, 8, 8)
    assert not np.allclose(lam.latents(moving, moving.flip(-1)), lam.latents(x, x.flip(-1)))


def test_paper_scale_sets_the_released_sizes():
    config = LAOMConfig(scale="paper")
    assert all(getattr(config, k) == v for k, v in PAPER_SIZES.items())
    assert config.channels == (96, 192, 192) and config.batch_size == 256
    with pytest.raises(ValueError, match="scale='paper' sets batch_size"):
        LAOMConfig(scale="paper", batch_size=64)
    with pytest.raises(ValueError, match="variant"):
        LAOMConfig(variant="mine")
