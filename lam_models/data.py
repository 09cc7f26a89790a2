"""One loader for every trainer: lam-envs Minari datasets, or fresh transitions from the
native vector env.

Learning sees ``Batch(obs, next_obs, actions, label_mask)``: actions hold a sentinel
where unlabelled (NaN for the linear env, -1 for the grid). Evaluation asks for the oracle
fields separately (``LAMDataset.oracle``), so ground truth never slips into a batch.

    data = LAMDataset("lam-envs/gridlam-snaking-...-v0")     # a Minari id, or a path
    train, held_out = data.split(held_out=0.1, seed=0)       # by episode
    for batch in data.batches(128, episodes=train, seed=0):   # shuffled, chunked reads
        ...
    test = data.read(held_out)                               # all of it, in memory
    truth = data.oracle(held_out)                            # {"action", "q", "eps", ...}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import h5py
import numpy as np
import torch

import lam_envs
from lam_envs.policies import make_policy


class DatasetError(ValueError):
    """A dataset that is missing, corrupt, or not one lam-envs made."""


class Batch(NamedTuple):
    """Transitions for learning. Shapes: obs/next_obs (B, *obs_shape) float32; actions
    (B, d_a) float32 with NaN rows, or (B,) int64 with -1, where unlabelled; label_mask
    (B,) bool."""

    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    label_mask: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in self))


def _resolve(dataset: str | Path) -> Path:
    """The ``data`` folder of a dataset given as a Minari id or a path."""
    path = Path(dataset)
    for candidate in (path, path / "data", path.parent if path.suffix == ".hdf5" else None):
        if candidate is not None and (candidate / "metadata.json").is_file():
            return candidate
    from minari.storage.datasets_root_dir import get_dataset_path

    by_id = Path(get_dataset_path(str(dataset))) / "data"
    if (by_id / "metadata.json").is_file():
        return by_id
    raise DatasetError(
        f"no dataset {str(dataset)!r}: not a dataset folder, and no Minari id of that name "
        f"under {get_dataset_path()} (set MINARI_DATASETS_PATH, or collect one with "
        "`python -m lam_envs.collect`)"
    )


class LAMDataset:
    """A dataset written by ``python -m lam_envs.collect``, read lazily from HDF5."""

    def __init__(self, dataset: str | Path):
        self.data_path = _resolve(dataset)
        name = str(dataset)
        try:
            self.metadata: dict[str, Any] = json.loads(
                (self.data_path / "metadata.json").read_text()
            )
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"dataset {name!r} is corrupt: metadata.json: {error}") from None
        if "lam_envs" not in self.metadata:
            raise DatasetError(
                f"dataset {name!r} was not made by lam_envs.collect (no 'lam_envs' metadata); "
                "its partial labels and oracle fields are unknown"
            )
        self.dataset_id = self.metadata.get("dataset_id", name)
        try:
            self._file = h5py.File(self.data_path / "main_data.hdf5", "r")
            self.episodes = np.array(
                sorted(int(k.removeprefix("episode_")) for k in self._file.keys()), dtype=np.int64
            )
            self.episode_length = int(self._file["episode_0"].attrs["total_steps"])
            self.observation_shape = self._file["episode_0/observations"].shape[1:]
        except (OSError, KeyError) as error:
            raise DatasetError(
                f"dataset {name!r} is corrupt: cannot read main_data.hdf5 ({error})"
            ) from None
        if len(self.episodes) != self.metadata.get("total_episodes"):
            raise DatasetError(
                f"dataset {name!r} is corrupt: {len(self.episodes)} episodes on disk, "
                f"metadata says {self.metadata.get('total_episodes')}"
            )
        spec = gym.envs.registration.EnvSpec.from_json(self.metadata["env_spec"])
        self.env_id: str = spec.id
        self.env_kwargs: dict[str, Any] = dict(spec.kwargs)
        self.kind = lam_envs.ENV_IDS[self.env_id][0] if self.env_id in lam_envs.ENV_IDS else "?"
        self.discrete = self.kind == "grid"

    def __repr__(self) -> str:
        return (
            f"LAMDataset({self.dataset_id!r}, env={self.env_id}, "
            f"episodes={len(self.episodes)}, transitions={self.num_transitions()})"
        )

    def __getstate__(self):  # h5py files do not pickle; reopen on the other side
        state = self.__dict__.copy()
        state.pop("_file")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._file = h5py.File(self.data_path / "main_data.hdf5", "r")

    @property
    def collect_config(self) -> dict[str, Any]:
        return self.metadata["lam_envs"]["collect"]

    def num_transitions(self, episodes: np.ndarray | None = None) -> int:
        n = len(self.episodes) if episodes is None else len(episodes)
        return n * self.episode_length

    def recover_environment(self, **overrides: Any) -> gym.Env:
        """The environment the data came from (same parameters, so the same X and Y)."""
        spec = gym.envs.registration.EnvSpec.from_json(self.metadata["env_spec"])
        return gym.make(spec, **overrides)

    def require(self, kind: str) -> None:
        """Raise unless the data comes from the ``kind`` ('linear' or 'grid') environment."""
        if self.kind != kind:
            raise DatasetError(
                f"dataset {self.dataset_id!r} comes from {self.env_id} ({self.kind}); "
                f"this needs a {kind} dataset"
            )

    def split(self, held_out: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Split the episodes into (train, held-out) at random; both non-empty."""
        if not 0 < held_out < 1:
            raise ValueError(f"held_out must be in (0, 1), got {held_out}")
        n = len(self.episodes)
        n_test = max(1, round(held_out * n))
        if n < 2 or n_test >= n:
            raise DatasetError(
                f"dataset {self.dataset_id!r} has {n} episode(s): too few to hold out "
                f"{held_out:.0%} by episode (need at least 2, with both parts non-empty)"
            )
        order = np.random.default_rng(seed).permutation(self.episodes)
        return np.sort(order[n_test:]), np.sort(order[:n_test])

    # ------------------------------------------------------------ reading

    def _episode(self, index: int, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        group = self._file[f"episode_{index}"]
        try:
            return {key: group[key][()] for key in keys}
        except KeyError as error:
            raise DatasetError(
                f"dataset {self.dataset_id!r} is corrupt: episode {index} lacks {error}"
            ) from None

    def read_numpy(self, episodes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """obs, next_obs, actions, label_mask of the given episodes, concatenated."""
        episodes = self.episodes if episodes is None else np.asarray(episodes)
        keys = ("observations", "actions", "infos/label_mask")
        parts = [self._episode(int(i), keys) for i in episodes]
        if not parts:
            raise ValueError("no episodes to read")
        return {
            "obs": np.concatenate([p["observations"][:-1] for p in parts]),
            "next_obs": np.concatenate([p["observations"][1:] for p in parts]),
            "actions": np.concatenate([p["actions"] for p in parts]),
            "label_mask": np.concatenate([p["infos/label_mask"][1:] for p in parts]),
        }

    def read(self, episodes: np.ndarray | None = None) -> Batch:
        """All transitions of the given episodes as one in-memory ``Batch``."""
        return _to_batch(self.read_numpy(episodes), self.discrete)

    def oracle(self, episodes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Ground truth for evaluation, one row per transition (aligned with ``read``):
        ``action`` (the true action) and the environment's info fields after the step
        (linear: ``q``, ``eps``, ``b``; grid: ``position``, ``noise``, ``clean_obs``,
        the distractors' state), plus ``position_before`` / ``clean_obs_before`` on the grid."""
        episodes = self.episodes if episodes is None else np.asarray(episodes)
        names = list(self._file[f"episode_{int(episodes[0])}/infos/oracle"].keys())
        keys = tuple(f"infos/oracle/{name}" for name in names)
        parts = [self._episode(int(i), keys) for i in episodes]
        result = {
            name: np.concatenate([p[key][1:] for p in parts])
            for name, key in zip(names, keys, strict=True)
        }
        for name in ("position", "clean_obs"):
            if name in names:
                key = f"infos/oracle/{name}"
                result[f"{name}_before"] = np.concatenate([p[key][:-1] for p in parts])
        return result

    def batches(
        self,
        batch_size: int,
        episodes: np.ndarray | None = None,
        seed: int = 0,
        epochs: int | None = None,
        chunk_transitions: int = 1 << 20,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        """Shuffled batches, forever (``epochs=None``) or for ``epochs`` passes.

        Reads ``chunk_transitions`` at a time (whole episodes, in a seeded random order)
        and shuffles within the chunk, so data larger than memory streams; when the
        selection fits in one chunk it is read once and reshuffled every epoch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        episodes = self.episodes if episodes is None else np.asarray(episodes)
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
        self._obs = None

    @property
    def unwrapped(self):
        """The vector env (its ``dynamics`` holds X and Y in the linear case)."""
        return self.env

    def next_numpy(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One batch as numpy: (learning fields, oracle fields)."""
        if self._t == self.episode_length:
            seed = self._env_seed + self._episode * self.env.num_envs
            self._obs, _ = self.env.reset(seed=seed)
            self._t, self._episode = 0, self._episode + 1
        obs = self._obs
        actions = self.policy(obs, self._rng)
        next_obs, _, _, _, info = self.env.step(actions)
        self._obs, self._t = next_obs, self._t + 1
        mask = self._label_rng.random(len(obs)) < self.label_fraction
        shown = np.array(actions, copy=True)
        shown[~mask] = -1 if self.discrete else np.nan
        learn = {"obs": obs, "next_obs": next_obs, "actions": shown, "label_mask": mask}
        return learn, {"action": actions, **info}

    def __iter__(self) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
        while True:
            learn, oracle = self.next_numpy()
            yield _to_batch(learn, self.discrete), oracle
