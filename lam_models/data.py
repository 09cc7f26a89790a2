"""Torch batches on the dataset contract (:mod:`lam_envs.dataset`): one loader for every
trainer, lam-envs Minari datasets or fresh transitions from the native vector env.

Learning sees ``Batch(obs, next_obs, actions, label_mask)``: actions hold a sentinel
where unlabelled (NaN for continuous actions, -1 for discrete ones). Evaluation asks for
the oracle fields separately (``LAMDataset.oracle``), so ground truth never slips into a
batch.

    data = LAMDataset("lam_envs/gridlam-snaking-...-v0")     # a Minari id, or a path
    train, held_out = data.split(held_out=0.1, seed=0)       # by episode
    for batch in data.batches(128, episodes=train, seed=0):   # one shuffled epoch, chunked
        ...
    test = data.read(held_out)                               # all of it, in memory
    truth = data.oracle(held_out)                            # {"action", "q", "eps", ...}

Reading checks the contract (:mod:`lam_envs.dataset`), so a corrupt dataset raises
``DatasetError`` and never reaches a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from lam_envs.dataset import (
    OLDEST_CONTRACT_VERSION,
    RENAMED_ENV_KWARGS,
    Dataset,
    DatasetError,
    unlabelled,
)
from lam_envs.policies import make_policy
from lam_envs.utils.validate import check_int

__all__ = [
    "OLDEST_CONTRACT_VERSION",
    "RENAMED_ENV_KWARGS",
    "Batch",
    "DatasetError",
    "EnvStream",
    "LAMDataset",
    "to_device",
]


def to_device(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``x`` (on the CPU) on ``device`` without stalling the host: to a CUDA device through
    pinned memory, asynchronously (a plain copy from pageable memory waits for the GPU to
    finish its queued work: a host synchronisation per training step); elsewhere
    ``x.to(device)``. Random draws stay on the CPU's generators (the same draws on every
    device) and reach the device this way."""
    device = torch.device(device)
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


class Batch(NamedTuple):
    """Transitions for learning. Shapes: obs/next_obs (B, *obs_shape) float32; actions
    (B, d_a) float32 with NaN rows, or (B,) int64 with -1, where unlabelled; label_mask
    (B,) bool."""

    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    label_mask: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(to_device(t, device) for t in self))


class LAMDataset(Dataset):
    """A dataset written by ``python -m lam_envs.collect`` (:class:`lam_envs.dataset.Dataset`),
    with its transitions as torch ``Batch``es."""

    def read(self, episodes: np.ndarray | None = None) -> Batch:
        """All transitions of the given episodes as one in-memory ``Batch``."""
        return _to_batch(self.read_numpy(episodes), self.discrete)

    def batches(
        self,
        batch_size: int,
        episodes: np.ndarray | None = None,
        seed: int = 0,
        epochs: int | None = 1,
        chunk_transitions: int = 1 << 20,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        """Shuffled batches for ``epochs`` passes over the episodes (one by default), or
        forever with ``epochs=None``. Every batch is full; the transitions left over at the
        end of a pass open the next one. A ``batch_size`` larger than the transitions of the
        episodes is refused (``ValueError``).

        Reads ``chunk_transitions`` at a time (whole episodes, in a seeded random order)
        and shuffles within the chunk, so data larger than memory streams; when the
        selection fits in one chunk it is read once and reshuffled every epoch.
        """
        check_int("batch_size", batch_size, low=1)
        if epochs is not None:
            check_int("epochs", epochs, low=1)
        episodes = self.episodes if episodes is None else np.asarray(episodes)
        available = len(episodes) * self.episode_length
        if batch_size > available:
            # no batch could ever be drawn: a finite run would yield nothing, and epochs=None
            # would loop forever while its carry of transitions grew
            raise ValueError(
                f"batch_size = {batch_size:,} is more than the {available:,} transitions of "
                f"the {len(episodes):,} episode(s) given: use batch_size <= {available:,}"
                + (" (and at least one episode)" if available == 0 else "")
            )
        rng = np.random.default_rng(seed)
        per_chunk = max(1, chunk_transitions // self.episode_length)
        cached = self.read_numpy(episodes) if len(episodes) <= per_chunk else None
        carry: dict[str, np.ndarray] | None = None
        epoch = 0
        while epochs is None or epoch < epochs:
            order = rng.permutation(episodes)
            for start in range(0, len(order), per_chunk):
                chunk = (
                    cached
                    if cached is not None
                    else self.read_numpy(order[start : start + per_chunk])
                )
                perm = rng.permutation(len(chunk["obs"]))
                chunk = {k: v[perm] for k, v in chunk.items()}
                if carry is not None:
                    chunk = {k: np.concatenate([carry[k], chunk[k]]) for k in chunk}
                n_full = len(chunk["obs"]) // batch_size * batch_size
                for i in range(0, n_full, batch_size):
                    yield _to_batch(
                        {k: v[i : i + batch_size] for k, v in chunk.items()}, self.discrete
                    ).to(device)
                carry = {k: v[n_full:] for k, v in chunk.items()}
            epoch += 1


def _to_batch(arrays: dict[str, np.ndarray], discrete: bool) -> Batch:
    actions = torch.from_numpy(np.ascontiguousarray(arrays["actions"]))
    actions = actions.long() if discrete else actions.float()
    return Batch(
        torch.from_numpy(np.ascontiguousarray(arrays["obs"], dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(arrays["next_obs"], dtype=np.float32)),
        actions,
        torch.from_numpy(np.ascontiguousarray(arrays["label_mask"])),
    )


class EnvStream:
    """Unlimited fresh transitions from the native vector env, in batches, with their
    oracle fields: for sweeps that need no dataset on disk.

    Each batch is one step of ``batch_size`` parallel envs. Episodes last
    ``episode_length`` steps and then every env is reset together; ``episode_length=1``
    draws every transition from the start-state distribution (o ~ N(0, I) in the linear
    env), the i.i.d. setting of the paper. ``label_fraction`` marks that share of
    transitions as labelled, at random; unlabelled actions get the sentinel.
    """

    def __init__(
        self,
        env_id: str,
        batch_size: int,
        policy: str = "random",
        episode_length: int = 1,
        seed: int = 0,
        label_fraction: float = 1.0,
        policy_knobs: dict[str, float] | None = None,
        **env_kwargs: Any,
    ):
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        if not 0 <= label_fraction <= 1:
            raise ValueError(f"label_fraction must be in [0, 1], got {label_fraction}")
        self.env = gym.make_vec(
            env_id, num_envs=batch_size, max_episode_steps=episode_length, **env_kwargs
        )
        self.policy = make_policy(policy, self.env, **(policy_knobs or {}))
        self.discrete = isinstance(self.env.single_action_space, gym.spaces.Discrete)
        self.episode_length, self.label_fraction = episode_length, label_fraction
        seeds = np.random.SeedSequence(seed)
        self._env_seed = int(seeds.generate_state(1)[0] >> 1)
        self._rng, self._label_rng = (np.random.default_rng(s) for s in seeds.spawn(2))
        self._t = episode_length  # reset on the first call
        self._episode = 0
        self._obs = self._info = None

    @property
    def unwrapped(self):
        """The vector env (its ``dynamics`` holds X and Y in the linear case)."""
        return self.env

    def next_numpy(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One batch as numpy: (learning fields, oracle fields)."""
        if self._t == self.episode_length:
            seed = self._env_seed + self._episode * self.env.num_envs
            self._obs, self._info = self.env.reset(seed=seed)
            self._t, self._episode = 0, self._episode + 1
        obs = self._obs
        # A scripted policy may read a documented info field (the square's position where
        # distractors hide it in the image).
        actions = self.policy(obs, self._rng, self._info)
        next_obs, _, _, _, info = self.env.step(actions)
        self._obs, self._info, self._t = next_obs, info, self._t + 1
        mask = self._label_rng.random(len(obs)) < self.label_fraction
        shown = np.array(actions, copy=True)
        shown[~mask] = unlabelled(self.discrete)
        learn = {"obs": obs, "next_obs": next_obs, "actions": shown, "label_mask": mask}
        return learn, {"action": actions, **info}

    def __iter__(self) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
        while True:
            learn, oracle = self.next_numpy()
            yield _to_batch(learn, self.discrete), oracle
