"""The dataset contract, checked in one place: every reader of the package (``LAMDataset``,
so training, the pipeline and the export) and ``python -m lam_envs.verify`` go through
:class:`ContractReader`, so what is refused cannot differ between them.

What a dataset of ``python -m lam_envs.collect`` is, and what is checked of it:

- its files: ``metadata.json`` and ``main_data.hdf5`` in its data folder, whose
  ``episode_{i}`` entries are groups or HDF5 external links into shard files of the same
  folder. Every file the dataset names is resolved here (``os.path.realpath``: symlinks
  too) and refused when it leaves the folder, *before* it is opened, with the same message
  whether the target exists or not. HDF5 never follows a link itself: the reader resolves
  each external or soft link and opens the target file only once it is known to be inside.
  Inside an episode every link is a hard link, no array is stored in external raw files or
  as a virtual dataset, and no array has a second name (another episode's array);
- its metadata (checked at open, O(1)): the contract version, the environment spec, the
  observation and action spaces, and every field the package reads, for type and range;
- its episodes (checked when read, per episode, vectorised): ``id`` and ``total_steps``
  attributes, the dtype and shape of each array against the spaces, finite observations
  within the observation space, actions that are the sentinel (-1, or a row of NaN) or a
  valid action, a boolean label mask that agrees with the sentinels, finite rewards and
  oracle fields.

Any failure is a :class:`DatasetError` naming the dataset, the episode and the field, the
bad value and what is allowed. This module needs numpy and h5py, never torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

import lam_envs
from lam_envs._outputs import check_path
from lam_envs.validate import check_int

#: The oldest dataset contract version this package reads; versions from here up to
#: ``lam_envs.collect.CONTRACT_VERSION`` share the layout read here.
OLDEST_CONTRACT_VERSION = 1
MAIN_FILE = "main_data.hdf5"
METADATA_FILE = "metadata.json"
#: Links followed from one episode entry to its group at most (HDF5's own default limit).
MAX_LINK_HOPS = 16
#: Values in one observation at most: a metadata shape beyond this is not a dataset of ours
#: (and would make readers allocate absurd arrays).
MAX_OBSERVATION_SIZE = 2**26
#: Keys of an episode read per step (L rows); every other array has L + 1 rows.
PER_STEP = ("actions", "rewards", "terminations", "truncations")
LABEL_MASK = "infos/label_mask"
#: What a label fraction counts: single transitions, or whole episodes.
LABEL_UNITS = ("transition", "episode")

#: Environment arguments renamed since a dataset may have been collected, by environment
#: kind: old name -> new (same law). Datasets of earlier versions roll out as they were.
RENAMED_ENV_KWARGS = {
    # GridLAM's noise row showing the action's pattern: not a distractor (it is the action)
    "grid": {"distractor_correlation": "action_leak"},
}


class DatasetError(ValueError):
    """A dataset that is missing, corrupt, or not one lam-envs made."""


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


# ------------------------------------------------------------------ metadata


@dataclass(frozen=True)
class Box:
    """A Box space of the metadata: dtype, shape and bounds (arrays broadcast to shape)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    low: np.ndarray
    high: np.ndarray

    def bounds_text(self) -> str:
        low, high = np.unique(self.low), np.unique(self.high)
        lo = f"{low[0]:g}" if len(low) == 1 else f"{low.min():g}..."
        hi = f"{high[0]:g}" if len(high) == 1 else f"...{high.max():g}"
        return f"[{lo}, {hi}]"


@dataclass(frozen=True)
class Discrete:
    dtype: np.dtype
    n: int
    start: int


def _space(name: str, field: str, text: Any) -> Box | Discrete:
    """A space serialised by Minari (JSON), read without Minari and checked."""
    bad = f"dataset {name!r} is corrupt: metadata field {field!r}"
    try:
        spec = json.loads(text) if isinstance(text, str) else None
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
        kind = spec.get("type")
        dtype = np.dtype(spec.get("dtype"))
        if kind == "Discrete":
            if dtype.kind not in "iu":
                raise ValueError(f"dtype {dtype} is not an integer type")
            n = check_int("n", spec.get("n"), low=1, high=2**31)
            start = check_int("start", spec.get("start", 0), low=-(2**31), high=2**31)
            return Discrete(dtype, n, start)
        if kind != "Box":
            raise ValueError(f"type {kind!r} is not Box or Discrete")
        if dtype.kind != "f":
            raise ValueError(f"dtype {dtype} is not a float type")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not shape:
            raise ValueError(f"shape {shape!r} is not a list of sizes")
        shape = tuple(check_int("shape", s, low=1, high=MAX_OBSERVATION_SIZE) for s in shape)
        if math.prod(shape) > MAX_OBSERVATION_SIZE:
            raise ValueError(f"shape {shape} holds more than {MAX_OBSERVATION_SIZE:,} values")
        low = np.broadcast_to(np.asarray(spec.get("low"), dtype=np.float64), shape)
        high = np.broadcast_to(np.asarray(spec.get("high"), dtype=np.float64), shape)
        if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
            raise ValueError("its bounds are NaN or low > high")
        return Box(dtype, shape, low, high)
    except (ValueError, TypeError, OverflowError) as error:
        raise DatasetError(f"{bad} is not a valid space ({_first_line(error)})") from None


def check_contract_version(name: str, version: Any) -> int:
    from lam_envs.collect import CONTRACT_VERSION

    if isinstance(version, bool) or not isinstance(version, int):
        raise DatasetError(
            f"dataset {name!r} is corrupt: metadata field 'lam_envs.contract_version' is "
            f"{version!r}, expected an integer"
        )
    if version > CONTRACT_VERSION:
        raise DatasetError(
            f"dataset {name!r} has contract version {version}, newer than this lam-envs "
            f"reads ({OLDEST_CONTRACT_VERSION} to {CONTRACT_VERSION}): upgrade lam-envs"
        )
    if version < OLDEST_CONTRACT_VERSION:
        raise DatasetError(
            f"dataset {name!r} has contract version {version}, older than this lam-envs "
            f"reads ({OLDEST_CONTRACT_VERSION} to {CONTRACT_VERSION}): collect it again "
            "with `python -m lam_envs.collect`"
        )
    return version


def parse_env_spec(name: str, text: Any) -> gym.envs.registration.EnvSpec:
    """The metadata's ``env_spec``, parsed without importing anything it names."""
    if text is None:
        raise DatasetError(f"dataset {name!r} is corrupt: metadata field 'env_spec' is missing")
    try:
        spec = gym.envs.registration.EnvSpec.from_json(text)
        if not isinstance(spec.id, str) or not isinstance(spec.kwargs, dict):
            raise ValueError("its 'id' is not a string or its 'kwargs' not a table")
        if spec.max_episode_steps is not None:
            check_int("max_episode_steps", spec.max_episode_steps, low=1)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatasetError(
            f"dataset {name!r} is corrupt: metadata field 'env_spec' is not a Gymnasium "
            f"environment spec ({detail[:200]})"
        ) from None
    kind = lam_envs.ENV_IDS.get(spec.id, ("?",))[0]
    for old, new in RENAMED_ENV_KWARGS.get(kind, {}).items():
        if old in spec.kwargs and new not in spec.kwargs:
            spec.kwargs[new] = spec.kwargs.pop(old)
    return spec


def _field(name: str, field: str, value: Any, what: str, ok: bool) -> None:
    if not ok:
        raise DatasetError(
            f"dataset {name!r} is corrupt: metadata field {field!r} is {value!r:.80}, "
            f"expected {what}"
        )


def _is_int(value: Any, low: int, high: int) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value == int(value)
        and low <= value <= high
    )


def _is_fraction(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def check_metadata_fields(name: str, metadata: dict[str, Any]) -> None:
    """Type and range of every metadata field the package reads (and copies into
    exports). The totals are checked against the episodes by the reader."""
    big = 2**62
    f = lambda field, what, ok: _field(name, field, metadata.get(field), what, ok)  # noqa: E731
    f("total_episodes", "an integer >= 1", _is_int(metadata.get("total_episodes"), 1, big))
    f("total_steps", "an integer >= 1", _is_int(metadata.get("total_steps"), 1, big))
    if "dataset_id" in metadata:
        f("dataset_id", "a string", isinstance(metadata["dataset_id"], str))
    if "data_format" in metadata:
        f("data_format", "'hdf5'", metadata["data_format"] == "hdf5")
    if "dataset_size" in metadata:
        size = metadata["dataset_size"]
        ok = isinstance(size, int | float) and not isinstance(size, bool)
        f("dataset_size", "a finite size in MB >= 0", ok and math.isfinite(size) and size >= 0)
    ours = metadata["lam_envs"]
    steps = metadata["total_steps"]
    g = lambda field, what, ok: _field(  # noqa: E731
        name, f"lam_envs.{field}", ours.get(field), what, ok
    )
    if "package_version" in ours:
        g("package_version", "a string", isinstance(ours["package_version"], str))
    if "labelled" in ours:
        g("labelled", f"an integer in [0, {steps}]", _is_int(ours["labelled"], 0, steps))
    if "shards" in ours:
        episodes = metadata["total_episodes"]
        g("shards", f"an integer in [1, {episodes}]", _is_int(ours["shards"], 1, episodes))
    if "episodes_per_block" in ours:
        g("episodes_per_block", "an integer >= 1", _is_int(ours["episodes_per_block"], 1, big))
    collect = ours.get("collect")
    if collect is None:
        return
    g("collect", "a table", isinstance(collect, dict))
    c = lambda field, what, ok: _field(  # noqa: E731
        name, f"lam_envs.collect.{field}", collect.get(field), what, ok
    )
    for key in ("episodes", "episode_length"):
        if key in collect:
            c(key, "an integer >= 1", _is_int(collect[key], 1, big))
    if collect.get("transitions") is not None:
        c("transitions", "null or an integer >= 1", _is_int(collect["transitions"], 1, big))
    if "seed" in collect:
        c("seed", "an integer >= 0", _is_int(collect["seed"], 0, big))
    if "label_fraction" in collect:
        c("label_fraction", "a number in [0, 1]", _is_fraction(collect["label_fraction"]))
    for knob in ("epsilon", "chi"):
        if collect.get(knob) is not None:
            c(knob, "null or a number in [0, 1]", _is_fraction(collect[knob]))
    if "label_unit" in collect:
        c("label_unit", f"one of {LABEL_UNITS}", collect["label_unit"] in LABEL_UNITS)
    if "full_labels" in collect:
        c("full_labels", "true or false", isinstance(collect["full_labels"], bool))
    for key in ("env", "policy", "dataset_id"):
        if key in collect:
            c(key, "a string", isinstance(collect[key], str))
    if collect.get("preset") is not None:
        c("preset", "null or a string", isinstance(collect["preset"], str))
    if "env_kwargs" in collect:
        c("env_kwargs", "a table", isinstance(collect["env_kwargs"], dict))


# ------------------------------------------------------------------ the reader


class ContractReader:
    """A dataset opened against the contract: metadata and links checked at open
    (O(episodes), no array read but episode 0's), every episode checked when read.

    Attributes: ``name`` (as given), ``data_path``, ``metadata``, ``dataset_id``,
    ``env_spec``, ``observation_space`` (:class:`Box`), ``action_space`` (:class:`Box`
    or :class:`Discrete`), ``discrete``, ``episodes`` (int64 indices 0..n-1),
    ``episode_length`` (L), ``observation_shape``.
    """

    def __init__(self, dataset: str | Path):
        self.name = name = str(dataset)
        self.data_path = resolve_data_path(dataset)
        root = os.path.realpath(self.data_path)
        if self.data_path.name == "data":  # a dataset's data folder lies in the dataset's
            parent = os.path.realpath(self.data_path.parent)
            if os.path.commonpath([parent, root]) != parent:
                raise DatasetError(
                    f"dataset {name!r} refers to its data folder, which resolves outside its "
                    f"own folder {parent!r}; a dataset reads only files inside its folder "
                    "(refused before reading)"
                )
        path = file_inside(name, root, METADATA_FILE, root)
        try:
            with open(path, encoding="utf-8") as stream:
                self.metadata: dict[str, Any] = json.load(stream)
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"dataset {name!r} is corrupt: metadata.json: {_first_line(error)}"
            ) from None
        if not isinstance(self.metadata, dict) or not isinstance(
            self.metadata.get("lam_envs"), dict
        ):
            raise DatasetError(
                f"dataset {name!r} was not made by lam_envs.collect (no 'lam_envs' metadata); "
                "its partial labels and oracle fields are unknown"
            )
        self.dataset_id = self.metadata.get("dataset_id", name)
        check_contract_version(name, self.metadata["lam_envs"].get("contract_version"))
        self.env_spec = parse_env_spec(name, self.metadata.get("env_spec"))
        check_metadata_fields(name, self.metadata)
        observation_space = _space(
            name, "observation_space", self.metadata.get("observation_space")
        )
        if not isinstance(observation_space, Box):
            raise DatasetError(
                f"dataset {name!r} is corrupt: metadata field 'observation_space' is not a Box"
            )
        self.observation_space: Box = observation_space
        self.action_space = _space(name, "action_space", self.metadata.get("action_space"))
        self.discrete = isinstance(self.action_space, Discrete)
        _check_kind_spaces(name, self.env_spec, self.observation_space, self.action_space)
        collect = self.metadata["lam_envs"].get("collect") or {}
        self.full_labels = bool(collect.get("full_labels", False))
        self.observation_shape = self.observation_space.shape
        self._open()

    def _open(self) -> None:
        name = self.name
        self._files = _Files(name, self.data_path)
        try:
            keys = check_top_level_links(name, self._files)
            indices = []
            for key in keys:
                number = key.removeprefix("episode_")
                if number == key or not number.isdigit() or str(int(number)) != number:
                    raise DatasetError(
                        f"dataset {name!r} is corrupt: main_data.hdf5 holds {key!r:.80}, "
                        "not an episode ('episode_N')"
                    )
                indices.append(int(number))
        except DatasetError:
            self.close()
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
            self.close()
            raise DatasetError(
                f"dataset {name!r} is corrupt: cannot read main_data.hdf5 ({_first_line(error)})"
            ) from None
        self.episodes = np.array(sorted(indices), dtype=np.int64)
        n = len(self.episodes)
        if n == 0 or not np.array_equal(self.episodes, np.arange(n)):
            raise DatasetError(
                f"dataset {name!r} is corrupt: its episodes are not numbered 0 to "
                f"{max(n - 1, 0)} ({n} found)"
            )
        length = _attribute(self, 0, self.group(0), "total_steps")
        if not _is_int(length, 1, 2**62) or isinstance(length, float):
            raise DatasetError(
                f"dataset {name!r} is corrupt: episode 0 has attribute 'total_steps' = "
                f"{length!r:.40}, expected an integer >= 1"
            )
        self.episode_length = int(length)
        self._check_totals()
        # The oracle fields' dtypes and per-row shapes: those of episode 0, which the last
        # episode must share (O(1) here); every episode read is checked against them.
        self.oracle_schema = self._schema(0)
        last = n - 1
        self.episode(0, ("observations", "actions"))  # episode 0 sized the others
        if last and self._schema(last) != self.oracle_schema:
            raise DatasetError(
                f"dataset {name!r} is corrupt: the oracle fields of episode {last} "
                f"({_schema_text(self._schema(last))}) differ from episode 0's "
                f"({_schema_text(self.oracle_schema)})"
            )

    def _check_totals(self) -> None:
        """Refuse metadata that disagrees with the episodes on disk: every reader sizes its
        arrays from these numbers, so a wrong one would misalign transitions silently.
        Each episode's own ``total_steps`` and arrays are checked when it is read."""
        n, length = len(self.episodes), self.episode_length
        collect = self.metadata["lam_envs"].get("collect")
        collect = collect if isinstance(collect, dict) else {}
        claims = [
            ("total_episodes", self.metadata.get("total_episodes"), n),
            ("total_steps", self.metadata.get("total_steps"), n * length),
            ("lam_envs.collect.episode_length", collect.get("episode_length"), length),
            ("lam_envs.collect.episodes", collect.get("episodes"), n),
        ]
        for field, claimed, actual in claims:
            optional = field.startswith("lam_envs.") and claimed is None
            if claimed != actual and not optional:
                raise DatasetError(
                    f"dataset {self.name!r} is corrupt: metadata field {field!r} is "
                    f"{claimed!r}, but the episodes on disk give {actual} ({n} episodes of "
                    f"{length} steps)"
                )

    def _schema(self, index: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """{oracle field: (dtype, shape of one row)} of one episode, from HDF5's metadata."""
        where = self._where(index)
        group = self.group(index)
        try:
            oracle = strict_child(self.name, where, group, "infos/oracle")
            schema = {}
            for key in oracle:
                node = strict_child(self.name, where, oracle, key)
                if not isinstance(node, h5py.Dataset) or node.ndim == 0:
                    raise DatasetError(
                        f"dataset {self.name!r} is corrupt: {where}: 'infos/oracle/{key}' is "
                        "not an array of rows"
                    )
                schema[key] = (node.dtype, node.shape[1:])
        except (KeyError, OSError, RuntimeError, TypeError) as error:
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} lacks infos/oracle "
                f"({_first_line(error)})"
            ) from None
        return schema

    def __getstate__(self):  # h5py files do not pickle; reopen on the other side
        state = self.__dict__.copy()
        state.pop("_files", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._files = _Files(self.name, self.data_path)

    def close(self) -> None:
        self._files.close()

    # -------------------------------------------------------------- episodes

    def _where(self, index: int) -> str:
        return f"episode {index}"

    def group(self, index: int) -> h5py.Group:
        """The group of episode ``index``, reached through checked links; its ``id``
        attribute must be ``index`` (so no entry can alias another episode)."""
        where = self._where(index)
        try:
            group = follow(self._files, self.name, self._files.main, f"/episode_{index}")
            if not isinstance(group, h5py.Group):
                raise DatasetError(f"dataset {self.name!r} is corrupt: {where} is not a group")
            stored = _attribute(self, index, group, "id")
        except (KeyError, OSError, RuntimeError, TypeError) as error:
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} cannot be read ({_first_line(error)})"
            ) from None
        except DatasetError:
            raise
        except ValueError as error:
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} cannot be read ({_first_line(error)})"
            ) from None
        if not _same_int(stored, index):
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} holds the episode with id "
                f"{stored!r:.40} (a link to another episode?)"
            )
        return group

    def oracle_names(self) -> list[str]:
        """The names of the oracle fields every episode holds."""
        return list(self.oracle_schema)

    def episode(self, index: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The arrays ``keys`` of episode ``index``, each checked against the contract
        (rows, dtype, shape, finiteness, bounds; the label mask against the sentinels)."""
        keys = tuple(keys)
        wanted = keys
        if ("actions" in keys) != (LABEL_MASK in keys):  # they are checked together
            wanted = (*keys, LABEL_MASK if "actions" in keys else "actions")
        where = self._where(index)
        group = self.group(index)
        try:
            steps = _attribute(self, index, group, "total_steps")
            arrays = {}
            for key in wanted:
                node = strict_child(self.name, where, group, key)
                if not isinstance(node, h5py.Dataset):
                    raise KeyError(key)
                arrays[key] = node[()]
        except DatasetError:
            raise
        except KeyError as error:
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} lacks {_first_line(error)}"
            ) from None
        except (OSError, RuntimeError, TypeError, ValueError) as error:
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} cannot be read ({_first_line(error)})"
            ) from None
        if not _same_int(steps, self.episode_length):
            raise DatasetError(
                f"dataset {self.name!r} is corrupt: {where} has attribute 'total_steps' = "
                f"{steps!r:.40}, but every episode of the dataset has {self.episode_length} steps"
            )
        check_episode_arrays(self, index, arrays)
        return {key: arrays[key] for key in keys}


def _check_kind_spaces(
    name: str, spec: gym.envs.registration.EnvSpec, observations: Box, actions: Box | Discrete
) -> None:
    """The spaces of an environment lam_envs registers are known: GridLAM acts with
    Discrete(5) on images in [0, high], high the largest pixel value its parameters allow
    (1 without noise or distractors, the noise intensity, ...); LinearLAM with vectors on
    vectors. Metadata that says otherwise was edited (a wider box would let wrong
    observations through)."""
    from lam_envs.grid import NUM_ACTIONS, GridLAMConfig

    env_id = spec.id
    kind = lam_envs.ENV_IDS.get(env_id, ("?",))[0]
    problem = None
    if kind == "grid":
        parameters = {k: v for k, v in spec.kwargs.items() if k not in ("render_mode",)}
        try:
            high = GridLAMConfig.from_preset(
                parameters.pop("preset", None), **parameters
            ).observation_high
        except (TypeError, ValueError) as error:
            raise DatasetError(
                f"dataset {name!r} is corrupt: its environment's parameters are not "
                f"GridLAM's ({_first_line(error)})"
            ) from None
        if not (isinstance(actions, Discrete) and (actions.n, actions.start) == (NUM_ACTIONS, 0)):
            problem = f"'action_space' is not Discrete({NUM_ACTIONS})"
        elif not ((observations.low == 0).all() and (observations.high == high).all()):
            problem = f"'observation_space' is not the box [0, {high:g}]"
    elif kind == "linear":
        if not isinstance(actions, Box) or len(actions.shape) != 1:
            problem = "'action_space' is not a Box of vectors"
        elif len(observations.shape) != 1:
            problem = "'observation_space' is not a Box of vectors"
    if problem is not None:
        raise DatasetError(
            f"dataset {name!r} is corrupt: metadata field {problem}, as {env_id} has"
        )


def _schema_text(schema: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> str:
    return ", ".join(f"{k} {d}{list(s)}" for k, (d, s) in schema.items())[:300]


def _attribute(reader: ContractReader, index: int, group: h5py.Group, key: str) -> Any:
    try:
        value = group.attrs[key]
    except KeyError:
        raise DatasetError(
            f"dataset {reader.name!r} is corrupt: episode {index} lacks its attribute {key!r}"
        ) from None
    return (
        value.item()
        if isinstance(value, np.generic | np.ndarray) and np.size(value) == 1
        else value
    )


def _same_int(value: Any, expected: int) -> bool:
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool | np.bool_)
        and value == expected
    )


# ------------------------------------------------------------------ episode arrays


def check_episode_arrays(reader: ContractReader, index: int, arrays: dict[str, np.ndarray]) -> None:
    """Refuse an episode's arrays that break the contract (see the module doc)."""
    name, length = reader.name, reader.episode_length
    where = f"dataset {name!r} is corrupt: episode {index}"
    for key, array in arrays.items():
        rows = length if key in PER_STEP else length + 1
        if not isinstance(array, np.ndarray) or array.ndim == 0 or len(array) != rows:
            got = len(array) if isinstance(array, np.ndarray) and array.ndim else 0
            raise DatasetError(
                f"{where}: {key!r} has {got} rows, expected {rows} for {length} steps"
            )
        if array.dtype.kind not in "biuf":
            raise DatasetError(f"{where}: {key!r} has dtype {array.dtype}, not a number type")
    obs = arrays.get("observations")
    if obs is not None:
        _check_box(where, "observations", obs, reader.observation_space, "observation space")
    for key in ("terminations", "truncations"):
        if key in arrays:
            _expect(where, key, arrays[key], np.dtype(bool), (length,))
    if "rewards" in arrays:
        # float64, as Gymnasium returns rewards and collect writes them
        _expect(where, "rewards", arrays["rewards"], np.dtype(np.float64), (length,))
        _finite(where, "rewards", arrays["rewards"])
    if "actions" in arrays:
        labelled = _check_actions(reader, where, "actions", arrays["actions"])
        mask = arrays[LABEL_MASK]
        _expect(where, LABEL_MASK, mask, np.dtype(bool), (length + 1,))
        mask = mask[1:]  # row t + 1 marks the action of step t (row 0: the reset)
        shown_hidden = mask & ~labelled
        if shown_hidden.any():
            t = int(np.flatnonzero(shown_hidden)[0])
            raise DatasetError(
                f"{where}: {LABEL_MASK!r} marks step {t} labelled, but its action is the "
                "sentinel (unlabelled); the mask must agree with the actions"
            )
        hidden_shown = ~mask & labelled
        if hidden_shown.any() and not reader.full_labels:
            t = int(np.flatnonzero(hidden_shown)[0])
            raise DatasetError(
                f"{where}: {LABEL_MASK!r} marks step {t} unlabelled, but its action is not the "
                "sentinel (the dataset was not collected with --full-labels)"
            )
    for key, array in arrays.items():
        if not key.startswith("infos/oracle/"):
            continue
        field = key.removeprefix("infos/oracle/")
        expected = reader.oracle_schema.get(field)
        if expected is None or (array.dtype, array.shape[1:]) != expected:
            wanted = "no such field" if expected is None else f"{expected[0]}{list(expected[1])}"
            raise DatasetError(
                f"{where}: {key!r} is {array.dtype}{list(array.shape[1:])} per row, but the "
                f"dataset's oracle field is {wanted} (episode 0's)"
            )
        if key == "infos/oracle/action":  # row 0 (the reset) holds the sentinel
            known = _check_actions(reader, where, key, array[1:])
            if not known.all():
                t = int(np.flatnonzero(~known)[0])
                raise DatasetError(f"{where}: {key!r} holds the sentinel at step {t}")
        elif array.dtype.kind == "f":
            _finite(where, key, array)


def _expect(where: str, key: str, array: np.ndarray, dtype: np.dtype, shape: tuple) -> None:
    if array.dtype != dtype or array.shape != shape:
        raise DatasetError(
            f"{where}: {key!r} has dtype {array.dtype} and shape {array.shape}, expected "
            f"{dtype} of shape {shape}"
        )


def _finite(where: str, key: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        at = np.unravel_index(int(np.flatnonzero(bad)[0]), array.shape)
        raise DatasetError(
            f"{where}: {key!r} holds {array[at]} at row {int(at[0])}; only finite numbers "
            "are allowed"
        )


def _check_box(where: str, key: str, array: np.ndarray, space: Box, what: str) -> None:
    """Dtype, shape (rows, *space.shape), finite values within [low, high]."""
    if array.dtype != space.dtype or array.shape[1:] != space.shape:
        raise DatasetError(
            f"{where}: {key!r} has dtype {array.dtype} and shape {array.shape[1:]} per row, "
            f"but the {what} is {space.dtype} of shape {space.shape}"
        )
    _finite(where, key, array)
    outside = (array < space.low) | (array > space.high)
    if outside.any():
        at = np.unravel_index(int(np.flatnonzero(outside)[0]), array.shape)
        raise DatasetError(
            f"{where}: {key!r} holds {array[at]} at row {int(at[0])}, outside the {what} "
            f"{space.bounds_text()} (low {space.low[at[1:]]:g}, high {space.high[at[1:]]:g})"
        )


def _check_actions(reader: ContractReader, where: str, key: str, actions: np.ndarray) -> np.ndarray:
    """Check actions (rows, ...) against the action space; return which rows are labelled
    (not the sentinel: -1 for a Discrete space, a row of NaN for a Box)."""
    space = reader.action_space
    if isinstance(space, Discrete):
        if actions.dtype != space.dtype or actions.ndim != 1:
            raise DatasetError(
                f"{where}: {key!r} has dtype {actions.dtype} and shape {actions.shape}, but the "
                f"action space is Discrete({space.n}) of {space.dtype} (one index per step)"
            )
        labelled = actions != -1
        bad = labelled & ((actions < space.start) | (actions >= space.start + space.n))
        if bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{where}: {key!r} holds {actions[t]} at step {t}; allowed: the actions "
                f"{space.start} to {space.start + space.n - 1}, or -1 (unlabelled)"
            )
        return labelled
    if actions.dtype != space.dtype or actions.shape[1:] != space.shape:
        raise DatasetError(
            f"{where}: {key!r} has dtype {actions.dtype} and shape {actions.shape[1:]} per "
            f"step, but the action space is {space.dtype} of shape {space.shape}"
        )
    flat = actions.reshape(len(actions), -1)
    nan = np.isnan(flat)
    partial = nan.any(1) & ~nan.all(1)
    if partial.any():
        t = int(np.flatnonzero(partial)[0])
        raise DatasetError(
            f"{where}: {key!r} at step {t} is partly NaN; an action is either finite or a "
            "row of NaN (unlabelled)"
        )
    labelled = ~nan.all(1)
    rows = flat[labelled]
    _finite(where, key, rows)
    low = space.low.reshape(-1)
    high = space.high.reshape(-1)
    outside = ((rows < low) | (rows > high)).any(1)
    if outside.any():
        t = int(np.flatnonzero(labelled)[int(np.flatnonzero(outside)[0])])
        raise DatasetError(
            f"{where}: {key!r} at step {t} lies outside the action space {space.bounds_text()}"
        )
    return labelled
