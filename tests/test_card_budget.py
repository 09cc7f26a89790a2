"""Probes measured where they were fitted (``evaluate(measure_on="fit")``) and
examples/card_budget.py, which uses them to tell an untrained latent from a probe that does
not transfer."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from lam_models.evaluation.scoring import evaluate
from lam_models.split import DataSplit


@pytest.fixture(scope="module")
def random_walks(tmp_path_factory):
    """LinearLAM-v0 without noise, d_o = 64, 60 episodes of 40 steps (random walks)."""
    from lam_envs.collect import CollectConfig, collect

    config = CollectConfig(
        env="LinearLAM-v0",
        env_kwargs={"d_o": 64, "d_a": 4},
        episodes=60,
        episode_length=40,
        label_fraction=0.0,
    )
    return str(collect(config, root=tmp_path_factory.mktemp("walks"), progress=False).path)


def test_the_change_holds_the_action_in_and_out_of_sample(random_walks):
    split = DataSplit(random_walks, held_out=0.5, seed=0)
    change = lambda o, o_next: o_next - o  # noqa: E731  (= X a: a linear map of a)
    for measure_on in ("fit", "held_out"):
        assert evaluate(change, split, measure_on=measure_on)["nmse_action"] < 1e-6


def test_a_latent_of_the_frame_fits_in_sample_and_fails_held_out(random_walks):
    # o holds nothing of a (a is drawn after o), so the probe only fits noise: better than
    # the mean where it was fitted, worse than the mean on episodes it did not see.
    split = DataSplit(random_walks, held_out=0.5, seed=0)
    frame = lambda o, o_next: o  # noqa: E731
    fit = evaluate(frame, split, measure_on="fit")["nmse_action"]
    held_out = evaluate(frame, split)["nmse_action"]
    assert fit < 0.99 < 1.0 < held_out


def test_measure_on_is_checked(random_walks):
    with pytest.raises(ValueError, match="measure_on.*'train'"):
        evaluate(lambda o, o_next: o, random_walks, measure_on="train")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("card_budget")
    module = load_example("card_budget")
    assert module.main(["--quick", "--out", str(out)]) == 0
    with (out / "card_budget.csv").open() as f:
        reader = csv.DictReader(f)
        return module, out, reader.fieldnames, list(reader)


def test_the_quick_run_writes_one_row_per_budget_and_a_plot(quick_run):
    module, out, header, rows = quick_run
    assert header == module.COLUMNS
    assert [int(r["updates"]) for r in rows] == [20, 60]
    assert {(r["method"], r["setting"]) for r in rows} == {("linear", "linear/no-noise")}
    for r in rows:
        assert np.isfinite([float(r["nmse_in_sample"]), float(r["nmse_held_out"])]).all()
    assert (out / "card_budget.png").stat().st_size > 10_000


def test_an_earlier_run_is_kept_unless_overwrite(quick_run, capsys):
    module, out, _, rows = quick_run
    assert module.main(["--quick", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with (out / "card_budget.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
