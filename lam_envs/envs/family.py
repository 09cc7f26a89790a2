"""Environment families: what an environment brings to lam-envs, declared in one place.

A family (``EnvFamily``) names its configuration, its single and native vector
environment classes and the Gymnasium ids it registers (each id a preset of the config).
The collector, the policies, the dataset reader, scoring and the benchmark ask the family
(``family_of``) instead of branching on an environment's name, so a new environment is a
module that declares a family and calls :func:`register_family`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import register, registry

#: Steps before Gymnasium's TimeLimit truncates an episode, for every registered id.
DEFAULT_EPISODE_STEPS = 200


@dataclass(frozen=True)
class EnvFamily:
    """One environment family.

    name: short name (``"grid"``, ``"linear"``), used in dataset metadata and tables.
    config: the configuration dataclass (``preset=`` and keyword overrides build it).
    env, vector_env: the single and native vector environment classes.
    ids: every Gymnasium id the family registers -> its preset (None: the defaults).
    presets: preset name -> the config fields it sets.
    """

    name: str
    config: type
    env: type
    vector_env: type
    ids: Mapping[str, str | None]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def entry_point(self, vector: bool = False) -> str:
        cls = self.vector_env if vector else self.env
        return f"{cls.__module__}:{cls.__qualname__}"


FAMILIES: dict[str, EnvFamily] = {}
_BY_ID: dict[str, EnvFamily] = {}


def register_family(family: EnvFamily, *, replace: bool = False) -> EnvFamily:
    """Register ``family`` and its Gymnasium ids (``max_episode_steps`` 200, the native
    vector env as ``vector_entry_point``). A name or id already registered by another
    family, or by another package, is refused unless ``replace``."""
    if not isinstance(family, EnvFamily):
        raise TypeError(f"register_family takes an EnvFamily, got {type(family).__name__}")
    old = FAMILIES.get(family.name)
    if old is not None and old != family and not replace:
        raise ValueError(
            f"an environment family named {family.name!r} is already registered; "
            "pass replace=True to replace it"
        )
    for env_id, preset in family.ids.items():
        owner = _BY_ID.get(env_id)
        if owner is not None and owner.name != family.name and not replace:
            raise ValueError(f"id {env_id!r} is already registered by family {owner.name!r}")
        if owner is None and env_id in registry and not replace:
            raise ValueError(f"id {env_id!r} is already registered with Gymnasium")
        if preset is not None and preset not in family.presets:
            raise ValueError(
                f"id {env_id!r} names preset {preset!r}, which family {family.name!r} does "
                f"not have; presets: {', '.join(family.presets) or 'none'}"
            )
    FAMILIES[family.name] = family
    for env_id, preset in family.ids.items():
        _BY_ID[env_id] = family
        if env_id in registry:
            del registry[env_id]
        register(
            id=env_id,
            entry_point=family.entry_point(),
            vector_entry_point=family.entry_point(vector=True),
            max_episode_steps=DEFAULT_EPISODE_STEPS,
            kwargs={} if preset is None else {"preset": preset},
        )
    return family


def env_ids() -> dict[str, tuple[str, str | None]]:
    """Every registered id -> (family name, preset or None)."""
    return {i: (f.name, f.ids[i]) for i, f in _BY_ID.items()}


def family_of(env: str | gym.Env | gym.vector.VectorEnv | Any) -> EnvFamily:
    """The family of a registered id, or of an environment (single or vector, through
    wrappers) or its dynamics; ``ValueError`` for anything lam-envs does not know."""
    if isinstance(env, str):
        if env in _BY_ID:
            return _BY_ID[env]
        raise ValueError(
            f"unknown environment id {env!r}; registered ids: {', '.join(sorted(_BY_ID))}"
        )
    inner = getattr(env, "unwrapped", env)
    for family in FAMILIES.values():
        if isinstance(inner, family.env | family.vector_env):
            return family
        config = getattr(getattr(inner, "dynamics", inner), "config", None)
        if isinstance(config, family.config):
            return family
    if isinstance(inner, gym.vector.VectorEnv):
        try:  # Gymnasium's sync or async vector env over our single envs
            return family_of(inner.get_attr("dynamics")[0])
        except (AttributeError, IndexError, ValueError):
            pass
    raise ValueError(
        f"{env!r} is not an environment of a registered lam-envs family ({', '.join(FAMILIES)})"
    )
