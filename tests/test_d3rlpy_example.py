"""examples/d3rlpy_bc.py in a venv with d3rlpy's own pins (gymnasium 1.0.0)."""

from __future__ import annotations

import re

import pytest

D3RLPY = "d3rlpy==2.8.1"


@pytest.mark.slow
@pytest.mark.parametrize("subset", ["all", "labelled"])
def test_d3rlpy_clones_the_behaviour_policy(external_venv, run_in_venv, subset):
    python = external_venv("d3rlpy", [D3RLPY])
    result = run_in_venv(python, ["examples/d3rlpy_bc.py", "--quick", "--subset", subset])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    returns = dict(re.findall(r"^  (bc|random)\s+mean return\s+(\S+)$", out, re.M))
    # the snaking policy earns about 48 in 50 steps, a random one about 10
    assert float(returns["bc"]) > 40 > 15 > float(returns["random"]), out
    assert re.search(r"d3rlpy holds [\d,]+ transitions", out)
    # and it ran under d3rlpy's own pin
    version = run_in_venv(python, ["-c", "import gymnasium; print(gymnasium.__version__)"])
    assert version.stdout.strip() == "1.0.0"
