"""python -m lam_envs.collect: Minari round trips, the label contract, determinism,
atomicity, recipes and bad input."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

from lam_envs.collect import CollectConfig, collect, main
from lam_models.data import LAMDataset

ROOT_DIR = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT_DIR / "datasets").glob("*.toml"))


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A fresh Minari root, also set as MINARI_DATASETS_PATH for minari's own API."""
    folder = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder))
    return folder


def _collect(root, **kwargs):
    kwargs.setdefault("episodes", 6)
    kwargs.setdefault("episode_length", 20)
    return collect(CollectConfig(**kwargs), root=root, progress=False)


def test_a_relative_root_works(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--root", "rel", "--episodes", "2", "--episode-length", "5", "--quiet"]
    assert main([*args, "--dataset-id", "lam_envs/rel-v0"]) == 0
    assert minari.load_dataset(str(tmp_path / "rel" / "lam_envs" / "rel-v0")).total_steps == 10


def test_cli_default_snaking_and_minari_reads_it(root, capsys):
    assert main(["--policy", "snaking", "--root", str(root), "--quiet", "--episodes", "20"]) == 0
    out = capsys.readouterr().out
    for word in (
        "under policy snaking epsilon = 0.05, the published correlated policy",
        "dataset lam_envs/gridlam-snaking-epsilon0p05-20x200-lab0p01-seed0-v0\n",
        "transitions  4,000 in 20 episodes\n",
        "labelled     40 ",
        "throughput",
    ):
        assert word in out
    dataset_id = out.split("dataset ")[1].split()[0]
    data = minari.load_dataset(dataset_id)
    assert data.storage.metadata["lam_envs"]["collect"]["epsilon"] == 0.05
    assert data.total_episodes == 20 and data.total_steps == 4000
    episode = data[0]
    assert episode.observations.shape == (201, 1, 4, 4)
    assert set(episode.infos) == {"label_mask", "oracle"}
    env = data.recover_environment()
    assert env.spec.id == "GridLAM-v0" and env.spec.max_episode_steps == 200
    minari_cli = Path(sys.executable).parent / "minari"
    shown = subprocess.run(
        [str(minari_cli), "show", dataset_id], capture_output=True, text=True, check=True
    )
    assert "Total Steps" in shown.stdout and "100000" not in shown.stdout
    assert "snaking (epsilon = 0.05)" in " ".join(shown.stdout.split())
    assert dataset_id in minari.list_local_datasets()


def test_recovered_linear_env_has_the_same_structure(root):
    summary = _collect(
        root, env="LinearLAM-v0", env_kwargs={"sigma_exo": 1.0, "d_o": 32, "structure_seed": 7}
    )
    env = minari.load_dataset(summary.dataset_id).recover_environment()
    direct = gym.make("LinearLAM-v0", sigma_exo=1.0, d_o=32, structure_seed=7).unwrapped.dynamics
    np.testing.assert_array_equal(env.unwrapped.dynamics.X, direct.X)
    np.testing.assert_array_equal(env.unwrapped.dynamics.Y, direct.Y)
    # the stored transitions obey the recovered env's equation o' = o + X a + eps
    episode = minari.load_dataset(summary.dataset_id)[0]
    oracle = episode.infos["oracle"]
    o, a = episode.observations, oracle["action"][1:]
    np.testing.assert_allclose(o[1:], o[:-1] + a @ direct.X.T + oracle["eps"][1:], atol=1e-4)


@pytest.mark.parametrize("env", ["GridLAM-v0", "LinearLAM-v0"])
@pytest.mark.parametrize(
    ("fraction", "unit"),
    [(0.1, "transition"), (0.0005, "transition"), (0.34, "episode"), (0.0, "transition")],
)
def test_partial_labels_contract(root, env, fraction, unit):
    summary = _collect(root, env=env, label_fraction=fraction, label_unit=unit, seed=3)
    data = minari.load_dataset(summary.dataset_id)
    n_units = 6 * 20 if unit == "transition" else 6
    expected = 0 if fraction == 0 else max(1, round(fraction * n_units))
    mask, actions, truth = [], [], []
    for episode in data.iterate_episodes():
        # a learner's fields: nothing but these, and no trace of hidden actions in them
        assert set(episode.infos) == {"label_mask", "oracle"}
        m = episode.infos["label_mask"]
        assert m.shape == (21,) and not m[0]  # row 0 is the reset
        mask.append(m[1:])
        actions.append(episode.actions)
        truth.append(episode.infos["oracle"]["action"][1:])
        if unit == "episode":
            assert m[1:].all() or not m[1:].any()
    mask, actions, truth = np.concatenate(mask), np.concatenate(actions), np.concatenate(truth)
    labelled_units = mask.sum() if unit == "transition" else mask.sum() // 20
    assert labelled_units == expected
    assert summary.labelled == mask.sum()
    np.testing.assert_array_equal(actions[mask], truth[mask])
    if env == "GridLAM-v0":
        assert (actions[~mask] == -1).all() and (truth >= 0).all()
    else:
        assert np.isnan(actions[~mask]).all() and not np.isnan(truth).any()


def test_full_labels_export_keeps_every_action_and_the_mask(root):
    partial = _collect(root, label_fraction=0.05, seed=1)
    full = _collect(root, label_fraction=0.05, seed=1, full_labels=True)
    a, b = minari.load_dataset(partial.dataset_id), minari.load_dataset(full.dataset_id)
    for x, y in zip(a.iterate_episodes(), b.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(x.observations, y.observations)
        np.testing.assert_array_equal(y.actions, y.infos["oracle"]["action"][1:])
        np.testing.assert_array_equal(x.infos["label_mask"], y.infos["label_mask"])


def _digest(root, dataset_id):
    """A hash of every array of every episode, through the main file's links."""
    h = hashlib.sha256()
    with h5py.File(Path(root, dataset_id, "data", "main_data.hdf5")) as f:
        for key in sorted(f, key=lambda k: int(k.removeprefix("episode_"))):
            h.update(key.encode() + f[key].attrs["seed"].tobytes())
            f[key].visititems(
                lambda name, obj: (
                    h.update(name.encode() + obj[()].tobytes())
                    if isinstance(obj, h5py.Dataset)
                    else None
                )
            )
    return h.hexdigest()


def test_same_arguments_same_data(tmp_path):
    args = {
        "env": "LinearLAM-v0",
        "env_kwargs": {"sigma_iid": 0.1, "sigma_exo": 1.0},
        "label_fraction": 0.2,
        "episodes": 5,
        "episode_length": 30,
    }
    first = collect(CollectConfig(**args), root=tmp_path / "a", progress=False)
    second = collect(CollectConfig(**args), root=tmp_path / "b", progress=False)
    other = collect(CollectConfig(**args, seed=1), root=tmp_path / "c", progress=False)
    assert _digest(tmp_path / "a", first.dataset_id) == _digest(tmp_path / "b", second.dataset_id)
    assert _digest(tmp_path / "a", first.dataset_id) != _digest(tmp_path / "c", other.dataset_id)


def test_existing_id_refused_then_overwritten(root, capsys):
    argv = ["--root", str(root), "--quiet", "--episodes", "3", "--dataset-id", "tests/x-v0"]
    assert main(argv) == 0
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset 'tests/x-v0' already exists") and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert main([*argv, "--overwrite", "--episodes", "4"]) == 0
    assert minari.load_dataset("tests/x-v0").total_episodes == 4


def test_progress_is_a_line_per_tenth_in_logs_and_refusals_come_first(root, capsys):
    argv = ["--root", str(root), "--episodes", "30", "--episode-length", "10"]
    assert main([*argv, "--dataset-id", "tests/log-v0"]) == 0
    err = capsys.readouterr().err.splitlines()  # captured: not a terminal
    assert 2 <= len(err) <= 10 and err[-1].startswith("log-v0: done 300/300 tr")
    # an existing id is refused before anything is shown, for every recipe given
    recipe = root.parent / "r.toml"
    recipe.write_text('dataset_id = "tests/log-v0"\nepisodes = 3\n')
    fresh = ROOT_DIR / "datasets" / "grid-none-uniform.toml"
    assert main([*argv, "--recipe", str(fresh), str(recipe)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: dataset 'tests/log-v0' already exists")
    assert len(err.splitlines()) == 1
    assert not (root / "lam_envs" / "grid-none-uniform-v0").exists()


def test_transitions_are_rounded_up_to_whole_episodes_and_the_summary_says_so(root, capsys):
    argv = ["--root", str(root), "--quiet", "--episode-length", "30", "--transitions", "100"]
    assert main([*argv, "--dataset-id", "tests/rounded-v0"]) == 0
    out = capsys.readouterr().out
    assert "transitions  120 in 4 episodes (asked 100: rounded up to whole episodes of 30 " in out
    assert minari.load_dataset("tests/rounded-v0").total_steps == 120
    assert main([*argv[:-1], "90", "--dataset-id", "tests/exact-v0"]) == 0
    assert "transitions  90 in 3 episodes\n" in capsys.readouterr().out


def test_help_shows_every_default_and_the_minari_root_variable():
    from lam_envs.collect import build_parser

    parser = build_parser()
    for action in parser._actions:
        if action.dest != "help":
            assert "default" in action.help, action.option_strings
    text = " ".join(parser.format_help().split())
    assert "MINARI_DATASETS_PATH" in text and "default 0.05, the published correlated" in text


@pytest.mark.parametrize(
    ("policy", "env", "knobs"),
    [
        ("snaking", "GridLAM-v0", {"epsilon": 0.05, "chi": None}),
        ("linear", "LinearLAM-v0", {"epsilon": None, "chi": 0.0}),
        ("random", "GridLAM-v0", {"epsilon": None, "chi": None}),
    ],
)
def test_every_knob_has_a_default_recorded_in_the_metadata(root, policy, env, knobs):
    summary = _collect(root, env=env, policy=policy, episodes=2, episode_length=3)
    metadata = minari.load_dataset(summary.dataset_id).storage.metadata
    recorded = metadata["lam_envs"]["collect"]
    assert {k: recorded[k] for k in knobs} == knobs
    given = {k: v for k, v in knobs.items() if v is not None}
    assert all(f"{k} = {v:g}" in metadata["algorithm_name"] for k, v in given.items())


def test_old_namespace_ids_still_load(root):
    summary = _collect(root, dataset_id="lam-envs/old-style-v0")
    assert LAMDataset("lam-envs/old-style-v0").num_transitions() == summary.transitions
    assert minari.load_dataset("lam-envs/old-style-v0").total_steps == summary.transitions
    assert CollectConfig().default_dataset_id().startswith("lam_envs/")


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipes_are_valid(recipe):
    """A recipe builds the dataset named after it, at a version (v1: the released Table 1
    data process, which replaced the package's own, now ``table1-package-*-v0``)."""
    config = CollectConfig.from_recipe(recipe)
    version = 1 if recipe.stem.startswith("table1-grid-") else 0
    assert config.dataset_id == f"lam_envs/{recipe.stem}-v{version}"


def test_recipe_builds_with_flag_overrides(root, capsys):
    recipe = ROOT_DIR / "datasets" / "grid-low-correlated.toml"
    argv = ["--recipe", str(recipe), "--episodes", "4", "--root", str(root), "--quiet"]
    assert main(argv) == 0
    data = minari.load_dataset("lam_envs/grid-low-correlated-v0")
    assert data.total_episodes == 4
    assert data.recover_environment().unwrapped.config.noise_intensity == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "CartPole-v1"], "unknown environment 'CartPole-v1'; allowed: 'LinearLAM-v0'"),
        (["--policy", "snaking", "--env", "LinearLAM-v0"], "policy 'snaking' does not fit"),
        (["--label-fraction", "1.5"], r"label_fraction must be in [0.0, 1.0], got 1.5"),
        (["--label-fraction", "-0.1"], r"label_fraction must be in [0.0, 1.0], got -0.1"),
        (["--episodes", "0"], "episodes must be >= 1, got 0"),
        (["--episode-length", "0"], "episode_length must be >= 1, got 0"),
        (["--epsilon", "0.1"], "--epsilon does not apply to policy 'random'"),
        (["--policy", "snaking", "--epsilon", "2"], "epsilon must be in [0.0, 1.0], got 2.0"),
        (["--preset", "loud"], "unknown preset 'loud'"),
        (["-k", "sigma=1"], "unknown GridLAM parameter 'sigma'"),
        (["-k", "noise_intensity"], "--env-kwarg expects KEY=VALUE, got 'noise_intensity'"),
        (["--dataset-id", "has spaces v0"], "invalid dataset id 'has spaces v0'"),
        (["--dataset-id", "tests/noversion"], "needs a version suffix"),
        (["--recipe", "nope.toml"], "recipe file 'nope.toml' does not exist"),
        # numbers: non-finite, non-integral, beyond what the sampler, disk or memory take
        (["--transitions", "inf"], "transitions must be finite, got inf"),
        (["--transitions", "nan"], "transitions must be finite, got nan"),
        (["--transitions", "1000.5"], "transitions must be an integer, got 1000.5"),
        (["--transitions", "1e20"], "the label sampler chooses among at most 1,900,000,000"),
        (["--transitions", "1e20", "--label-fraction", "0"], "TiB on disk and"),
        (["--episodes", "9e6"], "GiB on disk and"),  # 1.8e9 transitions, labels and all
        (["--episode-length", "1e9", "--episodes", "1"], "GiB of memory per worker"),
        (["--episodes", "10", "--transitions", "100"], "give --episodes or --transitions"),
        (["--episodes", "2.5"], "episodes must be an integer, got 2.5"),
        (["--seed", "-1"], "seed must be >= 0, got -1"),
        (["--seed", "1.5"], "seed must be an integer, got 1.5"),
        (["--label-fraction", "nan"], "label_fraction must be finite, got nan"),
        (["--policy", "snaking", "--epsilon", "inf"], "epsilon must be finite, got inf"),
        (["-k", "noise_intensity=Infinity"], "env_kwargs 'noise_intensity' must be finite"),
        (["-k", "noise_intensity=NaN"], "env_kwargs 'noise_intensity' must be finite"),
        (["-k", "noise_intensity={}"], "env_kwargs 'noise_intensity' must be a number, string"),
        (["--workers", "0"], "workers must be >= 1, got 0"),
        (["--workers", "1.5"], "workers must be an integer, got 1.5"),
        # keywords the collector sets itself
        (["-k", "max_episode_steps=10"], "max_episode_steps is set by --episode-length"),
        (["-k", "num_envs=4"], "num_envs is set by the collector"),
        (["-k", "preset=high"], "preset is set by --preset"),
        # ids Minari or the filesystem reject
        (["--dataset-id", "tests/na.me-v0"], "invalid dataset id 'tests/na.me-v0'"),
        (["--dataset-id", "tests//x-v0"], "invalid dataset id 'tests//x-v0'"),
        (["--dataset-id", "tests/" + "x" * 300 + "-v0"], "is too long: each '/'-separated part"),
    ],
)
def test_bad_input_one_line_and_exit_2(root, capsys, argv, message):
    assert main([*argv, "--root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not [p for p in root.glob("*") if not p.name.startswith(".")]  # nothing written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('env = "GridLAM-v0"\nepisodez = 3\n', "unknown key in recipe bad.toml 'episodez'"),
        ('full_labels = "no"\n', "recipe bad.toml: full_labels must be true or false, got 'no'"),
        ("full_labels = 0\n", "full_labels must be true or false, got 0"),
        ("episodes = inf\n", "recipe bad.toml: episodes must be finite, got inf"),
        ("episodes = 12.5\n", "episodes must be an integer, got 12.5"),
        ('episodes = "12"\n', "episodes must be an integer, got '12'"),
        ("label_fraction = nan\n", "label_fraction must be finite, got nan"),
        ('policy = "snaking"\nepsilon = "high"\n', "epsilon must be a number, got 'high'"),
        ("env_kwargs = 5\n", "env_kwargs must be a table of KEY = VALUE, got 5"),
        ("env_kwargs = { noise_intensity = inf }\n", "env_kwargs 'noise_intensity' must be finite"),
        ('[env]\nname = "GridLAM-v0"\n', "env must be a string, got {'name': 'GridLAM-v0'}"),
        ("seed = 2026-01-01\n", "seed must be an integer, got datetime.date(2026, 1, 1)"),
        ("description = 3\n", "recipe bad.toml: description must be a string"),
        ("episodes = \n", "recipe file '{path}' is not valid TOML"),
    ],
)
def test_bad_recipes_one_line(tmp_path, capsys, text, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    assert main(["--recipe", str(recipe), "--root", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.replace("{path}", str(recipe)) in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("root", ["", " "])
def test_an_empty_root_is_refused(tmp_path, monkeypatch, capsys, root):
    monkeypatch.chdir(tmp_path)
    assert main(["--root", root, "--quiet"]) == 2
    assert (
        capsys.readouterr().err
        == "error: --root must not be empty (leave it out for Minari's root)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_recipe_that_is_a_directory_or_binary(tmp_path, capsys):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    for path, what in ((tmp_path, "is a directory"), (binary, "is not text")):
        assert main(["--recipe", str(path), "--root", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err == f"error: recipe file {str(path)!r} {what}" + err.split(what)[1]
        assert len(err.strip().splitlines()) == 1


def test_ray_without_ray_is_refused_before_work(root, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(["--ray", "--root", str(root), "--quiet"]) == 2
    assert "--ray needs Ray, which is not installed" in capsys.readouterr().err
    assert not [p for p in root.glob("*") if not p.name.startswith(".")]


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--root", str(blocker / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"output folder '{blocker / 'sub'}' is not writable" in err


def test_cli_as_a_process_exits_nonzero_with_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lam_envs.collect",
            "--label-fraction",
            "2",
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: label_fraction must be in [0.0, 1.0], got 2.0"


def test_the_cpu_count_falls_back_where_affinity_is_unknown(monkeypatch):
    """macOS has no os.sched_getaffinity: the count falls back to os.cpu_count()."""
    import os

    from lam_envs import collect

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert collect.usable_cpus() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert collect.usable_cpus() == 1
