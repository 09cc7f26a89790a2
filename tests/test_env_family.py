"""An environment family is a plug-in (lam_envs.envs.family): a family defined in this file,
and no file of the package, is collected, trained on by a built-in LAM and scored, as
tests/test_lam_interface.py does for a LAM."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import lam_envs
import lam_models
from lam_envs.collect import CollectConfig, collect
from lam_envs.collect.config import KNOB_DEFAULTS
from lam_envs.dataset import Dataset
from lam_envs.envs.base import BatchDynamics, BatchEnv, BatchVectorEnv
from lam_envs.envs.family import (
    FAMILIES,
    POLICY_KNOBS,
    EnvFamily,
    PolicySpec,
    family_of,
    method_fits,
    register_family,
    unregister_family,
)
from lam_envs.policies import POLICIES, make_policy
from lam_models.lams.base import get_lam
from lam_models.split import DataSplit

# ------------------------------------------------------------------------- a toy user family


@dataclass(frozen=True)
class DriftConfig:
    """o' = o + W a + σ n in R^d; W (d×2) fixed by the config."""

    d: int = 4
    sigma: float = 0.05

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> DriftConfig:
        return cls(**{**({} if preset is None else PRESETS[preset]), **overrides})


PRESETS = {"loud": {"sigma": 1.0}}


class DriftDynamics(BatchDynamics):
    def __init__(self, num_envs: int, preset: str | None = None, **params: Any):
        super().__init__(num_envs)
        self.config = c = DriftConfig.from_preset(preset, **params)
        self.W = np.eye(c.d, 2, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (c.d,), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self._obs = np.zeros((num_envs, c.d), np.float32)

    def reset(self, index, rngs):
        for i in index:
            self._obs[i] = rngs[i].standard_normal(self.config.d, dtype=np.float32)
        return {"push": np.zeros((len(index), self.config.d), np.float32)}

    def step(self, actions, rngs, index):
        index = np.arange(self.num_envs) if index is None else index
        push = (actions @ self.W.T).astype(np.float32)
        noise = np.stack([rngs[i].standard_normal(self.config.d, dtype=np.float32) for i in index])
        self._obs[index] += push + np.float32(self.config.sigma) * noise
        return np.zeros(len(index)), {"push": push}

    def observations(self, index=None):
        return self._obs.copy() if index is None else self._obs[index]

    def render_ansi(self, i):
        return f"drift {self._obs[i]}"

    def render_rgb(self, i):
        return np.zeros((8, 8, 3), np.uint8)


class DriftEnv(BatchEnv):
    dynamics_class = DriftDynamics


class DriftVectorEnv(BatchVectorEnv):
    dynamics_class = DriftDynamics


@dataclass(frozen=True)
class RandomPush:
    def __call__(self, observations, rng, info=None):
        return rng.standard_normal((len(observations), 2), dtype=np.float32)


DRIFT = EnvFamily(
    name="drift",
    config=DriftConfig,
    env=DriftEnv,
    vector_env=DriftVectorEnv,
    ids={"Drift-v0": None, "Drift-Loud-v0": "loud"},
    presets=PRESETS,
    policies={"random": PolicySpec(lambda dynamics: RandomPush())},
    oracle_fields=("push",),
    moving_fields=("push",),
    probe_targets=("push", "o"),
    data_like=("linear",),  # vectors and continuous actions: methods for linear data fit
)


@pytest.fixture
def drift():
    register_family(DRIFT)
    yield DRIFT
    unregister_family("drift")


# ------------------------------------------------------------------------- the tests


def test_a_family_defined_outside_the_package_collects_trains_and_scores(drift, tmp_path):
    assert lam_envs.ENV_IDS["Drift-Loud-v0"] == ("drift", "loud")
    assert family_of(gym.make("Drift-v0")) is drift
    # 1. collected by the package's collector, with the family's own policy
    config = CollectConfig(env="Drift-v0", episodes=16, episode_length=16, label_fraction=1.0)
    path = collect(config, root=tmp_path, progress=False).path
    data = Dataset(path)
    assert data.kind == "drift" and data.family is drift
    truth = data.oracle()
    rows = data.num_transitions()
    assert truth["push"].shape == truth["push_before"].shape == (rows, 4)
    np.testing.assert_array_equal(truth["push"][:, :2], truth["action"])  # W = the first 2 axes
    # 2. trained by a built-in LAM made for linear data (the family says its data is alike)
    split = DataSplit(path, held_out=0.25, seed=0)
    assert split.spec.kind == "drift"
    idm = get_lam("idm")
    assert idm.fits("drift") and not get_lam("vq").fits("drift")
    config = idm.Config(embed_dim=64, width=64, steps=100, batch_size=32, augment=False, lr=3e-3)
    lam = idm.train(config, [split], [0], device="cpu")
    # 3. scored: the action and the family's own probe targets, and nothing grid or linear
    (metrics,) = lam.metrics([split])
    assert {"nmse_action", "nmse_push", "nmse_o"} <= set(metrics)
    assert not {"llo", "nmse_q", "probe_controllable_loss"} & set(metrics)
    assert metrics["nmse_action"] < 0.5  # the IDM learnt the action (0.26 after 100 updates)
    assert "nmse_push" in idm.format_metrics(metrics)
    change = lam_models.evaluate(lambda o, o2: o2 - o, split)
    assert change["nmse_push"] < 0.05 and change["nmse_action"] < 0.05
    assert lam_models.evaluate(lambda o, o2: o, split)["nmse_o"] < 1e-6


def test_a_family_without_a_policy_is_told_which_it_has(drift):
    assert POLICIES["random"]["fits"] == ("linear", "grid", "drift")
    with pytest.raises(ValueError, match=r"policy 'snaking' does not fit the drift environment"):
        make_policy("snaking", gym.make("Drift-v0"))
    with pytest.raises(ValueError, match="unknown knob for policy 'random' 'epsilon'"):
        make_policy("random", gym.make("Drift-v0"), epsilon=0.1)


def test_the_registry_refuses_clashes_and_forgets_a_family(drift):
    with pytest.raises(ValueError, match="family named 'drift' is already registered"):
        register_family(dataclasses.replace(drift, presets={**PRESETS, "other": {}}))
    with pytest.raises(ValueError, match="'GridLAM-v0' is already registered by family 'grid'"):
        register_family(dataclasses.replace(drift, name="drift2", ids={"GridLAM-v0": None}))
    with pytest.raises(ValueError, match="a policy name means one knob"):
        knobbed = PolicySpec(lambda dynamics, epsilon: RandomPush(), knob="epsilon")
        register_family(
            dataclasses.replace(drift, name="drift3", ids={}, policies={"random": knobbed})
        )
    assert "drift3" not in FAMILIES
    unregister_family("drift")
    assert "Drift-v0" not in lam_envs.ENV_IDS and "Drift-v0" not in gym.registry
    register_family(drift)  # the fixture unregisters it again


def test_methods_fit_families_by_name_or_by_the_familys_likeness(drift):
    assert method_fits(("grid", "linear"), "grid") and method_fits(("linear",), "drift")
    assert not method_fits(("grid",), "drift") and not method_fits(("grid", "linear"), "?")


def test_a_policy_knob_is_one_the_collector_can_set():
    assert set(KNOB_DEFAULTS) == set(POLICY_KNOBS)  # --epsilon and --chi
    with pytest.raises(ValueError, match="knob must be one of epsilon, chi .* got 'speed'"):
        PolicySpec(make=lambda dynamics, speed=0.0: None, knob="speed")
