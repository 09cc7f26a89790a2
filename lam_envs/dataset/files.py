"""The dataset's files and HDF5 links: every file a dataset names is resolved and refused
when it leaves the dataset's folder, before it is opened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

from lam_envs.dataset.contract import MAIN_FILE, MAX_LINK_HOPS, METADATA_FILE, DatasetError
from lam_envs.utils.outputs import check_path

# ------------------------------------------------------------------ files and links


def resolve_data_path(dataset: str | Path) -> Path:
    """The data folder (holding ``metadata.json``) of a dataset given as a Minari id, a
    dataset folder, its ``data`` folder or its ``main_data.hdf5``."""
    try:  # a part over 255 bytes: the filesystem's OSError would escape the checks below
        path = check_path(dataset, "dataset")
    except ValueError as error:
        raise DatasetError(str(error)) from None
    for candidate in (path, path / "data", path.parent if path.suffix == ".hdf5" else None):
        if candidate is not None and (candidate / METADATA_FILE).is_file():
            return candidate
    from minari.storage.datasets_root_dir import get_dataset_path

    by_id = Path(get_dataset_path(str(dataset))) / "data"
    if (by_id / METADATA_FILE).is_file():
        return by_id
    raise DatasetError(
        f"no dataset {str(dataset)!r}: not a dataset folder, and no Minari id of that name "
        f"under {get_dataset_path()} (set MINARI_DATASETS_PATH, or collect one with "
        "`python -m lam_envs.collect`)"
    )


def file_inside(name: str, root: str, filename: str | os.PathLike, relative_to: str) -> str:
    """The real path of ``filename`` (relative names resolved in ``relative_to``), which must
    lie inside the folder ``root`` (a real path) and be a regular file.

    Refused (``DatasetError``) before anything is opened; a target outside gets the same
    message whether or not it exists, so a dataset cannot probe the file system."""
    target = os.path.realpath(os.path.join(relative_to, os.fsdecode(filename)))
    if os.path.commonpath([root, target]) != root:
        raise DatasetError(
            f"dataset {name!r} refers to {os.fsdecode(filename)!r}, which resolves outside its "
            f"own folder {root!r}; a dataset reads only files inside its folder (refused "
            "before reading)"
        )
    if not os.path.isfile(target):
        raise DatasetError(
            f"dataset {name!r} is corrupt: its file {os.path.relpath(target, root)!r} is "
            "missing or not a regular file"
        )
    return target


class _Files:
    """The HDF5 files of one dataset, opened read-only once each, by real path; only
    files inside the dataset's folder are ever opened."""

    def __init__(self, name: str, data_path: Path):
        self.name = name
        self.root = os.path.realpath(data_path)
        self.main_path = file_inside(name, self.root, MAIN_FILE, self.root)
        self._open: dict[str, h5py.File] = {}
        self._main: h5py.File | None = None
        self._resolved: dict[tuple[Any, str], str] = {}

    def open(self, filename: str | bytes, relative_to: str) -> h5py.File:
        key = (filename, relative_to)
        path = self._resolved.get(key)
        if path is None:  # resolved once per (name, folder): links name a few shards
            path = self._resolved[key] = file_inside(self.name, self.root, filename, relative_to)
        file = self._open.get(path)
        if file is None:
            try:
                file = h5py.File(path, "r")
            except OSError as error:
                raise DatasetError(
                    f"dataset {self.name!r} is corrupt: cannot read "
                    f"{os.path.relpath(path, self.root)} ({_first_line(error)})"
                ) from None
            self._open[path] = file
        return file

    @property
    def main(self) -> h5py.File:
        if self._main is None:
            self._main = self.open(self.main_path, self.root)
        return self._main

    def close(self) -> None:
        for file in self._open.values():
            try:
                file.close()
            except Exception:  # noqa: BLE001  (closing a damaged file must not hide the cause)
                pass
        self._open.clear()
        self._resolved.clear()
        self._main = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def check_top_level_links(name: str, files: _Files) -> list[str]:
    """The names in the main file, after checking that each external link among them
    points inside the dataset's folder (its target file is not opened). O(episodes)."""
    main = files.main
    infos: list[tuple[bytes, int]] = []
    main.id.links.iterate(lambda key, info: infos.append((key, info.type)), info=True)
    checked: set[bytes] = set()
    folder = os.path.dirname(files.main_path)
    for key, kind in infos:
        if kind == h5py.h5l.TYPE_EXTERNAL:
            filename, _ = main.id.links.get_val(key)
            if filename not in checked:
                file_inside(name, files.root, os.fsdecode(filename), folder)
                checked.add(filename)
    return [key.decode("utf-8", "replace") for key, _ in infos]


def _first_link(group: h5py.Group, parts: list[str]) -> tuple[int, int, Any] | None:
    """The first of the links on the path ``parts`` under ``group`` that is not a hard link,
    as (its position, its type, its value), or None when all are hard links. Read with
    h5py's low-level API without following any: each prefix is looked up only once the
    links before it are known to be hard links (HDF5 follows what lies on a lookup path)."""
    links = group.id.links
    for i in range(len(parts)):
        key = "/".join(parts[: i + 1]).encode()
        try:
            exists = links.exists(key)
        except (KeyError, ValueError, RuntimeError, TypeError):
            exists = False  # a prefix is an array, not a group
        if not exists:
            raise KeyError("/".join(parts[: i + 1]))
        kind = links.get_info(key).type
        if kind != h5py.h5l.TYPE_HARD:
            return i, kind, links.get_val(key)
    return None


def follow(files: _Files, name: str, start: h5py.Group, path: str) -> h5py.HLObject:
    """The object at ``path`` (absolute in ``start``'s file, or relative to ``start``),
    following soft links and external links itself: an external link's file is opened
    only when inside the dataset's folder. At most ``MAX_LINK_HOPS`` links."""
    node = start.file["/"] if path.startswith("/") else start
    parts = [p for p in path.split("/") if p]
    hops = 0
    while parts:
        if not isinstance(node, h5py.Group):
            raise KeyError(path)
        found = _first_link(node, parts)
        if found is None:
            return node["/".join(parts)]
        i, kind, value = found
        if i:
            node = node["/".join(parts[:i])]
        parts = parts[i + 1 :]
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise DatasetError(
                f"dataset {name!r} is corrupt: {path!r} goes through more than "
                f"{MAX_LINK_HOPS} links (a loop?)"
            )
        if kind == h5py.h5l.TYPE_SOFT:
            target = os.fsdecode(value)
            node = node.file["/"] if target.startswith("/") else node
        elif kind == h5py.h5l.TYPE_EXTERNAL:
            filename, target = (os.fsdecode(v) for v in value)
            # files are opened by their real path, so the link's folder is that path's
            node = files.open(filename, os.path.dirname(node.file.filename))["/"]
        else:
            raise DatasetError(f"dataset {name!r} is corrupt: {path!r} is a user-defined link")
        parts = [p for p in target.split("/") if p] + parts
    return node


def strict_child(name: str, where: str, group: h5py.Group, key: str) -> h5py.HLObject:
    """``group[key]`` through hard links only (the contract's episodes hold no other link),
    refusing an array stored outside the file or under a second name."""
    parts = [p for p in key.split("/") if p]
    found = _first_link(group, parts)
    if found is not None:
        _, kind, value = found
        what = "an external link" if kind == h5py.h5l.TYPE_EXTERNAL else "a soft link"
        target = ":".join(os.fsdecode(v) for v in (value if isinstance(value, tuple) else [value]))
        raise DatasetError(
            f"dataset {name!r} is corrupt: {where}: {key!r} is {what} (to {target!r}); "
            "an episode's arrays are stored in its own group (hard links only)"
        )
    for i in range(len(parts)):  # no object on the way has a second name (an alias)
        prefix = "/".join(parts[: i + 1])
        if h5py.h5o.get_info(group.id, prefix.encode()).rc != 1:
            raise DatasetError(
                f"dataset {name!r} is corrupt: {where}: {prefix!r} has several names (it is "
                "another episode's too); the contract stores each array once, in the episode's "
                "own group"
            )
    node = group["/".join(parts)]
    if isinstance(node, h5py.Dataset):
        check_storage(name, where, key, node)
    return node


def check_storage(name: str, where: str, key: str, array: h5py.Dataset) -> None:
    """Refuse an array whose data lives outside the file (external raw files, a virtual
    dataset)."""
    plist = array.id.get_create_plist()
    how = None
    if plist.get_external_count() > 0:
        how = "is stored in external raw files"
    elif plist.get_layout() == h5py.h5d.VIRTUAL:
        how = "is a virtual dataset (its data lives in other files)"
    if how is not None:
        raise DatasetError(
            f"dataset {name!r} is corrupt: {where}: {key!r} {how}; the contract stores each "
            "array once, in the episode's own group"
        )


def walk_links(name: str, where: str, group: h5py.Group, prefix: str = "") -> list[str]:
    """Every array under ``group`` (names relative to it), checking every link on the way
    (``strict_child``'s rules); for ``verify``, which reads every array Minari would."""
    keys = []
    for key in group:
        full = f"{prefix}{key}"
        child = strict_child(name, where, group, key)
        if isinstance(child, h5py.Group):
            keys += walk_links(name, where, child, f"{full}/")
        else:
            keys.append(full)
    return keys
