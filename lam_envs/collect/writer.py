"""Writes Minari datasets (HDF5 backend) from whole batches of episodes, atomically.

Minari's own ``DataCollector`` buffers every step in Python and writes each episode
through h5py's high-level API; that suits interactive use, not millions of transitions.
This writer takes episodes as arrays and writes them with h5py's low-level API in
Minari's on-disk layout: one group ``episode_{i}`` per episode with ``observations``
(L+1), ``actions``, ``rewards``, ``terminations``, ``truncations`` (L) and an ``infos``
group of (L+1)-row arrays, and ``data/metadata.json``.

Several workers write at once, each to its own shard file ``data/shard-K.hdf5``; the
``data/main_data.hdf5`` that Minari opens holds one HDF5 external link per episode,
``episode_{i}`` -> ``shard-K.hdf5:/episode_{i}``, with a relative file name that HDF5
resolves beside the main file (so the folder can be moved). h5py follows such links like
groups, so ``minari.load_dataset``, ``minari show``, ``recover_environment`` and our
loader read the dataset unchanged.

Atomicity: everything is written under a hidden staging folder of the root and renamed
into place only when complete (``lam_envs.utils.staging``): an interrupted run leaves no
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

from lam_envs.utils import staging

_COMPACT_BYTES = 32 * 1024  # small datasets live in the object header: much faster to create


def _noop() -> None:
    pass


def _dcpl(compact: bool) -> h5py.h5p.PropDCID:
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_obj_track_times(False)  # timestamps would make equal data differ in bytes
    if compact:
        plist.set_layout(h5py.h5d.COMPACT)
    return plist


_DCPL = {True: _dcpl(True), False: _dcpl(False)}
_GCPL = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
_GCPL.set_obj_track_times(False)
_FCPL = h5py.h5p.create(h5py.h5p.FILE_CREATE)  # links listed in creation order, like h5py's
_FCPL.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
MAIN_FILE = "main_data.hdf5"


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


class ShardWriter:
    """Writes episodes, in Minari's per-episode layout, to one shard file of a dataset.

    Use as a context manager; the file is closed on the way out (whatever happens: the
    caller's staging folder decides what is kept).
    """

    def __init__(self, path: Path):
        self._file = h5py.File(path, "w")  # readers go through the main file's ordered links

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def write_episodes(
        self,
        episodes: dict[str, Any],
        first: int,
        seeds: np.ndarray,
        check: Callable[[], None] = _noop,
    ) -> None:
        """Write B episodes of equal length L as ``episode_{first}`` ... ``episode_{first+B-1}``.

        ``episodes`` maps observations (B, L+1, ...), actions (B, L, ...), rewards,
        terminations, truncations (B, L) and infos (a tree of (B, L+1, ...) arrays) to data.
        ``check`` is called between episodes (it may raise to stop).
        """
        root = self._file.id
        n_episodes, n_steps = episodes["rewards"].shape
        for j in range(n_episodes):
            index = first + j
            group = _group(root, f"episode_{index}")
            _attr(group, "id", index)
            _attr(group, "seed", int(seeds[j]))
            _attr(group, "total_steps", n_steps)
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                _array(group, key, episodes[key][j])
            _tree(group, "infos", _take(episodes["infos"], j))
            check()


class DatasetStaging:
    """A dataset being built in a staging folder: its metadata, its shard files, and the
    ``main_data.hdf5`` that Minari opens, whose ``episode_{i}`` entries are HDF5 external
    links (relative file names) into the shards, so the folder can be moved.

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
        check_target(self.root, dataset_id, overwrite)
        self.folder = staging.new_folder(self.root)
        self.data_path = self.folder / "data"
        self.data_path.mkdir(parents=True)
        from minari.dataset.minari_storage import MinariStorage  # here: workers need no minari

        self._storage = MinariStorage.new(
            self.data_path,
            observation_space=observation_space,
            action_space=action_space,
            env_spec=env_spec,
            data_format="hdf5",
            jpeg_encoding=False,
        )
        self._storage.update_metadata({"dataset_id": dataset_id, **metadata})
        self._main = h5py.h5f.create(
            str(self.data_path / MAIN_FILE).encode(), h5py.h5f.ACC_TRUNC, fcpl=_FCPL
        )
        self._links = h5py.h5g.open(self._main, b"/")
        self._next_link = 0

    def __enter__(self) -> DatasetStaging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def shard_path(self, index: int) -> Path:
        return self.data_path / f"shard-{index:05d}.hdf5"

    def link(self, shard: str, episodes: range) -> None:
        """Point ``episode_{e}`` of the main file, for e in ``episodes``, into ``shard``
        (which may not exist yet: external links are resolved when read). Call in
        episode order; links cost ~25 us each, so callers spread them over the run."""
        if episodes.start != self._next_link:
            raise ValueError(f"links must come in order: expected episode {self._next_link}")
        name = shard.encode()
        for e in episodes:
            key = f"episode_{e}".encode()
            self._links.links.create_external(key, name, b"/" + key)
        self._next_link = episodes.stop

    def publish(self, total_episodes: int, total_steps: int, extra: dict[str, Any]) -> Path:
        """Close the main file, write the totals, and move the dataset into place."""
        if self._next_link != total_episodes:
            raise ValueError(f"{self._next_link} episodes linked, {total_episodes} written")
        self._close_main()
        self._storage.update_metadata(
            {
                "total_episodes": total_episodes,
                "total_steps": total_steps,
                "dataset_size": self._storage.get_size(),
                **extra,
            }
        )
        _ensure_namespaces(self.root, self.dataset_id)
        return staging.publish(self.folder, self.root, self.dataset_id, self.overwrite)

    def _close_main(self) -> None:
        if self._main.valid:
            self._links = None
            self._main.close()

    def abort(self) -> None:
        try:
            self._close_main()
        except Exception:  # noqa: BLE001  (a full disk fails the flush: the folder goes anyway)
            pass
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def check_target(root: Path, dataset_id: str, overwrite: bool) -> None:
    """Refuse, before any work, an id that exists (unless ``overwrite``), and one whose
    folder would lie inside another dataset's or hold one (``ValueError``)."""
    problem = staging.nesting_problem(Path(root), dataset_id)
    if problem is not None:
        raise ValueError(problem)
    target = Path(root, dataset_id)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"dataset {dataset_id!r} already exists at {target}; "
            "pass --overwrite to replace it, or choose another --dataset-id"
        )


def _take(tree: dict[str, Any], j: int) -> dict[str, Any]:
    return {k: _take(v, j) if isinstance(v, dict) else v[j] for k, v in tree.items()}


def _ensure_namespaces(root: Path, dataset_id: str) -> None:
    """Minari expects a metadata file in each namespace folder of an id."""
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = Path(root, *parts[:depth])
        folder.mkdir(parents=True, exist_ok=True)
        from minari.namespace import NAMESPACE_METADATA_FILENAME

        meta = folder / NAMESPACE_METADATA_FILENAME
        if not meta.exists():
            meta.write_text(json.dumps({"description": "datasets made by lam-envs"}))
