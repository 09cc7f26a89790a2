"""Behaviour policies at both ends of their knob."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lam_envs.envs.grid import SNAKE_CYCLE, square_positions
from lam_envs.policies import LinearPolicy, SnakingPolicy, make_policy


def test_snake_at_epsilon_zero_visits_all_cells_in_12_steps_and_repeats():
    env = gym.make_vec("GridLAM-v0", num_envs=12)
    policy = make_policy("snaking", env, epsilon=0.0)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    visited = [info["position"]]
    for _ in range(24):
        obs, reward, *_, info = env.step(policy(obs, rng))
        assert (reward == 1).all()  # always one step along the cycle
        visited.append(info["position"])
    visited = np.stack(visited, axis=1)  # (env, time, 2)
    for path in visited:
        cells = {tuple(p) for p in path[:12]}
        assert len(cells) == 12
        np.testing.assert_array_equal(path[12:24], path[:12])  # period 12
    assert len(SNAKE_CYCLE) == 12


def test_snake_at_epsilon_one_is_uniform():
    """Chi-square goodness of fit of 50,000 actions to uniform over 5 (fixed seed)."""
    policy = SnakingPolicy(epsilon=1.0)
    obs = gym.make_vec("GridLAM-v0", num_envs=50_000).reset(seed=0)[0]
    actions = policy(obs, np.random.default_rng(1))
    counts = np.bincount(actions, minlength=5)
    expected = len(actions) / 5
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 18.47  # 99.9% quantile of chi-square with 4 degrees of freedom


def test_snake_epsilon_share_of_random_actions():
    obs = gym.make_vec("GridLAM-v0", num_envs=50_000).reset(seed=0)[0]
    det = SnakingPolicy(0.0)(obs, np.random.default_rng(0))
    noisy = SnakingPolicy(0.2)(obs, np.random.default_rng(0))
    # a random action equals the snake's with probability 1/5: P(differ) = 0.2 * 4/5
    assert abs((det != noisy).mean() - 0.16) < 0.01


def test_random_grid_policy_is_uniform():
    env = gym.make_vec("GridLAM-v0", num_envs=50_000)
    actions = make_policy("random", env)(env.reset(seed=0)[0], np.random.default_rng(2))
    counts = np.bincount(actions, minlength=5)
    assert ((counts - 10_000) ** 2 / 10_000).sum() < 18.47


def test_linear_policy_at_chi_one_is_the_projection():
    policy = LinearPolicy(d_o=32, d_a=4, chi=1.0, projection_seed=3)
    Pi = policy.projection
    np.testing.assert_allclose(Pi @ Pi.T, np.eye(4), atol=1e-6)  # orthonormal rows
    obs = np.random.default_rng(0).standard_normal((100, 32)).astype(np.float32)
    np.testing.assert_array_equal(policy(obs, np.random.default_rng(1)), obs @ Pi.T)


def test_linear_policy_at_chi_zero_is_standard_normal():
    env = gym.make_vec("LinearLAM-v0", num_envs=20_000)
    policy = make_policy("linear", env, chi=0.0)
    a = policy(env.reset(seed=0)[0], np.random.default_rng(0))
    assert a.shape == (20_000, 8)
    assert abs(a.mean()) < 0.01 and abs(a.var() - 1) < 0.02
    np.testing.assert_allclose(np.cov(a.T), np.eye(8), atol=0.03)


def test_linear_policy_mixture():
    policy = LinearPolicy(d_o=16, d_a=2, chi=0.25)
    obs = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    s = np.random.default_rng(7).standard_normal((5, 2), dtype=np.float32)
    expected = 0.25 * obs @ policy.projection.T + 0.75 * s
    np.testing.assert_allclose(policy(obs, np.random.default_rng(7)), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "env_id", "message"),
    [
        ("snaking", "LinearLAM-v0", "does not fit the linear environment"),
        ("linear", "GridLAM-v0", "does not fit the grid environment"),
        ("greedy", "GridLAM-v0", "unknown policy 'greedy'"),
    ],
)
def test_policy_that_does_not_fit(name, env_id, message):
    with pytest.raises(ValueError, match=message):
        make_policy(name, gym.make(env_id))


def test_policy_knobs_checked():
    with pytest.raises(ValueError, match=r"epsilon must be in \[0.0, 1.0\], got 1.5"):
        make_policy("snaking", gym.make("GridLAM-v0"), epsilon=1.5)
    with pytest.raises(ValueError, match=r"chi must be in \[0.0, 1.0\], got -0.1"):
        make_policy("linear", gym.make("LinearLAM-v0"), chi=-0.1)
    with pytest.raises(ValueError, match="unknown knob for policy 'snaking' 'chi'"):
        make_policy("snaking", gym.make("GridLAM-v0"), chi=0.5)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCarContinuous-v0"])
def test_make_policy_refuses_environments_it_does_not_know(env_id):
    """Discrete(2) or Box(-1, 1) actions would be out of range: refused, not guessed."""
    with pytest.raises(ValueError, match="knows only this package's environments"):
        make_policy("random", gym.make(env_id))


def test_make_policy_takes_gymnasium_vector_envs_of_ours():
    sync = gym.make_vec("GridLAM-v0", num_envs=2, vectorization_mode="sync")
    assert make_policy("snaking", sync, epsilon=0.1) == SnakingPolicy(0.1)
    assert make_policy("random", gym.make("LinearLAM-v0", d_o=16, d_a=4)).d_a == 4


@pytest.mark.parametrize(
    "env_id", ["GridLAM-Distracting-v0", "GridLAM-OtherAgents-v0", "GridLAM-Shake-v0"]
)
def test_snaking_on_the_distracting_grid_reads_the_position_from_info(env_id):
    env = gym.make_vec(env_id, num_envs=12)
    policy = make_policy("snaking", env, epsilon=0.0)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"call policy\(observations, rng, info\)"):
        policy(obs, rng)
    for _ in range(24):
        obs, reward, *_, info = env.step(policy(obs, rng, info))
        assert (reward == 1).all()


@pytest.mark.parametrize("env_id", ["GridLAM-Clean-v0", "GridLAM-ColourDrift-v0"])
def test_square_positions_at_any_pixel_scale(env_id):
    """Without other squares, a background or shake the agent is found in the image."""
    env = gym.make_vec(env_id, num_envs=64)
    assert not make_policy("snaking", env).needs_info
    obs, info = env.reset(seed=0)
    for _ in range(5):
        np.testing.assert_array_equal(square_positions(obs), info["position"])
        obs, *_, info = env.step(np.random.default_rng(0).integers(5, size=64))


def test_the_released_snake_runs_down_and_up_the_columns_and_wraps_from_the_corner():
    """The published Table 1 correlated policy at ε = 0, in the environment of its recipe:
    from (1, 2) down column 2, up column 3, the wrap to (0, 0), down column 0, up column 1,
    and again; the wrap is stored as "stay"."""
    from lam_envs.envs.grid import RELEASED_START_CELL, released_corner_jump

    env = gym.make("GridLAM-v0", start_cell=RELEASED_START_CELL,
                   corner_jump=released_corner_jump(0.0))  # fmt: skip
    policy = make_policy("snaking-released", env, epsilon=0.0)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    path, actions = [tuple(info["position"])], []
    for _ in range(13):
        a = int(policy(obs[None], rng, {"position": info["position"][None]})[0])
        obs, _, _, _, info = env.step(a)
        path.append(tuple(int(x) for x in info["position"]))
        actions.append(a)
    assert path[:14] == [
        (1, 2), (2, 2), (2, 3), (1, 3), (0, 3), (0, 0), (1, 0), (2, 0), (2, 1), (1, 1),
        (0, 1), (0, 2), (1, 2), (2, 2),
    ]  # fmt: skip
    assert actions[4] == 0  # the wrap is stored as "stay"
    assert make_policy("snaking", env, epsilon=0.0).released is False
