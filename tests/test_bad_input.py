"""Impossible or out-of-range parameters fail at construction, naming the value and the range."""

from __future__ import annotations

import json
import shutil

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
    # X and Y take a QR of d_o × d_o float64 (here beyond any address space: fails at once)
    ({"d_o": 10**8, "d_a": 2}, r"d_o = 100000000 does not fit in memory: .* GiB"),
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


# ---------------------------------------------------------------- trainers and pipeline


@pytest.mark.parametrize("fraction", [-0.5, 1.5, float("nan"), float("inf")])
def test_a_label_fraction_outside_0_1_is_refused_not_one_label(lam_datasets, fraction):
    """It used to give max(1, round(f · N)) = 1 label for f <= 0, silently."""
    from lam_models.split import DataSplit, choose_labels

    with pytest.raises(ValueError, match=r"label_fraction must be (in \[0.0, 1.0\]|a finite)"):
        choose_labels(np.ones(100, bool), fraction, seed=0)
    with pytest.raises(ValueError, match=r"label_fraction must be"):
        DataSplit(lam_datasets["linear"], label_fraction=fraction)


def test_a_label_fraction_of_zero_is_no_labels(lam_datasets):
    from lam_models.split import DataSplit, choose_labels

    assert choose_labels(np.ones(100, bool), 0.0, seed=0).sum() == 0
    assert choose_labels(np.ones(100, bool), 1e-9, seed=0).sum() == 1  # at least one when > 0
    assert DataSplit(lam_datasets["linear"], label_fraction=0.0).labelled == 0


def test_train_refuses_a_negative_label_fraction_in_one_line(lam_datasets, tmp_path, capsys):
    from lam_models.train import main

    out = tmp_path / "run"
    args = ["linear", "--dataset", lam_datasets["linear"], "--label-fraction", "-0.5"]
    assert main([*args, "--steps", "5", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "error: label_fraction must be in [0.0, 1.0], got -0.5\n"
    assert not out.exists()


def _edited_copy(dataset: str, folder, edit_spec) -> str:
    """A copy of ``dataset`` whose metadata's env_spec went through ``edit_spec(spec)``."""
    shutil.copytree(dataset, folder)
    path = folder / "data" / "metadata.json"
    meta = json.loads(path.read_text())
    spec = json.loads(meta["env_spec"])
    edit_spec(spec)
    meta["env_spec"] = json.dumps(spec)
    path.write_text(json.dumps(meta))
    return str(folder)


def _a_file(path):
    path.write_text("x")
    return path


def _a_train_run(path):
    path.mkdir()
    (path / "model.pt").write_text("a run of lam_models.train")
    return path


BAD_PIPELINE_OUT = [
    (_a_file, r"is a file, not a folder"),
    (_a_train_run, r"already holds files .* --overwrite"),
    (lambda path: _a_file(path) / "run", r"cannot be written"),
]


@pytest.mark.parametrize(("make_out", "message"), BAD_PIPELINE_OUT)
def test_a_pipeline_out_that_cannot_take_the_run_is_refused_before_work(
    lam_datasets, tmp_path, capsys, make_out, message
):
    """A file, or a folder of other files (a train run): nothing is written into it."""
    from lam_models.pipeline import main

    out = make_out(tmp_path / "out")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    args = ["--dataset", lam_datasets["grid"], "--quick", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("edit_spec", "message"),
    [
        # a foreign entry point under our id: the rollouts would call it
        (
            lambda s: s.update(entry_point="os:getcwd"),
            r"names entry point 'os:getcwd' .* --trust-dataset",
        ),
        # a foreign environment: used to be a NaN cast into integer actions
        (
            lambda s: s.update(id="Foreign-v0", entry_point="os:getcwd"),
            r"comes from Foreign-v0: the 'vq' LAM works on grid data",
        ),
    ],
)
def test_the_pipeline_refuses_an_environment_it_cannot_use_before_the_lam_trains(
    lam_datasets, tmp_path, capsys, edit_spec, message
):
    from lam_models.pipeline import main

    data = _edited_copy(lam_datasets["grid"], tmp_path / "shared", edit_spec)
    out = tmp_path / "run"
    assert main(["--dataset", data, "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_a_whole_pipeline_over_a_run_with_other_settings_is_refused(lam_datasets, tmp_path, capsys):
    """--stage all used to overwrite the folder's config.json and results.json."""
    import dataclasses

    from lam_models.pipeline import PipelineConfig, main

    run = tmp_path / "run"
    run.mkdir()
    saved = dataclasses.asdict(PipelineConfig.quick(dataset=lam_datasets["grid"]))
    (run / "config.json").write_text(json.dumps(saved))
    (run / "results.json").write_text("{}")
    args = ["--dataset", lam_datasets["grid"], "--quick", "--seed", "1", "--out", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "was made with other settings: seed=1 (folder: 0); use a new --out, or --overwrite" in err
    )
    assert json.loads((run / "config.json").read_text()) == saved
    assert (run / "results.json").read_text() == "{}"


# The example scripts refuse a bad flag in one line, "error: ...", exit status 2, before
# they write anything.
BAD_EXAMPLE_FLAGS = [
    ("card_budget", ["--setting", "grid/medium"], "unknown setting 'grid/medium'"),
    ("card_budget", ["--method", "pca"], "unknown method 'pca'"),
    ("card_budget", ["--steps", "10,x"], "--steps must be integers"),
    ("card_budget", ["--steps", "0"], "steps"),
    ("label_budget_study", ["--methods", "laom,lapo"], "unknown method lapo; choose from vq, laom"),
    (
        "label_budget_study",
        ["--settings", "fog"],
        "unknown setting fog; choose from goal, goal_lights",
    ),
    ("label_budget_study", ["--workers", "0"], "--workers must be >= 1, got 0"),
    ("label_budget_study", ["--scale", "huge"], "argument --scale: invalid choice: 'huge'"),
    ("label_budget_study", ["--device", "tpu"], "unknown device 'tpu'"),
    ("reproduce_linear", ["--figures", "F3a,F9"], "--figures: unknown figure(s) ['F9']"),
    ("reproduce_linear", ["--protocol", "paper"], "argument --protocol: invalid choice: 'paper'"),
    ("reproduce_linear", ["--workers", "0"], "--workers must be >= 1, got 0"),
    ("reproduce_linear", ["--device", "tpu"], "--device: unknown device 'tpu'"),
    ("reproduce_table1", ["--seeds", "0"], "--seeds must be >= 1, got 0"),
    ("reproduce_table1", ["--device", "tpu"], "unknown device 'tpu'"),
    ("reproduce_table1", ["--budget", "huge"], "invalid choice: 'huge'"),
    ("reproduce_table1", ["--arch", "mine"], "invalid choice: 'mine'"),
    ("reproduce_table1", ["--settings", "loud"], "invalid choice: 'loud'"),
    ("reproduce_table1", ["--variant", "mine"], "invalid choice: 'mine'"),
    (
        "reproduce_table1",
        ["--arch", "ours", "--variant", "skip"],
        "--variant skip changes the published model",
    ),
]


@pytest.mark.parametrize(("example", "flags", "message"), BAD_EXAMPLE_FLAGS)
def test_bad_example_flags_fail_in_one_line(
    example, flags, message, load_example, tmp_path, capsys
):
    main, out = load_example(example).main, tmp_path / "out"
    if example == "card_budget":  # its main returns the exit status; the others exit with it
        assert main([*flags, "--out", str(out)]) == 2
    else:
        with pytest.raises(SystemExit, match="^2$"):
            main([*flags, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()
