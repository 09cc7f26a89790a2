"""The equations of both environments, checked from what they return."""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest

from lam_envs.envs.grid import ACTION_DELTAS, ACTION_LEAK_PATTERNS, SNAKE_NEXT_CELL
from lam_envs.envs.grid_distractors import COMPASS, background_textures

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


def _grid_steps(n_envs=256, steps=40, seed=0, env_id="GridLAM-v0", actions=None, **kwargs):
    """(obs, info, a, next_obs, reward, next_info) of ``steps`` steps of ``n_envs`` envs
    under uniform random actions (or the given (steps, n_envs) ``actions``)."""
    env = gym.make_vec(env_id, num_envs=n_envs, **kwargs)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    rows = []
    for t in range(steps):
        a = rng.integers(5, size=n_envs) if actions is None else actions[t]
        nxt, reward, _, _, new_info = env.step(a)
        rows.append((obs, info, a, nxt, reward, new_info))
        obs, info = nxt, new_info
    return rows


@pytest.mark.parametrize(
    ("env_id", "digest"),
    [
        ("GridLAM-v0", "6e65d404bb530162"),
        ("GridLAM-NoNoise-v0", "3bcbc402f7867612"),
        ("GridLAM-HighNoise-v0", "938951d0ea7e400a"),
    ],
)
def test_published_grid_is_unchanged_byte_for_byte(env_id, digest):
    """The published 4×4 grid gives the bytes it gave before the pixel scale and the
    distractors existed (digests recorded from that version)."""
    env = gym.make_vec(env_id, num_envs=5, max_episode_steps=10)
    obs, info = env.reset(seed=7)
    h = hashlib.sha256(obs.tobytes() + info["position"].tobytes())
    for t in range(30):
        obs, r, _, _, info = env.step((np.arange(5) * 3 + t) % 5)
        h.update(obs.tobytes() + r.tobytes() + info["position"].tobytes())
        h.update(info["noise"].tobytes())
    assert h.hexdigest()[:16] == digest


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


@pytest.mark.parametrize("scale", [1, 3])
def test_grid_moves_walls_and_images(scale):
    s = scale
    for _obs, info, a, nxt, reward, new_info in _grid_steps(pixel_scale=s):
        expected = np.clip(info["position"] + ACTION_DELTAS[a], 0, [2, 3])
        np.testing.assert_array_equal(new_info["position"], expected)
        # a move into a wall leaves the square in place
        into_wall = (info["position"] + ACTION_DELTAS[a] != expected).any(axis=1)
        np.testing.assert_array_equal(new_info["position"][into_wall], info["position"][into_wall])
        # the image: one s×s square of 1.0 in the top 3s rows, the noise row below
        assert (nxt[:, 0, : 3 * s].sum(axis=(1, 2)) == s * s).all()
        r, c = new_info["position"].T
        for dr in range(s):
            for dc in range(s):
                assert (nxt[np.arange(len(a)), 0, r * s + dr, c * s + dc] == 1).all()
        cells = np.repeat(np.repeat(new_info["noise"][:, None, :], s, axis=1), s, axis=2)
        np.testing.assert_array_equal(nxt[:, 0, 3 * s :], cells)
        np.testing.assert_array_equal(new_info["clean_obs"][:, 0, : 3 * s], nxt[:, 0, : 3 * s])
        assert not new_info["clean_obs"][:, 0, 3 * s :].any()
        # reward: 1 exactly for a step along the snake cycle
        successor = SNAKE_NEXT_CELL[info["position"][:, 0], info["position"][:, 1]]
        np.testing.assert_array_equal(reward, (new_info["position"] == successor).all(axis=1))


def test_grid_start_cell_uniform():
    env = gym.make_vec("GridLAM-v0", num_envs=12000)
    _, info = env.reset(seed=0)
    counts = np.bincount(info["position"][:, 0] * 4 + info["position"][:, 1], minlength=12)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 each, ±5 sd


def test_action_leak_shows_the_action_in_the_noise_row():
    rho = 0.4
    rows = _grid_steps(noise_intensity=1.0, action_leak=rho)
    leaked = np.concatenate([new_info["action_leaked"] for *_, new_info in rows])
    assert abs(leaked.mean() - rho) < 0.02
    for *_, a, nxt, _, new_info in rows:
        d = new_info["action_leaked"]
        np.testing.assert_array_equal(nxt[d, 0, 3], ACTION_LEAK_PATTERNS[a[d]])
    without = _grid_steps(noise_intensity=1.0)
    assert "action_leaked" not in without[0][-1]


# ---------------------------------------------------------------- the distracting grid

DISTRACTING_IDS = [
    "GridLAM-Clean-v0",
    "GridLAM-OtherAgents-v0",
    "GridLAM-CorrelatedAgents-v0",
    "GridLAM-Background-v0",
    "GridLAM-Shake-v0",
    "GridLAM-ColourDrift-v0",
    "GridLAM-Distracting-v0",
]


def _render_reference(config, info, i: int) -> np.ndarray:
    """Env i's observation rebuilt from its info alone, pixel by pixel, as the class
    docstring describes it: background, noise row, other agents, the agent; then shift."""
    s, size = config.pixel_scale, config.size
    scene = np.zeros((size, size), np.float32)
    dy, dx = info["shake"][i] if "shake" in info else (0, 0)
    if "background_texture" in info:
        texture = background_textures(
            config.background_textures, size, s / 2, config.structure_seed
        )[info["background_texture"][i]] * np.float32(config.background_intensity)
        oy, ox = info["background_offset"][i]
        for y in range(size):  # the background is seen through the shifted camera
            for x in range(size):
                scene[y, x] = texture[(y - dy + oy) % size, (x - dx + ox) % size]

    def square(top, left, side, value):
        for y in range(top + dy, top + dy + side):
            for x in range(left + dx, left + dx + side):
                if 0 <= y < size and 0 <= x < size:
                    scene[y, x] = value

    if config.noise_intensity > 0:
        for j in range(4):
            square(3 * s, j * s, s, info["noise"][i, j])
    if "other_positions" in info:
        side = max(1, round(config.other_agent_size * s))
        for r, c in info["other_positions"][i]:
            offset = (s - side) // 2
            square(r * s + offset, c * s + offset, side, config.other_agent_intensity)
    r, c = info["position"][i]
    square(r * s, c * s, s, info["agent_intensity"][i] if "agent_intensity" in info else 1.0)
    return scene


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [(env_id, {}) for env_id in DISTRACTING_IDS]
    + [
        ("GridLAM-Distracting-v0", {"noise_intensity": 1.5, "other_agent_size": 2.0}),
        ("GridLAM-Distracting-v0", {"other_agent_size": 0.5, "other_agent_intensity": 3.0}),
        ("GridLAM-v0", {"shake_bound": 2, "other_agents": 3, "background_intensity": 1.0}),
    ],
)
def test_observation_is_what_the_info_describes(env_id, kwargs):
    """Every pixel is determined by the info's ground truth: nothing of a distractor is
    missing from the oracle fields."""
    env = gym.make_vec(env_id, num_envs=6, max_episode_steps=15, **kwargs)
    config = env.unwrapped.config
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(25):
        for i in range(6):
            np.testing.assert_array_equal(obs[i, 0], _render_reference(config, info, i))
        obs, *_, info = env.step(rng.integers(5, size=6))


def test_other_agents_move_under_their_own_policy():
    """Uniform actions (χ² over 5), walls stop them, independent of the agent's action."""
    rows = _grid_steps(env_id="GridLAM-OtherAgents-v0", other_agent_persistence=0.0)
    agent, others = [], []
    for _o, info, a, _n, _r, new in rows:
        moved = np.clip(info["other_positions"] + ACTION_DELTAS[new["other_actions"]], 0, [2, 3])
        np.testing.assert_array_equal(new["other_positions"], moved)
        agent.append(np.repeat(a, 2))
        others.append(new["other_actions"].reshape(-1))
    agent, others = np.concatenate(agent), np.concatenate(others)
    counts = np.bincount(others, minlength=5)
    assert ((counts - len(others) / 5) ** 2 / (len(others) / 5)).sum() < 18.47  # χ²(4) 99.9%
    table = np.histogram2d(agent, others, bins=5)[0]  # independence: χ²(16) 99.9% = 39.25
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    assert ((table - expected) ** 2 / expected).sum() < 39.25


def test_other_agents_persist_and_copy_the_action_at_rate_rho():
    persistence, rho = 0.5, 0.3
    rows = _grid_steps(
        env_id="GridLAM-OtherAgents-v0",
        other_agent_persistence=persistence,
        other_agent_correlation=rho,
    )
    copied, same_as_agent, repeated = [], [], []
    for _o, info, a, _n, _r, new in rows:
        c = new["other_copied"]
        copied.append(c.reshape(-1))
        np.testing.assert_array_equal(new["other_actions"][c], np.repeat(a[:, None], 2, 1)[c])
        own = ~c
        same_as_agent.append((new["other_actions"] == a[:, None])[own])
        repeated.append((new["other_actions"] == info["other_actions"])[own])
    assert abs(np.concatenate(copied).mean() - rho) < 0.01
    # an action not copied is the agent's with probability 1/5 only (independent of it)
    assert abs(np.concatenate(same_as_agent).mean() - 0.2) < 0.01
    # ... and repeats the previous one with probability p + (1 - p)/5, in this law; the
    # previous action was itself copied at rate ρ, so compare with a margin
    assert abs(np.concatenate(repeated).mean() - (persistence + (1 - persistence) / 5)) < 0.03


def test_background_scrolls_every_step():
    rows = _grid_steps(n_envs=64, env_id="GridLAM-Background-v0")
    size = 32
    for obs, info, _a, nxt, _r, new in rows:
        v = new["background_velocity"]
        np.testing.assert_array_equal(v, info["background_velocity"])  # fixed per episode
        assert set(map(tuple, v // 1)) <= set(map(tuple, COMPASS))  # speed 1
        np.testing.assert_array_equal(
            new["background_offset"], (info["background_offset"] + v) % size
        )
        np.testing.assert_array_equal(new["background_texture"], info["background_texture"])
        # the picture moves: away from the agent's two squares, the pixels change
        untouched = (new["clean_obs"] + info["clean_obs"])[:, 0] == 0
        assert ((obs[:, 0] != nxt[:, 0]) & untouched).any(axis=(1, 2)).all()


def test_camera_shake_is_a_bounded_walk_of_bounded_steps():
    bound, step = 3, 2
    rows = _grid_steps(n_envs=128, steps=60, env_id="GridLAM-Shake-v0", shake_bound=bound,
                       shake_step=step)  # fmt: skip
    shakes = np.stack([rows[0][1]["shake"]] + [new["shake"] for *_, new in rows])
    assert np.abs(shakes).max() == bound  # reaches its bound and never passes it
    moves = np.diff(shakes, axis=0)
    assert np.abs(moves).max() == step
    assert abs(moves.mean()) < 0.1  # no drift
    assert (moves != 0).mean() > 0.5  # it does shake
    # the image is translated: the agent's square sits at its cell plus the shift
    for *_, nxt, _r, new in rows:
        top = new["position"][:, 0] * 8 + new["shake"][:, 0]
        left = new["position"][:, 1] * 8 + new["shake"][:, 1]
        inside = (top >= 0) & (left >= 0)
        assert (nxt[inside, 0, top[inside], left[inside]] == 1.0).all()


def test_colour_drift_is_a_bounded_walk_of_the_agent_intensity():
    low, high, step = 0.6, 1.4, 0.15
    drift = {"colour_drift_low": low, "colour_drift_high": high, "colour_drift_step": step}
    rows = _grid_steps(n_envs=128, steps=60, env_id="GridLAM-ColourDrift-v0", **drift)
    c = np.stack([rows[0][1]["agent_intensity"]] + [new["agent_intensity"] for *_, new in rows])
    assert c.dtype == np.float32
    assert c.min() >= np.float32(low) and c.max() <= np.float32(high)
    assert c.min() < low + 0.05 and c.max() > high - 0.05  # it spans its range
    assert np.abs(np.diff(c, axis=0)).max() <= step + 1e-6
    for *_, nxt, _r, new in rows:  # the agent's square shows that intensity
        r, col = new["position"].T * 8
        np.testing.assert_array_equal(nxt[np.arange(128), 0, r, col], new["agent_intensity"])


DISTRACTOR_KEYS = [
    "other_positions", "other_actions", "other_copied", "background_texture",
    "background_offset", "background_velocity", "shake", "agent_intensity",
]  # fmt: skip


@pytest.mark.parametrize(("rho", "depends"), [(0.0, False), (0.5, True)])
def test_distractors_ignore_the_action_unless_rho(rho, depends):
    """Same seed, different actions: every distractor's state is the same, unless other
    agents copy the agent (ρ > 0), when only their actions and positions differ (whether
    one copies is a coin of its own)."""
    actions = np.random.default_rng(5).integers(5, size=(2, 30, 16))
    runs = [
        _grid_steps(
            n_envs=16,
            steps=30,
            env_id="GridLAM-Distracting-v0",
            actions=actions[k],
            other_agent_correlation=rho,
        )  # fmt: skip
        for k in range(2)
    ]
    differs = set()
    for step_a, step_b in zip(*runs, strict=True):
        for key in DISTRACTOR_KEYS:
            if key in step_a[-1] and not np.array_equal(step_a[-1][key], step_b[-1][key]):
                differs.add(key)
    assert differs == ({"other_positions", "other_actions"} if depends else set())


@pytest.mark.parametrize("env_id", DISTRACTING_IDS)
def test_distracting_presets_share_the_control_scale(env_id):
    """Each preset is the clean control (32×32, no noise row) plus its distractors only."""
    env = gym.make(env_id)
    config = env.unwrapped.config
    assert env.observation_space.shape == (1, 32, 32)
    assert config.pixel_scale == 8 and config.noise_intensity == 0
    expected = {
        "GridLAM-Clean-v0": (),
        "GridLAM-OtherAgents-v0": ("other_agents",),
        "GridLAM-CorrelatedAgents-v0": ("other_agents",),
        "GridLAM-Background-v0": ("background",),
        "GridLAM-Shake-v0": ("shake",),
        "GridLAM-ColourDrift-v0": ("colour_drift",),
        "GridLAM-Distracting-v0": ("other_agents", "background", "shake", "colour_drift"),
    }[env_id]
    assert config.distractors == expected
    _, info = env.reset(seed=0)
    _, *_, step_info = env.step(0)
    assert info.keys() == step_info.keys()
    for key in info:
        assert np.shape(info[key]) == np.shape(step_info[key])


# ------------------------------------------------- the published Table 1 data process (grid)


def test_a_fixed_start_cell_starts_every_episode_there():
    env = gym.make_vec("GridLAM-v0", num_envs=16, vectorization_mode="vector_entry_point",
                       start_cell=6)  # fmt: skip
    _, info = env.reset(seed=3)
    assert (info["position"] == [1, 2]).all()
    free = gym.make_vec("GridLAM-v0", num_envs=16, vectorization_mode="vector_entry_point")
    _, info = free.reset(seed=3)
    assert len(np.unique(info["position"], axis=0)) > 1
    with pytest.raises(ValueError, match="start_cell"):
        gym.make("GridLAM-v0", start_cell=12)


def test_the_corner_jump_wraps_stay_at_the_top_right_cell_with_its_probability():
    """ "stay" at (0, 3) moves to (0, 0) with probability corner_jump; nothing else moves
    differently (the released Table 1 snake's wrap, stored as "stay")."""
    n = 4000
    env = gym.make_vec("GridLAM-v0", num_envs=n, vectorization_mode="vector_entry_point",
                       start_cell=3, corner_jump=0.3)  # fmt: skip
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(n, dtype=np.int64))
    wrapped = (info["position"] == [0, 0]).all(1)
    stayed = (info["position"] == [0, 3]).all(1)
    assert (wrapped | stayed).all()
    assert wrapped.mean() == pytest.approx(0.3, abs=0.03)
    env.reset(seed=0)  # any other action moves as always (a wall: stays)
    _, _, _, _, info = env.step(np.full(n, 3, dtype=np.int64))  # left
    assert (info["position"] == [0, 2]).all()
    from lam_envs.envs.grid import released_corner_jump

    # ε = 0.05: the snake says "stay" at (0, 3) with probability 0.96; 0.95 of them wrap.
    assert 0.96 * released_corner_jump(0.05) == pytest.approx(0.95)


def test_the_noise_row_draws_are_unchanged_by_a_fixed_start_or_the_corner_jump_off():
    def noise(**kwargs):
        env = gym.make_vec("GridLAM-v0", num_envs=8, vectorization_mode="vector_entry_point",
                           **kwargs)  # fmt: skip
        env.reset(seed=5)
        return np.stack([env.step(np.zeros(8, dtype=np.int64))[4]["noise"] for _ in range(5)])

    np.testing.assert_array_equal(noise(), noise(corner_jump=0.0))
