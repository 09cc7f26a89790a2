"""The one augmentation module (lam_models.augment) and the trainers that call it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lam_models.augment as augment
from lam_models.augment import augment_pair, copy_noise_row, shift_columns


def _shift_of(shifted: torch.Tensor, original: torch.Tensor) -> np.ndarray:
    """The column shift of each image (M, B, C, H, W) relative to ``original``."""
    flat_s, flat_o = shifted.flatten(0, 1), original.flatten(0, 1)
    out = []
    for s, o in zip(flat_s, flat_o, strict=True):
        matches = [torch.equal(s, torch.roll(o, k, dims=-1)) for k in (-1, 0, 1)]
        assert sum(matches) == 1
        out.append((-1, 0, 1)[matches.index(True)])
    return np.array(out).reshape(shifted.shape[:2])


def test_shift_columns_wraps_like_roll():
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    shifted = shift_columns(x, torch.tensor([1, -1]))
    assert torch.equal(shifted[0], torch.roll(x[0], 1, dims=-1))
    assert torch.equal(shifted[1], torch.roll(x[1], -1, dims=-1))


def test_a_pair_shares_one_shift_and_two_pairs_are_independent():
    o, o_next = torch.rand(2, 64, 1, 4, 4), torch.rand(2, 64, 1, 4, 4)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    idm_o, idm_next = augment_pair(o, o_next, generators)  # Aug1
    fdm_o, fdm_target = augment_pair(o, o_next, generators)  # Aug2
    idm_shift, fdm_shift = _shift_of(idm_o, o), _shift_of(fdm_o, o)
    assert (_shift_of(idm_next, o_next) == idm_shift).all()
    assert (_shift_of(fdm_target, o_next) == fdm_shift).all()
    assert set(idm_shift.ravel()) == {-1, 0, 1}
    assert (idm_shift != fdm_shift).mean() > 0.4  # independent draws: 2/3 differ


def test_a_copy_draws_the_same_augmentations_whatever_its_companions():
    o = torch.rand(3, 32, 1, 4, 4)
    together = augment_pair(o, o, [torch.Generator().manual_seed(s) for s in (5, 6, 7)])[0]
    alone = augment_pair(o[1:2], o[1:2], [torch.Generator().manual_seed(6)])[0]
    assert torch.equal(together[1], alone[0])


def test_the_noise_row_copy_replaces_row_3_only_and_leaves_its_input_alone():
    o, o_next = torch.rand(2, 8, 1, 4, 4), torch.rand(2, 8, 1, 4, 4)
    before = o.clone()
    idm_o = copy_noise_row(o, o_next)  # the IDM's view of o: o′'s noise row
    assert torch.equal(idm_o[..., 3, :], o_next[..., 3, :])
    assert torch.equal(idm_o[..., :3, :], o[..., :3, :])
    assert torch.equal(o, before)
    target = copy_noise_row(o_next, o)  # the FDM's target: o's noise row, nothing to predict
    assert torch.equal(target[..., 3, :], o[..., 3, :])
    with pytest.raises(ValueError, match="differ in shape"):
        copy_noise_row(o, o_next[:, :4])


@pytest.mark.parametrize("method", ["vq", "vq-published"])
def test_both_vq_trainers_copy_the_noise_row_through_the_tested_function(method, monkeypatch):
    from lam_models.lams.base import get_lam
    from lam_models.split import DataSpec, Transitions

    calls = []
    real = augment.copy_noise_row
    # both prepare their batches with lam_models.lams.vq.vq_inputs
    monkeypatch.setattr("lam_models.lams.vq.copy_noise_row", lambda *a: calls.append(1) or real(*a))

    class Data:
        spec = DataSpec("grid", (1, 4, 4), True, 5)
        num_copies = 1
        has_labels = torch.tensor([False])

        def sample(self, batch_size, **_):
            o = torch.rand(1, batch_size, 1, 4, 4)
            mask = torch.zeros(1, batch_size, dtype=torch.bool)
            return Transitions(o, o, o, torch.full((1, batch_size), -1), mask)

    cls = get_lam(method)
    config = cls.Config(steps=3, batch_size=8, log_every=3, noise_copy=True)
    cls.train(config, Data(), [0], device="cpu")
    assert len(calls) == 6  # the IDM's o and the FDM's target, every step


def test_gaussian_offsets_are_shared_by_a_pair_with_a_scale_per_copy():
    x, y = torch.zeros(2, 4000, 8), torch.ones(2, 4000, 8)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    ax, ay = augment_pair(x, y, gens, kappa=torch.tensor([0.1, 2.0]))
    torch.testing.assert_close(ay - ax, y - x)  # the same κ on both members of the pair
    assert ax[0].std().item() == pytest.approx(0.1, rel=0.05)
    assert ax[1].std().item() == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("method", ["vq", "laom-mlp", "linear"])
def test_every_trainer_calls_the_tested_function(method, monkeypatch):
    """The trainers augment through lam_models.augment (augment_pair, or vector_offsets for
    the linear LAM, which applies the offsets by linearity), not a copy of it."""
    from lam_models.lams.base import get_lam
    from lam_models.split import DataSpec, Transitions

    cls = get_lam(method)
    calls = []
    name = "vector_offsets" if method == "linear" else "augment_pair"
    real = getattr(augment, name)

    def spy(*args, **kwargs):
        calls.append(args[0] if method == "linear" else args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(f"{cls.__module__}.{name}", spy)
    grid = method != "linear"
    shape = (1, 4, 4) if grid else (6,)

    class Data:
        spec = DataSpec("grid" if grid else "linear", shape, grid, 5 if grid else 2)
        num_copies = 1
        has_labels = torch.tensor([False])

        def sample(self, batch_size, **_):
            o = torch.rand(1, batch_size, *shape)
            actions = torch.full((1, batch_size), -1) if grid else torch.zeros(1, batch_size, 2)
            return Transitions(o, o, o, actions, torch.zeros(1, batch_size, dtype=torch.bool))

    settings = {
        "vq": {"augment": True},
        "laom-mlp": {"augment": True},
        "linear": {"kappa": 0.1, "latent_dim": 2},
    }
    config = cls.Config(steps=3, batch_size=8, log_every=3, **settings[method])
    cls.train(config, Data(), [0], device="cpu")
    assert len(calls) == 6  # Aug1 and Aug2, every step
