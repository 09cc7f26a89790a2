"""The runner (lam_models.sweep.execute): results in the tasks' order, a failure or a Ctrl-C
stops every worker; resumable sweeps on it: results cached per setting × seed, keyed by
what they depend on, so that a rerun trains only what is missing and a changed setting never
reads a stale result."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time

import pytest

from lam_models import sweep
from lam_models.lams.vq import VQConfig


@pytest.fixture
def job(lam_datasets):
    return sweep.Job(
        "low",
        "vq",
        VQConfig(steps=20, log_every=10),
        lam_datasets["grid"],
        seeds=(0, 1),
        held_out=0.1,
        eval_transitions=500,
    )


def test_a_rerun_reads_the_cache_and_a_changed_setting_trains_again(job, tmp_path, capsys):
    cache = sweep.ResultCache(tmp_path / "cache")
    first = sweep.run([job], cache, pictures=tmp_path / "pictures")
    assert sorted(first) == [("low", 0), ("low", 1)]
    assert "0 cached, 2 to train (1 batched runs)" in capsys.readouterr().out
    assert (tmp_path / "pictures" / "low" / "codes.png").is_file()
    files = sorted((tmp_path / "cache" / "low").glob("seed*.json"))
    assert len(files) == 2

    again = sweep.run([job], cache)
    assert "2 cached, 0 to train" in capsys.readouterr().out
    assert again == first

    files[1].unlink()  # seed 1 lost: only it trains, alone, to the same numbers
    resumed = sweep.run([job], cache)
    assert "1 cached, 1 to train" in capsys.readouterr().out
    assert resumed[("low", 1)]["controllable_loss"] == pytest.approx(
        first[("low", 1)]["controllable_loss"], rel=1e-4
    )

    longer = dataclasses.replace(job, config=VQConfig(steps=21, log_every=10))
    sweep.run([longer], cache)
    assert "0 cached, 2 to train" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "low").glob("seed*.json"))) == 4  # none overwritten


def test_the_runner_returns_results_in_order_and_a_failure_stops_it(capsys):
    seen = []
    tasks = [sweep.Task(f"sqrt {x}", math.sqrt, (x,), kind="sqrt") for x in (9, 4, -1, 16)]
    assert sweep.execute(tasks[:2], on_result=lambda t, r: seen.append((t.name, r))) == [3, 2]
    assert seen == [("sqrt 9", 3), ("sqrt 4", 2)]
    assert "[2/2] sqrt 4: in 0 s" in capsys.readouterr().out
    with pytest.raises(ValueError, match="math domain error"):
        sweep.execute(tasks, on_result=lambda t, r: seen.append((t.name, r)))
    assert seen[2:] == [("sqrt 9", 3), ("sqrt 4", 2)]  # what ended before it was handed over


def test_ctrl_c_stops_the_workers_at_once_and_drops_the_rest(capsys):
    tasks = [sweep.Task("quick", time.sleep, (0,)), *[sweep.Task("slow", time.sleep, (120,))] * 2]

    def interrupt(task, result):  # the user presses Ctrl-C as the first task ends
        raise KeyboardInterrupt

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        sweep.execute(tasks, workers=2, on_result=interrupt)
    assert time.perf_counter() - start < 60  # the running sleep was stopped, not awaited
    assert multiprocessing.active_children() == []
    assert "cancelled: 0 of 3 done (kept), 3 dropped" in capsys.readouterr().err


def test_one_worker_and_two_give_the_same_numbers_bit_for_bit(job, tmp_path, capsys):
    jobs = [job, dataclasses.replace(job, name="short", config=VQConfig(steps=12, log_every=6))]
    one = sweep.run(jobs, sweep.ResultCache(tmp_path / "one"), 1)
    two = sweep.run(jobs, sweep.ResultCache(tmp_path / "two"), sweep.RunnerOptions(workers=2))
    assert "0 cached, 4 to train (2 batched runs) on cpu, 2 worker(s)" in capsys.readouterr().out
    assert len(one) == 4 and one == two


SCRIPT = """
from dataclasses import dataclass

@dataclass(frozen=True)
class Point:
    x: float

def norm(point):
    return (point.x ** 2) ** 0.5
"""


def test_a_scripts_tasks_run_in_workers_and_are_cached_by_key_code_and_device(tmp_path, capsys):
    import importlib.util
    import sys

    path = tmp_path / "my_study.py"
    path.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("my_study_by_path", path)
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # as tests load the examples: not importable by name
    spec.loader.exec_module(script)
    tasks = [sweep.Task(f"p{x}", script.norm, (script.Point(x),), key={"x": x}) for x in (-3, 4)]
    cache = sweep.ResultCache(tmp_path / "cache")
    assert sweep.execute(tasks, 2, cache=cache) == [3.0, 4.0]  # in spawned workers
    assert "0 cached, 2 to run, 2 worker(s)" in capsys.readouterr().out
    assert sweep.execute(tasks, 2, cache=cache) == [3.0, 4.0]
    assert "2 cached, 0 to run" in capsys.readouterr().out
    key = cache.key(tasks[0], "cpu")
    assert cache.key(tasks[0], "cuda:1") != key == cache.key(tasks[0], "cpu")
    path.write_text(SCRIPT + "\n# a changed script\n")
    assert cache.key(tasks[0], "cpu") != key  # its code changed: never read again
    del sys.modules[spec.name]
