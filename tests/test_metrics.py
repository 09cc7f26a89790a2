"""Probes and metrics give the known answers on latents built by hand."""

import math

import numpy as np
import pytest
import torch

from lam_models.evaluation.metrics import (
    PROBE_RCOND,
    code_action_accuracy,
    controllable_stochastic_loss,
    grid_mse,
    linear_probe_report,
    mean_stderr,
    no_action_error,
    perplexity,
    probe_nmse,
)

D_O, D_A = 12, 3


def ground_truth(n: int, rng: np.random.Generator, sigma_eps: float = 1.0) -> dict:
    """a, q = X a, an ε independent of everything, and o: the linear environment's oracle."""
    X = np.linalg.qr(np.random.default_rng(0).standard_normal((D_O, D_A)))[0]
    a = rng.standard_normal((n, D_A))
    return dict(
        a=a,
        q=a @ X.T,
        eps=sigma_eps * rng.standard_normal((n, D_O)),
        o=rng.standard_normal((n, D_O)),
    )


def test_a_latent_that_is_q_scores_zero_and_pure_noise_scores_one():
    rng = np.random.default_rng(1)
    train, test = ground_truth(2000, rng), ground_truth(20_000, rng)
    # q lives in a d_a-dimensional subspace: a d_a-dimensional latent (an invertible map of a,
    # plus an offset for the bias) holds all of it.
    mix = rng.standard_normal((D_A, D_A))
    z_train, z_test = train["a"] @ mix + 5.0, test["a"] @ mix + 5.0
    assert probe_nmse(z_train, train["q"], z_test, test["q"]) == pytest.approx(0, abs=1e-6)
    assert probe_nmse(z_train, train["a"], z_test, test["a"]) == pytest.approx(0, abs=1e-6)

    noise_train, noise_test = rng.standard_normal((2000, 4)), rng.standard_normal((20_000, 4))
    assert probe_nmse(noise_train, train["q"], noise_test, test["q"]) == pytest.approx(1, abs=0.05)
    # Half of q's dimensions: nmse = 1/2 (q's variance is spread evenly over a's coordinates).
    half = probe_nmse(train["a"][:, :1], train["a"][:, :2], test["a"][:, :1], test["a"][:, :2])
    assert half == pytest.approx(0.5, abs=0.03)


def test_probe_accepts_torch_and_numpy_alike_and_is_nan_for_a_constant_target():
    rng = np.random.default_rng(2)
    z, y = rng.standard_normal((500, 3)), rng.standard_normal((500, 2))
    from_numpy = probe_nmse(z[:250], y[:250], z[250:], y[250:])
    as_torch = torch.from_numpy(z).float(), torch.from_numpy(y).float()
    from_torch = probe_nmse(
        as_torch[0][:250], as_torch[1][:250], as_torch[0][250:], as_torch[1][250:]
    )
    assert from_torch == pytest.approx(from_numpy, rel=1e-5)
    assert math.isnan(probe_nmse(z[:250], np.zeros(250), z[250:], np.zeros(250)))
    assert math.isnan(probe_nmse(z[:250], np.full((250, 2), 3.0), z[250:], np.full((250, 2), 3.0)))
    with pytest.raises(ValueError, match="same number"):
        probe_nmse(z[:10], y[:11], z, y)


def test_a_rank_deficient_latent_gets_no_weight_where_it_does_not_vary():
    # A 128-d float32 latent of 4 underlying dimensions (a network's wide output after a
    # narrow layer): on the training transitions its other 124 directions hold only
    # float32 rounding, about 1e-8 of its largest singular value; the held-out latents vary
    # along them (inputs never seen in training). The probe must not read the rounding.
    rng = np.random.default_rng(5)
    n, rank, width = 2000, 4, 128
    lift = rng.standard_normal((rank, width))
    outside = np.linalg.svd(lift)[2][rank:]  # the 124 directions the training latents lack
    weights = rng.standard_normal((rank, 3))
    s_train, s_test = rng.standard_normal((n, rank)), rng.standard_normal((n, rank))
    y_train = s_train @ weights + 0.1 * rng.standard_normal((n, 3))
    y_test = s_test @ weights + 0.1 * rng.standard_normal((n, 3))
    z_train = (s_train @ lift).astype(np.float32)
    z_test = (s_test @ lift + rng.standard_normal((n, width - rank)) @ outside).astype(np.float32)
    singular = np.linalg.svd(z_train - z_train.mean(0, dtype=np.float64), compute_uv=False)
    assert singular[rank] < 1e-7 * singular[0] and singular[rank - 1] > PROBE_RCOND * singular[0]
    # What the 4 dimensions hold of y: all but the noise (0.01 / (‖w‖² + 0.01) per column).
    assert probe_nmse(z_train, y_train, z_test, y_test) < 0.01
    # The solver's own cut-off (float64's ε × rows) kept the rounding: nmse in the billions.
    centred = torch.from_numpy(z_train.astype(np.float64) - z_train.mean(0, dtype=np.float64))
    y_centred = torch.from_numpy(y_train - y_train.mean(0))
    w = torch.linalg.lstsq(centred, y_centred, driver="gelsd").solution.numpy()
    z_mean = z_train.mean(0, dtype=np.float64)
    blown = ((z_test - z_mean) @ w + y_train.mean(0) - y_test) ** 2
    assert blown.sum(1).mean() / y_test.var(0).sum() > 1e3


def test_llo_is_two_for_the_perfect_latent():
    rng = np.random.default_rng(3)
    train, test = ground_truth(2000, rng), ground_truth(20_000, rng)
    report = linear_probe_report(train["a"], test["a"], train, test, latent_name="surrogate")
    assert report["latent"] == "surrogate"
    assert report["nmse_q"] == pytest.approx(0, abs=1e-6)
    assert report["nmse_a"] == pytest.approx(0, abs=1e-6)
    assert report["nmse_eps"] == pytest.approx(1, abs=0.02)
    assert report["nmse_o"] == pytest.approx(1, abs=0.02)
    assert report["llo"] == pytest.approx(2, abs=0.03)
    assert report["eps_zero_variance"] is False

    # A latent that is o instead: LLO = −1 + 1 + 0 = 0.
    report = linear_probe_report(train["o"], test["o"], train, test)
    assert report["llo"] == pytest.approx(0, abs=0.03)


def test_without_eps_nmse_eps_is_taken_as_one():
    rng = np.random.default_rng(4)
    train, test = ground_truth(1000, rng, sigma_eps=0.0), ground_truth(5000, rng, sigma_eps=0.0)
    report = linear_probe_report(train["a"], test["a"], train, test)
    assert report["eps_zero_variance"] is True
    assert report["nmse_eps"] == 1.0
    assert report["llo"] == pytest.approx(-report["nmse_q"] + 1.0 + report["nmse_o"])
    assert report["llo"] == pytest.approx(2, abs=0.03)


def test_probe_report_rejects_bad_input():
    rng = np.random.default_rng(5)
    t = ground_truth(100, rng)
    with pytest.raises(ValueError, match="latent_name"):
        linear_probe_report(t["a"], t["a"], t, t, latent_name="z")
    with pytest.raises(ValueError, match="eps"):
        partial = {k: v for k, v in t.items() if k != "eps"}
        linear_probe_report(t["a"], t["a"], partial, partial)


def test_controllable_and_stochastic_losses_on_hand_made_images():
    # Two next images: the square at (0, 0), then at (1, 1); noise rows 1010 and 0101.
    next_obs = np.zeros((2, 1, 4, 4))
    next_obs[0, 0, 0, 0] = next_obs[1, 0, 1, 1] = 1.0
    next_obs[0, 0, 3] = [1, 0, 1, 0]
    next_obs[1, 0, 3] = [0, 1, 0, 1]
    # Rows 0–2: two cells take values {0, 1}, variance 1/4 each: total variance 1/2.
    # Row 3: four cells of variance 1/4: total variance 1.

    perfect = controllable_stochastic_loss(next_obs, next_obs)
    assert perfect == (0.0, 0.0)

    # Blank controllable rows (squared error 1 per image) and the noise's mean 1/2 in row 3
    # (squared error 4 × 1/4 = 1 per image).
    pred = next_obs.copy()
    pred[:, :, :3] = 0.0
    pred[:, :, 3] = 0.5
    losses = controllable_stochastic_loss(torch.from_numpy(pred), torch.from_numpy(next_obs))
    assert losses.controllable == pytest.approx(1 / 0.5)
    assert losses.stochastic == pytest.approx(1 / 1.0)

    # No noise (intensity 0): the stochastic loss is undefined.
    quiet = next_obs.copy()
    quiet[:, :, 3] = 0.0
    losses = controllable_stochastic_loss(quiet[:, 0], quiet[:, 0])  # (N, 4, 4) works too
    assert losses.controllable == 0.0 and math.isnan(losses.stochastic)


def test_the_no_action_scale_divides_the_per_pixel_error_by_a_given_one():
    next_obs = np.zeros((2, 1, 4, 4))
    next_obs[0, 0, 0, 0] = next_obs[1, 0, 1, 1] = 1.0
    next_obs[0, 0, 3] = [1, 0, 1, 0]
    next_obs[1, 0, 3] = [0, 1, 0, 1]
    pred = next_obs.copy()
    pred[:, :, :3] = 0.0  # per-pixel error on rows 0-2: 2 / 24
    pred[:, :, 3] = 0.5  # on row 3: 1/4
    assert grid_mse(pred, next_obs) == pytest.approx((2 / 24, 1 / 4))
    scaled = controllable_stochastic_loss(pred, next_obs, scale=(1 / 24, 1 / 8))
    assert scaled == pytest.approx((2.0, 2.0))
    quiet = next_obs.copy()
    quiet[:, :, 3] = 0.0  # no noise: undefined on either scale
    assert math.isnan(controllable_stochastic_loss(quiet, quiet, scale=(0.1, 0.1)).stochastic)


def _uniform_grid(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """GridLAM transitions under the uniform policy with low noise."""
    moves = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
    cell = rng.integers(0, 12, n)
    row, col = cell // 4, cell % 4
    a = rng.integers(0, 5, n)
    o, o_next = np.zeros((n, 4, 4)), np.zeros((n, 4, 4))
    o[np.arange(n), row, col] = 1.0
    o_next[np.arange(n), np.clip(row + moves[a, 0], 0, 2), np.clip(col + moves[a, 1], 0, 3)] = 1
    o[:, 3], o_next[:, 3] = rng.random((n, 4)) < 0.5, rng.random((n, 4)) < 0.5
    return o, o_next


def test_the_no_action_error_is_the_authors_constant_under_the_uniform_policy():
    rng = np.random.default_rng(0)
    (o, o_next), (o_test, next_test) = _uniform_grid(60_000, rng), _uniform_grid(20_000, rng)
    error = no_action_error(o, o_next, o_test, next_test)
    # E[o' | o] spreads the square over its 5 moves (walls turn some into "stay"):
    # per cell 1 − Σ p², averaged over the 12 cells = 0.68, over 12 pixels = 0.0567.
    assert error.controllable == pytest.approx(0.68 / 12, rel=0.03)
    assert error.controllable == pytest.approx(0.060, rel=0.1)  # the authors' constant
    assert error.stochastic == pytest.approx(0.25, rel=0.03)  # the noise: nothing to know
    # A predictor that knows o as well as the action has no controllable error to divide.
    moved = no_action_error(o, o, o_test, o_test)
    assert moved == (0.0, 0.0)
    with pytest.raises(ValueError, match="too many to estimate"):
        no_action_error(rng.random((100, 4, 4)), o_next[:100], o_test[:10], next_test[:10])


def test_code_action_accuracy_and_perplexity():
    rng = np.random.default_rng(6)
    num_codes = num_actions = 5
    permutation = rng.permutation(num_codes)
    actions_train, actions_test = (
        rng.integers(0, num_actions, 500),
        rng.integers(0, num_actions, 500),
    )
    codes_train, codes_test = permutation[actions_train], permutation[actions_test]
    assert (
        code_action_accuracy(
            codes_train, actions_train, codes_test, actions_test, num_codes, num_actions
        )
        == 1.0
    )
    # Codes unrelated to the action do no better than chance (1/5).
    random_train, random_test = rng.integers(0, num_codes, 500), rng.integers(0, num_codes, 500)
    chance = code_action_accuracy(
        random_train, actions_train, random_test, actions_test, num_codes, num_actions
    )
    assert chance < 0.3

    assert perplexity(np.arange(1000) % num_codes, num_codes) == pytest.approx(num_codes)
    assert perplexity(np.zeros(100, dtype=int), num_codes) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"integers in \[0, 4\]"):
        perplexity(np.array([0, 5]), num_codes)


def test_mean_stderr():
    mean, stderr = mean_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and stderr == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_stderr([7.0]) == (7.0, 0.0)
