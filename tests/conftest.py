"""Test-wide settings and fixtures."""

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# The suite never writes to the user's home (~/.minari) nor to their own Minari root:
# Minari's root is a fresh temporary folder for the whole session, set before any test
# module is imported (subprocesses inherit it). Tests that need their own root set it.
MINARI_ROOT = Path(tempfile.mkdtemp(prefix="lam-envs-tests-minari-"))
os.environ["MINARI_DATASETS_PATH"] = str(MINARI_ROOT)

# The suite's models are tiny: one thread is faster than two fighting over a busy CPU.
torch.set_num_threads(1)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(MINARI_ROOT, ignore_errors=True)


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
