"""Writes Minari datasets (HDF5 backend) from whole batches of episodes, atomically.

Minari's own ``DataCollector`` buffers every step in Python and writes each episode
through h5py's high-level API; that suits interactive use, not millions of transitions.
This writer takes episodes as arrays and writes them with h5py's low-level API in
Minari's on-disk layout (``data/main_data.hdf5``: one group ``episode_{i}`` per episode
with ``observations`` (L+1), ``actions``, ``rewards``, ``terminations``, ``truncations``
(L) and an ``infos`` group of (L+1)-row arrays; ``data/metadata.json``), so
``minari.load_dataset``, ``minari show`` and ``recover_environment`` read it as usual.

Atomicity: everything is written under a hidden staging folder of the root and renamed
into place only when complete (``lam_envs._staging``): an interrupted run leaves no
dataset under its id, and a dataset that appears under the id meanwhile is not replaced.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
from minari.dataset.minari_storage import MinariStorage
from minari.namespace import NAMESPACE_METADATA_FILENAME

from lam_envs import _staging as staging

_COMPACT_BYTES = 32 * 1024  # small datasets live in the object header: much faster to create


def _noop() -> None:
    pass


def dataset_dir(root: Path, dataset_id: str) -> Path:
    return Path(root, dataset_id)


def _dcpl(compact: bool) -> h5py.h5p.PropDCID:
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_obj_track_times(False)  # timestamps would make equal data differ in bytes
    if compact:
        plist.set_layout(h5py.h5d.COMPACT)
    return plist


_DCPL = {True: _dcpl(True), False: _dcpl(False)}
_GCPL = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
_GCPL.set_obj_track_times(False)


def _group(parent: h5py.h5g.GroupID, name: str) -> h5py.h5g.GroupID:
    return h5py.h5g.create(parent, name.encode(), gcpl=_GCPL)


def _array(parent: h5py.h5g.GroupID, name: str, data: np.ndarray) -> None:
    data = np.ascontiguousarray(data)
    space = h5py.h5s.create_simple(data.shape)
    dtype = h5py.h5t.py_create(data.dtype, logical=True)
    dataset = h5py.h5d.create(
        parent, name.encode(), dtype, space, dcpl=_DCPL[data.nbytes <= _COMPACT_BYTES]
    )
    if data.size:
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)
_INT64 = h5py.h5t.py_create(np.dtype(np.int64))


def _attr(obj: h5py.h5g.GroupID, name: str, value: int) -> None:
    """An int64 scalar attribute, as h5py's high-level API writes a Python int."""
    attribute = h5py.h5a.create(obj, name.encode(), _INT64, _SCALAR)
    attribute.write(np.array(value, dtype=np.int64))


def _tree(parent: h5py.h5g.GroupID, name: str, tree: dict[str, Any]) -> None:
    group = _group(parent, name)
    for key, value in tree.items():
        if isinstance(value, dict):
            _tree(group, key, value)
        else:
            _array(group, key, value)


class MinariWriter:
    """Stage a Minari dataset, append batches of episodes, then publish it atomically.

    Use as a context manager: leaving the block by an exception (KeyboardInterrupt
    included) removes the staging folder, and no dataset appears under the id.
    """

    def __init__(
        self,
        root: Path,
        dataset_id: str,
        env_spec: gym.envs.registration.EnvSpec,
        observation_space: gym.Space,
        action_space: gym.Space,
        metadata: dict[str, Any],
        overwrite: bool = False,
    ):
        self.root, self.dataset_id, self.overwrite = Path(root).absolute(), dataset_id, overwrite
        self.target = dataset_dir(self.root, dataset_id)
        if self.target.exists() and not overwrite:
            raise FileExistsError(
                f"dataset {dataset_id!r} already exists at {self.target}; "
                "pass --overwrite to replace it, or choose another --dataset-id"
            )
        self.staging = staging.new_folder(self.root)
        data_path = self.staging / "data"
        data_path.mkdir(parents=True)
        self._storage = MinariStorage.new(
            data_path,
            observation_space=observation_space,
            action_space=action_space,
            env_spec=env_spec,
            data_format="hdf5",
            jpeg_encoding=False,
        )
        self._storage.update_metadata({"dataset_id": dataset_id, **metadata})
        self._file = h5py.File(data_path / "main_data.hdf5", "w", track_order=True)
        self.total_episodes = 0
        self.total_steps = 0

    def __enter__(self) -> MinariWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write_episodes(
        self, episodes: dict[str, Any], seeds: np.ndarray, check: Callable[[], None] = _noop
    ) -> None:
        """Append B episodes of equal length L.

        ``episodes`` maps observations (B, L+1, ...), actions (B, L, ...), rewards,
        terminations, truncations (B, L) and infos (a tree of (B, L+1, ...) arrays) to data.
        ``check`` is called between episodes (it may raise to stop).
        """
        root = self._file.id
        n_episodes, n_steps = episodes["rewards"].shape
        for j in range(n_episodes):
            index = self.total_episodes
            group = _group(root, f"episode_{index}")
            _attr(group, "id", index)
            _attr(group, "seed", int(seeds[j]))
            _attr(group, "total_steps", n_steps)
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                _array(group, key, episodes[key][j])
            _tree(group, "infos", _take(episodes["infos"], j))
            self.total_episodes += 1
            self.total_steps += n_steps
            check()

    def publish(self, extra_metadata: dict[str, Any] | None = None) -> Path:
        """Close the file, write the totals, and move the dataset into place."""
        self._file.close()
        self._storage.update_metadata(
            {
                "total_episodes": self.total_episodes,
                "total_steps": self.total_steps,
                "dataset_size": self._storage.get_size(),
                **(extra_metadata or {}),
            }
        )
        _ensure_namespaces(self.root, self.dataset_id)
        return staging.publish(self.staging, self.root, self.dataset_id, self.overwrite)

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)


def _take(tree: dict[str, Any], j: int) -> dict[str, Any]:
    return {k: _take(v, j) if isinstance(v, dict) else v[j] for k, v in tree.items()}


def _ensure_namespaces(root: Path, dataset_id: str) -> None:
    """Minari expects a metadata file in each namespace folder of an id."""
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = Path(root, *parts[:depth])
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / NAMESPACE_METADATA_FILENAME
        if not meta.exists():
            meta.write_text(json.dumps({"description": "datasets made by lam-envs"}))
