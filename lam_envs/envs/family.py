"""Environment families: what an environment brings to lam-envs, declared in one place.

A family (:class:`EnvFamily`) is a plug-in, as a LAM is one: it names its configuration,
its single and native vector environment classes, the Gymnasium ids it registers (each id
a preset of the config), the behaviour policies it supports, the ground truth its ``info``
holds, and what scoring probes a latent for. The collector, the policies, the dataset
reader, the LAMs' data check and scoring ask the family (:func:`family_of`) instead of
branching on an environment's name, so a new environment is a module that declares a
family and calls :func:`register_family`; no file of the package changes.

Adding a family, in short (``tests/test_env_family.py`` does it with a runnable toy):

1. Write its dynamics, a :class:`~lam_envs.envs.base.BatchDynamics` over a batch of
   environments (``reset``, ``step``, ``observations``, ``render_ansi``, ``render_rgb``),
   reading randomness only from the per-environment generators it is given, and setting
   ``self.config``, ``observation_space`` and ``action_space``. Its ``info`` holds the
   ground truth the collector stores under ``infos/oracle``.
2. Subclass :class:`~lam_envs.envs.base.BatchEnv` and
   :class:`~lam_envs.envs.base.BatchVectorEnv`, setting ``dynamics_class`` (the env's
   docstring is its documentation page).
3. Declare the family and register it::

       from lam_envs.envs.family import EnvFamily, PolicySpec, register_family

       @dataclass(frozen=True)
       class DriftConfig:  # DriftDynamics builds it from preset= and keyword arguments
           d: int = 4      # (lam_envs.envs.base.config_from_preset does that)
           sigma: float = 0.1

       class RandomDrift:  # a policy: (observations, rng, info=None) -> actions
           def __init__(self, d): self.d = d
           def __call__(self, obs, rng, info=None):
               return rng.standard_normal((len(obs), self.d), dtype=np.float32)

       register_family(EnvFamily(
           name="drift",
           config=DriftConfig,
           env=DriftEnv,
           vector_env=DriftVectorEnv,
           ids={"Drift-v0": None, "Drift-Loud-v0": "loud"},
           presets={"loud": {"sigma": 1.0}},
           policies={"random": PolicySpec(lambda dyn: RandomDrift(dyn.config.d))},
           oracle_fields=("push",),      # info keys, written to infos/oracle
           probe_targets=("push",),      # scoring reports nmse_push
           data_like=("linear",),        # vectors and continuous actions, as LinearLAM
       ))

Then the package's Python API takes it: ``collect(CollectConfig(env="Drift-v0"))``
(:mod:`lam_envs.collect`) collects it with the family's policies, ``lam_models`` trains
on it every method whose ``kinds`` the family fits, and ``lam_models.evaluate`` scores a
latent on it: ``nmse_action`` and ``nmse_<target>`` for each probe target. The command
lines know the families of the modules they import (the built-in ones);
:func:`unregister_family` removes a family again.

What each field is for:

- ``policies``: policy name -> :class:`PolicySpec` (a factory taking the dynamics and the
  policy's keyword knobs). ``make_policy`` and the collector offer a family the policies
  it lists; a policy name means the same knob in every family that has it.
- ``oracle_fields``: the ``info`` keys every environment of the family returns, so the
  ground truth a dataset of the family must hold; ``moving_fields``: those whose value
  before the step is ground truth too (``Dataset.oracle`` adds ``<field>_before``).
- ``probe_targets``: oracle fields (or ``"o"``, the observation) that scoring probes a
  latent for, each reported as ``nmse_<target>``; ``scores``: named scores of
  :mod:`lam_models.evaluation.scoring` computed on top (``"llo"``, ``"grid_probe_losses"``).
- ``data_like``: other families whose data this family's has the form of (observation
  and action types): LAMs made for them (their ``kinds``) take this family's data too.
- ``renamed_kwargs``: environment arguments renamed since a dataset may have been
  collected, old name -> new (same law); datasets of earlier versions roll out as they
  were.
- ``check_spaces``: ``(env kwargs, observation space, action space) -> problem or None``,
  the spaces a dataset's metadata must state for those arguments (the metadata's
  ``Box``/``Discrete`` of :mod:`lam_envs.dataset.metadata`); raises ``ValueError`` or
  ``TypeError`` when the arguments are not the family's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import register, registry

#: Steps before Gymnasium's TimeLimit truncates an episode, for every registered id.
DEFAULT_EPISODE_STEPS = 200


#: The knobs a policy may have, each from uniformly random (0 or 1) to deterministic.
POLICY_KNOBS = ("epsilon", "chi")


@dataclass(frozen=True)
class PolicySpec:
    """A behaviour policy a family supports.

    make: ``make(dynamics, **knobs) -> policy``, the policy a callable
        ``policy(observations, rng, info=None) -> actions`` on a batch.
    knob: the one knob from uniformly random to deterministic, or None: one of
        ``POLICY_KNOBS`` (``"epsilon"``: the share of uniformly random actions; ``"chi"``:
        the determinism), which the collector sets (``--epsilon``, ``--chi``).
    knobs: every keyword ``make`` takes (the knob among them).
    """

    make: Callable[..., Any]
    knob: str | None = None
    knobs: tuple[str, ...] = ()

    def __post_init__(self):
        if self.knob is not None and self.knob not in POLICY_KNOBS:
            raise ValueError(
                f"a policy's knob must be one of {', '.join(POLICY_KNOBS)} (the collector's "
                f"--epsilon and --chi) or None, got {self.knob!r}"
            )
        if self.knob is not None and self.knob not in self.knobs:
            object.__setattr__(self, "knobs", (self.knob, *self.knobs))


@dataclass(frozen=True)
class EnvFamily:
    """One environment family (see the module's documentation for each field).

    name: short name (``"grid"``, ``"linear"``), used in dataset metadata, a LAM's
        ``kinds`` and tables.
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
    policies: Mapping[str, PolicySpec] = field(default_factory=dict)
    oracle_fields: tuple[str, ...] = ()
    moving_fields: tuple[str, ...] = ()
    probe_targets: tuple[str, ...] = ()
    scores: tuple[str, ...] = ()
    data_like: tuple[str, ...] = ()
    renamed_kwargs: Mapping[str, str] = field(default_factory=dict)
    check_spaces: Callable[[dict[str, Any], Any, Any], str | None] | None = None

    def entry_point(self, vector: bool = False) -> str:
        cls = self.vector_env if vector else self.env
        return f"{cls.__module__}:{cls.__qualname__}"


FAMILIES: dict[str, EnvFamily] = {}
_BY_ID: dict[str, EnvFamily] = {}


def _check_policies(family: EnvFamily) -> None:
    for name, spec in family.policies.items():
        if not isinstance(spec, PolicySpec):
            raise TypeError(
                f"family {family.name!r}: policy {name!r} must be a PolicySpec, "
                f"got {type(spec).__name__}"
            )
        for other in FAMILIES.values():
            theirs = other.policies.get(name)
            if other.name != family.name and theirs is not None and theirs.knob != spec.knob:
                raise ValueError(
                    f"family {family.name!r}: policy {name!r} has knob {spec.knob!r}, but "
                    f"family {other.name!r}'s policy of that name has knob {theirs.knob!r}; "
                    "a policy name means one knob: give the policy another name"
                )


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
    _check_policies(family)
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


def unregister_family(name: str) -> EnvFamily:
    """Remove the family ``name`` and its Gymnasium ids (e.g. a test's own family)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown environment family {name!r}; registered: {', '.join(FAMILIES)}")
    family = FAMILIES.pop(name)
    for env_id in family.ids:
        if _BY_ID.get(env_id) is family:
            del _BY_ID[env_id]
            registry.pop(env_id, None)
    return family


def env_ids() -> dict[str, tuple[str, str | None]]:
    """Every registered id -> (family name, preset or None)."""
    return {i: (f.name, f.ids[i]) for i, f in _BY_ID.items()}


def family_for_id(env_id: str) -> EnvFamily | None:
    """The family that registers ``env_id``; None for an id of no registered family."""
    return _BY_ID.get(env_id) if isinstance(env_id, str) else None


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


def method_fits(kinds: Iterable[str], family: str) -> bool:
    """Whether a method made for data of the families ``kinds`` (a LAM's ``kinds``) takes
    data of the family named ``family``: ``kinds`` names it, or names a family whose data
    it declares its own is like (:attr:`EnvFamily.data_like`)."""
    kinds = set(kinds)
    if family in kinds:
        return True
    registered = FAMILIES.get(family)
    return registered is not None and not kinds.isdisjoint(registered.data_like)


def all_policies() -> dict[str, dict[str, Any]]:
    """Every policy name of the registered families -> ``{"knob": its knob, "fits": the
    families that have it}``."""
    table: dict[str, dict[str, Any]] = {}
    for family in FAMILIES.values():
        for name, spec in family.policies.items():
            entry = table.setdefault(name, {"knob": spec.knob, "fits": ()})
            entry["fits"] = (*entry["fits"], family.name)
    return table
