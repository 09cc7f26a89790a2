"""The dataset's metadata: contract version, environment spec, spaces and every field the
package reads, checked for type and range."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs.dataset.contract import (
    CONTRACT_VERSION,
    LABEL_UNITS,
    MAX_OBSERVATION_SIZE,
    OLDEST_CONTRACT_VERSION,
    RENAMED_ENTRY_POINTS,
    DatasetError,
)
from lam_envs.dataset.files import _first_line
from lam_envs.envs.family import family_for_id
from lam_envs.utils.validate import check_int

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
    for attribute in ("entry_point", "vector_entry_point"):  # environments that moved
        value = getattr(spec, attribute)
        if isinstance(value, str) and value in RENAMED_ENTRY_POINTS:
            setattr(spec, attribute, RENAMED_ENTRY_POINTS[value])
    family = family_for_id(spec.id)
    for old, new in ({} if family is None else family.renamed_kwargs).items():
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
