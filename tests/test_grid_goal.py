"""The goal task and the flickering blobs (lam_envs.envs.grid_scenery): their laws, their
pictures, their ground truth, and the goal-seeking policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lam_envs  # noqa: F401  (registers the ids)
from lam_envs.envs.grid import GridLAMConfig
from lam_envs.policies import make_policy

GOAL_IDS = [
    "GridLAM-Goal-v0",
    "GridLAM-GoalBlobs-v0",
    "GridLAM-GoalLights-v0",
    "GridLAM-GoalAgents-v0",
    "GridLAM-GoalCorrelatedAgents-v0",
    "GridLAM-GoalDistracting-v0",
]


def _reference(config: GridLAMConfig, info, i: int) -> np.ndarray:
    """Env i's observation rebuilt from its info, pixel by pixel, as the module doc says:
    blobs (periodic Gaussians, the larger value wins), the goal's outline, the other agents,
    the agent on top."""
    s, size = config.pixel_scale, config.size
    scene = np.zeros((size, size), np.float64)
    if config.blob_count:
        grid = np.arange(size)
        blobs = zip(info["blob_positions"][i], info["blob_amplitudes"][i], strict=True)
        k = config.blob_count
        for j, ((py, px), amp) in enumerate(blobs):
            sigma = config.blob_width * (k + j) / (2 * k - 1)  # each blob its own size
            dy = np.abs(grid - py)
            dx = np.abs(grid - px)
            dy, dx = np.minimum(dy, size - dy), np.minimum(dx, size - dx)
            g = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma**2))
            scene = np.maximum(scene, amp * config.blob_intensity * g)
    gr, gc = info["goal"][i]
    ring = np.ones((s, s), bool)
    ring[1:-1, 1:-1] = False
    scene[gr * s : (gr + 1) * s, gc * s : (gc + 1) * s][ring] = config.goal_intensity
    if "other_positions" in info:
        side = max(1, round(config.other_agent_size * s))
        offset = (s - side) // 2
        for r, c in info["other_positions"][i]:
            top, left = r * s + offset, c * s + offset
            scene[top : top + side, left : left + side] = config.other_agent_intensity
    r, c = info["position"][i]
    scene[r * s : (r + 1) * s, c * s : (c + 1) * s] = 1.0
    return scene


@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_observation_is_what_the_info_describes(env_id):
    env = gym.make_vec(env_id, num_envs=4, max_episode_steps=12)
    config = env.unwrapped.config
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(15):
        for i in range(4):
            np.testing.assert_allclose(obs[i, 0], _reference(config, info, i), atol=1e-5)
        obs, *_, info = env.step(rng.integers(5, size=4))


def test_blob_laws_and_their_ground_truth():
    """position' = (position + move) mod size, the move one of the 9 (none, 8 directions)
    × speed;
    amplitudes in [1 − flicker, 1]; blob_flicker the amplitude's change; distractor_change
    the moves then the amplitude changes (then each other agent's move)."""
    env = gym.make_vec(
        "GridLAM-GoalDistracting-v0", num_envs=8, max_episode_steps=50, blob_persistence=0.0
    )
    c = env.unwrapped.config
    _, info = env.reset(seed=0)
    assert not info["distractor_change"].any()  # zeros on reset
    rng = np.random.default_rng(1)
    moves = []
    for _ in range(40):
        before = {k: v.copy() for k, v in info.items()}
        _, _, _, truncated, info = env.step(rng.integers(5, size=8))
        assert not truncated.any()
        move = info["blob_moves"]
        moves.append(move)
        assert np.isin(move, [-c.blob_speed, 0.0, c.blob_speed]).all()
        wrapped = np.mod(before["blob_positions"] + move, c.size)
        np.testing.assert_allclose(info["blob_positions"], wrapped, atol=1e-4)
        amp = info["blob_amplitudes"]
        assert ((amp >= 1 - c.blob_flicker) & (amp <= 1)).all()
        np.testing.assert_allclose(info["blob_flicker"], amp - before["blob_amplitudes"], atol=1e-6)
        deltas = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
        others = deltas[info["other_actions"]].reshape(8, -1)
        expected = np.concatenate([move.reshape(8, -1), info["blob_flicker"], others], 1)
        np.testing.assert_allclose(info["distractor_change"], expected, atol=1e-6)
    moves = np.stack(moves)  # fresh every step: no velocity persists
    assert abs(np.corrcoef(moves[1:].ravel(), moves[:-1].ravel())[0, 1]) < 0.1
    assert np.abs(moves).mean() == pytest.approx(c.blob_speed * 2 / 3, rel=0.1)  # 6 of 9 move


def test_a_persistent_blob_repeats_its_last_move():
    env = gym.make_vec("GridLAM-GoalBlobs-v0", num_envs=16, max_episode_steps=200)
    assert env.unwrapped.config.blob_persistence == 0.8
    _, info = env.reset(seed=0)
    repeated = []
    for _ in range(100):
        before = info["blob_moves"].copy()
        *_, info = env.step(np.zeros(16, np.int64))
        repeated.append((info["blob_moves"] == before).all(-1))
    # kept with p = 0.8, and a fresh draw equals the last move 1 time in 9
    assert np.mean(repeated) == pytest.approx(0.8 + 0.2 / 9, abs=0.03)


def test_the_goal_rewards_reaching_it_and_moves_on():
    env = gym.make_vec("GridLAM-Goal-v0", num_envs=16, max_episode_steps=200)
    _, info = env.reset(seed=0)
    assert ((info["goal"] != info["position"]).any(axis=1)).all()  # never on the agent
    rng = np.random.default_rng(2)
    reached = 0
    for _ in range(150):
        goal = info["goal"].copy()
        _, reward, _, _, info = env.step(rng.integers(5, size=16))
        hit = (info["position"] == goal).all(axis=1)
        np.testing.assert_array_equal(reward, hit.astype(float))
        np.testing.assert_array_equal(info["goal_reached"], hit)
        assert ((info["goal"] != info["position"]).any(axis=1)).all()
        kept = ~hit & (info["goal_age"] > 0)  # kept until reached, or 8 steps unreached
        np.testing.assert_array_equal(info["goal"][kept], goal[kept])
        reached += hit.sum()
    assert reached > 50


def test_the_goal_policy_seeks_the_goal():
    """ε = 0 reaches a goal every ~2.5 steps; random actions far less often."""
    returns = {}
    for eps in (0.0, 1.0):
        env = gym.make_vec("GridLAM-GoalBlobs-v0", num_envs=8, max_episode_steps=100)
        policy = make_policy("goal", env, epsilon=eps)
        obs, info = env.reset(seed=0)
        rng, total = np.random.default_rng(0), 0.0
        for _ in range(100):
            obs, reward, _, _, info = env.step(policy(obs, rng, info))
            total += reward.sum()
        returns[eps] = total / 8
    assert returns[0.0] > 30 and returns[1.0] < returns[0.0] / 3


def test_pulsing_lights_walk_their_brightness_at_random_and_stay_put():
    """goal_lights: blobs that never move, each amplitude stepping −δ, 0 or +δ (a third
    each) reflected into [1 − flicker, 1], independently of its last step."""
    env = gym.make_vec("GridLAM-GoalLights-v0", num_envs=16, max_episode_steps=300)
    c = env.unwrapped.config
    assert (c.blob_speed, c.blob_pulse, c.blob_persistence) == (0.0, 0.5, 0.0)
    _, info = env.reset(seed=1)
    start = info["blob_positions"].copy()
    steps, reflected = [], 0
    for _ in range(200):
        before = info["blob_amplitudes"].astype(np.float64)
        *_, info = env.step(np.zeros(16, np.int64))
        after = info["blob_amplitudes"].astype(np.float64)
        assert ((after >= 1 - c.blob_flicker - 1e-6) & (after <= 1 + 1e-6)).all()
        raw = after - before
        np.testing.assert_allclose(info["blob_flicker"], raw, atol=1e-6)
        # an unreflected step is exactly -δ, 0 or +δ; a reflected one lands on the far side
        free = np.isclose(np.abs(raw), 0.0, atol=1e-6) | np.isclose(np.abs(raw), c.blob_pulse)
        reflected += (~free).sum()
        steps.append(np.sign(np.round(raw, 5)))
        np.testing.assert_array_equal(info["blob_positions"], start)  # they stay put
        np.testing.assert_array_equal(info["blob_moves"], 0)
    steps = np.stack(steps)
    assert reflected < 0.5 * steps.size
    for value in (-1, 1):  # a third each way (reflection swaps some, symmetrically)
        assert np.mean(steps == value) == pytest.approx(1 / 3, abs=0.05)
    assert np.mean(steps == 0) == pytest.approx(1 / 3, abs=0.05)


@pytest.mark.parametrize("env_id", ["GridLAM-GoalBlobs-v0", "GridLAM-GoalLights-v0"])
def test_blobs_change_more_pixels_per_step_than_the_agent(env_id):
    """The failure mode's premise: per step the blobs change at least as many pixel values
    (sum of |Δ|) as the agent's moves."""
    env = gym.make_vec(env_id, num_envs=8, max_episode_steps=100)
    _, info = env.reset(seed=0)
    rng, agent, total = np.random.default_rng(0), 0.0, 0.0
    clean = info["clean_obs"]
    obs = env.unwrapped.dynamics.observations().copy()
    for _ in range(50):
        nxt, *_, info = env.step(rng.integers(5, size=8))
        agent += np.abs(info["clean_obs"] - clean).sum()
        total += np.abs(nxt - obs).sum()
        clean, obs = info["clean_obs"], nxt.copy()
    assert total - agent >= agent


def test_goal_and_blob_fields_are_checked():
    with pytest.raises(ValueError, match="goal must be True or False"):
        GridLAMConfig(goal="yes")
    with pytest.raises(ValueError, match="blob_count"):
        GridLAMConfig(blob_count=-1)
    for bad in (0.0, -0.5, float("inf"), "bright"):  # an invisible goal is no task
        with pytest.raises(ValueError, match="goal_intensity"):
            GridLAMConfig(goal=True, goal_intensity=bad)
    with pytest.raises(ValueError, match="the goal task"):
        make_policy("goal", gym.make("GridLAM-Clean-v0"))


def test_nmse_distractor_probes_the_distractors_low_dimensional_change(tmp_path):
    """In a dataset the oracle field distractor_change is the change over each transition:
    a latent that is that change probes it perfectly and holds nothing of the action."""
    from lam_envs.collect import CollectConfig, collect
    from lam_models.evaluation.scoring import evaluate_latents, nuisance_targets
    from lam_models.split import DataSplit

    config = CollectConfig(
        env="GridLAM-GoalBlobs-v0", policy="random", episodes=12, episode_length=40,
        seed=0, label_fraction=0.5, dataset_id="lam_envs/goal-probe-v0",
        env_kwargs={"blob_count": 4},
    )  # fmt: skip
    collect(config, root=tmp_path, progress=False)
    split = DataSplit(str(tmp_path / "lam_envs" / "goal-probe-v0"), seed=0)
    train, test = split.train, split.test
    (y,) = nuisance_targets("distractor_change", train)
    assert y.shape == (len(train), 12)
    moves = train.oracle["blob_positions"] - train.oracle["blob_positions_before"]
    wrapped = np.mod(moves + 16, 32) - 16  # the move, unwrapped from the periodic plane
    np.testing.assert_allclose(y[:, :8], wrapped.reshape(len(train), 8), atol=1e-4)
    z_train, z_test = (p.oracle["distractor_change"] for p in (train, test))
    scores = evaluate_latents(
        z_train, z_test, train, test, True, 5, nuisance=("distractor_change",)
    )
    assert scores["nmse_distractor_change"] < 1e-6 and scores["nmse_action"] > 0.9


def test_an_unreached_goal_moves_after_its_timeout():
    """goal_timeout = 8 on the goal presets: a policy that stands still sees a new goal
    every 8 steps (never on the agent), and earns nothing for it."""
    env = gym.make_vec("GridLAM-Goal-v0", num_envs=4, max_episode_steps=100)
    assert env.unwrapped.config.goal_timeout == 8
    _, info = env.reset(seed=0)
    goals, rewards = [info["goal"].copy()], []
    for t in range(1, 25):
        _, reward, _, _, info = env.step(np.zeros(4, np.int64))  # stay
        rewards.append(reward)
        assert (info["goal_age"] == t % 8).all()
        goals.append(info["goal"].copy())
        assert ((info["goal"] != info["position"]).any(axis=1)).all()
    goals = np.stack(goals)
    assert not np.any(rewards)
    for t in range(1, 25):  # moved exactly at ages 8, 16, 24 (a redraw may land on it again)
        if t % 8:
            np.testing.assert_array_equal(goals[t], goals[t - 1])
    assert (goals[8] != goals[7]).any() and (goals[16] != goals[15]).any()
    untimed = gym.make_vec("GridLAM-Goal-v0", num_envs=4, goal_timeout=0)
    _, info = untimed.reset(seed=0)
    first = info["goal"].copy()
    for _ in range(30):
        *_, info = untimed.step(np.zeros(4, np.int64))
    np.testing.assert_array_equal(info["goal"], first)
