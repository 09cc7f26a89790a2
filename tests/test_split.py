"""The data split every trainer reads (lam_models.split): held-out episodes, the labelled
subset, k-step partners, and seeded batches for copies trained together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lam_models.split import CopyBatches, DataSplit, choose_labels


def test_episodes_are_split_and_labels_come_from_the_dataset(lam_datasets):
    split = DataSplit(lam_datasets["grid"], held_out=0.1, seed=0)
    assert len(split.train) == 36 * 50 and len(split.test) == 4 * 50
    assert not set(split.train.episodes) & set(split.test.episodes)
    shown = split.data.read_numpy(split.train.episodes)
    np.testing.assert_array_equal(split.train.label_mask, shown["label_mask"])
    np.testing.assert_array_equal(split.train.actions, shown["actions"])
    np.testing.assert_array_equal(split.train.obs(), shown["obs"])
    np.testing.assert_array_equal(split.train.next_obs(), shown["next_obs"])


def test_a_smaller_labelled_subset_hides_the_other_labels(lam_datasets):
    split = DataSplit(lam_datasets["grid"], seed=0)
    small = DataSplit(lam_datasets["grid"], seed=0, label_fraction=0.01)
    assert small.labelled == round(0.01 * len(split.train))
    assert not (small.train.label_mask & ~split.train.label_mask).any()  # nested
    assert (small.train.actions[~small.train.label_mask] == -1).all()  # sentinel elsewhere
    again = split.with_labels(0.01)  # the same subset, without re-reading the dataset
    np.testing.assert_array_equal(again.train.label_mask, small.train.label_mask)
    assert again.train.frames is split.train.frames


def test_label_subsets_are_nested_and_bounded():
    mask = np.zeros(1000, bool)
    mask[::5] = True  # 200 labelled
    small, large = choose_labels(mask, 0.01, 3), choose_labels(mask, 0.1, 3)
    assert small.sum() == 10 and large.sum() == 100
    assert not (small & ~large).any() and not (large & ~mask).any()
    with pytest.raises(ValueError, match=r"label fraction 0.5 out of range: it needs 500"):
        choose_labels(mask, 0.5, 3)


def test_labels_per_episode_take_whole_episodes_nested_and_bounded():
    units = np.repeat(np.arange(100), 20)  # 100 episodes of 20 transitions
    mask = np.isin(units, np.arange(0, 100, 2))  # every other episode labelled throughout
    mask[units == 4] = False  # ... but one of them only in part: never chosen
    mask[(units == 6) & (np.arange(2000) % 20 == 0)] = False
    small = choose_labels(mask, 0.01, 3, units)
    large = choose_labels(mask, 0.2, 3, units)
    for chosen, episodes in ((small, 1), (large, 20)):
        counts = np.bincount(units[chosen], minlength=100)
        assert set(counts) == {0, 20} and (counts == 20).sum() == episodes  # whole episodes
        assert not (chosen & ~mask).any() and counts[4] == counts[6] == 0
    assert not (small & ~large).any()  # nested
    with pytest.raises(ValueError, match=r"0.5 of episodes out of range: it needs 50 .* 48"):
        choose_labels(mask, 0.5, 3, units)


def test_a_split_labels_whole_episodes_with_label_unit_episode(tmp_path):
    from lam_envs.collect import CollectConfig, collect

    dataset = collect(
        CollectConfig(episodes=40, episode_length=10, label_unit="episode", label_fraction=0.5),
        root=tmp_path,
        progress=False,
    ).path
    split = DataSplit(dataset, held_out=0.1, seed=0, label_fraction=0.1, label_unit="episode")
    per_episode = split.train.label_mask.reshape(36, 10)
    assert (per_episode.all(1) | ~per_episode.any(1)).all() and per_episode.all(1).sum() == 4
    shown = split.data.read_numpy(split.train.episodes)["label_mask"].reshape(36, 10)
    assert not (per_episode & ~shown).any()
    assert (split.train.actions[~split.train.label_mask] == -1).all()
    transitions = split.with_labels(0.1, "transition")
    assert transitions.labelled == 36 and transitions.label_unit == "transition"
    # pickled as its arguments, the unit included
    import pickle

    again = pickle.loads(pickle.dumps(split))
    np.testing.assert_array_equal(again.train.label_mask, split.train.label_mask)
    with pytest.raises(ValueError, match="unknown label_unit 'trajectory'"):
        DataSplit(dataset, label_unit="trajectory")


def test_partners_look_k_steps_ahead_within_the_episode(lam_datasets):
    split = DataSplit(lam_datasets["grid"], seed=0)
    part = split.train
    obs = part.obs().reshape(36, 50, 1, 4, 4)
    nxt = part.next_obs().reshape(36, 50, 1, 4, 4)
    last = nxt[:, -1]  # each episode's final observation
    np.testing.assert_array_equal(part.far_obs(1), part.next_obs())
    far = part.far_obs(3).reshape(36, 50, 1, 4, 4)
    np.testing.assert_array_equal(far[:, :47], obs[:, 3:50])
    np.testing.assert_array_equal(far[:, 47:], np.repeat(last[:, None], 3, axis=1))


def test_eval_transitions_caps_the_held_out_part(lam_datasets):
    split = DataSplit(lam_datasets["grid"], held_out=0.5, seed=0, eval_transitions=300)
    assert len(split.test) == 300
    assert len(set(split.test.start)) == 300  # distinct transitions


def test_each_copy_draws_its_own_batches(lam_datasets):
    splits = [DataSplit(lam_datasets["grid"], seed=s) for s in (0, 1)]
    pair = CopyBatches(splits, [0, 1]).sample(64)
    alone = CopyBatches(splits[1:], [1]).sample(64)
    assert torch.equal(pair.obs[1], alone.obs[0])  # independent of the companions
    assert not torch.equal(pair.obs[0], pair.obs[1])
    assert pair.far_obs is pair.next_obs  # one step ahead: no extra copy


def test_labelled_share_fills_batches_from_the_subset(lam_datasets):
    split = DataSplit(lam_datasets["grid"], seed=0)
    data = CopyBatches([split], [0])
    counts = [int(data.sample(128, labelled_share=0.25).label_mask.sum()) for _ in range(20)]
    assert min(counts) >= 32  # 25% of 128 at least; the rest drawn from all transitions
    plain = [int(data.sample(128).label_mask.sum()) for _ in range(20)]
    assert np.mean(plain) < 16  # the natural rate: 5%
    labelled = data.sample_labelled(50)
    assert labelled.label_mask.all() and (labelled.actions >= 0).all()


def test_random_offsets_stay_in_range(lam_datasets):
    split = DataSplit(lam_datasets["grid"], seed=0)
    batch = CopyBatches([split], [0]).sample(512, offset=5, uniform_offset=True)
    # every partner is one of o_{t+1..t+5} of the same episode: the square moved at most 5 cells
    before = batch.obs[0, :, 0, :3].flatten(1).argmax(1)
    after = batch.far_obs[0, :, 0, :3].flatten(1).argmax(1)
    distance = (before // 4 - after // 4).abs() + (before % 4 - after % 4).abs()
    assert distance.max() <= 5 and distance.float().mean() > 1
