"""The dataset contract's one home: what ``python -m lam_envs.collect`` writes and how it is
read back, in numpy (torch batching is built on it in :mod:`lam_models.data`).

    from lam_envs.dataset import Dataset
    data = Dataset("lam_envs/grid-low-uniform-v0")   # a Minari id, or a path
    train, held_out = data.split(held_out=0.1, seed=0)
    arrays = data.read_numpy(held_out)               # obs, next_obs, actions, label_mask
    truth = data.oracle(held_out)                    # {"action", "position", ...}

- :mod:`lam_envs.dataset.contract`: the constants (version, file names, label units,
  sentinels) and ``DatasetError``;
- :mod:`lam_envs.dataset.files`, :mod:`~lam_envs.dataset.metadata`,
  :mod:`~lam_envs.dataset.reader`: the checks every reader runs (``python -m
  lam_envs.verify`` runs them on every episode): every file and HDF5 link a dataset names
  resolves inside its own folder (checked before anything is opened), the contract
  version, every metadata field the package reads, the spaces, and each episode when read
  (dtypes, shapes, finite values within the spaces, a boolean label mask that agrees with
  the sentinels). Before any environment is created from a dataset, its environment must
  be one lam_envs registers, so a dataset cannot make this package import and call code
  of its choosing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs.dataset.contract import (
    CONTRACT_VERSION,
    LABEL_MASK,
    LABEL_UNITS,
    MAIN_FILE,
    MAX_LINK_HOPS,
    MAX_OBSERVATION_SIZE,
    METADATA_FILE,
    OLDEST_CONTRACT_VERSION,
    PER_STEP,
    RENAMED_ENTRY_POINTS,
    DatasetError,
)
from lam_envs.dataset.files import (
    check_storage,
    check_top_level_links,
    file_inside,
    follow,
    resolve_data_path,
    strict_child,
    walk_links,
)
from lam_envs.dataset.metadata import (
    Box,
    Discrete,
    check_contract_version,
    check_metadata_fields,
    parse_env_spec,
)
from lam_envs.dataset.reader import (
    ContractReader,
    check_episode_arrays,
)
from lam_envs.envs.family import FAMILIES, EnvFamily, family_for_id
from lam_envs.utils.validate import check_float

__all__ = [
    "Box",
    "CONTRACT_VERSION",
    "ContractReader",
    "Dataset",
    "DatasetError",
    "Discrete",
    "LABEL_MASK",
    "LABEL_UNITS",
    "MAIN_FILE",
    "MAX_LINK_HOPS",
    "MAX_OBSERVATION_SIZE",
    "METADATA_FILE",
    "OLDEST_CONTRACT_VERSION",
    "PER_STEP",
    "RENAMED_ENTRY_POINTS",
    "RENAMED_ENV_KWARGS",
    "check_contract_version",
    "check_episode_arrays",
    "check_metadata_fields",
    "check_storage",
    "check_top_level_links",
    "file_inside",
    "follow",
    "parse_env_spec",
    "resolve_data_path",
    "strict_child",
    "unlabelled",
    "walk_links",
]


def __getattr__(name: str) -> Any:
    # Environment arguments renamed since a dataset may have been collected, by family:
    # computed from the registered families (``EnvFamily.renamed_kwargs``).
    if name == "RENAMED_ENV_KWARGS":
        return {f.name: dict(f.renamed_kwargs) for f in FAMILIES.values() if f.renamed_kwargs}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unlabelled(discrete: bool) -> float | int:
    """The sentinel an unlabelled action holds: -1 for discrete actions, NaN otherwise."""
    return -1 if discrete else float("nan")


class Dataset:
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
        family = family_for_id(self.env_id)
        #: The environment's family (None: an environment lam_envs does not register).
        self.family: EnvFamily | None = family
        #: The family's name ("grid", "linear", ...; "?" for another environment).
        self.kind: str = "?" if family is None else family.name

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
            f"Dataset({self.dataset_id!r}, env={self.env_id}, "
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
        """Raise unless the data comes from an environment of the family ``kind``
        ('linear', 'grid', ...)."""
        if self.kind != kind:
            raise DatasetError(
                f"dataset {self.dataset_id!r} comes from {self.env_id} ({self.kind}); "
                f"this needs a {kind} dataset"
            )

    def split(self, held_out: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Split the episodes into (train, held-out) at random; both non-empty."""
        held_out = check_float("held_out", held_out, above=0, below=1)
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

    def oracle(self, episodes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Ground truth for evaluation, one row per transition (aligned with ``read``):
        ``action`` (the true action) and the environment's info fields after the step
        (linear: ``q``, ``eps``, ``b``; grid: ``position``, ``noise``, ``clean_obs``,
        the distractors' state), plus ``<field>_before`` (the value before the step) for
        the fields the family says move (``EnvFamily.moving_fields``; grid: the position,
        clean image and the distractor states that move: camera shake, the agent's colour,
        the background and the other agents)."""
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
        for name in () if self.family is None else self.family.moving_fields:
            if name in names:
                key = f"infos/oracle/{name}"
                result[f"{name}_before"] = np.concatenate([p[key][:-1] for p in parts])
        return result


def _untrusted(spec: gym.envs.registration.EnvSpec) -> str | None:
    """What in ``spec`` lam_envs does not register (None when everything is its own):
    the id, the entry point, the vector entry point or an extra wrapper."""
    if family_for_id(spec.id) is None:
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
