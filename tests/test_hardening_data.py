"""Issue 25, part A: a dataset reads nothing outside its own folder, and corrupt data or
models are refused in one line (DatasetError / ValueError; CLI: `error: ...`, exit 2),
with nothing written. Real datasets, collected small, then damaged as a user could."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import SNAKING, collect_into

from lam_envs.collect import CollectConfig, collect
from lam_models.data import DatasetError, LAMDataset

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = "resolves outside its own folder"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A grid (12 × 25, 10% labelled) and a linear (8 × 5, half labelled) dataset."""
    root = tmp_path_factory.mktemp("minari")
    linear = dict(env="LinearLAM-v0", env_kwargs={"d_o": 4, "d_a": 2, "d_b": 2})
    return {
        "grid": collect_into(root, **SNAKING, episodes=12, episode_length=25, label_fraction=0.1),
        "linear": collect_into(root, **linear, episodes=8, episode_length=5, label_fraction=0.5),
    }


def _copy(source: Path, tmp_path: Path, name: str = "copy") -> Path:
    copy = tmp_path / name
    shutil.copytree(source, copy)
    return copy


def _shard(dataset: Path) -> Path:
    return dataset / "data" / "shard-00000.hdf5"


def _set(dataset: Path, episode: int, key: str, value: np.ndarray) -> None:
    """Replace an array of one episode where it is stored (the shard file)."""
    with h5py.File(_shard(dataset), "a") as f:
        group = f[f"episode_{episode}"]
        del group[key]
        group[key] = value


def _get(dataset: Path, episode: int, key: str) -> np.ndarray:
    with h5py.File(_shard(dataset), "r") as f:
        return f[f"episode_{episode}/{key}"][()]


def _relink(dataset: Path, episode: int, link) -> None:
    with h5py.File(dataset / "data" / "main_data.hdf5", "a") as f:
        del f[f"episode_{episode}"]
        f[f"episode_{episode}"] = link


def _edit_metadata(dataset: Path, edit) -> None:
    path = dataset / "data" / "metadata.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _read_everything(path) -> None:
    data = LAMDataset(path)
    data.read()
    data.oracle()
    data.outcomes()


def _one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(pattern, err), err


# ---------------------------------------------------------------- 1. links and symlinks


def _outside_hdf5(small, tmp_path) -> Path:
    """A copy of the shard outside the dataset: same arrays, wrong place."""
    target = tmp_path / "elsewhere" / "other.hdf5"
    target.parent.mkdir()
    shutil.copy(_shard(small["grid"]), target)
    return target


LINKS = {
    "absolute external link": lambda d, out: _relink(
        d, 5, h5py.ExternalLink(str(out), "/episode_5")
    ),
    "relative ../ external link": lambda d, out: _relink(
        d, 5, h5py.ExternalLink("../" * 12 + str(out).lstrip("/"), "/episode_5")
    ),
    "external link to /etc/passwd": lambda d, out: _relink(
        d, 5, h5py.ExternalLink("/etc/passwd", "/x")
    ),
    "symlinked shard": lambda d, out: (_shard(d).unlink(), _shard(d).symlink_to(out)),
    "symlinked main file": lambda d, out: (
        shutil.copy(d / "data" / "main_data.hdf5", out.parent / "main.hdf5"),
        (d / "data" / "main_data.hdf5").unlink(),
        (d / "data" / "main_data.hdf5").symlink_to(out.parent / "main.hdf5"),
    ),
    "symlinked metadata": lambda d, out: (
        shutil.copy(d / "data" / "metadata.json", out.parent / "metadata.json"),
        (d / "data" / "metadata.json").unlink(),
        (d / "data" / "metadata.json").symlink_to(out.parent / "metadata.json"),
    ),
    "symlinked data folder": lambda d, out: (
        shutil.copytree(d / "data", out.parent / "data"),
        shutil.rmtree(d / "data"),
        (d / "data").symlink_to(out.parent / "data"),
    ),
    "external link inside an episode": lambda d, out: _set_link(
        d, 2, "observations", h5py.ExternalLink(str(out), "/episode_2/observations")
    ),
}


def _set_link(dataset: Path, episode: int, key: str, link) -> None:
    with h5py.File(_shard(dataset), "a") as f:
        group = f[f"episode_{episode}"]
        del group[key]
        group[key] = link


@pytest.mark.parametrize("case", list(LINKS))
def test_a_dataset_never_reads_outside_its_folder(small, tmp_path, monkeypatch, capsys, case):
    """Every reader of the package (LAMDataset, training, the pipeline, the export, verify)
    refuses a dataset whose links or files leave its folder, in one line, before reading."""
    outside = _outside_hdf5(small, tmp_path)
    data = _copy(small["grid"], tmp_path)
    LINKS[case](data, outside)
    opened = []
    real_file = h5py.File

    def spy(name, *args, **kwargs):  # every file the package opens itself
        opened.append(os.path.realpath(name))
        return real_file(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    with pytest.raises(
        DatasetError, match=r"(resolves outside its own folder|is an external link)"
    ) as caught:
        _read_everything(data)
    assert "\n" not in str(caught.value)
    assert not [p for p in opened if not p.startswith(os.path.realpath(data))], opened
    monkeypatch.setattr(h5py, "File", real_file)

    from lam_envs.export import main as export
    from lam_envs.verify import main as verify
    from lam_models.pipeline import main as pipeline
    from lam_models.train import main as train

    pattern = r"(resolves outside its own folder|is an external link)"
    for command, args, out in (
        (verify, [str(data)], None),
        (export, [str(data), str(tmp_path / "export")], tmp_path / "export"),
        (train, ["vq", "--dataset", str(data), "--steps", "2", "--quiet"], tmp_path / "run"),
        (pipeline, ["--dataset", str(data), "--quick", "--quiet"], tmp_path / "pipe"),
    ):
        if out is not None and command is not export:
            args = [*args, "--out", str(out)]
        code = command(args)
        _one_line_error(code, capsys.readouterr().err, pattern)
        assert out is None or not out.exists()


def test_a_link_outside_says_the_same_whether_its_target_exists(small, tmp_path):
    """No probing of the file system: /etc/passwd and a file that does not exist give
    the same message (but for the name)."""
    messages = []
    for target in ("/etc/passwd", "/no/such/file.hdf5"):
        data = _copy(small["grid"], tmp_path, f"probe{len(messages)}")
        _relink(data, 5, h5py.ExternalLink(target, "/episode_5"))
        with pytest.raises(DatasetError, match=OUTSIDE) as caught:
            LAMDataset(data)
        messages.append(str(caught.value).replace(target, "T").replace(str(data), "D"))
    assert messages[0] == messages[1]


def test_a_soft_link_to_another_episode_is_refused(small, tmp_path):
    """An entry that aliases another episode (soft link, or an external link into the
    shard at another episode) would give that episode's arrays under this index."""
    data = _copy(small["grid"], tmp_path)
    _relink(data, 5, h5py.SoftLink("/episode_3"))
    _relink(data, 6, h5py.ExternalLink("shard-00000.hdf5", "/episode_3"))
    loaded = LAMDataset(data)
    loaded.read(np.array([3, 4]))  # the others read
    for episode in (5, 6):
        with pytest.raises(DatasetError, match=f"episode {episode} holds the episode with id 3"):
            loaded.read(np.array([episode]))
    # links inside the folder that point where collect pointed them are fine
    good = _copy(small["grid"], tmp_path, "good")
    _relink(good, 5, h5py.ExternalLink("./shard-00000.hdf5", "/episode_5"))
    np.testing.assert_array_equal(
        LAMDataset(good).read().obs.numpy(), LAMDataset(small["grid"]).read().obs.numpy()
    )


def _alias(source: str):
    def edit(dataset: Path, outside: Path) -> None:
        with h5py.File(_shard(dataset), "a") as f:
            del f[f"episode_2/{source}"]
            f[f"episode_2/{source}"] = f[f"episode_3/{source}"]  # a hard link: two names

    return edit


def _external_raw(dataset: Path, outside: Path) -> None:
    """observations whose bytes HDF5 reads from a raw file outside the folder."""
    raw = outside.parent / "raw.bin"
    obs = _get(dataset, 2, "observations")
    raw.write_bytes(obs.tobytes())
    with h5py.File(_shard(dataset), "a") as f:
        del f["episode_2/observations"]
        f["episode_2"].create_dataset(
            "observations", obs.shape, obs.dtype, external=[(str(raw), 0, obs.nbytes)]
        )


def _virtual(dataset: Path, outside: Path) -> None:
    obs = _get(dataset, 2, "observations")
    layout = h5py.VirtualLayout(obs.shape, obs.dtype)
    layout[:] = h5py.VirtualSource(str(outside), "/episode_2/observations", obs.shape)
    with h5py.File(_shard(dataset), "a") as f:
        del f["episode_2/observations"]
        f["episode_2"].create_virtual_dataset("observations", layout)


def _inner_soft(dataset: Path, outside: Path) -> None:
    _set_link(dataset, 2, "actions", h5py.SoftLink("/episode_3/actions"))


STORED_ELSEWHERE = {
    "another episode's infos group": (_alias("infos"), "'infos' has several names"),
    "another episode's observations": (_alias("observations"), "'observations' has several"),
    "external raw storage": (_external_raw, "'observations' is stored in external raw files"),
    "virtual dataset": (_virtual, "'observations' is a virtual dataset"),
    "soft link inside an episode": (_inner_soft, "'actions' is a soft link"),
}


@pytest.mark.parametrize("case", list(STORED_ELSEWHERE))
def test_an_episode_array_stored_elsewhere_is_refused(small, tmp_path, case):
    """An array must be the episode's own: not another episode's (hard or soft link, which
    would read other arrays under this index), not bytes in another file."""
    edit, message = STORED_ELSEWHERE[case]
    data = _copy(small["grid"], tmp_path)
    edit(data, _outside_hdf5(small, tmp_path))
    loaded = LAMDataset(data)
    loaded.read(np.array([0, 1]))
    with pytest.raises(DatasetError, match=f"episode 2: {message}"):
        _read_everything(data)
    from lam_envs.verify import verify

    with pytest.raises(DatasetError, match="episode 2"):
        verify(data)


# ---------------------------------------------------------------- 2. observation bounds


@pytest.mark.parametrize(
    "preset, high",
    [
        ("high", 2.0),  # the high-noise row: intensity 2
        ("colour_drift", 1.5),  # the agent's intensity drifts up to 1.5
    ],
)
def test_a_grid_whose_parameters_widen_its_box_reads_and_a_widened_box_is_refused(
    tmp_path, preset, high
):
    """The box GridLAM's metadata must hold is the one its parameters give, not [0, 1]."""
    config = CollectConfig(episodes=2, episode_length=4, preset=preset)
    path = collect(config, root=tmp_path / "root", progress=False).path
    data = LAMDataset(path)
    assert data.read().obs.max() <= high
    _edit_metadata(path, lambda m: m.update(
        observation_space=m["observation_space"].replace(repr(high), repr(high * 2))))  # fmt: skip
    with pytest.raises(DatasetError, match=rf"is not the box \[0, {high:g}\]"):
        LAMDataset(path)


def test_observations_outside_the_observation_space_are_refused(small, tmp_path):
    data = _copy(small["grid"], tmp_path)
    obs = _get(data, 2, "observations")
    obs[3, 0, 1, 2] = 7.0
    _set(data, 2, "observations", obs)
    loaded = LAMDataset(data)
    loaded.read(np.array([0, 1]))
    message = (
        r"episode 2: 'observations' holds 7.0 at row 3, outside the observation space \[0, 1\]"
    )
    with pytest.raises(DatasetError, match=message):
        loaded.read()
    with pytest.raises(DatasetError, match=message):
        list(loaded.batches(8))
    from lam_models.split import DataSplit

    with pytest.raises(DatasetError, match=message):
        DataSplit(data, held_out=0.5)


# ---------------------------------------------------------------- 3. python -m lam_envs.verify


def test_verify_passes_a_good_dataset_and_refuses_a_bad_one_in_one_line(small, tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "lam_envs.verify", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )

    good = run(str(small["grid"]))
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: ") and "12 episodes of 25 steps" in good.stdout
    assert "30 labelled" in good.stdout
    helped = run("--help")
    assert helped.returncode == 0 and "untrusted" in helped.stdout
    bad = _copy(small["grid"], tmp_path)
    actions = _get(bad, 7, "actions")
    actions[actions == -1] = 3  # shown actions the mask calls unlabelled
    _set(bad, 7, "actions", actions)
    refused = run(str(bad))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "episode 7" in refused.stderr
    # verify reads every episode (LAMDataset checks one when it is read) and the totals
    counted = _copy(small["grid"], tmp_path, "count")
    _edit_metadata(counted, lambda m: m["lam_envs"].update(labelled=29))
    LAMDataset(counted)
    from lam_envs.verify import verify

    with pytest.raises(DatasetError, match="'lam_envs.labelled' is 29, but its label masks"):
        verify(counted)
    # and it never imports torch (lam_envs stays light)
    probe = "import sys, lam_envs.verify; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------- 4. metadata fields


METADATA = [
    (lambda m: m["lam_envs"]["collect"].update(label_fraction=1e308), "label_fraction' is 1e"),
    (lambda m: m["lam_envs"].update(labelled=1e40), r"'lam_envs.labelled' is 1e\+40"),
    (lambda m: m["lam_envs"].update(labelled=-1), r"'lam_envs.labelled' is -1"),
    (lambda m: m["lam_envs"].update(labelled="30"), r"'lam_envs.labelled' is '30'"),
    (lambda m: m["lam_envs"].update(shards=-5), r"'lam_envs.shards' is -5, expected an integer"),
    (lambda m: m["lam_envs"].update(episodes_per_block=0), "'lam_envs.episodes_per_block'"),
    (lambda m: m["lam_envs"]["collect"].update(seed=-3), "'lam_envs.collect.seed' is -3"),
    (lambda m: m["lam_envs"]["collect"].update(full_labels="no"), "'lam_envs.collect.full_lab"),
    (lambda m: m["lam_envs"]["collect"].update(epsilon=7), "'lam_envs.collect.epsilon' is 7"),
    (lambda m: m["lam_envs"]["collect"].update(label_unit="x"), "'lam_envs.collect.label_unit"),
    (lambda m: m.update(total_episodes=1e40), "'total_episodes' is 1e\\+40"),
    (lambda m: m.update(dataset_size=float("nan")), "'dataset_size' is nan"),
    (lambda m: m.update(observation_space="{}"), "'observation_space' is not a valid space"),
    (
        lambda m: m.update(observation_space=m["observation_space"].replace("1.0", "9.0")),
        r"'observation_space' is not the box \[0, 1\], as GridLAM-v0 has",
    ),
    (
        lambda m: m.update(observation_space=m["observation_space"].replace("[1, 4, 4]", "[16]")),
        "'observation_space' is not a valid space",
    ),
    (
        lambda m: m.update(action_space='{"type": "Box", "dtype": "float32", "shape": [1]}'),
        "'action_space' is not a valid space",
    ),
    (
        lambda m: m.update(action_space='{"type": "Discrete", "dtype": "int64", "n": 1e9}'),
        r"'action_space' is not Discrete\(5\), as GridLAM-v0 has",
    ),
]


@pytest.mark.parametrize(("edit", "message"), METADATA)
def test_metadata_fields_are_checked_for_type_and_range(small, tmp_path, capsys, edit, message):
    data = _copy(small["grid"], tmp_path)
    _edit_metadata(data, edit)
    with pytest.raises(DatasetError, match=message) as caught:
        _read_everything(data)
    assert "\n" not in str(caught.value)
    from lam_envs.export import main as export

    out = tmp_path / "export"
    code = export([str(data), str(out)])
    _one_line_error(code, capsys.readouterr().err, "")
    assert not out.exists()  # nothing bad is copied into an export


# ---------------------------------------------------------------- 5. label mask


def _mask_edits():
    def floats(mask, actions):
        out = mask.astype(np.float64)
        out[1], out[2] = 0.25, 3.75
        return out

    def true_on_sentinel(mask, actions):
        mask = mask.copy()
        mask[1 + int(np.flatnonzero(actions == -1)[0])] = True
        return mask

    def false_on_action(mask, actions):
        mask = mask.copy()
        mask[1 + int(np.flatnonzero(actions != -1)[0])] = False
        return mask

    return [
        (floats, "'infos/label_mask' has dtype float64 .* expected bool"),
        (true_on_sentinel, "marks step .* labelled, but its action is the sentinel"),
        (false_on_action, "marks step .* unlabelled, but its action is not the sentinel"),
        (lambda m, a: m.astype(np.uint8), "'infos/label_mask' has dtype uint8"),
        (lambda m, a: m[:-1], "'infos/label_mask' has 25 rows, expected 26"),
    ]


@pytest.mark.parametrize(("edit", "message"), _mask_edits())
def test_the_label_mask_is_boolean_and_agrees_with_the_sentinels(
    small, tmp_path, capsys, edit, message
):
    data = _copy(small["grid"], tmp_path)
    episode = next(  # an episode with labelled and unlabelled steps
        i for i in range(12) if 0 < _get(data, i, "infos/label_mask").sum() < 25
    )
    mask, actions = _get(data, episode, "infos/label_mask"), _get(data, episode, "actions")
    _set(data, episode, "infos/label_mask", edit(mask, actions))
    with pytest.raises(DatasetError, match=f"episode {episode}.*{message}"):
        LAMDataset(data).read()
    from lam_models.train import main as train

    out = tmp_path / "run"
    code = train(["idm", "--dataset", str(data), "--steps", "2", "--quiet", "--out", str(out)])
    _one_line_error(code, capsys.readouterr().err, message)
    assert not out.exists()


def test_a_full_labels_dataset_shows_actions_its_mask_leaves_out(tmp_path):
    config = CollectConfig(episodes=4, episode_length=5, label_fraction=0.5, full_labels=True)
    path = collect(config, root=tmp_path, progress=False).path
    batch = LAMDataset(path).read()
    assert (batch.actions >= 0).all() and 0 < batch.label_mask.sum() < 20


# ---------------------------------------------------------------- 6. actions and values


def _nan_obs(d):
    obs = _get(d, 1, "observations")
    obs[2, 0, 0, 0] = np.nan
    _set(d, 1, "observations", obs)


def _inf_obs_linear(d):
    obs = _get(d, 1, "observations")
    obs[4, 1] = -np.inf
    _set(d, 1, "observations", obs)


def _action(d, value, dtype=None):
    actions = _get(d, 1, "actions")
    mask = _get(d, 1, "infos/label_mask")
    actions = actions.astype(dtype) if dtype is not None else actions
    actions[0] = value
    mask[1] = True
    _set(d, 1, "actions", actions)
    _set(d, 1, "infos/label_mask", mask)


def _linear_action(d, row):
    actions = _get(d, 1, "actions")
    mask = _get(d, 1, "infos/label_mask")
    actions[0] = row
    mask[1] = not np.isnan(row).all()
    _set(d, 1, "actions", actions)
    _set(d, 1, "infos/label_mask", mask)


def _fractional(d):
    actions = _get(d, 1, "actions").astype(np.float32)
    actions[actions >= 0] += 0.5
    _set(d, 1, "actions", actions)


VALUES = [
    ("grid", _nan_obs, "episode 1: 'observations' holds nan at row 2; only finite"),
    ("linear", _inf_obs_linear, "episode 1: 'observations' holds -inf at row 4"),
    ("grid", lambda d: _action(d, 99), "episode 1: 'actions' holds 99 at step 0; allowed: the "),
    ("grid", lambda d: _action(d, -7), "'actions' holds -7 at step 0"),
    ("grid", _fractional, "'actions' has dtype float32 .* action space is Discrete"),
    ("grid", lambda d: _action(d, 2.0, np.float64), "'actions' has dtype float64"),
    ("linear", lambda d: _linear_action(d, [np.nan, 1.0]), "'actions' at step 0 is partly NaN"),
    ("linear", lambda d: _linear_action(d, [np.inf, 1.0]), "'actions' holds inf at row 0"),
    (
        "linear",
        lambda d: _set(d, 1, "rewards", np.full(5, np.nan)),
        "'rewards' holds nan at row 0",
    ),
    (
        "linear",
        lambda d: _set(d, 1, "rewards", _get(d, 1, "rewards").astype(np.float16)),
        "'rewards' has dtype float16 and shape \\(5,\\), expected float64",
    ),
    (
        "linear",
        lambda d: _set(d, 1, "infos/oracle/q", np.full_like(_get(d, 1, "infos/oracle/q"), np.inf)),
        "'infos/oracle/q' holds inf",
    ),
]


@pytest.mark.parametrize(("kind", "corrupt", "message"), VALUES)
def test_nan_inf_fractional_and_out_of_range_values_are_refused(
    small, tmp_path, kind, corrupt, message
):
    data = _copy(small[kind], tmp_path)
    corrupt(data)
    with pytest.raises(DatasetError, match=message) as caught:
        _read_everything(data)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: _action(d, 99), "'actions' holds 99 at step 0; allowed"),
        (_nan_obs, "'observations' holds nan at row 2"),
        (_fractional, "'actions' has dtype float32"),
    ],
)
def test_bad_values_fail_training_in_one_line(small, tmp_path, capsys, corrupt, message):
    """`train idm` used to die with an IndexError deep in the loss (actions 99) or a
    KeyError 'q' (fractional actions taken for a continuous dataset); `train vq` saved a
    model of NaN observations."""
    from lam_models.train import main as train

    data = _copy(small["grid"], tmp_path)
    corrupt(data)
    for method in ("idm", "vq"):
        out = tmp_path / f"run-{method}"
        args = [method, "--dataset", str(data), "--steps", "2", "--quiet", "--out", str(out)]
        _one_line_error(train(args), capsys.readouterr().err, message)
        assert not out.exists()


# ---------------------------------------------------------------- 7. NaN weights in the pipeline


@pytest.fixture(scope="module")
def pipeline_run(small, tmp_path_factory):
    """A pipeline run folder whose stages lam, relabel and bc ran (tiny step counts)."""
    from lam_models.pipeline import main

    run = tmp_path_factory.mktemp("pipeline") / "run"
    common = ["--lam", "idm", "--lam-steps", "5", "--policy-steps", "5", "--quiet"]
    assert (
        main(["--dataset", str(small["grid"]), *common, "--out", str(run), "--stage", "lam"]) == 0
    )
    for stage in ("relabel", "bc"):
        assert main(["--out", str(run), "--stage", stage, "--quiet"]) == 0
    return run


def _poison(path: Path, key: str | None = None) -> None:
    """Set one floating tensor of a saved state dict (or policy file) to NaN."""
    saved = torch.load(path, weights_only=True)
    state = saved["state"] if "state" in saved else saved
    name = key or next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    torch.save(saved, path)


def test_every_pipeline_stage_checks_what_it_loads_and_saves(
    pipeline_run, tmp_path, capsys, monkeypatch
):
    from lam_models import pipeline
    from lam_models.pipeline import main

    def stage(run, name):
        code = main(["--out", str(run), "--stage", name, "--quiet"])
        return code, capsys.readouterr().err

    # loads: NaN LAM weights (relabel), NaN latents (bc, decoder), a NaN policy (rollout)
    cases = [
        ("relabel", "lam/model.pt", "model.pt holds weights that are NaN or infinite"),
        ("bc", "relabel/latents.npz", "latents 'z_train' .* are NaN or infinite"),
        ("decoder", "relabel/latents.npz", "latents 'z_train' .* are NaN or infinite"),
        ("rollout", "bc/latent_policy.pt", "latent_policy.pt holds policy weights that are NaN"),
    ]
    for name, file, message in cases:
        run = tmp_path / f"poisoned-{name}"
        shutil.copytree(pipeline_run, run)
        shutil.rmtree(run / name, ignore_errors=True)
        if file.endswith(".npz"):
            with np.load(run / file) as z:
                saved = dict(z)
            saved["z_train"][3] = np.nan
            np.savez(run / file, **saved)
        else:
            _poison(run / file)
        if name == "rollout":
            assert stage(run, "decoder")[0] == 0  # the decoder reads latents, not the policy
        code, err = stage(run, name)
        _one_line_error(code, err, message)
        assert (
            not (run / name).exists()
            or name == "rollout"
            and not (run / name / "run.json").exists()
        )

    # saves: a LAM whose latents come out NaN, and a policy trained to NaN, are not saved
    run = tmp_path / "nan-latents"
    shutil.copytree(pipeline_run, run)
    shutil.rmtree(run / "relabel")
    from lam_models.lams.base import LAM

    monkeypatch.setattr(
        LAM, "latents", lambda self, o, f, chunk=8192: np.full((1, len(o), 3), np.nan, np.float32)
    )
    code, err = stage(run, "relabel")
    _one_line_error(code, err, "are NaN or infinite .* nothing was saved")
    assert not (run / "relabel").exists()
    monkeypatch.undo()

    run = tmp_path / "nan-policy"
    shutil.copytree(pipeline_run, run)
    shutil.rmtree(run / "bc")
    real = pipeline.bc_policies

    def poisoned(*args, **kwargs):
        policies = real(*args, **kwargs)
        with torch.no_grad():
            next(iter(policies["full_bc"].parameters())).fill_(float("inf"))
        return policies

    monkeypatch.setattr(pipeline, "bc_policies", poisoned)
    code, err = stage(run, "bc")
    _one_line_error(code, err, "full_bc.pt holds policy weights that are NaN or infinite")
    assert not (run / "bc").exists()  # not even the policies that were fine

    run = tmp_path / "nan-decoder"
    shutil.copytree(pipeline_run, run)
    real_decoder = pipeline.fit_decoder

    def nan_decoder(*args, **kwargs):
        decoder = real_decoder(*args, **kwargs)
        decoder.out_std.fill_(float("nan"))
        return decoder

    monkeypatch.setattr(pipeline, "fit_decoder", nan_decoder)
    code, err = stage(run, "decoder")
    _one_line_error(code, err, "decoder.pt holds policy weights that are NaN or infinite")
    assert not (run / "decoder").exists()


# ---------------------------------------------------------------- 8. loading models


@pytest.fixture(scope="module")
def train_run(small, tmp_path_factory):
    from lam_models.train import main

    out = tmp_path_factory.mktemp("train") / "run"
    args = ["idm", "--dataset", str(small["grid"]), "--steps", "3", "--quiet", "--out", str(out)]
    assert main(args) == 0
    return out


def _edited_run(train_run, tmp_path, edit_model=None, edit_record=None) -> Path:
    run = tmp_path / "edited"
    shutil.copytree(train_run, run)
    if edit_model is not None:
        edit_model(run / "model.pt")
    if edit_record is not None:
        record = json.loads((run / "run.json").read_text())
        edit_record(record)
        (run / "run.json").write_text(json.dumps(record))
    return run


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_method(record) -> None:
    from lam_models.lams.base import get_lam

    record["method"] = "laom-mlp"
    record["config"] = [{} for _ in record["config"]]
    assert get_lam("laom-mlp")


MODELS = [
    (_truncate, None, "model.pt is truncated or corrupt: not a file torch.save wrote"),
    (lambda p: p.write_bytes(b""), None, "model.pt is truncated or corrupt"),
    (None, _other_method, "model.pt does not hold the weights of a 'laom-mlp' LAM"),
    (
        None,
        lambda r: r["spec"].update(obs_shape=[10**7, 10**7]),
        r"obs_shape \(10000000, 10000000\) holds 100,000,000,000,000 values",
    ),
    (None, lambda r: r["spec"].update(obs_shape=[1e7, 1e7]), "obs_shape"),
    (None, lambda r: r["spec"].update(action_dim=-2), "action_dim must be"),
    (_poison, None, "model.pt holds weights that are NaN or infinite"),
]


@pytest.mark.parametrize(("edit_model", "edit_record", "message"), MODELS)
def test_a_model_that_cannot_be_loaded_says_why_in_one_line(
    train_run, tmp_path, edit_model, edit_record, message
):
    from lam_models.lams.base import load_lam

    run = _edited_run(train_run, tmp_path, edit_model, edit_record)
    with pytest.raises(ValueError, match=message) as caught:
        load_lam(run, "cpu")
    assert "\n" not in str(caught.value) and "could run code" not in str(caught.value)


def test_a_model_of_pickled_objects_is_still_refused_as_code(train_run, tmp_path):
    from lam_models.lams.base import load_lam

    run = _edited_run(train_run, tmp_path, edit_model=lambda p: torch.save({"x": Path("/")}, p))
    with pytest.raises(ValueError, match="could run code"):
        load_lam(run, "cpu")
