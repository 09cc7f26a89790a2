"""The machinery shared by both environments: batched dynamics, and the single and native
vector Gymnasium environments built on them.

Each environment module defines its dynamics once, as a :class:`BatchDynamics` that advances
a batch of environments with numpy. The single environment is that batch with one member;
the native vector environment is the batch with ``num_envs`` members plus Gymnasium's
autoreset and time limit. Both read the same per-environment random streams (see
``_rng.py``), so the vector env with seed ``s`` produces exactly the transitions of single
envs seeded ``s, s + 1, ...``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from lam_envs.envs._pool import ArrayPool
from lam_envs.utils.validate import check_choice, check_int, check_keys, check_seed

try:
    from gymnasium.vector import AutoresetMode

    _AUTORESET: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}
except ImportError:  # gymnasium 1.0: no AutoresetMode, every vector env resets on the next step
    _AUTORESET = {}

Info = dict[str, np.ndarray]
#: The most envs one native vector env takes (2**24; the collector batches at most about
#: 1.5 million): beyond, memory runs out before anything useful happens.
NUM_ENVS_MAX = 2**24


def config_from_preset(
    cls: type, presets: Mapping[str, Mapping[str, Any]], what: str, preset: str | None, overrides
) -> Any:
    """A config dataclass ``cls``: the preset's values (``None``: the defaults), with
    ``overrides`` applied on top; an unknown preset or ``what`` parameter is refused."""
    check_keys(f"{what} parameter", overrides, [f.name for f in dataclasses.fields(cls)])
    base = {} if preset is None else presets[check_choice("preset", preset, presets)]
    return cls(**{**base, **overrides})


def set_checked(config: Any, name: str, check, *bounds, **options) -> Any:
    """``check(name, value, *bounds, **options)`` of a frozen config's field, stored back
    (a plain int/float from then on) and returned; for a config's ``__post_init__``."""
    value = check(name, getattr(config, name), *bounds, **options)
    object.__setattr__(config, name, value)
    return value


class ActionCheck:
    """Checks and converts the actions ``step`` receives, so nothing wrong is reshaped or
    cast silently: ``check(actions) -> array`` of shape (batch, *space.shape), int64 for a
    ``Discrete`` space and float32 for a ``Box``; ``batch=None`` checks one action of a
    single env (shape ``space.shape``). Raises ``ValueError`` for a wrong shape, a discrete
    action out of range or not integral, a continuous one NaN, infinite or out of bounds.
    """

    def __init__(self, space: gym.spaces.Space, batch: int | None):
        self.space, self.batch = space, batch
        self.shape = space.shape if batch is None else (batch, *space.shape)
        self.what = "action" if batch is None else f"actions of the {batch} envs"
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if self.discrete:
            self.low, self.high = int(space.start), int(space.start + space.n - 1)
            self.allowed = f"integers in [{self.low}, {self.high}]"
        else:
            self.low, self.high = space.low, space.high
            self.bounded = bool(np.isfinite(space.low).any() or np.isfinite(space.high).any())
            self.allowed = f"finite numbers, shape {space.shape}"

    def _refuse(self, actions: Any, detail: str) -> None:
        raise ValueError(f"{self.what} must be {self.allowed}; {detail}, got {actions!r}")

    def __call__(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != self.shape:
            raise ValueError(
                f"{self.what} must have shape {self.shape}, got shape {a.shape}: {actions!r}"
            )
        kind = a.dtype.kind
        if self.discrete:
            if kind not in "iu":
                integral = kind == "f" and np.isfinite(a).all() and (a == np.rint(a)).all()
                if not integral:
                    self._refuse(actions, f"dtype {a.dtype}")
                a = a.astype(np.int64)
            if a.size and (a.min() < self.low or a.max() > self.high):
                self._refuse(actions, "out of range")
            return a.astype(np.int64, copy=False).reshape(-1)
        if kind not in "fiu":
            self._refuse(actions, f"dtype {a.dtype}")
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            self._refuse(actions, "not finite")
        if self.bounded and ((a < self.low).any() or (a > self.high).any()):
            self._refuse(actions, f"outside [{self.low}, {self.high}]")
        return a.reshape(-1, *self.space.shape)


def rowwise_matmul(x: np.ndarray, m_t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x @ m_t`` rounded to float32, each row computed on its own: (n, k) @ (k, d) -> (n, d).

    BLAS picks its kernel by the matrix's size (a one-row product is a gemv, a batch a
    gemm; edge rows and threads split differently), so a float32 ``matmul`` can give a row
    other last bits next to other rows: the data of a collection would depend on how its
    episodes were batched (``--workers``). Here the sum over k is numpy's own ``einsum``
    loop (without ``optimize`` it never calls BLAS) in float64: for every element the same
    k products accumulated in order, over the contiguous output axis, whatever the number
    of rows; then one rounding to float32. ``m_t``: float64 (k, d), converted once.
    """
    acc = np.einsum("nk,kd->nd", x.astype(np.float64), m_t, optimize=False)
    if out is None:
        return acc.astype(np.float32)
    np.copyto(out, acc, casting="same_kind")
    return out


class RenderModes(list):
    """The ``render_modes`` of an environment's metadata. ``gym.make`` asks
    ``render_mode in render_modes`` before the environment sees the value, then calls string
    methods on it; a value that is not a string is refused here, with a message naming it,
    instead of an ``AttributeError`` inside Gymnasium."""

    def __contains__(self, render_mode: object) -> bool:
        if render_mode is not None and not isinstance(render_mode, str):
            check_render_mode(render_mode, self)
        return super().__contains__(render_mode)


def check_render_mode(render_mode: Any, allowed: Sequence[str]) -> str | None:
    if render_mode is not None and (
        not isinstance(render_mode, str) or not list.__contains__(allowed, render_mode)
    ):
        raise ValueError(
            f"unknown render_mode {render_mode!r}; allowed: None, " + ", ".join(map(repr, allowed))
        )
    return render_mode


class BatchDynamics(ABC):
    """State and update rule of ``num_envs`` environments, advanced together.

    ``index`` arguments are integer arrays of the environments concerned, or ``None`` for
    all of them (the fast path: no gathering or scattering).
    """

    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    render_fps: int = 4

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.pool = ArrayPool()  # for the arrays ``step`` and ``observations`` return

    @abstractmethod
    def reset(self, index: np.ndarray, rngs: list[np.random.Generator]) -> Info:
        """Draw start states for the given envs from their streams; return their info."""

    @abstractmethod
    def step(
        self, actions: np.ndarray, rngs: list[np.random.Generator], index: np.ndarray | None
    ) -> tuple[np.ndarray, Info]:
        """Advance the given envs by ``actions`` (one row each); return (rewards, info)."""

    @abstractmethod
    def observations(self, index: np.ndarray | None = None) -> np.ndarray:
        """A fresh copy of the current observations of the given envs."""

    @abstractmethod
    def render_ansi(self, i: int) -> str: ...

    @abstractmethod
    def render_rgb(self, i: int) -> np.ndarray: ...

    def render(self, mode: str | None, i: int) -> Any:
        if mode == "ansi":
            return self.render_ansi(i)
        if mode == "rgb_array":
            return self.render_rgb(i)
        return None


class BatchEnv(gym.Env):
    """A single Gymnasium environment: a :class:`BatchDynamics` of one member.

    Subclasses set ``dynamics_class`` and document the environment.
    """

    dynamics_class: type[BatchDynamics]
    metadata: dict[str, Any] = {"render_modes": RenderModes(["ansi", "rgb_array"]), "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **params: Any):
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.dynamics = self.dynamics_class(num_envs=1, **params)
        self.config = self.dynamics.config
        self.observation_space = self.dynamics.observation_space
        self.action_space = self.dynamics.action_space
        self._index = np.zeros(1, dtype=np.int64)
        self._check_action = ActionCheck(self.action_space, None)
        self._was_reset = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        check_options(options)
        super().reset(seed=check_seed("seed", seed))
        info = self.dynamics.reset(self._index, [self.np_random])
        self._was_reset = True
        return self.dynamics.observations()[0], _first(info)

    def step(self, action):
        if not self._was_reset:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = self._check_action(action)
        rewards, info = self.dynamics.step(actions, [self.np_random], None)
        obs = self.dynamics.observations()[0]
        # The process never ends by itself; episodes are cut by TimeLimit (max_episode_steps).
        return obs, float(rewards[0]), False, False, _first(info)

    def render(self):
        return self.dynamics.render(self.render_mode, 0)


class BatchVectorEnv(VectorEnv):
    """The native vector environment: ``num_envs`` members of a :class:`BatchDynamics`.

    Follows Gymnasium's conventions: ``reset(seed=s)`` seeds member i with ``s + i``;
    autoreset is ``NEXT_STEP`` (the step after an episode ends resets that member, ignores
    its action and returns its first observation with reward 0); ``max_episode_steps``
    truncates episodes. Every info key is present for every member on every call, with a
    leading ``num_envs`` axis, so no ``_key`` masks are needed.
    """

    dynamics_class: type[BatchDynamics]
    metadata: dict[str, Any] = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        **_AUTORESET,
    }

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        **params: Any,
    ):
        self.num_envs = check_int("num_envs", num_envs, low=1)
        if self.num_envs > NUM_ENVS_MAX:
            raise ValueError(
                f"num_envs must be <= {NUM_ENVS_MAX:,} (2**24), got {self.num_envs:,}: step "
                "several vector envs in turn for more"
            )
        if max_episode_steps is not None:
            max_episode_steps = check_int("max_episode_steps", max_episode_steps, low=1)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.max_episode_steps = max_episode_steps
        try:
            self.dynamics = self.dynamics_class(num_envs=self.num_envs, **params)
            self._rngs: list[np.random.Generator] = [None] * self.num_envs  # type: ignore[list-item]
        except MemoryError:  # numpy's message names an array, not the argument
            raise ValueError(
                f"num_envs = {self.num_envs:,} does not fit in memory: each env holds its "
                "state and its random stream; use fewer envs (several vector envs in turn)"
            ) from None
        self.config = self.dynamics.config
        self.single_observation_space = self.dynamics.observation_space
        self.single_action_space = self.dynamics.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._all = np.arange(self.num_envs)
        self._check_actions = ActionCheck(self.single_action_space, self.num_envs)
        self._was_reset = False  # every member has been reset once

    @property
    def env_rngs(self) -> list[np.random.Generator]:
        """The per-member generators (member i's equals a single env's ``np_random``)."""
        return self._rngs

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options=None):
        check_options(options)
        if seed is not None and (
            isinstance(seed, str) or not isinstance(seed, Sequence | np.ndarray)
        ):
            seed = check_seed("seed", seed)
        super().reset(seed=seed if isinstance(seed, int) else None)
        index = self._all
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(
                    f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}"
                )
            index = np.flatnonzero(mask)
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = [check_seed(f"seed[{i}]", s) for i, s in enumerate(seed)]
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"seed must be an int or a list of {self.num_envs} seeds, got {len(seeds)}"
                )
        for i in index:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        reset_info = self.dynamics.reset(index, self._rngs)
        self._elapsed[index] = 0
        self._needs_reset[index] = False
        self._was_reset = self._was_reset or all(rng is not None for rng in self._rngs)
        if len(index) == self.num_envs:
            return self.dynamics.observations(), reset_info
        info = _zeros_like_batch(reset_info, self.num_envs)
        _scatter(info, index, reset_info)
        return self.dynamics.observations(), info

    def step(self, actions):
        if not self._was_reset:
            raise gym.error.ResetNeeded("call reset() (of every env) before step()")
        actions = self._check_actions(actions)
        resetting = np.flatnonzero(self._needs_reset)
        n = self.num_envs
        if resetting.size == 0:
            rewards, info = self.dynamics.step(actions, self._rngs, None)
            self._elapsed += 1
        else:
            active = np.flatnonzero(~self._needs_reset)
            reset_info = self.dynamics.reset(resetting, self._rngs)
            step_rewards, step_info = self.dynamics.step(actions[active], self._rngs, active)
            rewards = np.zeros(n, dtype=np.float64)
            rewards[active] = step_rewards
            info = _zeros_like_batch(reset_info, n)
            _scatter(info, resetting, reset_info)
            _scatter(info, active, step_info)
            self._elapsed[active] += 1
            self._elapsed[resetting] = 0
        terminated = np.zeros(n, dtype=bool)
        if self.max_episode_steps is None:
            truncated = np.zeros(n, dtype=bool)
        else:
            truncated = self._elapsed >= self.max_episode_steps
        self._needs_reset = terminated | truncated
        return self.dynamics.observations(), rewards, terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            return None
        return tuple(self.dynamics.render(self.render_mode, i) for i in range(self.num_envs))


def check_options(options: Any) -> None:
    """``reset``'s options: None or a dict (Gymnasium's contract); anything else would be
    ignored silently, so it is refused."""
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(
            f"options must be None or a dict (e.g. {{'reset_mask': mask}} for a vector env), "
            f"got {type(options).__name__} {options!r:.60}"
        )


def _first(info: Info) -> dict[str, np.ndarray]:
    return {key: value[0] for key, value in info.items()}


def _zeros_like_batch(info: Info, n: int) -> Info:
    return {key: np.zeros((n, *value.shape[1:]), dtype=value.dtype) for key, value in info.items()}


def _scatter(target: Info, index: np.ndarray, source: Info) -> None:
    for key, value in source.items():
        target[key][index] = value
