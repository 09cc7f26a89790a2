"""lam_models.data: the loader every trainer uses."""

from __future__ import annotations

import json

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
