"""One loader for every trainer: lam-envs Minari datasets, or fresh transitions from the
native vector env.

Learning sees ``Batch(obs, next_obs, actions, label_mask)``: actions hold a sentinel
where unlabelled (NaN for the linear env, -1 for the grid). Evaluation asks for the oracle
fields separately (``LAMDataset.oracle``), so ground truth never slips into a batch.

    data = LAMDataset("lam_envs/gridlam-snaking-...-v0")     # a Minari id, or a path
    train, held_out = data.split(held_out=0.1, seed=0)       # by episode
    for batch in data.batches(128, episodes=train, seed=0):   # one shuffled epoch, chunked
        ...
    test = data.read(held_out)                               # all of it, in memory
    truth = data.oracle(held_out)                            # {"action", "q", "eps", ...}

Opening a dataset checks what a shared or damaged one could get wrong
(``lam_envs._contract_checks``, which ``python -m lam_envs.verify`` runs on every episode):
every file and HDF5 link it names resolves inside its own folder (checked before anything
is opened: a dataset never reads outside its folder), the contract version, every metadata
field the package reads, the spaces, and the metadata against the episodes; each episode is
checked when read (dtypes, shapes, finite values within the spaces, a boolean label mask
that agrees with the sentinels), so a corrupt one raises ``DatasetError`` and never reaches
a batch. Before any environment is created from it, its environment must be one lam_envs
registers, so that a dataset cannot make this package import and call code of its choosing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

import lam_envs
from lam_envs._contract_checks import (
    OLDEST_CONTRACT_VERSION,
    RENAMED_ENV_KWARGS,
    ContractReader,
    DatasetError,
    check_contract_version,
    parse_env_spec,
    resolve_data_path,
)
from lam_envs.policies import make_policy
from lam_envs.validate import check_int

# The contract's checks live in lam_envs._contract_checks (shared with lam_envs.verify);
# these names stay importable from here.
_resolve = resolve_data_path
_check_contract_version = check_contract_version
_parse_env_spec = parse_env_spec
__all__ = [
    "OLDEST_CONTRACT_VERSION",
    "RENAMED_ENV_KWARGS",
    "Batch",
    "DatasetError",
    "EnvStream",
    "LAMDataset",
]


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


class LAMDataset:
    """A dataset written by ``python -m lam_envs.collect``, read lazily from HDF5.

    ``trust_entry_point``: create the dataset's environment (``recover_environment``,
    ``make_vector_env``) even when its metadata names an environment or entry point that
    lam_envs does not register. Off by default: the metadata's entry point is an
    arbitrary importable callable, and a dataset from someone else could name any.
    """

    def __init__(self, dataset: str | Path, trust_entry_point: bool = False):
        if not isinstance(trust_entry_point, bool):
            raise TypeError(f"trust_entry_point must be a bool, got {trust_entry_point!r}")
        self.trust_entry_point = trust_entry_point
        # Metadata, spaces and every link checked here (no file outside the dataset's
        # folder is opened); each episode is checked when it is read.
        self._reader = ContractReader(dataset)
        self.data_path = self._reader.data_path
        self.metadata: dict[str, Any] = self._reader.metadata
        self.dataset_id = self._reader.dataset_id
        self._env_spec = self._reader.env_spec
        self.episodes = self._reader.episodes
        self.episode_length = self._reader.episode_length
        self.observation_shape = self._reader.observation_shape
        # from the metadata's action space, which the data's dtype must match
        self.discrete = self._reader.discrete
        self.env_id: str = self._env_spec.id
        self.env_kwargs: dict[str, Any] = dict(self._env_spec.kwargs)
        self.kind = lam_envs.ENV_IDS[self.env_id][0] if self.env_id in lam_envs.ENV_IDS else "?"

    @property
    def fingerprint(self) -> str:
        """A hex digest that identifies this dataset's contents: the SHA-256 of its
        metadata (collect configuration, spaces, environment, totals, package version),
        its episode count and the size of its data file. Re-collecting the id with other
        settings changes it; the same command (same bytes) gives the same fingerprint.
        Cheap: it reads no episode."""
        record = {
            "metadata": self.metadata,
            "episodes": len(self.episodes),
            "data_bytes": (self.data_path / "main_data.hdf5").stat().st_size,
        }
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def __repr__(self) -> str:
        return (
            f"LAMDataset({self.dataset_id!r}, env={self.env_id}, "
            f"episodes={len(self.episodes)}, transitions={self.num_transitions()})"
        )

    def close(self) -> None:
        """Close the dataset's files (they reopen when read again)."""
        self._reader.close()

    @property
    def collect_config(self) -> dict[str, Any]:
        return self.metadata["lam_envs"]["collect"]

    def num_transitions(self, episodes: np.ndarray | None = None) -> int:
        n = len(self.episodes) if episodes is None else len(episodes)
        return n * self.episode_length

    def recover_environment(self, **overrides: Any) -> gym.Env:
        """The environment the data came from (same parameters, so the same X and Y, and
        the same episode length). Refused (``DatasetError``) when the metadata names an
        environment lam_envs does not register, unless ``trust_entry_point=True``."""
        return gym.make(self._trusted_spec(), **overrides)

    def make_vector_env(self, num_envs: int, **overrides: Any) -> gym.vector.VectorEnv:
        """``num_envs`` copies of the environment the data came from, as the native vector
        env (same parameters and episode length); the same check as
        ``recover_environment``."""
        return gym.make_vec(self._trusted_spec(), num_envs=num_envs, **overrides)

    def _trusted_spec(self) -> gym.envs.registration.EnvSpec:
        spec = self._env_spec
        if not self.trust_entry_point:
            problem = _untrusted(spec)
            if problem is not None:
                raise DatasetError(
                    f"dataset {self.dataset_id!r} names {problem}, which lam_envs does not "
                    "register; refusing to import and call it. If you trust the dataset, "
                    "pass trust_entry_point=True (command line: --trust-dataset)"
                )
        return spec

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
        """The arrays ``keys`` of one episode, checked against the contract (rows, dtypes,
        shapes, finite values within the spaces, the label mask against the sentinels), so
        a damaged episode can never shift or poison the transitions of a batch."""
        return self._reader.episode(index, keys)

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

    def outcomes(self, episodes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``reward`` (float64), ``terminated`` and ``truncated`` (bool) of each transition,
        as Gymnasium returned them, aligned with ``read``; for offline-RL libraries and
        exports (a LAM does not need them)."""
        episodes = self.episodes if episodes is None else np.asarray(episodes)
        keys = ("rewards", "terminations", "truncations")
        parts = [self._episode(int(i), keys) for i in episodes]
        if not parts:
            raise ValueError("no episodes to read")
        names = ("reward", "terminated", "truncated")
        return {
            name: np.concatenate([p[key] for p in parts])
            for name, key in zip(names, keys, strict=True)
        }

    def read(self, episodes: np.ndarray | None = None) -> Batch:
        """All transitions of the given episodes as one in-memory ``Batch``."""
        return _to_batch(self.read_numpy(episodes), self.discrete)

    def oracle(self, episodes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Ground truth for evaluation, one row per transition (aligned with ``read``):
        ``action`` (the true action) and the environment's info fields after the step
        (linear: ``q``, ``eps``, ``b``; grid: ``position``, ``noise``, ``clean_obs``,
        the distractors' state), plus ``<field>_before`` (the value before the step) for the
        grid's position, clean image and the distractor states that move (camera shake,
        the agent's colour, the background and the other agents)."""
        episodes = self.episodes if episodes is None else np.asarray(episodes)
        if len(episodes) == 0:
            raise ValueError("no episodes to read")
        names = self._reader.oracle_names()
        keys = tuple(f"infos/oracle/{name}" for name in names)
        parts = [self._episode(int(i), keys) for i in episodes]
        result = {
            name: np.concatenate([p[key][1:] for p in parts])
            for name, key in zip(names, keys, strict=True)
        }
        before = ("position", "clean_obs", "shake", "agent_intensity", "background_offset",
                  "other_positions")  # fmt: skip
        for name in before:
            if name in names:
                key = f"infos/oracle/{name}"
                result[f"{name}_before"] = np.concatenate([p[key][:-1] for p in parts])
        return result

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


def _untrusted(spec: gym.envs.registration.EnvSpec) -> str | None:
    """What in ``spec`` lam_envs does not register (None when everything is its own):
    the id, the entry point, the vector entry point or an extra wrapper."""
    if spec.id not in lam_envs.ENV_IDS:
        return f"environment {spec.id!r} (entry point {spec.entry_point!r})"
    registered = gym.spec(spec.id)
    if spec.entry_point != registered.entry_point:
        return f"entry point {spec.entry_point!r} for {spec.id}"
    if spec.vector_entry_point not in (None, registered.vector_entry_point):
        return f"vector entry point {spec.vector_entry_point!r} for {spec.id}"
    if spec.additional_wrappers:
        names = ", ".join(repr(w.entry_point) for w in spec.additional_wrappers)
        return f"additional wrapper(s) {names} for {spec.id}"
    return None


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
        shown[~mask] = -1 if self.discrete else np.nan
        learn = {"obs": obs, "next_obs": next_obs, "actions": shown, "label_mask": mask}
        return learn, {"action": actions, **info}

    def __iter__(self) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
        while True:
            learn, oracle = self.next_numpy()
            yield _to_batch(learn, self.discrete), oracle
