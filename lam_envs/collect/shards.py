"""The work of one collection, cut so that any number of workers produce the same data.

The episodes are cut into *blocks* of ``episodes_per_block(L)`` consecutive episodes
(about ``BLOCK_TRANSITIONS`` transitions each; the last block may be shorter). Everything
random is a function of the seed and a block or episode index, never of who computes it:

- episode e is reset with seed ``env_seed_base(seed) + e`` (its attribute ``seed``);
- the behaviour policy of block b draws from ``default_rng([seed, POLICY_STREAM, b])``
  (a policy acts on a batch, so its stream is one per block, not per episode);
- the number of labels in each block comes from splitting the global count
  k = round(λ·N) down a binary tree over the blocks, node (lo, hi) drawing its left share
  from ``default_rng([seed, LABEL_SPLIT_STREAM, lo, hi])`` (hypergeometric: the result is
  a uniform k-subset of all N units); their positions within block b come from
  ``default_rng([seed, LABEL_PLACE_STREAM, b])``.

A worker is given a contiguous range of blocks and writes them to its own shard file
(``run_shard``); ``--workers 1`` and ``--workers 16`` give the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from lam_envs.collect.writer import ShardWriter
from lam_envs.policies import make_policy

if TYPE_CHECKING:
    from lam_envs.collect.config import CollectConfig

BLOCK_TRANSITIONS = 2**14  # part of the data's definition: changing it changes the data
CHUNK_BYTES = 96 * 2**20  # memory for the blocks one worker rolls out at once
#: numpy's hypergeometric takes populations below 1e9 on each side; the tree's root splits
#: N in halves, so N up to about 2e9 label units works (kept clear of the edge).
LABEL_UNITS_MAX = 1_900_000_000
POLICY_STREAM, LABEL_SPLIT_STREAM, LABEL_PLACE_STREAM = 1, 2, 3


def episodes_per_block(length: int) -> int:
    return max(1, BLOCK_TRANSITIONS // length)


def num_blocks(config: CollectConfig) -> int:
    return -(-config.episodes // episodes_per_block(config.episode_length))


def block_episodes(config: CollectConfig, lo: int, hi: int | None = None) -> range:
    """The episodes of blocks [lo, hi) (hi = lo + 1 by default)."""
    per = episodes_per_block(config.episode_length)
    hi = lo + 1 if hi is None else hi
    return range(min(lo * per, config.episodes), min(hi * per, config.episodes))


def split_blocks(n_blocks: int, n_shards: int) -> list[range]:
    """``n_shards`` contiguous, non-empty ranges of blocks, as equal as can be."""
    n_shards = max(1, min(n_shards, n_blocks))
    edges = [round(i * n_blocks / n_shards) for i in range(n_shards + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:], strict=False)]


def env_seed_base(seed: int) -> int:
    """Episode e is reset with seed ``env_seed_base(seed) + e``."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0] >> 1)


def label_units(config: CollectConfig, episodes: int | None = None) -> int:
    """N: how many units (transitions or episodes) the labels are chosen among."""
    episodes = config.episodes if episodes is None else episodes
    return episodes * config.episode_length if config.label_unit == "transition" else episodes


def label_total(config: CollectConfig) -> int:
    """k = round(λ·N), at least one when λ > 0."""
    if config.label_fraction == 0:
        return 0
    return max(1, round(config.label_fraction * label_units(config)))


def _hypergeometric(rng: np.random.Generator, good: int, bad: int, sample: int) -> int:
    """How many of ``sample`` draws without replacement are good; numpy needs both sides
    below 1e9, so the symmetric form (good and sample swap roles) is used when it fits."""
    if good < 10**9 and bad < 10**9:
        return int(rng.hypergeometric(good, bad, sample))
    total = good + bad
    if sample < 10**9 and total - sample < 10**9:
        return int(rng.hypergeometric(sample, total - sample, good))
    raise ValueError(f"label sampler: population {total:,} is beyond its limit")


def label_counts(config: CollectConfig, blocks: range) -> np.ndarray:
    """The number of labelled units in each block of ``blocks`` (see the module doc)."""
    counts = np.zeros(len(blocks), dtype=np.int64)
    stack = [(0, num_blocks(config), label_total(config))]
    while stack:
        lo, hi, k = stack.pop()
        if k == 0 or hi <= blocks.start or lo >= blocks.stop:
            continue
        if hi - lo == 1:
            counts[lo - blocks.start] = k
            continue
        mid = (lo + hi) // 2
        units = label_units(config, len(block_episodes(config, lo, hi)))
        left = label_units(config, len(block_episodes(config, lo, mid)))
        rng = np.random.default_rng([config.seed, LABEL_SPLIT_STREAM, lo, hi])
        k_left = _hypergeometric(rng, k, units - k, left)
        stack += [(lo, mid, k_left), (mid, hi, k - k_left)]
    return counts


def label_mask(config: CollectConfig, block: int, count: int) -> np.ndarray:
    """(episodes of the block, L) bool: ``count`` labelled units placed uniformly."""
    episodes, length = len(block_episodes(config, block)), config.episode_length
    units = label_units(config, episodes)
    rng = np.random.default_rng([config.seed, LABEL_PLACE_STREAM, block])
    chosen = np.zeros(units, dtype=bool)
    chosen[rng.choice(units, size=count, replace=False)] = True
    if config.label_unit == "transition":
        return chosen.reshape(episodes, length)
    return np.repeat(chosen[:, None], length, axis=1)


@dataclass(frozen=True)
class ShardResult:
    """What a worker wrote: episodes [first, first + episodes) in ``file`` (a name in the
    dataset's data folder)."""

    file: str
    first: int
    episodes: int
    transitions: int
    labelled: int


def _noop(*args: Any) -> None:
    pass


def run_shard(
    config: CollectConfig,
    blocks: range,
    path: Path,
    progress: Callable[[int], None] = _noop,
    check: Callable[[], None] = _noop,
) -> ShardResult:
    """Roll out, label and write the episodes of ``blocks`` to the shard file ``path``.

    ``progress(n)`` is told of every n transitions written; ``check()`` is called
    between steps and episodes (it may raise to stop).
    """
    length = config.episode_length
    single = gym.make(config.env, max_episode_steps=length, **config.env_kwargs_full)
    policy = make_policy(config.policy, single, **config.knobs)
    discrete = isinstance(single.action_space, gym.spaces.Discrete)
    per_batch = _blocks_per_batch(single, length, episodes_per_block(length))
    seed_base = env_seed_base(config.seed)
    counts = label_counts(config, blocks)
    labelled = 0
    env = None

    def written() -> None:  # after each episode written
        progress(length)
        check()

    with ShardWriter(path) as writer:
        for lo in range(blocks.start, blocks.stop, per_batch):
            batch = range(lo, min(lo + per_batch, blocks.stop))
            episodes = block_episodes(config, batch.start, batch.stop)
            if env is None or env.num_envs != len(episodes):
                env = gym.make_vec(
                    config.env,
                    num_envs=len(episodes),
                    max_episode_steps=length,
                    **config.env_kwargs_full,
                )
            streams = []  # (rows of the batch, the block's policy stream)
            for b in batch:
                rows = block_episodes(config, b)
                streams.append(
                    (
                        slice(rows.start - episodes.start, rows.stop - episodes.start),
                        np.random.default_rng([config.seed, POLICY_STREAM, b]),
                    )
                )
            data = _rollout(env, policy, streams, length, seed_base + episodes.start, check)
            mask = np.concatenate(
                [label_mask(config, b, int(counts[b - blocks.start])) for b in batch]
            )
            labelled += int(mask.sum())
            _apply_labels(data, mask, discrete, config.full_labels)
            seeds = seed_base + np.arange(episodes.start, episodes.stop)
            writer.write_episodes(data, episodes.start, seeds, written)
            del data, mask  # before the next rollout: one batch in memory at a time
    first = block_episodes(config, blocks.start).start
    n_episodes = len(block_episodes(config, blocks.start, blocks.stop))
    return ShardResult(path.name, first, n_episodes, n_episodes * length, labelled)


def _blocks_per_batch(env: gym.Env, length: int, per_block: int) -> int:
    """How many blocks to roll out at once so that a batch stays near CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // (per_block * episode_bytes(env, length)))


def episode_bytes(env: gym.Env, length: int) -> int:
    """Bytes of one episode's arrays in memory (observations, infos, actions, labels)."""
    _, info = env.reset(seed=0)
    obs_bytes = int(np.prod(env.observation_space.shape)) * env.observation_space.dtype.itemsize
    info_bytes = sum(np.asarray(v).nbytes for v in info.values())
    action_bytes = max(env.action_space.dtype.itemsize * int(np.prod(env.action_space.shape)), 1)
    return (length + 1) * (obs_bytes + info_bytes + 3 * action_bytes + 1) + length * 10


def _rollout(env, policy, streams, length: int, seed: int, check) -> dict[str, Any]:
    """One batch of fixed-length episodes as arrays (B, L+1, ...) and (B, L, ...).

    ``streams``: (rows, rng) pairs; the policy acts on each block's rows with its rng.
    """
    obs, info = env.reset(seed=seed)
    b = env.num_envs
    observations = np.empty((b, length + 1, *obs.shape[1:]), dtype=obs.dtype)
    observations[:, 0] = obs
    infos = {k: np.empty((b, length + 1, *v.shape[1:]), dtype=v.dtype) for k, v in info.items()}
    for key, value in info.items():
        infos[key][:, 0] = value
    actions = rewards = None
    for t in range(length):
        # A scripted policy may read a documented info field (the square's position, where
        # the distracting grid's distractors hide it in the image).
        if len(streams) == 1:
            action = policy(obs, streams[0][1], info)
        else:
            action = np.concatenate([
                policy(obs[rows], rng, {k: v[rows] for k, v in info.items()})
                for rows, rng in streams
            ])  # fmt: skip
        if actions is None:
            actions = np.empty((b, length, *action.shape[1:]), dtype=action.dtype)
            rewards = np.empty((b, length), dtype=np.float64)
        actions[:, t] = action
        obs, reward, _, _, info = env.step(action)
        observations[:, t + 1] = obs
        rewards[:, t] = reward
        for key, value in info.items():
            infos[key][:, t + 1] = value
        check()
    truncations = np.zeros((b, length), dtype=bool)
    truncations[:, -1] = True  # every episode ends by the time limit
    return {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "terminations": np.zeros((b, length), dtype=bool),
        "truncations": truncations,
        "infos": {"oracle": infos},
    }


def _apply_labels(episodes: dict[str, Any], mask: np.ndarray, discrete: bool, full: bool):
    """Hide unlabelled actions (unless ``full``) and record the mask and the true actions."""
    true_actions = episodes["actions"]
    sentinel = -1 if discrete else np.nan
    b, length = mask.shape
    oracle_action = np.full((b, length + 1, *true_actions.shape[2:]), sentinel, true_actions.dtype)
    oracle_action[:, 1:] = true_actions
    mask_rows = np.zeros((b, length + 1), dtype=bool)
    mask_rows[:, 1:] = mask
    if not full:
        hidden = true_actions.copy()
        hidden[~mask] = sentinel
        episodes["actions"] = hidden
    oracle = {"action": oracle_action, **episodes["infos"]["oracle"]}
    episodes["infos"] = {"label_mask": mask_rows, "oracle": oracle}
