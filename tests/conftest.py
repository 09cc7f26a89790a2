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
