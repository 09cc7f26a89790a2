"""Impossible or out-of-range parameters fail at construction, naming the value and the range."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lam_envs  # noqa: F401  (registers the ids)
from lam_envs.policies import make_policy

BAD_LINEAR = [
    ({"d_a": 200}, r"d_a must be <= d_o = 128, got d_a = 200"),
    ({"d_o": 0}, r"d_o must be >= 1, got 0"),
    ({"d_a": -2}, r"d_a must be >= 1, got -2"),
    ({"d_b": 0}, r"d_b must be >= 1, got 0"),
    ({"d_o": 2.5}, r"d_o must be an integer, got 2.5"),
    ({"sigma_iid": -0.1}, r"sigma_iid must be in \[0.0, 3.40\d*e\+38\], got -0.1"),
    ({"sigma_exo": -1}, r"sigma_exo must be in \[0.0, 3.40\d*e\+38\], got -1.0"),
    ({"overlap": 1.5}, r"overlap must be in \[0.0, 1.0\], got 1.5"),
    ({"distractor_correlation": -0.2}, r"distractor_correlation must be in \[0.0, 1.0\], got -0.2"),
    ({"d_o": 10, "d_a": 8, "d_b": 4}, r"d_b must be <= d_o - d_a = 2"),
    ({"d_a": 2, "d_b": 4, "overlap": 0.5}, r"d_b must be <= d_a = 2"),
    ({"preset": "loud"}, r"unknown preset 'loud'; allowed: 'no_noise', 'iid'"),
    ({"sigma": 1.0}, r"unknown LinearLAM parameter 'sigma'; allowed: d_a, d_b, d_o"),
    ({"render_mode": "video"}, r"unknown render_mode 'video'; allowed: None, 'ansi'"),
    ({"render_mode": 5}, r"unknown render_mode 5; allowed: None, 'ansi'"),
    ({"render_mode": ["ansi"]}, r"unknown render_mode \['ansi'\]; allowed: None"),
    ({"sigma_iid": float("inf")}, r"sigma_iid must be a finite number, got inf"),
    ({"sigma_exo": float("-inf")}, r"sigma_exo must be a finite number, got -inf"),
    ({"sigma_exo": float("nan")}, r"sigma_exo must be a finite number, got nan"),
    ({"overlap": np.float32("nan")}, r"overlap must be a finite number, got np.float32\(nan\)"),
    ({"sigma_iid": 1e39}, r"sigma_iid must be in \[0.0, 3.40\d*e\+38\], got 1e\+39"),
    ({"d_o": float("nan")}, r"d_o must be an integer, got nan"),
    ({"d_o": float("inf")}, r"d_o must be an integer, got inf"),
    ({"d_o": "16"}, r"d_o must be an integer, got '16'"),
    ({"d_o": True}, r"d_o must be an integer, got True"),
    ({"sigma_iid": None}, r"sigma_iid must be a finite number, got None"),
]

BAD_GRID = [
    ({"noise_intensity": -1.0}, r"noise_intensity must be in \[0.0, 3.40\d*e\+38\], got -1.0"),
    ({"action_leak": 2}, r"action_leak must be in \[0.0, 1.0\], got 2.0"),
    (
        {"action_leak": 0.5, "noise_intensity": 0.0},
        r"action_leak = 0.5 needs noise_intensity > 0",
    ),
    ({"distractor_correlation": 0.5}, r"unknown GridLAM parameter 'distractor_correlation'"),
    ({"preset": "medium"}, r"unknown preset 'medium'; allowed: 'none', 'low', 'high'"),
    ({"size": 5}, r"unknown GridLAM parameter 'size'"),
    ({"pixel_scale": 0}, r"pixel_scale must be in \[1, 32\], got 0"),
    ({"pixel_scale": 2.5}, r"pixel_scale must be an integer, got 2.5"),
    ({"other_agents": -1}, r"other_agents must be in \[0, 16\], got -1"),
    ({"other_agent_size": 4}, r"other_agent_size must be in \[0.25, 3.0\], got 4.0"),
    ({"other_agent_correlation": 1.5}, r"other_agent_correlation must be in \[0.0, 1.0\]"),
    ({"other_agent_persistence": -0.1}, r"other_agent_persistence must be in \[0.0, 1.0\]"),
    ({"other_agent_intensity": -2}, r"other_agent_intensity must be in \[0.0, "),
    ({"background_intensity": -0.5}, r"background_intensity must be in \[0.0, "),
    ({"pixel_scale": 2, "background_speed": 8}, r"background_speed must be in \[1, 7\], got 8"),
    ({"background_textures": 0}, r"background_textures must be in \[1, 1024\], got 0"),
    ({"pixel_scale": 2, "shake_bound": 5}, r"shake_bound must be in \[0, 4\], got 5"),
    ({"shake_bound": 1, "shake_step": 3}, r"shake_step must be in \[1, 2\], got 3"),
    ({"colour_drift_step": -0.1}, r"colour_drift_step must be in \[0.0, "),
    (
        {"colour_drift_step": 0.1, "colour_drift_low": 1.5, "colour_drift_high": 0.5},
        r"colour drift needs 0 < colour_drift_low < colour_drift_high, got colour_drift_low "
        r"= 1.5, colour_drift_high = 0.5",
    ),
    ({"structure_seed": -1}, r"structure_seed must be >= 0, got -1"),
    ({"noise_intensity": float("inf")}, r"noise_intensity must be a finite number, got inf"),
    ({"noise_intensity": 1e39}, r"noise_intensity must be in \[0.0, 3.40\d*e\+38\], got 1e\+39"),
    ({"other_agent_intensity": np.float64("nan")}, r"other_agent_intensity must be a finite"),
    ({"colour_drift_step": float("inf")}, r"colour_drift_step must be a finite number, got inf"),
    ({"shake_bound": float("nan")}, r"shake_bound must be an integer, got nan"),
    ({"render_mode": 1.5}, r"unknown render_mode 1.5; allowed: None, 'ansi'"),
]


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")  # gymnasium's own
@pytest.mark.parametrize(("kwargs", "message"), BAD_LINEAR)
def test_bad_linear_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("LinearLAM-v0", **kwargs)
    with pytest.raises(ValueError, match=message):
        gym.make_vec("LinearLAM-v0", num_envs=2, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), BAD_GRID)
def test_bad_grid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("GridLAM-v0", **kwargs)
    with pytest.raises(ValueError, match=message):
        gym.make_vec("GridLAM-v0", num_envs=2, **kwargs)


def test_bad_vector_arguments():
    with pytest.raises(ValueError, match=r"num_envs must be >= 1, got 0"):
        gym.make_vec("GridLAM-v0", num_envs=0)
    with pytest.raises(ValueError, match=r"max_episode_steps must be >= 1, got 0"):
        gym.make_vec("GridLAM-v0", num_envs=2, max_episode_steps=0)
    for bad in (float("nan"), float("inf"), 2.5, "4"):
        with pytest.raises(ValueError, match=r"num_envs must be an integer, got"):
            gym.make_vec("LinearLAM-v0", num_envs=bad)


def test_numbers_of_any_type_are_numbers():
    """numpy scalars are accepted; integral floats are converted to int, consistently."""
    env = gym.make("LinearLAM-v0", d_o=np.int64(16), d_a=4.0, sigma_iid=np.float32(0.5))
    config = env.unwrapped.config
    assert (config.d_o, config.d_a, config.sigma_iid) == (16, 4, 0.5)
    assert type(config.d_o) is int and type(config.sigma_iid) is float
    env.reset(seed=np.int64(3))
    assert env.step(np.zeros(4, np.float32))[0].shape == (16,)
    vec = gym.make_vec("GridLAM-v0", num_envs=np.int64(3), pixel_scale=2.0, max_episode_steps=5.0)
    assert vec.num_envs == 3 and type(vec.unwrapped.config.pixel_scale) is int
    assert vec.reset(seed=np.int32(1))[0].shape == (3, 1, 8, 8)
    vec.step(np.ones(3, np.int64))


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (1.5, r"seed must be None or a non-negative integer, got 1.5"),
        ("1", r"seed must be None or a non-negative integer, got '1'"),
        (True, r"seed must be None or a non-negative integer, got True"),
        (-1, r"seed must be >= 0, got -1"),
    ],
)
def test_bad_reset_seed(seed, message):
    env = gym.make("GridLAM-v0")
    with pytest.raises(ValueError, match=message):
        env.reset(seed=seed)
    vec = gym.make_vec("GridLAM-v0", num_envs=2)
    with pytest.raises(ValueError, match=message):
        vec.reset(seed=seed)
    with pytest.raises(ValueError, match=message.replace("seed", r"seed\[1\]")):
        vec.reset(seed=[0, seed])


BAD_GRID_ACTIONS = [
    (7, r"action must be integers in \[0, 4\]; out of range, got 7"),
    (-1, r"action must be integers in \[0, 4\]; out of range, got -1"),
    (2.5, r"action must be integers in \[0, 4\]; dtype float64, got 2.5"),
    (np.nan, r"action must be integers in \[0, 4\]; dtype float64, got nan"),
    ("up", r"action must be integers in \[0, 4\]; dtype <U2, got 'up'"),
    (True, r"action must be integers in \[0, 4\]; dtype bool, got True"),
    ([1, 2], r"action must have shape \(\), got shape \(2,\)"),
    ([1], r"action must have shape \(\), got shape \(1,\)"),
]


@pytest.mark.parametrize(("action", "message"), BAD_GRID_ACTIONS)
def test_bad_grid_action(action, message):
    env = gym.make("GridLAM-v0").unwrapped  # unwrapped: Gymnasium's checker may warn first
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_integral_float_grid_action_is_taken():
    env = gym.make("GridLAM-v0")
    env.reset(seed=0)
    env.step(np.float32(2.0))  # converted like any integral float
    env.step(np.int8(1))


BAD_VECTOR_GRID_ACTIONS = [
    (np.array([0, 1, 5]), r"actions of the 3 envs must be integers in \[0, 4\]; out of range"),
    (np.array([0, 1, 1.5]), r"actions of the 3 envs must be integers in \[0, 4\]; dtype float"),
    (np.array([0, 1]), r"actions of the 3 envs must have shape \(3,\), got shape \(2,\)"),
    (np.zeros((3, 1), np.int64), r"must have shape \(3,\), got shape \(3, 1\)"),
    (np.zeros((1, 3), np.int64), r"must have shape \(3,\), got shape \(1, 3\)"),
    (1, r"must have shape \(3,\), got shape \(\)"),
]


@pytest.mark.parametrize(("actions", "message"), BAD_VECTOR_GRID_ACTIONS)
def test_bad_vector_grid_actions(actions, message):
    env = gym.make_vec("GridLAM-v0", num_envs=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(actions)


BAD_LINEAR_ACTIONS = [
    (np.full(8, np.nan), r"action must be finite numbers, shape \(8,\); not finite, got"),
    (np.full(8, np.inf), r"not finite"),
    (np.zeros(7), r"action must have shape \(8,\), got shape \(7,\)"),
    (np.zeros((1, 8)), r"action must have shape \(8,\), got shape \(1, 8\)"),
    (np.array(["a"] * 8), r"dtype <U1"),
]


@pytest.mark.parametrize(("action", "message"), BAD_LINEAR_ACTIONS)
def test_bad_linear_action(action, message):
    env = gym.make("LinearLAM-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_bad_vector_linear_actions_are_never_reshaped():
    env = gym.make_vec("LinearLAM-v0", num_envs=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"must have shape \(4, 8\), got shape \(32,\)"):
        env.step(np.zeros(32, np.float32))  # the right number of values, the wrong shape
    with pytest.raises(ValueError, match=r"must have shape \(4, 8\), got shape \(8, 4\)"):
        env.step(np.zeros((8, 4), np.float32))
    actions = np.zeros((4, 8), np.float32)
    actions[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"actions of the 4 envs must be finite numbers"):
        env.step(actions)
    env.step(np.zeros((4, 8), np.float64))  # any finite float (or int) dtype is taken


def test_make_policy_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match=r"make_policy knows only this package's environments"):
        make_policy("random", gym.make("CartPole-v1"))


def test_presets_and_overrides():
    env = gym.make("GridLAM-HighNoise-v0")
    assert env.unwrapped.config.noise_intensity == 2.0
    env = gym.make("GridLAM-v0", preset="none")
    assert env.unwrapped.config.noise_intensity == 0.0
    env = gym.make("LinearLAM-OtherAgentsStrong-v0", sigma_iid=0.1)
    assert env.unwrapped.config.sigma_exo == 2.0 and env.unwrapped.config.sigma_iid == 0.1
