"""Test-wide settings and fixtures."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

# The suite's models are tiny: one thread is faster than two fighting over a busy CPU.
torch.set_num_threads(1)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def load_example():
    """``load_example("reproduce_linear")``: a script of examples/ imported as a module."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def lam_datasets(tmp_path_factory):
    """Small datasets the trainer, pipeline and interface tests share (paths, as str).

    grid: low noise row, snaking ε = 0.3, 40 × 50 transitions, 5% labelled.
    grid_none: the same without a noise row (20 episodes). grid_unlabelled: no labels.
    linear: d_o = 16, d_a = 4, strong other agents (σ_exo = 2), one-step episodes (every
    o ~ N(0, I)), 3000 transitions, half labelled. linear_unlabelled: no labels.
    one_episode: a linear dataset too small to hold anything out.
    """
    from lam_envs.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("shared-minari")
    small = {"d_o": 16, "d_a": 4, "d_b": 4}

    def make(**kw):
        return str(collect(CollectConfig(**kw), root=root, progress=False).path)

    grid = dict(policy="snaking", epsilon=0.3, episode_length=50, seed=0)
    return {
        "grid": make(**grid, episodes=40, label_fraction=0.05),
        "grid_none": make(**grid, preset="none", episodes=20, label_fraction=0.05),
        "grid_unlabelled": make(**grid, episodes=10, label_fraction=0.0),
        "linear": make(
            env="LinearLAM-v0",
            env_kwargs={**small, "sigma_exo": 2.0},
            episodes=3000,
            episode_length=1,
            label_fraction=0.5,
        ),  # fmt: skip
        "linear_unlabelled": make(
            env="LinearLAM-v0", env_kwargs=small, episodes=40, episode_length=5, label_fraction=0.0
        ),  # fmt: skip
        "one_episode": make(env="LinearLAM-v0", env_kwargs=small, episodes=1, episode_length=50),
    }
