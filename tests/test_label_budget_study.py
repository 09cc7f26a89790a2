"""examples/label_budget_study.py --quick, end to end: the CSV, the plots, and its refusals."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = (
    "setting,env,method,label_fraction,labelled_transitions,seed,nmse_action,nmse_distractor,"
    "agreement,return,full_bc_return,normalised_return,behaviour_return"
).split(",")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("label_budget")
    module = load_example("label_budget_study")
    assert module.main(["--quick", "--out", str(out), "--workers", "1"]) == 0
    with (out / "label_budget.csv").open() as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    return module, out, header, rows


def test_csv_and_plots(quick_run):
    module, out, header, rows = quick_run
    assert header == COLUMNS
    for name in ("label_budget_return.png", "label_budget_probe.png"):
        assert (out / name).stat().st_size > 20_000
    quick = module.QUICK
    cells = defaultdict(set)
    labelled = defaultdict(set)
    full = [r for r in rows if r["method"] == "full_bc"]
    rows = [r for r in rows if r["method"] != "full_bc"]
    # BC on all labels: once per seed on every setting and every well-posedness preset
    assert {(r["setting"], r["seed"]) for r in full} == {
        (setting, str(seed))
        for setting in (*quick.settings, *quick.well_posed)
        for seed in quick.seeds
    }
    for r in rows:
        cells[r["setting"], r["method"], r["label_fraction"]].add(r["seed"])
        labelled[r["setting"], r["seed"], float(r["label_fraction"])].add(r["labelled_transitions"])
        assert math.isfinite(float(r["normalised_return"]))
        if r["method"] != "labelled_bc":
            assert 0 <= float(r["nmse_action"]) <= 1.5
        # Distractor probes exist where the setting has a distractor, and only there.
        assert math.isnan(float(r["nmse_distractor"])) == (
            r["setting"] == "goal" or r["method"] == "labelled_bc"
        )
    methods = (*quick.methods, "labelled_bc")
    assert len(cells) == len(quick.settings) * len(quick.fractions) * len(methods)
    assert all(len(seeds) == len(quick.seeds) for seeds in cells.values())
    # Every method of one seed and fraction saw the same labelled subset: whole episodes.
    for counts in labelled.values():
        assert len(counts) == 1
        episodes = int(next(iter(counts))) / quick.episode_length
        assert episodes == int(episodes) >= 1
    default = module.DEFAULT
    assert len(default.seeds) >= 3 and 0.025 in default.fractions
    assert set(default.settings) == {"goal", "goal_lights"}  # the control and the main preset
    assert default.lam_steps >= 2000 and default.policy_encoder == "cnn"
    assert module.PAPER.lam["laom"] == {"scale": "paper"}  # the published sizes


def test_the_summary_states_each_check(quick_run):
    _, out, _, _ = quick_run
    text = (out / "label_budget_summary.txt").read_text()
    for line in (
        "1. failure mode, goal_lights, laom",
        "2. well-posed, goal_agents",
        "3. few labels",
        "4. clean control",
        "a. LAOM's latent",
        "b. LAOM + labels",
    ):
        assert line in text
    assert "not run" not in text  # the quick run has every method and 2.5% labels


def test_fully_labelled_bc_reaches_goals(quick_run):
    _, _, _, rows = quick_run
    # The yardstick: BC on all labels reaches goals (the behaviour policy: ~13 in 40 steps).
    returns = [float(r["full_bc_return"]) for r in rows]
    assert min(returns) > 5


def test_an_existing_csv_is_kept_without_overwrite(load_example, tmp_path, capsys):
    module = load_example("label_budget_study")
    (tmp_path / "label_budget.csv").write_text("mine\n")
    with pytest.raises(SystemExit) as info:
        module.main(["--quick", "--out", str(tmp_path)])
    assert info.value.code == 2 and "exists; use --overwrite" in capsys.readouterr().err
    assert (tmp_path / "label_budget.csv").read_text() == "mine\n"
