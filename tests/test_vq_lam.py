"""Tests of the grid VQ LAM (lam_models.lams.vq, lam_models.nn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lam_models.lams.vq import VQLAM, VQConfig, action_loss
from lam_models.nn import EnsembleConv2d
from lam_models.split import DataSpec, Transitions

# (row, col) change of each grid action: stay, up, down, left, right.
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
# Under a uniform policy the square is uniform over the 12 cells; 14 of the 48
# (cell, move) pairs hit a wall and look exactly like "stay", so no code→action map
# can be right on them: the attainable accuracy is 1 − (14/12 · 1/5) = 46/60.
ATTAINABLE_ACTION_ACCURACY = 46 / 60


def grid_transitions(n: int, rng: np.random.Generator, noise_intensity: float = 0.0):
    """n i.i.d. GridLAM-v0 transitions (o, a, o') under the uniform policy, in numpy."""
    cell = rng.integers(0, 12, n)
    row, col = cell // 4, cell % 4
    actions = rng.integers(0, 5, n)
    next_row = np.clip(row + MOVES[actions, 0], 0, 2)
    next_col = np.clip(col + MOVES[actions, 1], 0, 3)
    o = np.zeros((n, 1, 4, 4), np.float32)
    o_next = np.zeros_like(o)
    o[np.arange(n), 0, row, col] = 1.0
    o_next[np.arange(n), 0, next_row, next_col] = 1.0
    o[:, 0, 3] = (rng.random((n, 4)) < 0.5) * noise_intensity
    o_next[:, 0, 3] = (rng.random((n, 4)) < 0.5) * noise_intensity
    return o, actions, o_next


SPEC = DataSpec("grid", (1, 4, 4), True, 5)


class GridData:
    """The data interface a LAM trains on, streaming fresh no-noise transitions; every copy
    gets its own."""

    spec = SPEC

    def __init__(self, copies: int, seed: int, label_fraction: float = 0.0):
        self.num_copies, self.label_fraction = copies, label_fraction
        self.rng = np.random.default_rng(seed)

    @property
    def has_labels(self) -> torch.Tensor:
        return torch.full((self.num_copies,), self.label_fraction > 0)

    def sample(self, batch_size: int, labelled_share: float = 0.0, **_) -> Transitions:
        parts = []
        for _ in range(self.num_copies):
            o, actions, o_next = grid_transitions(batch_size, self.rng)
            mask = self.rng.random(batch_size) < self.label_fraction
            parts.append((o, o_next, o_next, np.where(mask, actions, -1), mask))
        return Transitions(*(torch.from_numpy(np.stack(x)) for x in zip(*parts, strict=True)))


def train(config: VQConfig, seeds, data) -> VQLAM:
    return VQLAM.train(config, data, seeds, device="cpu")


def best_map_accuracy(codes: np.ndarray, actions: np.ndarray, num_codes: int) -> float:
    """Accuracy of the best code→action map (fitted and scored on the same data)."""
    table = np.zeros((num_codes, 5))
    np.add.at(table, (codes, actions), 1)
    return table.max(1).sum() / len(actions)


def controllable_loss(pred_next: np.ndarray, next_obs: np.ndarray) -> float:
    """FDM squared error on rows 0–2 / total variance of rows 0–2 of o' (the text's scale)."""
    top = next_obs[:, :, :3]
    return ((pred_next[:, :, :3] - top) ** 2).sum() / (top.var(0).sum() * len(top))


FAST: dict = {}  # the defaults are already small; kept as a hook for tuning


@pytest.fixture(scope="module")
def no_noise_models():
    """Three seeds trained together on the no-noise grid (a shortened run)."""
    return train(VQConfig(steps=1500, **FAST), [0, 1, 2], GridData(3, seed=0))


@pytest.fixture(scope="module")
def held_out():
    o, actions, o_next = grid_transitions(3000, np.random.default_rng(123))
    return torch.from_numpy(o), actions, torch.from_numpy(o_next)


def test_no_noise_codes_are_used_and_predict_the_action(no_noise_models, held_out):
    lam = no_noise_models
    o, actions, o_next = held_out
    accuracies = []
    prediction = lam.predict(o, o_next)
    for m, history in enumerate(lam.history):
        codes = prediction.codes[m].numpy()
        usage = np.bincount(codes, minlength=lam.config.codebook_size)
        assert (usage > 0).all(), usage
        assert history["perplexity"][-1] > 3.5
        accuracies.append(best_map_accuracy(codes, actions, 5))
    # Every seed reaches the ceiling set by wall moves (up to sampling error of 3000).
    assert min(accuracies) > ATTAINABLE_ACTION_ACCURACY - 0.03, accuracies
    assert max(accuracies) < ATTAINABLE_ACTION_ACCURACY + 0.03, accuracies


def test_no_noise_controllable_loss_is_small(no_noise_models, held_out):
    o, _, o_next = held_out
    pred = no_noise_models.predict(o, o_next).pred_next.numpy()
    losses = [controllable_loss(p, o_next.numpy()) for p in pred]
    assert max(losses) < 0.15 and min(losses) < 0.01, losses


def test_action_loss_ignores_unlabelled_entries():
    latent = torch.randn(2, 6, 4, requires_grad=True)
    codebook = torch.randn(2, 5, 4)
    actions = torch.full((2, 6), -1)
    label_mask = torch.zeros(2, 6, dtype=torch.bool)
    loss = action_loss(latent, codebook, actions, label_mask)
    assert torch.equal(loss, torch.zeros(2))
    loss.sum().backward()
    assert torch.equal(latent.grad, torch.zeros_like(latent))
    # One label in copy 1: only that entry counts, against its action's code.
    actions[1, 2], label_mask[1, 2] = 3, True
    loss = action_loss(latent, codebook, actions, label_mask)
    expected = (latent[1, 2] - codebook[1, 3]).pow(2).mean()
    assert loss[0] == 0 and torch.allclose(loss[1], expected)


def test_action_prediction_refuses_data_without_labels():
    config = VQConfig(steps=5, action_prediction=True, log_every=5, **FAST)
    with pytest.raises(ValueError, match="action prediction needs labelled transitions"):
        train(config, [0], GridData(1, seed=0, label_fraction=0.0))


def test_action_prediction_assigns_code_k_to_action_k(held_out):
    config = VQConfig(steps=800, action_prediction=True, labelled_share=0.0, **FAST)
    lam = train(config, [2], GridData(1, seed=1, label_fraction=0.1))
    o, actions, o_next = held_out
    codes = lam.predict(o, o_next).codes[0].numpy()
    moved = ~(o == o_next).flatten(1).all(1).numpy()  # stay and wall moves: no change
    # Chance (an arbitrary code order) is 0.2. Known limitation: in short runs one pair of
    # codes can stay swapped (0.75 here); full alignment (1.0) is reached by some seeds only.
    assert (codes[moved] == actions[moved]).mean() > 0.7


def test_batched_copies_match_single_models_at_init():
    config = VQConfig(**FAST)
    ensemble = VQLAM(config, SPEC, [3, 4], "cpu")
    for index, seed in enumerate([3, 4]):
        single = VQLAM(config, SPEC, [seed], "cpu")
        copy = ensemble.copy([index])
        for (name, a), b in zip(
            copy.module.state_dict().items(), single.module.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("transposed", [False, True])
def test_dense_ensemble_conv_equals_torch_conv(transposed):
    torch.manual_seed(0)
    if transposed:
        layer = EnsembleConv2d(2, 3, 5, 2, (2, 2), stride=2, transposed=True)
        x = torch.randn(2, 7, 3, 2, 2)
    else:
        layer = EnsembleConv2d(2, 3, 5, 3, (4, 4), padding=1)
        x = torch.randn(2, 7, 3, 4, 4)
    y = layer(x)
    for m in range(2):
        if transposed:
            ref = F.conv_transpose2d(x[m], layer.weight[m].transpose(0, 1), layer.bias[m], 2)
        else:
            ref = F.conv2d(x[m], layer.weight[m], layer.bias[m], padding=1)
        assert torch.allclose(y[m], ref, atol=1e-5)


def test_ours_runs_on_the_distracting_grids_32_by_32_frames():
    # Its convolutions go grouped on 32×32 frames (a dense matrix there would hold
    # 9·(32·32)² taps per layer); one training update runs and gives finite weights.
    config = VQConfig(steps=1, batch_size=4, log_every=1)
    spec = DataSpec("grid", (1, 32, 32), True, 5)

    class Data:
        num_copies, has_labels = 1, torch.zeros(1, dtype=torch.bool)

        def sample(self, batch_size, **kwargs):
            o = torch.rand(1, batch_size, 1, 32, 32)
            actions = torch.full((1, batch_size), -1)
            return Transitions(o, o, o, actions, torch.zeros(1, batch_size, dtype=torch.bool))

    Data.spec = spec
    lam = VQLAM.train(config, Data(), [0], device="cpu")
    convs = [m for m in lam.module.modules() if isinstance(m, EnsembleConv2d)]
    assert convs and all(m.grouped for m in convs)
    o = torch.rand(5, 1, 32, 32)
    assert lam.latents(o, o).shape == (1, 5, config.latent_dim)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(codebook_size=0), "codebook_size"),
        (dict(lr=-1.0), "lr"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(labelled_share=1.5), "labelled_share"),
    ],
)
def test_bad_config_raises_naming_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name) as error:
        VQConfig(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(error.value)


def test_a_model_that_cannot_fit_the_data_is_refused():
    with pytest.raises(ValueError, match="codebook_size must be >= 5"):
        VQLAM(VQConfig(codebook_size=4, action_prediction=True), SPEC, [0], "cpu")
    with pytest.raises(ValueError, match="even image size"):
        VQLAM(VQConfig(), DataSpec("grid", (1, 3, 4), True, 5), [0], "cpu")
