"""The package's layout: old import paths still work (with a DeprecationWarning) and are
the very modules of the new layout; datasets written before the move still read."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import gymnasium as gym
import pytest

import lam_envs
import lam_models  # noqa: F401  (adds lam_models' moved modules)
from lam_envs._moved import MOVED
from lam_envs.dataset import RENAMED_ENTRY_POINTS, parse_env_spec


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_import_path_warns_and_is_the_new_module(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]  # the new module's own spec is kept


def test_from_import_of_an_old_path_gives_the_same_objects():
    sys.modules.pop("lam_envs.grid", None)
    with pytest.warns(DeprecationWarning):
        from lam_envs.grid import GridLAMConfig as old
    assert old is lam_envs.GridLAMConfig


def test_the_package_itself_never_imports_an_old_path():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning);"
        "import lam_envs, lam_models, lam_models.lams, lam_models.pipeline, "
        "lam_models.benchmark, lam_models.train, lam_models.demo, lam_envs.collect, "
        "lam_envs.export, lam_envs.verify, lam_envs.demo"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("old", sorted(RENAMED_ENTRY_POINTS))
def test_a_dataset_of_the_old_layout_names_the_moved_environment(old):
    env_id = "LinearLAM-v0" if "Linear" in old else "GridLAM-v0"
    vector = old.endswith("VectorEnv")
    spec = gym.spec(env_id).to_json()
    record = json.loads(spec)
    record["vector_entry_point" if vector else "entry_point"] = old
    parsed = parse_env_spec("d", json.dumps(record))
    new = lam_envs.family_of(env_id).entry_point(vector=vector)
    assert (parsed.vector_entry_point if vector else parsed.entry_point) == new
    assert new == RENAMED_ENTRY_POINTS[old]
