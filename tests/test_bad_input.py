"""Impossible or out-of-range parameters fail at construction, naming the value and the range."""

from __future__ import annotations

import gymnasium as gym
import pytest

import lam_envs  # noqa: F401  (registers the ids)

BAD_LINEAR = [
    ({"d_a": 200}, r"d_a must be <= d_o = 128, got d_a = 200"),
    ({"d_o": 0}, r"d_o must be >= 1, got 0"),
    ({"d_a": -2}, r"d_a must be >= 1, got -2"),
    ({"d_b": 0}, r"d_b must be >= 1, got 0"),
    ({"d_o": 2.5}, r"d_o must be an integer, got 2.5"),
    ({"sigma_iid": -0.1}, r"sigma_iid must be >= 0.0, got -0.1"),
    ({"sigma_exo": -1}, r"sigma_exo must be >= 0.0, got -1.0"),
    ({"overlap": 1.5}, r"overlap must be in \[0.0, 1.0\], got 1.5"),
    ({"distractor_correlation": -0.2}, r"distractor_correlation must be in \[0.0, 1.0\], got -0.2"),
    ({"d_o": 10, "d_a": 8, "d_b": 4}, r"d_b must be <= d_o - d_a = 2"),
    ({"d_a": 2, "d_b": 4, "overlap": 0.5}, r"d_b must be <= d_a = 2"),
    ({"preset": "loud"}, r"unknown preset 'loud'; allowed: 'no_noise', 'iid'"),
    ({"sigma": 1.0}, r"unknown LinearLAM parameter 'sigma'; allowed: d_a, d_b, d_o"),
    ({"render_mode": "video"}, r"unknown render_mode 'video'; allowed: None, 'ansi'"),
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


def test_presets_and_overrides():
    env = gym.make("GridLAM-HighNoise-v0")
    assert env.unwrapped.config.noise_intensity == 2.0
    env = gym.make("GridLAM-v0", preset="none")
    assert env.unwrapped.config.noise_intensity == 0.0
    env = gym.make("LinearLAM-OtherAgentsStrong-v0", sigma_iid=0.1)
    assert env.unwrapped.config.sigma_exo == 2.0 and env.unwrapped.config.sigma_iid == 0.1
