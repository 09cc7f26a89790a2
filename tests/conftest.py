"""Test-wide settings and fixtures."""

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# The suite never writes to the user's home (~/.minari, ~/.cache/huggingface) nor to
# their own Minari root: both roots are fresh temporary folders for the whole session, set
# before any test module is imported (subprocesses inherit them). Tests that need their
# own root set it.
SESSION_DIR = Path(tempfile.mkdtemp(prefix="lam-envs-tests-"))
MINARI_ROOT = SESSION_DIR / "minari"
os.environ["MINARI_DATASETS_PATH"] = str(MINARI_ROOT)
os.environ["HF_HOME"] = str(SESSION_DIR / "huggingface")  # datasets' cache

# The suite's models are tiny: one thread is faster than two fighting over a busy CPU.
torch.set_num_threads(1)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


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
