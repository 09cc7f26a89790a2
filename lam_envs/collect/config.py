"""What a collection is: ``CollectConfig``, validated once, at construction.

Every field is a flag of ``python -m lam_envs.collect`` and a key of the recipes in
``datasets/``; values come from Python, the command line or TOML, so each is checked for
its type as well as its range (a recipe's ``full_labels = "no"`` is refused, not truthy;
inf and NaN never pass).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import lam_envs
from lam_envs.collect import shards as _shards
from lam_envs.dataset import LABEL_UNITS
from lam_envs.policies import POLICIES
from lam_envs.utils.config import check_fields, option
from lam_envs.utils.outputs import NAME_MAX
from lam_envs.utils.validate import check_choice, check_fraction, check_int, check_keys

NAMESPACE = "lam_envs"  # no '-': AgileRL splits dataset ids on it (ids under lam-envs/ still load)
#: Each policy knob's value when not given: ε = 0.05 is the published correlated policy.
KNOB_DEFAULTS = {"epsilon": 0.05, "chi": 0.0}
#: Keyword arguments the collector passes itself, and the flag that sets each.
RESERVED_ENV_KWARGS = {
    "max_episode_steps": "--episode-length",
    "num_envs": "the collector (one environment per episode of a batch)",
    "preset": "--preset",
    "autoreset": "the collector",
    "disable_env_checker": "the collector",
    "vectorization_mode": "the collector",
    "vector_kwargs": "the collector",
    "wrappers": "the collector",
}


def check_number(name: str, value: Any, integer: bool = False) -> Any:
    """``value`` as a finite Python int (``integer``) or float; numpy scalars and integral
    floats (16.0) are accepted, anything else is refused naming ``name``."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if integer:
        if value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def check_count(name: str, value: Any, low: int) -> int:
    """``value`` as an int >= ``low`` (see ``check_number``)."""
    return check_int(name, check_number(name, value, integer=True), low=low)


def _whole(name: str, value: Any) -> int:
    return check_number(name, value, integer=True)


def _flag(name: str, value: Any) -> bool:
    """A recipe's true/false (numpy's bool too; "no" and 0 are refused, not falsy)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _check_env_kwargs(kwargs: Any) -> dict[str, Any]:
    if not isinstance(kwargs, dict):
        raise ValueError(f"env_kwargs must be a table of KEY = VALUE, got {kwargs!r}")
    for key, value in kwargs.items():
        if key in RESERVED_ENV_KWARGS:
            raise ValueError(
                f"env_kwargs {key!r} clashes with the collector: {key} is set by "
                f"{RESERVED_ENV_KWARGS[key]}"
            )
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, numbers.Real) and not isinstance(item, bool | np.bool_):
                check_number(f"env_kwargs {key!r}", item)
            elif not isinstance(item, str | bool | None):
                raise ValueError(
                    f"env_kwargs {key!r} must be a number, string, boolean or null, got {item!r}"
                )
    return kwargs


@dataclass(frozen=True)
class CollectConfig:
    """What to collect. Validated on construction; every field is also a CLI flag (its help
    and bounds declared with the field) and a recipe key. ``transitions``, when given, sets
    ``episodes`` to ceil(transitions / L): whole episodes, so the collection may round up
    (the summary says so)."""

    env: str = option(
        "GridLAM-v0",
        lambda: "environment id (default GridLAM-v0): " + ", ".join(lam_envs.ENV_IDS),
    )
    preset: str | None = option(
        None,
        "environment preset: none/low/high (grid); iid, other_agents, other_agents_strong "
        "(linear) (default: none given, the environment's defaults)",
    )
    env_kwargs: dict[str, Any] = option(
        dict,
        "environment parameter, repeatable (e.g. -k sigma_exo=2.0 -k d_b=4) (default: none)",
        flags=("--env-kwarg", "-k"),
    )
    policy: str = option(
        "random", lambda: "behaviour policy (default random): " + ", ".join(POLICIES)
    )
    epsilon: float | None = option(  # None: KNOB_DEFAULTS
        None,
        "snaking, snaking-released: probability of a random action (default "
        f"{KNOB_DEFAULTS['epsilon']}, the published correlated policy)",
    )
    chi: float | None = option(  # None: KNOB_DEFAULTS
        None, f"linear: determinism χ, 0 random, 1 a = Π o (default {KNOB_DEFAULTS['chi']})"
    )
    episodes: int = option(500, "number of episodes", low=1, check=_whole)
    episode_length: int = option(200, "steps per episode", low=1, check=_whole)
    transitions: int | None = option(
        None,
        "total transitions instead of --episodes, e.g. 1e6; rounded up to whole episodes "
        "(default: episodes x episode length)",
        low=1,
        check=_whole,
    )
    seed: int = option(0, "seed of rollouts and labels", low=0, check=_whole)
    label_fraction: float = option(
        0.01, "λ, the share of labelled units, in [0, 1]", low=0.0, high=1.0, check=check_number
    )
    label_unit: str = option(
        "transition", "label single transitions or whole episodes", choices=LABEL_UNITS
    )
    full_labels: bool = option(
        False,
        "keep every action (for libraries that cannot handle missing ones); "
        "infos/label_mask still marks the λ subset (default: off)",
        check=_flag,
    )
    dataset_id: str | None = option(
        None, f"Minari id, namespace/name-vN (default: from the flags, {NAMESPACE}/...)"
    )

    def __post_init__(self):
        put = object.__setattr__  # frozen: values are normalised once, here
        for name in ("env", "policy", "label_unit", "preset", "dataset_id"):
            value = getattr(self, name)
            optional = name in ("preset", "dataset_id")
            if not isinstance(value, str) and not (optional and value is None):
                raise ValueError(f"{name} must be a string, got {value!r}")
        check_fields(self)  # the fields' declared bounds: counts, label_fraction, ...
        put(self, "env_kwargs", _check_env_kwargs(self.env_kwargs))
        check_choice("environment", self.env, lam_envs.ENV_IDS)
        check_choice("policy", self.policy, POLICIES)
        if self.transitions is not None:
            put(self, "episodes", -(-self.transitions // self.episode_length))
        knob = POLICIES[self.policy]["knob"]
        for name in ("epsilon", "chi"):
            value = getattr(self, name)
            if value is not None and name != knob:
                raise ValueError(
                    f"--{name} does not apply to policy {self.policy!r}"
                    + (f" (its knob is --{knob})" if knob else " (it has no knob)")
                )
        if knob is not None:
            value = getattr(self, knob)
            value = KNOB_DEFAULTS[knob] if value is None else check_number(knob, value)
            put(self, knob, check_fraction(knob, value))
        units = _shards.label_units(self)
        if self.label_fraction > 0 and units > _shards.LABEL_UNITS_MAX:
            raise ValueError(
                f"label_fraction > 0 over {units:,} {self.label_unit}s: the label sampler "
                f"chooses among at most {_shards.LABEL_UNITS_MAX:,} units; use "
                "--label-unit episode, or collect several datasets"
            )
        if self.dataset_id is not None:
            _check_dataset_id(self.dataset_id)

    @property
    def knobs(self) -> dict[str, float]:
        """The policy's knob and its value (defaults filled in), e.g. {'epsilon': 0.05}."""
        knob = POLICIES[self.policy]["knob"]
        return {} if knob is None else {knob: getattr(self, knob)}

    @property
    def env_kwargs_full(self) -> dict[str, Any]:
        preset = {} if self.preset is None else {"preset": self.preset}
        return {**preset, **self.env_kwargs}

    def default_dataset_id(self) -> str:
        name = self.env.removesuffix("-v0").lower()
        if self.preset:
            name += f"-{self.preset}"
        name += "".join(f"-{k}{_short(v)}" for k, v in sorted(self.env_kwargs.items()))
        name += f"-{self.policy}" + "".join(f"-{k}{_short(v)}" for k, v in self.knobs.items())
        name += f"-{self.episodes}x{self.episode_length}-lab{_short(self.label_fraction)}"
        if self.label_unit == "episode":
            name += "ep"
        name += "-full" if self.full_labels else ""
        return f"{NAMESPACE}/{name.replace('_', '')}-seed{self.seed}-v0"

    def describe(self) -> str:
        """One line: what this collects."""
        env = self.env + (f" (preset {self.preset})" if self.preset else "")
        env += "".join(f" {k}={v}" for k, v in self.env_kwargs.items())
        policy = self.policy + "".join(f" {k} = {v:g}" for k, v in self.knobs.items())
        if self.policy == "snaking" and self.epsilon == KNOB_DEFAULTS["epsilon"]:
            policy += ", the published correlated policy"
        labels = "every action kept" if self.full_labels else "the others hidden"
        return (
            f"{env} under policy {policy}; {self.episodes:,} episodes x "
            f"{self.episode_length} steps = {self.episodes * self.episode_length:,} "
            f"transitions; {self.label_fraction:.4g} of {self.label_unit}s labelled "
            f"({labels}); seed {self.seed}"
        )

    @classmethod
    def from_recipe(cls, path: Path, **overrides: Any) -> CollectConfig:
        """A recipe is a TOML file whose keys are the fields of this class (plus
        ``description``)."""
        name = str(path)
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ValueError(f"recipe file {name!r} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"recipe file {name!r} is a directory, not a TOML file") from None
        except UnicodeDecodeError:
            raise ValueError(f"recipe file {name!r} is not text (a TOML file is UTF-8)") from None
        except OSError as error:
            raise ValueError(f"recipe file {name!r} cannot be read ({error.strerror})") from None
        try:
            recipe = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"recipe file {name!r} is not valid TOML: {error}") from None
        if not isinstance(recipe.pop("description", ""), str):
            raise ValueError(f"recipe {Path(path).name}: description must be a string")
        fields = [f.name for f in dataclasses.fields(cls)]
        check_keys(f"key in recipe {Path(path).name}", recipe, fields)
        if "episodes" in overrides:  # a flag's --episodes beats a recipe's transitions
            recipe.pop("transitions", None)
        try:
            return cls(**{**recipe, **overrides})
        except ValueError as error:
            raise ValueError(f"recipe {Path(path).name}: {error}") from None


def _short(value: Any) -> str:
    """A value as Minari ids allow it (letters, digits, - and _): 0.05 -> 0p05."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace(".", "p").replace("-", "m")


def _check_dataset_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id)
    if match is None or "//" in dataset_id:
        raise ValueError(
            f"invalid dataset id {dataset_id!r}: Minari ids are (namespace/)name-vN with "
            "letters, digits, '-' and '_' (a namespace of 2 characters at least)"
        )
    *namespace, last = dataset_id.split("/")
    name = re.sub(r"-v\d+$", "", last)
    for part, what in [*((p, "namespace part") for p in namespace), (name, "name")]:
        # Minari's pattern lets '-', '_' and an empty name through ('lam_envs/-v0')
        if not re.fullmatch(r"[A-Za-z0-9][\w-]*", part) or part.endswith("-"):
            raise ValueError(
                f"invalid dataset id {dataset_id!r}: its {what} {part!r} must start with a "
                "letter or digit, and not end with '-' (e.g. lam_envs/my-data-v0)"
            )
    if match.group("version") is None:
        raise ValueError(f"dataset id {dataset_id!r} needs a version suffix, e.g. {dataset_id}-v0")
    for part in dataset_id.split("/"):
        if len(part.encode()) > NAME_MAX:
            raise ValueError(
                f"dataset id {dataset_id[:40]!r}... is too long: each '/'-separated part "
                f"becomes a folder name, at most {NAME_MAX} bytes (one has "
                f"{len(part.encode())})"
            )
