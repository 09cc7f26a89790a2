"""The runner's Ray backend (``--ray``) on a local Ray of 2 CPUs: a small report card and a
small Table 1 give the numbers of ``--workers 2``, and a task that keeps failing is tried
``max_retries`` more times, then stops the run in one line."""

from __future__ import annotations

import csv
import math

import pytest

from lam_models import benchmark, sweep
from lam_models._commands import RunnerError

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starts Ray (a few seconds) and runs two sweeps twice


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(path, drop=()):
    with path.open() as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def test_a_small_card_on_ray_gives_the_numbers_of_two_workers(local_ray, tmp_path, capsys):
    args = ["--method", "linear", "--suite", "tiny", "--seeds", "1"]
    args += ["--data-root", str(tmp_path / "data")]
    assert benchmark.main([*args, "--workers", "2", "--out", str(tmp_path / "local")]) == 0
    assert benchmark.main([*args, "--ray", "--out", str(tmp_path / "ray")]) == 0
    assert "0 cached, 2 to run, on Ray" in capsys.readouterr().out
    local = _rows(tmp_path / "local" / "card.csv", drop=("seconds",))
    assert len(local) == 2 and _rows(tmp_path / "ray" / "card.csv", drop=("seconds",)) == local


def test_a_small_table1_on_ray_gives_the_numbers_of_two_workers(local_ray, tmp_path, load_example):
    main = load_example("reproduce_table1").main
    args = ["--quick", "--arch", "published", "--settings", "low", "none"]
    args += ["--data-root", str(tmp_path / "data")]
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--ray", "--out", str(tmp_path / "ray")]) == 0
    local = _rows(tmp_path / "local" / "table1_quick.csv")
    assert len(local) >= 4 and _rows(tmp_path / "ray" / "table1_quick.csv") == local


def test_a_failing_task_is_tried_again_then_stops_the_run_in_one_line(local_ray, capsys):
    tasks = [sweep.Task("root of -1", math.sqrt, (-1.0,)), sweep.Task("root of 4", math.sqrt, (4,))]
    with pytest.raises(RunnerError) as error:
        sweep.execute(tasks, sweep.RunnerOptions(ray="", max_retries=1))
    message = str(error.value)
    assert message == "job 'root of -1' failed on Ray (2 tries): ValueError: math domain error"
    assert sweep.execute(tasks[1:], sweep.RunnerOptions(ray="")) == [2.0]
