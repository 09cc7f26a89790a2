"""lam_models.data: the loader every trainer uses."""

from __future__ import annotations

import json
import re

import minari
import numpy as np
import pytest
import torch

from lam_envs.collect import CollectConfig, collect
from lam_models.data import DatasetError, EnvStream, LAMDataset


@pytest.fixture(scope="module")
def grid_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    config = CollectConfig(
        policy="snaking", epsilon=0.3, episodes=12, episode_length=25, label_fraction=0.1
    )
    summary = collect(config, root=root, progress=False)
    return summary.path


def test_reads_what_minari_reads(grid_dataset):
    data = LAMDataset(grid_dataset)
    assert data.kind == "grid" and data.num_transitions() == 300
    batch = data.read()
    reference = minari.MinariDataset(grid_dataset / "data")
    obs = np.concatenate([e.observations[:-1] for e in reference.iterate_episodes()])
    nxt = np.concatenate([e.observations[1:] for e in reference.iterate_episodes()])
    np.testing.assert_array_equal(batch.obs.numpy(), obs)
    np.testing.assert_array_equal(batch.next_obs.numpy(), nxt)
    assert batch.actions.dtype == torch.int64 and batch.label_mask.sum() == 30
    oracle = data.oracle()
    labelled = batch.label_mask.numpy()
    np.testing.assert_array_equal(batch.actions.numpy()[labelled], oracle["action"][labelled])
    assert (batch.actions.numpy()[~labelled] == -1).all()
    # oracle rows are aligned with transitions: the square moved from position_before
    # to position, which is where next_obs shows it
    r, c = oracle["position"].T
    assert (batch.next_obs.numpy()[np.arange(300), 0, r, c] == 1).all()
    r, c = oracle["position_before"].T
    assert (batch.obs.numpy()[np.arange(300), 0, r, c] == 1).all()


def test_split_by_episode_and_batches(grid_dataset):
    data = LAMDataset(grid_dataset)
    train, test = data.split(held_out=0.25, seed=0)
    assert len(test) == 3 and len(train) == 9 and not set(train) & set(test)
    seen = torch.cat([b.obs for b in data.batches(16, episodes=train, seed=1, epochs=1)])
    assert len(seen) == 225 // 16 * 16  # full batches only; the rest carries on
    all_train = data.read(train).obs
    # every batch row is a training transition, and the order is shuffled
    assert not torch.equal(seen, all_train[: len(seen)])
    again = torch.cat([b.obs for b in data.batches(16, episodes=train, seed=1, epochs=1)])
    assert torch.equal(seen, again)  # the seed fixes the order
    # chunked reading (3 episodes per chunk) yields the same multiset of transitions
    chunked = torch.cat(
        [b.obs for b in data.batches(25, episodes=train, seed=2, epochs=1, chunk_transitions=75)]
    )
    assert len(chunked) == 225
    key = lambda t: sorted(map(tuple, t.reshape(len(t), -1).tolist()))  # noqa: E731
    assert key(chunked) == key(all_train)


def test_recover_environment(grid_dataset):
    env = LAMDataset(grid_dataset).recover_environment()
    assert env.spec.id == "GridLAM-v0" and env.spec.max_episode_steps == 25


def test_missing_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetError, match="no dataset 'lam_envs/nothing-v0'"):
        LAMDataset("lam_envs/nothing-v0")


def test_corrupt_datasets(grid_dataset, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(grid_dataset, broken)
    (broken / "data" / "main_data.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="is corrupt: cannot read main_data.hdf5"):
        LAMDataset(broken)
    shutil.copytree(grid_dataset, tmp_path / "meta")
    (tmp_path / "meta" / "data" / "metadata.json").write_text("{")
    with pytest.raises(DatasetError, match="is corrupt: metadata.json"):
        LAMDataset(tmp_path / "meta")
    shutil.copytree(grid_dataset, tmp_path / "foreign")
    meta_path = tmp_path / "foreign" / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["lam_envs"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="was not made by lam_envs.collect"):
        LAMDataset(tmp_path / "foreign")


def test_too_small_to_hold_out_and_wrong_kind(tmp_path):
    summary = collect(CollectConfig(episodes=1, episode_length=5), root=tmp_path, progress=False)
    data = LAMDataset(summary.path)
    with pytest.raises(DatasetError, match="has 1 episode"):
        data.split(0.1)
    with pytest.raises(DatasetError, match="comes from GridLAM-v0 .grid.; this needs a linear"):
        data.require("linear")


def test_env_stream_labels_and_oracle():
    stream = EnvStream("LinearLAM-v0", 512, seed=0, label_fraction=0.25, sigma_exo=1.0)
    batch, oracle = next(iter(stream))
    hidden = torch.isnan(batch.actions).all(dim=1)
    assert torch.equal(hidden, ~batch.label_mask)
    assert abs(batch.label_mask.float().mean().item() - 0.25) < 0.06
    np.testing.assert_allclose(
        batch.next_obs.numpy(), batch.obs.numpy() + oracle["q"] + oracle["eps"], atol=1e-4
    )
    # one-step episodes: every o is a fresh draw from N(0, I)
    second, _ = next(iter(stream))
    assert abs(second.obs.std().item() - 1) < 0.02


# ---------------------------------------------------------------- hardening (issues 9, 13)


def _copy(dataset, tmp_path, name: str, edit=None):
    """A copy of ``dataset`` whose metadata.json went through ``edit(meta)``."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(dataset, copy)
    if edit is not None:
        path = copy / "data" / "metadata.json"
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta))
    return copy


def _set_spec(**fields):
    def edit(meta):
        spec = json.loads(meta["env_spec"])
        spec.update(fields)
        meta["env_spec"] = json.dumps(spec)

    return edit


CANARY = """
import pathlib
import gymnasium as gym

pathlib.Path(__file__).with_name("imported").touch()


def make_env(**kwargs):
    pathlib.Path(__file__).with_name("called").touch()
    return gym.make("GridLAM-v0")
"""


@pytest.mark.parametrize(
    "spec_fields, named",
    [
        ({"id": "Canary-v0", "entry_point": "lam_canary:make_env"}, "'lam_canary:make_env'"),
        # a registered id does not make a foreign entry point trusted
        ({"entry_point": "lam_canary:make_env"}, "entry point 'lam_canary:make_env'"),
        ({"vector_entry_point": "lam_canary:make_env"}, "'lam_canary:make_env'"),
        (
            {
                "additional_wrappers": [
                    {"name": "W", "entry_point": "lam_canary:make_env", "kwargs": {}}
                ]
            },
            "wrapper(s) 'lam_canary:make_env'",
        ),
    ],
)
def test_a_foreign_entry_point_is_never_called(
    grid_dataset, tmp_path, monkeypatch, spec_fields, named
):
    module_dir = tmp_path / "canary"
    module_dir.mkdir()
    (module_dir / "lam_canary.py").write_text(CANARY)
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.delitem(__import__("sys").modules, "lam_canary", raising=False)
    data = LAMDataset(_copy(grid_dataset, tmp_path, "shared", _set_spec(**spec_fields)))
    for create in (data.recover_environment, lambda: data.make_vector_env(2)):
        with pytest.raises(
            DatasetError, match=f"names .*{re.escape(named)}.* trust_entry_point=True"
        ):
            create()
    assert not (module_dir / "imported").exists() and not (module_dir / "called").exists()
    if "id" in spec_fields:  # opting in runs it: the canary can tell
        trusted = LAMDataset(data.data_path, trust_entry_point=True)
        assert not (module_dir / "called").exists()
        trusted.recover_environment()
        assert (module_dir / "called").exists()


def test_a_dataset_of_an_earlier_version_rolls_out_under_the_renamed_argument(
    grid_dataset, tmp_path
):
    # Before the rename, GridLAM's action-leak probability was `distractor_correlation`.
    def old_name(meta):
        spec = json.loads(meta["env_spec"])
        spec["kwargs"]["distractor_correlation"] = 0.25
        meta["env_spec"] = json.dumps(spec)

    data = LAMDataset(_copy(grid_dataset, tmp_path, "old", old_name))
    for env in (data.recover_environment(), data.make_vector_env(2)):
        assert env.unwrapped.config.action_leak == 0.25
        env.reset(seed=0)


def test_trusted_datasets_recover_their_vector_env(grid_dataset):
    envs = LAMDataset(grid_dataset).make_vector_env(3)
    assert envs.num_envs == 3 and type(envs).__name__ == "GridLAMVectorEnv"
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 1, 4, 4)
    with pytest.raises(TypeError, match="trust_entry_point must be a bool, got 'yes'"):
        LAMDataset(grid_dataset, trust_entry_point="yes")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("env_spec"), "metadata field 'env_spec' is missing"),
        (lambda m: m.update(env_spec="{not json"), "'env_spec' is not a Gymnasium environment"),
        (lambda m: m.update(env_spec=17), "'env_spec' is not a Gymnasium environment"),
        (lambda m: m.update(env_spec='{"id": 3}'), "'env_spec' is not a Gymnasium environment"),
        (_set_spec(max_episode_steps=-4), "'env_spec' is not a Gymnasium environment"),
        (lambda m: m.update(total_steps=301), "metadata field 'total_steps' is 301, but"),
        (lambda m: m.update(total_episodes=13), "metadata field 'total_episodes' is 13"),
        (
            lambda m: m["lam_envs"]["collect"].update(episode_length=20),
            "'lam_envs.collect.episode_length' is 20",
        ),
        (
            lambda m: m["lam_envs"].update(contract_version="1"),
            "'lam_envs.contract_version' is '1', expected an integer",
        ),
        (lambda m: m["lam_envs"].pop("contract_version"), "'lam_envs.contract_version' is None"),
        (lambda m: m["lam_envs"].update(contract_version=99), "contract version 99, newer .*upgr"),
        (lambda m: m["lam_envs"].update(contract_version=0), "contract version 0, older .*again"),
    ],
)
def test_metadata_that_disagrees_is_refused(grid_dataset, tmp_path, edit, message):
    broken = _copy(grid_dataset, tmp_path, "broken", edit)
    with pytest.raises(DatasetError, match=message) as caught:
        LAMDataset(broken)
    assert "\n" not in str(caught.value) and "'" + str(broken) + "'" in str(caught.value)


def test_an_episode_that_disagrees_is_refused_when_read(grid_dataset, tmp_path):
    import h5py

    broken = _copy(grid_dataset, tmp_path, "episode")

    def episode(f: h5py.File, index: int) -> h5py.Group:
        """The episode's group where it is stored (main_data.hdf5 may link into shards)."""
        link = f.get(f"episode_{index}", getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return h5py.File(broken / "data" / link.filename, "a")[link.path]
        return f[f"episode_{index}"]

    with h5py.File(broken / "data" / "main_data.hdf5", "a") as f:
        episode(f, 4).attrs["total_steps"] = 24
        seven = episode(f, 7)
        del seven["actions"]
        seven["actions"] = np.zeros(24, dtype=np.int64)
        seven.file.close()
    data = LAMDataset(broken)
    data.read(np.array([0, 1, 2]))  # the intact episodes still read
    with pytest.raises(DatasetError, match="episode 4 has attribute 'total_steps' = 24, but"):
        data.read()
    with pytest.raises(DatasetError, match="episode 7: 'actions' has 24 rows, expected 25"):
        data.read(np.array([7]))
    with pytest.raises(DatasetError, match="episode 4"):
        list(data.batches(16))


def test_fingerprint_tells_datasets_apart(grid_dataset, tmp_path):
    data = LAMDataset(grid_dataset)
    assert len(data.fingerprint) == 64 and data.fingerprint == LAMDataset(grid_dataset).fingerprint
    # the same dataset anywhere else, or collected again by the same command: the same print
    assert LAMDataset(_copy(grid_dataset, tmp_path, "moved")).fingerprint == data.fingerprint
    config = data.collect_config
    again = CollectConfig(**{k: v for k, v in config.items() if k != "transitions"})
    same = collect(again, root=tmp_path / "again", progress=False)
    assert LAMDataset(same.path).fingerprint == data.fingerprint
    # re-collected under the same id with another setting: a different print
    other = collect(
        CollectConfig(**{**again.__dict__, "seed": 1}), root=tmp_path / "other", progress=False
    )
    assert LAMDataset(other.path).fingerprint != data.fingerprint


def test_batches_default_to_one_epoch(grid_dataset):
    data = LAMDataset(grid_dataset)
    assert sum(len(b.obs) for b in data.batches(20)) == 300  # 15 batches, then it ends
    endless = data.batches(20, epochs=None)
    assert sum(len(next(endless).obs) for _ in range(40)) == 800  # past one epoch
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        next(data.batches(20, epochs=0))
    with pytest.raises(ValueError, match="batch_size must be an integer, got 2.5"):
        next(data.batches(2.5))
