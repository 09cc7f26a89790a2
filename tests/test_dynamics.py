"""The equations of both environments, checked from what they return."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lam_envs.grid import ACTION_DELTAS, DISTRACTOR_PATTERNS, SNAKE_NEXT_CELL

# ---------------------------------------------------------------- LinearLAM


def _linear_steps(n_envs=64, steps=50, seed=0, **kwargs):
    env = gym.make_vec("LinearLAM-v0", num_envs=n_envs, **kwargs)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        a = rng.standard_normal((n_envs, env.single_action_space.shape[0])).astype(np.float32)
        nxt, _, _, _, info = env.step(a)
        rows.append((obs, a, nxt, info))
        obs = nxt
    return env, rows


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"sigma_iid": 0.5},
        {"sigma_exo": 2.0},
        {"sigma_iid": 0.2, "sigma_exo": 1.0, "distractor_correlation": 0.7, "d_b": 4},
    ],
)
def test_linear_transition_equation(kwargs):
    """o' = o + X a + ε and ε = σ_iid n + σ_exo Y b, with q = X a, to float tolerance."""
    env, rows = _linear_steps(**kwargs)
    dyn = env.unwrapped.dynamics
    X, Y = dyn.X.astype(np.float64), dyn.Y.astype(np.float64)
    sigma_exo = dyn.config.sigma_exo
    for obs, a, nxt, info in rows:
        np.testing.assert_allclose(info["q"], a @ X.T, atol=1e-5)
        np.testing.assert_allclose(nxt, obs + info["q"] + info["eps"], atol=1e-4)
        iid = info["eps"] - sigma_exo * info["b"] @ Y.T
        if dyn.config.sigma_iid == 0:
            np.testing.assert_allclose(iid, 0, atol=1e-5)
        else:  # what is left is i.i.d. noise of the right scale
            assert abs(iid.std() / dyn.config.sigma_iid - 1) < 0.05
    if sigma_exo == 0:
        assert all(np.all(info["b"] == 0) for *_, info in rows)


def test_linear_noise_statistics():
    """b ~ N(0, I); with ρ the first d_b coordinates of b correlate with a by ρ."""
    _, rows = _linear_steps(n_envs=256, steps=40, sigma_exo=1.0)
    b = np.concatenate([info["b"] for *_, info in rows])
    assert abs(b.mean()) < 0.02 and abs(b.var() - 1) < 0.03
    rho = 0.6
    _, rows = _linear_steps(n_envs=256, steps=40, sigma_exo=1.0, distractor_correlation=rho)
    a = np.concatenate([r[1] for r in rows])
    b = np.concatenate([info["b"] for *_, info in rows])
    corr = np.mean([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(8)])
    assert abs(corr - rho) < 0.02
    assert abs(b.var() - 1) < 0.03  # b keeps unit variance


def test_linear_reset_info_has_step_keys_and_zeros():
    env = gym.make("LinearLAM-OtherAgents-v0")
    _, reset_info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(env.action_space.sample())
    assert reset_info.keys() == step_info.keys()
    for key in reset_info:
        assert reset_info[key].shape == step_info[key].shape
        assert not reset_info[key].any()


@pytest.mark.parametrize("d_b", [1, 4, 8])
def test_effect_matrices_are_orthonormal_and_overlap_rotates_y(d_b):
    def matrices(overlap):
        env = gym.make("LinearLAM-v0", d_o=32, d_a=8, d_b=d_b, overlap=overlap)
        return env.unwrapped.dynamics.X.astype(np.float64), env.unwrapped.dynamics.Y

    for overlap in (0.0, 0.3, 1.0):
        X, Y = matrices(overlap)
        np.testing.assert_allclose(X.T @ X, np.eye(8), atol=1e-6)
        np.testing.assert_allclose(Y.T @ Y, np.eye(d_b), atol=1e-6)
        share_in_x = np.linalg.norm(X.T @ Y) ** 2 / d_b  # energy of Y inside span X
        np.testing.assert_allclose(share_in_x, overlap, atol=1e-6)
    X, Y = matrices(0.0)
    np.testing.assert_allclose(X.T @ Y, 0, atol=1e-6)
    X, Y = matrices(1.0)
    np.testing.assert_allclose(X @ (X.T @ Y), Y, atol=1e-6)  # Y inside X's span


def test_structure_is_fixed_by_structure_seed_not_reset():
    env = gym.make("LinearLAM-OtherAgents-v0")
    X0, Y0 = env.unwrapped.dynamics.X.copy(), env.unwrapped.dynamics.Y.copy()
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        np.testing.assert_array_equal(env.unwrapped.dynamics.X, X0)
        np.testing.assert_array_equal(env.unwrapped.dynamics.Y, Y0)
    same = gym.make("LinearLAM-OtherAgents-v0", structure_seed=0).unwrapped.dynamics
    other = gym.make("LinearLAM-OtherAgents-v0", structure_seed=1).unwrapped.dynamics
    np.testing.assert_array_equal(same.X, X0)
    assert not np.allclose(other.X, X0) and not np.allclose(other.Y, Y0)


def test_linear_start_state_is_standard_normal():
    env = gym.make_vec("LinearLAM-v0", num_envs=512)
    obs, _ = env.reset(seed=0)
    assert abs(obs.mean()) < 0.01 and abs(obs.var() - 1) < 0.02


# ---------------------------------------------------------------- GridLAM


def _grid_steps(n_envs=256, steps=40, seed=0, **kwargs):
    env = gym.make_vec("GridLAM-v0", num_envs=n_envs, **kwargs)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        a = rng.integers(5, size=n_envs)
        nxt, reward, _, _, new_info = env.step(a)
        rows.append((obs, info, a, nxt, reward, new_info))
        obs, info = nxt, new_info
    return rows


@pytest.mark.parametrize("intensity", [0.0, 1.0, 2.0])
def test_grid_noise_row_is_bernoulli_half_times_intensity(intensity):
    rows = _grid_steps(noise_intensity=intensity)
    noise = np.concatenate([nxt[:, 0, 3] for *_, nxt, _, _ in rows])
    assert set(np.unique(noise)) <= {0.0, intensity}
    # mean and variance of Bernoulli(0.5) × c: c/2 and c²/4; 40k samples
    np.testing.assert_allclose(noise.mean(), intensity / 2, atol=0.02 * max(intensity, 1))
    np.testing.assert_allclose(noise.var(), intensity**2 / 4, atol=0.02 * max(intensity, 1) ** 2)
    # each cell independent of the others and of the next step's
    if intensity:
        cells = noise.reshape(-1, 4)
        assert np.abs(np.corrcoef(cells.T) - np.eye(4)).max() < 0.03


def test_grid_moves_walls_and_images():
    for _obs, info, a, nxt, reward, new_info in _grid_steps():
        expected = np.clip(info["position"] + ACTION_DELTAS[a], 0, [2, 3])
        np.testing.assert_array_equal(new_info["position"], expected)
        # a move into a wall leaves the square in place
        into_wall = (info["position"] + ACTION_DELTAS[a] != expected).any(axis=1)
        np.testing.assert_array_equal(new_info["position"][into_wall], info["position"][into_wall])
        # the image: one square of 1.0 in rows 0-2, the noise row below
        assert (nxt[:, 0, :3].sum(axis=(1, 2)) == 1).all()
        r, c = new_info["position"].T
        assert (nxt[np.arange(len(a)), 0, r, c] == 1).all()
        np.testing.assert_array_equal(nxt[:, 0, 3], new_info["noise"])
        np.testing.assert_array_equal(new_info["clean_obs"][:, 0, :3], nxt[:, 0, :3])
        assert not new_info["clean_obs"][:, 0, 3].any()
        # reward: 1 exactly for a step along the snake cycle
        successor = SNAKE_NEXT_CELL[info["position"][:, 0], info["position"][:, 1]]
        np.testing.assert_array_equal(reward, (new_info["position"] == successor).all(axis=1))


def test_grid_start_cell_uniform():
    env = gym.make_vec("GridLAM-v0", num_envs=12000)
    _, info = env.reset(seed=0)
    counts = np.bincount(info["position"][:, 0] * 4 + info["position"][:, 1], minlength=12)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 each, ±5 sd


def test_grid_distractors_follow_the_action():
    rho = 0.4
    rows = _grid_steps(noise_intensity=1.0, distractor_correlation=rho)
    distracted = np.concatenate([new_info["distracted"] for *_, new_info in rows])
    assert abs(distracted.mean() - rho) < 0.02
    for *_, a, nxt, _, new_info in rows:
        d = new_info["distracted"]
        np.testing.assert_array_equal(nxt[d, 0, 3], DISTRACTOR_PATTERNS[a[d]])
    without = _grid_steps(noise_intensity=1.0)
    assert not np.concatenate([new_info["distracted"] for *_, new_info in without]).any()
