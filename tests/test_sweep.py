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
