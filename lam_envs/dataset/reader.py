"""``ContractReader``: a dataset opened against the contract (metadata and links checked
at open, each episode checked when read)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from lam_envs.dataset.contract import LABEL_MASK, METADATA_FILE, PER_STEP, DatasetError
from lam_envs.dataset.files import (
    _Files,
    _first_line,
    check_top_level_links,
    file_inside,
    follow,
    resolve_data_path,
    strict_child,
)
from lam_envs.dataset.metadata import (
    Box,
    Discrete,
    _is_int,
    _space,
    check_contract_version,
    check_metadata_fields,
    parse_env_spec,
)
from lam_envs.envs.family import family_for_id

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
    """The spaces of an environment lam_envs registers are known: its family says which
    its parameters give (``EnvFamily.check_spaces``; GridLAM acts with Discrete(5) on
    images in [0, high], LinearLAM with vectors on vectors). Metadata that says otherwise
    was edited (a wider box would let wrong observations through)."""
    env_id = spec.id
    family = family_for_id(env_id)
    if family is None or family.check_spaces is None:
        return
    try:
        problem = family.check_spaces(dict(spec.kwargs), observations, actions)
    except (TypeError, ValueError) as error:
        raise DatasetError(
            f"dataset {name!r} is corrupt: its environment's parameters are not those of "
            f"{env_id} ({_first_line(error)})"
        ) from None
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
