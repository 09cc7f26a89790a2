"""The README's AgileRL block, run in a venv with AgileRL, on a `lam_envs/` dataset."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

AGILERL = "agilerl==2.58.0"
README = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"

CHECK = """
import sys
from pathlib import Path

import h5py
import numpy as np
from minari.storage.datasets_root_dir import get_dataset_path

from lam_envs.collect import main
from lam_models.data import LAMDataset

assert main(COLLECT + ["--quiet", "--overwrite"]) == 0
namespace = {}
exec(CODE, namespace)
data = LAMDataset("lam_envs/snaking-full-v0")
learn, outcomes = data.read_numpy(), data.outcomes()
n = data.num_transitions()
memory = namespace["memory"]
stored = memory.storage[: len(memory)]
assert len(memory) == n, len(memory)
same = np.testing.assert_array_equal
same(stored["obs"].numpy(), learn["obs"])
same(stored["next_obs"].numpy(), learn["next_obs"])
same(stored["action"].numpy().reshape(n), learn["actions"])
same(stored["reward"].numpy().reshape(n), outcomes["reward"])
assert namespace["batch"].batch_size[0] == 256
path = Path(namespace["path"])
expected = Path(get_dataset_path()) / "lam_envs" / "snaking_agile-full-v0" / "data"
assert path == expected / "main_data.hdf5", path
with h5py.File(path) as f:
    same(f["observations"][()], learn["obs"])
    same(f["next_observations"][()], learn["next_obs"])
    same(f["actions"][()], learn["actions"])
print("agilerl ok", n)
"""


@pytest.mark.slow
def test_agilerl_reads_a_lam_envs_dataset(external_venv, run_in_venv):
    python = external_venv("agilerl", [AGILERL])
    text = README.read_text()
    text = text[text.index("# Plugging a dataset into another library") :]
    (collect,) = re.findall(r"^    python -m lam_envs\.collect (.*)$", text, re.M)[:1]
    code = re.search(r"\*\*AgileRL\*\*.*?```python\n(.*?)```", text, re.S).group(1)
    script = f"COLLECT = {shlex.split(collect)!r}\nCODE = {code!r}\n" + CHECK
    result = run_in_venv(python, ["-c", script])
    assert result.returncode == 0 and "agilerl ok 5000" in result.stdout, (
        result.stdout + result.stderr
    )
