"""Every registered id: Gymnasium's checker, rendering, pickling, seeding, vector twin.

As in Minigrid's registry tests, any warning fails these tests unless it is allowed
explicitly below (``ALLOWED_WARNINGS``), so a new id is checked the moment it is registered.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lam_envs
from lam_envs.policies import make_policy

OUR_IDS = sorted(
    spec.id for spec in gym.registry.values() if str(spec.entry_point).startswith("lam_envs.")
)

#: Warnings these tests allow, each with why. Box(-inf, inf) is the honest space of the
#: linear process (a ~ N(0, I)), which Gymnasium's checker warns about.
ALLOWED_WARNINGS = {
    "LinearLAM": [r".*(infinity|symmetric and normalized).*"],
    "GridLAM": [],
}

pytestmark = pytest.mark.filterwarnings("error")  # anything not allowed below fails

#: Gymnasium's SyncVectorEnv resets a subset of members (options["reset_mask"]) from 1.1 on,
#: the release that also brought AutoresetMode.
SYNC_RESET_MASK = hasattr(gym.vector, "AutoresetMode")


def _allow_warnings(env_id: str) -> None:
    for pattern in ALLOWED_WARNINGS[env_id.split("-")[0]]:
        warnings.filterwarnings("ignore", message=pattern)


def test_every_id_of_the_package_is_registered():
    assert set(OUR_IDS) == set(lam_envs.ENV_IDS)


@pytest.mark.parametrize("env_id", OUR_IDS)
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_check_env(env_id, render_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _allow_warnings(env_id)
        env = gym.make(env_id, render_mode=render_mode)
        check_env(env.unwrapped, skip_render_check=False)
        env.reset(seed=0)
        frame = env.render()
    if render_mode == "ansi":
        assert isinstance(frame, str) and frame
    elif render_mode == "rgb_array":
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert min(frame.shape[:2]) >= 64  # big enough for a person to read
    env.close()


@pytest.mark.parametrize("env_id", OUR_IDS)
def test_observations_stay_in_their_space(env_id):
    """Every observation of 200 random steps (single and vector) lies in the declared Box."""
    env = gym.make_vec(env_id, num_envs=16, max_episode_steps=60)
    space = env.single_observation_space
    policy, rng = make_policy("random", env), np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        assert obs.dtype == space.dtype
        assert all(space.contains(o) for o in obs)
        obs, *_ = env.step(policy(obs, rng))


def _rollout(env, seed, steps=25):
    policy = make_policy("random", env)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    trace = [obs, *info.values()]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs[None], rng)[0])
        trace += [obs, reward, terminated, truncated, *info.values()]
    return trace


def _assert_same(trace_a, trace_b):
    assert len(trace_a) == len(trace_b)
    for x, y in zip(trace_a, trace_b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("env_id", OUR_IDS)
def test_same_seed_same_episode_and_pickle(env_id):
    env = gym.make(env_id)
    _assert_same(_rollout(env, 3), _rollout(gym.make(env_id), 3))
    different = _rollout(gym.make(env_id), 4)
    assert not np.array_equal(_rollout(env, 3)[0], different[0])
    clone = pickle.loads(pickle.dumps(env))
    _assert_same(_rollout(env, 5), _rollout(clone, 5))


@pytest.mark.parametrize("env_id", OUR_IDS)
def test_spec_round_trip(env_id):
    env = gym.make(env_id)
    again = gym.make(gym.envs.registration.EnvSpec.from_json(env.spec.to_json()))
    assert again.unwrapped.config == env.unwrapped.config


#: Every registered id with its defaults, plus configurations no preset covers.
VECTOR_CASES = [(env_id, {}) for env_id in OUR_IDS] + [
    ("LinearLAM-v0", {"sigma_iid": 0.3, "sigma_exo": 1.0, "distractor_correlation": 0.5}),
    ("LinearLAM-v0", {"d_o": 16, "d_a": 4, "d_b": 2, "sigma_iid": 0.1}),
    ("GridLAM-v0", {"action_leak": 0.3}),
    ("GridLAM-v0", {"pixel_scale": 3, "noise_intensity": 2.0, "shake_bound": 2, "shake_step": 2}),
    (
        "GridLAM-Distracting-v0",
        {
            "other_agents": 3,
            "other_agent_size": 1.5,
            "other_agent_intensity": 2.0,
            "other_agent_correlation": 0.4,
            "noise_intensity": 1.0,
            "action_leak": 0.2,
        },
    ),  # fmt: skip
    ("GridLAM-v0", {"other_agents": 2, "background_intensity": 0.7, "colour_drift_step": 0.2}),
]


@pytest.mark.parametrize(("env_id", "kwargs"), VECTOR_CASES)
def test_native_vector_env_equals_single_envs(env_id, kwargs):
    """Same seeds: the native vector env gives exactly the transitions of N single envs,
    through autoresets (episodes of 7 steps, 40 steps), and resets of some members."""
    n = 3
    native = gym.make_vec(env_id, num_envs=n, max_episode_steps=7, **kwargs)
    assert type(native).__name__.endswith("VectorEnv")
    assert native.spec.vector_entry_point is not None
    singles = gym.make_vec(
        env_id, num_envs=n, vectorization_mode="sync", max_episode_steps=7, **kwargs
    )
    policy = make_policy("random", native)
    rng = np.random.default_rng(0)
    obs, info = native.reset(seed=11)
    obs_s, info_s = singles.reset(seed=11)
    np.testing.assert_array_equal(obs, obs_s)
    assert info.keys() == {k for k in info_s if not k.startswith("_")}
    for key in info:
        np.testing.assert_array_equal(info[key], info_s[key])
    for t in range(40):
        actions = policy(obs, rng)
        out, out_s = native.step(actions), singles.step(actions)
        for x, y in zip(out[:4], out_s[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        for key in out[4]:
            np.testing.assert_array_equal(out[4][key], out_s[4][key])
        obs = out[0]
        if t == 20 and SYNC_RESET_MASK:  # reset one member mid-episode, with a new seed
            mask = np.array([False, True, False])
            obs, info = native.reset(seed=[None, 5, None], options={"reset_mask": mask})
            obs_s, info_s = singles.reset(seed=[None, 5, None], options={"reset_mask": mask})
            np.testing.assert_array_equal(obs, obs_s)
            for key in info:
                np.testing.assert_array_equal(info[key][1], info_s[key][1])


def test_vector_env_reset_mask_and_seed_list():
    env = gym.make_vec("GridLAM-v0", num_envs=4)
    obs, _ = env.reset(seed=[1, 2, 3, 4])
    single = gym.make("GridLAM-v0")
    np.testing.assert_array_equal(obs[2], single.reset(seed=3)[0])
    env.step(np.zeros(4, dtype=np.int64))
    mask = np.array([False, True, False, False])
    obs2, info = env.reset(seed=[None, 9, None, None], options={"reset_mask": mask})
    np.testing.assert_array_equal(obs2[1], single.reset(seed=9)[0])
    assert info["position"].shape == (4, 2)


def test_step_before_reset_raises_in_single_and_vector_envs():
    for env in (gym.make("GridLAM-v0").unwrapped, gym.make_vec("GridLAM-v0", num_envs=2)):
        with pytest.raises(gym.error.ResetNeeded, match="reset"):
            env.step(np.zeros(env.action_space.shape, dtype=np.int64))
    with pytest.raises(gym.error.ResetNeeded):  # gym.make's own order enforcing
        gym.make("LinearLAM-v0").step(np.zeros(8, np.float32))
    env = gym.make_vec("LinearLAM-v0", num_envs=2)
    env.reset(seed=0, options={"reset_mask": np.array([True, False])})  # one member only
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros((2, 8), np.float32))
    env.reset(seed=0)
    env.step(np.zeros((2, 8), np.float32))


def test_vector_env_renders_every_member():
    env = gym.make_vec("GridLAM-v0", num_envs=2, render_mode="rgb_array")
    env.reset(seed=0)
    frames = env.render()
    assert len(frames) == 2 and frames[0].shape == (128, 128, 3)


def test_arrays_the_caller_holds_never_change_and_dropped_ones_are_recycled():
    """The native vector env recycles its large output arrays (lam_envs.envs._pool.ArrayPool)
    only when nothing outside references them, directly or through a view."""
    env = gym.make_vec("LinearLAM-OtherAgents-v0", num_envs=64)
    obs, _ = env.reset(seed=0)
    actions = np.ones((64, env.unwrapped.config.d_a), dtype=np.float32)
    kept_obs, _, _, _, kept_info = env.step(actions)
    view = kept_info["q"][:3]  # only a view of q survives
    saved_obs, saved_view, saved_eps = kept_obs.copy(), view.copy(), kept_info["eps"].copy()
    kept_eps = kept_info["eps"]
    del kept_info
    seen = set()
    for _ in range(5):
        o, _, _, _, info = env.step(actions)
        seen.add(id(o))
        clash = o is kept_obs or info["eps"] is kept_eps or info["q"] is view.base
        del o, info  # (no assert on them above: pytest's rewriting would keep them alive)
        assert not clash
    np.testing.assert_array_equal(kept_obs, saved_obs)
    np.testing.assert_array_equal(view, saved_view)
    np.testing.assert_array_equal(kept_eps, saved_eps)
    assert len(seen) == 1  # dropped at once: the same (recycled) array every step


def test_array_pool_hands_out_only_unreferenced_arrays():
    from lam_envs.envs._pool import ArrayPool

    pool = ArrayPool(per_key=2)
    first = pool.take("x", (4, 3))
    second = pool.take("x", (4, 3))
    assert second is not first  # first is still held
    first_id = id(first)
    del first
    assert id(pool.take("x", (4, 3))) == first_id  # dropped, so recycled
    assert pool.take("y", (4, 3)) is not second  # another output's arrays are its own
    held = [pool.take("x", (4, 3)) for _ in range(4)]  # beyond per_key: fresh, unpooled
    assert len({id(a) for a in held}) == 4
    assert pool.take("x", (2, 2), np.int64).dtype == np.int64


def test_every_distractor_setting_is_a_registered_preset():
    registered = {preset for kind, preset in lam_envs.ENV_IDS.values() if kind == "grid"}
    assert set(lam_envs.DISTRACTOR_SETTINGS.values()) <= registered
    assert {"clean", "all"} <= set(lam_envs.DISTRACTOR_SETTINGS)


def test_collected_oracle_holds_every_distractor_state(tmp_path):
    """The collector writes the whole info, so each distractor's state reaches the
    dataset's oracle fields, step for step."""
    import h5py

    from lam_envs.collect import CollectConfig, collect

    config = CollectConfig(env="GridLAM-Distracting-v0", episodes=2, episode_length=6)
    path = collect(config, root=tmp_path, progress=False).path
    env = gym.make("GridLAM-Distracting-v0")
    _, info = env.reset(seed=0)
    with h5py.File(path / "data" / "main_data.hdf5") as f:
        oracle = f["episode_0/infos/oracle"]
        assert set(info) <= set(oracle)
        for key, value in info.items():
            assert oracle[key].shape == (7, *np.shape(value))
        seed = int(f["episode_0"].attrs["seed"])
    _, info = env.reset(seed=seed)  # the episode replays from its seed
    with h5py.File(path / "data" / "main_data.hdf5") as f:
        for key in ("other_positions", "background_offset", "shake", "agent_intensity"):
            np.testing.assert_array_equal(f["episode_0/infos/oracle"][key][0], info[key])
