"""``LinearLAM-v0``: the linear controlled Markov process o' = o + X a + ε."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from lam_envs.envs._rng import BlockStreams, block_rows, standard_normal_f32
from lam_envs.envs.base import (
    BatchDynamics,
    BatchEnv,
    BatchVectorEnv,
    Info,
    config_from_preset,
    rowwise_matmul,
    set_checked,
)
from lam_envs.envs.family import EnvFamily, PolicySpec
from lam_envs.utils.validate import FLOAT32_MAX, check_float, check_fraction, check_int

#: Named noise cases of the paper. Explicit keyword arguments override a preset's values.
LINEAR_PRESETS: dict[str, dict[str, Any]] = {
    "no_noise": {},
    "iid": {"sigma_iid": 0.5},
    "other_agents": {"sigma_exo": 0.5},
    "other_agents_strong": {"sigma_exo": 2.0},
}


@dataclass(frozen=True)
class LinearLAMConfig:
    """Parameters of ``LinearLAM-v0``; validated on construction.

    d_o, d_a, d_b: dimensions of the observation, the agent's action, the other agents' action.
    sigma_iid: scale of the i.i.d. Gaussian noise n.  sigma_exo: scale of the other agents' Y b.
    overlap: share of Y's energy inside X's column space (0 = Y ⟂ X, 1 = Y inside span X).
    distractor_correlation: ρ, correlation of b with the agent's own action.
    structure_seed: seed of X and Y, fixed for the environment's lifetime.
    """

    d_o: int = 128
    d_a: int = 8
    d_b: int = 8
    sigma_iid: float = 0.0
    sigma_exo: float = 0.0
    overlap: float = 0.0
    distractor_correlation: float = 0.0
    structure_seed: int = 0

    def __post_init__(self):
        def canonical(name: str, check, *bounds) -> Any:
            return set_checked(self, name, check, *bounds)

        # Observations are float32: a scale beyond its range would overflow to inf.
        d_o = canonical("d_o", check_int, 1)
        d_a = canonical("d_a", check_int, 1)
        d_b = canonical("d_b", check_int, 1)
        if d_a > d_o:
            raise ValueError(f"d_a must be <= d_o = {d_o}, got d_a = {d_a}")
        canonical("sigma_iid", check_float, 0.0, FLOAT32_MAX)
        canonical("sigma_exo", check_float, 0.0, FLOAT32_MAX)
        overlap = canonical("overlap", check_fraction)
        canonical("distractor_correlation", check_fraction)
        canonical("structure_seed", check_int, 0)
        if overlap < 1 and d_b > d_o - d_a:
            raise ValueError(
                f"d_b must be <= d_o - d_a = {d_o - d_a} so that Y can be orthogonal to X "
                f"(overlap = {overlap} < 1), got d_b = {d_b}"
            )
        if overlap > 0 and d_b > d_a:
            raise ValueError(
                f"d_b must be <= d_a = {d_a} for Y to lie (partly) inside X's span "
                f"(overlap = {overlap} > 0), got d_b = {d_b}"
            )

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> LinearLAMConfig:
        """The preset's values (``None``: the defaults), with ``overrides`` applied on top."""
        return config_from_preset(cls, LINEAR_PRESETS, "LinearLAM", preset, overrides)


def effect_matrices(config: LinearLAMConfig) -> tuple[np.ndarray, np.ndarray]:
    """X (d_o×d_a) and Y (d_o×d_b), both with orthonormal columns, drawn from structure_seed.

    X is the Q factor of a Gaussian matrix. Y = sqrt(1 − overlap)·Y⊥ + sqrt(overlap)·X R with
    Y⊥ orthonormal and orthogonal to X, and R (d_a×d_b) orthonormal: since the two parts are
    orthogonal, Yᵀ Y = I for every overlap, and ‖Xᵀ Y‖²_F / d_b = overlap.
    """
    c = config
    try:
        x, y = _effect_matrices(c.d_o, c.d_a, c.d_b, c.overlap, c.structure_seed)
    except MemoryError:  # numpy's own message names an array, not the parameter
        need = 3 * 8 * c.d_o**2 / 2**30  # the Gaussian, its Q and R, in float64
        raise ValueError(
            f"d_o = {c.d_o} does not fit in memory: drawing X and Y takes a QR of a d_o × d_o "
            f"float64 matrix, about {need:,.1f} GiB"
        ) from None
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=16)  # a QR of d_o×d_o per env creation adds up in collect
def _effect_matrices(
    d_o: int, d_a: int, d_b: int, overlap: float, structure_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(structure_seed))
    gaussian = rng.standard_normal((d_o, d_o))
    basis, _ = np.linalg.qr(gaussian)  # a random orthonormal basis of R^{d_o}
    x = basis[:, :d_a]
    y = np.zeros((d_o, d_b))
    if overlap < 1:
        y += np.sqrt(1 - overlap) * basis[:, d_a : d_a + d_b]
    if overlap > 0:
        rotation, _ = np.linalg.qr(rng.standard_normal((d_a, d_b)))
        y += np.sqrt(overlap) * (x @ rotation)
    return x, y


class LinearDynamics(BatchDynamics):
    """o' = o + q + ε with q = X a and ε = σ_iid n + σ_exo Y b, for a batch of envs.

    Per step each env reads one row of its stream: d_b normals for b (when σ_exo > 0) then
    d_o normals for n (when σ_iid > 0). States are float32; the products X a and Y b are
    summed in float64 and rounded once (``rowwise_matmul``), so that an env's transitions
    are the same bits whatever the number of envs stepped beside it.
    """

    def __init__(self, num_envs: int, preset: str | None = None, **params: Any):
        super().__init__(num_envs)
        self.config = c = LinearLAMConfig.from_preset(preset, **params)
        x, y = effect_matrices(c)
        self.X, self.Y = x.astype(np.float32), y.astype(np.float32)
        # the float32 matrices the env exposes, exactly, as float64 for rowwise_matmul
        self._xt = np.ascontiguousarray(self.X.T, dtype=np.float64)
        self._yt = np.ascontiguousarray(self.Y.T, dtype=np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (c.d_o,), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (c.d_a,), np.float32)
        self._draw_b = c.sigma_exo > 0
        self._draw_n = c.sigma_iid > 0
        width = c.d_b * self._draw_b + c.d_o * self._draw_n
        self._streams = BlockStreams(num_envs, width, block_rows(width), standard_normal_f32)
        self._obs = np.zeros((num_envs, c.d_o), dtype=np.float32)
        rho = c.distractor_correlation
        self._rho, self._rho_c = np.float32(rho), np.float32(np.sqrt(1 - rho**2))
        self._shared = min(c.d_a, c.d_b)  # coordinates of a that b copies (padded with 0)

    def reset(self, index, rngs) -> Info:
        for i in index:
            self._obs[i] = rngs[i].standard_normal(self.config.d_o, dtype=np.float32)
        self._streams.restart(index, rngs)
        n, c = len(index), self.config
        zeros = np.zeros
        return {
            "q": zeros((n, c.d_o), np.float32),
            "eps": zeros((n, c.d_o), np.float32),
            "b": zeros((n, c.d_b), np.float32),
        }

    def step(self, actions, rngs, index) -> tuple[np.ndarray, Info]:
        c = self.config
        a = actions  # float32 (n, d_a), finite: checked by the environment
        n = len(a)
        rows = self._streams.next_rows(rngs, index)

        # All envs at once (the common case): recycled arrays (see ArrayPool).
        def new_array(name: str, width: int) -> np.ndarray:
            if index is None:
                return self.pool.take(name, (n, width), np.float32)
            return np.empty((n, width), np.float32)

        q, eps, b = new_array("q", c.d_o), new_array("eps", c.d_o), new_array("b", c.d_b)
        rowwise_matmul(a, self._xt, out=q)
        if self._draw_b:
            b[:] = rows[:, : c.d_b]
            if self._rho > 0:
                b *= self._rho_c
                b[:, : self._shared] += self._rho * a[:, : self._shared]
            rowwise_matmul(c.sigma_exo * b, self._yt, out=eps)
        else:
            b.fill(0)
            eps.fill(0)
        if self._draw_n:
            n_rows = rows[:, c.d_b * self._draw_b :]
            n_rows *= np.float32(c.sigma_iid)  # rows is our own fresh copy
            eps += n_rows
        if index is None:
            self._obs += q
            self._obs += eps
            new = self._obs
        else:
            new = self._obs[index] + q + eps
            self._obs[index] = new
        # float64 sum per row (numpy's pairwise sum along the row): the same bits in any batch
        rewards = np.square(new, dtype=np.float64).sum(axis=1) / -c.d_o
        return rewards, {"q": q, "eps": eps, "b": b}

    def observations(self, index=None) -> np.ndarray:
        if index is not None:
            return self._obs[index]
        out = self.pool.take("obs", self._obs.shape, np.float32)
        np.copyto(out, self._obs)
        return out

    def render_ansi(self, i: int) -> str:
        o = self._obs[i]
        head = np.array2string(o[:8], precision=2, suppress_small=True)
        return f"LinearLAM d_o={o.size} |o|={np.linalg.norm(o):.3f} o[:8]={head}"

    def render_rgb(self, i: int) -> np.ndarray:
        """o as a square heat map (blue < 0 < red), 8 pixels per coordinate."""
        o = self._obs[i]
        side = int(np.ceil(np.sqrt(o.size)))
        cells = np.zeros(side * side, dtype=np.float32)
        cells[: o.size] = np.tanh(o / 2)
        cells = cells.reshape(side, side)
        rgb = np.empty((side, side, 3), dtype=np.uint8)
        rgb[..., 0] = 255 * np.clip(1 + np.minimum(cells, 0), 0, 1)  # fade red for negatives
        rgb[..., 2] = 255 * np.clip(1 - np.maximum(cells, 0), 0, 1)  # fade blue for positives
        rgb[..., 1] = 255 * (1 - np.abs(cells))
        return np.kron(rgb, np.ones((8, 8, 1), dtype=np.uint8))


_DOC_ARGS = """
    ## Arguments

    ``gym.make("LinearLAM-v0", **kwargs)`` accepts ``preset`` (one of ``no_noise``, ``iid``,
    ``other_agents``, ``other_agents_strong``; see ``LINEAR_PRESETS``), every field of
    :class:`LinearLAMConfig` (explicit values override the preset's) and ``render_mode``
    (``"ansi"`` or ``"rgb_array"``). Out-of-range values raise ``ValueError``.
"""


class LinearLAMEnv(BatchEnv):
    __doc__ = (
        """
    ## Description

    A linear controlled Markov process for studying what a latent action captures. The
    observation is the state o ∈ R^{d_o}; each step

        o' = o + q + ε,   q = X a,   ε = σ_iid · n + σ_exo · Y b,
        n ~ N(0, I_{d_o}),  b ~ N(0, I_{d_b})

    X (d_o×d_a) and Y (d_o×d_b) have orthonormal columns, are drawn once from
    ``structure_seed`` and never change on reset. q is the agent's controllable change,
    ε the exogenous noise: i.i.d. (σ_iid) and other agents acting through Y (σ_exo). Y is
    orthogonal to X unless ``overlap`` > 0. With ``distractor_correlation`` ρ > 0 the other
    agents copy the agent: b = ρ·(a[:d_b], zero-padded) + sqrt(1 − ρ²)·noise.

    ## Action Space

    ``Box(-inf, inf, (d_a,), float32)``. The random behaviour policy draws a ~ N(0, I).

    ## Observation Space

    ``Box(-inf, inf, (d_o,), float32)``: o itself.

    ## Rewards

    r = −‖o'‖² / d_o: a regulation task (keep the state near the origin). The environment
    exists to make data; the reward only scores downstream policies.

    ## Starting State

    o_0 ~ N(0, I_{d_o}).

    ## Episode End

    The process never terminates. Registered ids truncate after ``max_episode_steps``
    (200 unless given to ``gym.make``).

    ## Info (ground truth, for evaluation only)

    On reset and every step, float32 arrays: ``q`` (d_o,), ``eps`` (d_o,), ``b`` (d_b,);
    zeros on reset, and ``b`` is zero when σ_exo = 0. ``env.unwrapped.dynamics.X`` and
    ``.Y`` hold the effect matrices.
"""
        + _DOC_ARGS
        + """
    ## Vectorized environment

    ``gym.make_vec("LinearLAM-v0", num_envs=N)`` returns :class:`LinearLAMVectorEnv`, which
    computes all N envs in numpy at once and gives exactly the transitions of N single
    envs reset with seeds ``s, s + 1, ...``.

    ## Version History

    * v0: initial version.
"""
    )

    dynamics_class = LinearDynamics


class LinearLAMVectorEnv(BatchVectorEnv):
    """Native vector version of :class:`LinearLAMEnv`; same arguments plus ``num_envs`` and
    ``max_episode_steps``. Autoreset mode ``NEXT_STEP``; info arrays have a leading
    ``num_envs`` axis."""

    dynamics_class = LinearDynamics


@dataclass(frozen=True)
class LinearPolicy:
    """a = χ·Π o + (1 − χ)·s for the linear environment; χ = 0 is a ~ N(0, I).

    Along a trajectory the closed loop o' = (I + χ X Π) o + ... can grow, since Π does not
    know X. The paper's setting draws each transition from o ~ N(0, I): collect with
    episodes of one step (``--episode-length 1``) for that.
    """

    d_o: int
    d_a: int
    chi: float = 0.0
    projection_seed: int = 0
    projection: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        d_o = check_int("d_o", self.d_o, low=1)
        d_a = check_int("d_a", self.d_a, low=1, high=d_o)
        object.__setattr__(self, "chi", check_fraction("chi", self.chi))
        object.__setattr__(self, "d_o", d_o)
        object.__setattr__(self, "d_a", d_a)
        rng = np.random.Generator(np.random.PCG64(self.projection_seed))
        q, _ = np.linalg.qr(rng.standard_normal((d_o, d_a)))
        object.__setattr__(self, "projection", np.ascontiguousarray(q.T, dtype=np.float32))

    def __call__(self, observations: np.ndarray, rng: np.random.Generator, info=None):
        s = rng.standard_normal((len(observations), self.d_a), dtype=np.float32)
        if self.chi == 0:
            return s
        determined = np.asarray(observations, dtype=np.float32) @ self.projection.T
        return np.float32(self.chi) * determined + np.float32(1 - self.chi) * s


def _linear_policy(dynamics: LinearDynamics, **knobs: Any) -> LinearPolicy:
    # ``random`` is the linear policy at χ = 0: a ~ N(0, I).
    return LinearPolicy(d_o=dynamics.config.d_o, d_a=dynamics.config.d_a, **knobs)


def linear_spaces_problem(kwargs: dict[str, Any], observations: Any, actions: Any) -> str | None:
    """What is wrong with a dataset's spaces for LinearLAM (None: nothing): it acts with
    vectors on vectors."""
    if getattr(actions, "n", None) is not None or len(actions.shape) != 1:
        return "'action_space' is not a Box of vectors"
    if len(observations.shape) != 1:
        return "'observation_space' is not a Box of vectors"
    return None


FAMILY = EnvFamily(
    name="linear",
    config=LinearLAMConfig,
    env=LinearLAMEnv,
    vector_env=LinearLAMVectorEnv,
    presets=LINEAR_PRESETS,
    ids={
        "LinearLAM-v0": None,
        "LinearLAM-IID-v0": "iid",
        "LinearLAM-OtherAgents-v0": "other_agents",
        "LinearLAM-OtherAgentsStrong-v0": "other_agents_strong",
    },
    policies={
        "random": PolicySpec(_linear_policy),
        "linear": PolicySpec(_linear_policy, knob="chi", knobs=("projection_seed",)),
    },
    oracle_fields=("q", "eps", "b"),
    # the controllable change, the exogenous noise and the observation; LLO from them
    probe_targets=("q", "eps", "o"),
    scores=("llo",),
    check_spaces=linear_spaces_problem,
)
