"""examples/label_budget_study.py --quick, end to end: the CSV, the plots, and its refusals."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = (
    "setting,env,method,label_fraction,labelled_transitions,seed,nmse_action,nmse_distractor,"
    "agreement,return,full_bc_return,normalised_return"
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
    for r in rows:
        cells[r["setting"], r["method"], r["label_fraction"]].add(r["seed"])
        labelled[r["setting"], r["seed"], float(r["label_fraction"])].add(r["labelled_transitions"])
        assert math.isfinite(float(r["normalised_return"]))
        if r["method"] != "labelled_bc":
            assert 0 <= float(r["nmse_action"]) <= 1.5
        # Distractor probes exist where the setting has a distractor, and only there.
        assert math.isnan(float(r["nmse_distractor"])) == (
            r["setting"] == "clean" or r["method"] == "labelled_bc"
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
    assert len(default.seeds) >= 3 and default.fractions == (0.005, 0.01, 0.025, 0.05, 0.1)
    assert set(default.settings) == {
        "clean",
        "other_agents",
        "background",
        "shake",
        "colour_drift",
        "all",
    }
    assert module.PAPER.lam["laom"].get("latent_dim", 8192) == 8192  # the published size


def test_fully_labelled_bc_follows_the_snake(quick_run):
    _, _, _, rows = quick_run
    # The yardstick: BC on all labels earns most of the snake's reward (1 per step).
    assert min(float(r["full_bc_return"]) for r in rows) > 0.6 * 40


def test_an_existing_csv_is_kept_without_overwrite(load_example, tmp_path, capsys):
    module = load_example("label_budget_study")
    (tmp_path / "label_budget.csv").write_text("mine\n")
    with pytest.raises(SystemExit) as info:
        module.main(["--quick", "--out", str(tmp_path)])
    assert info.value.code == 2 and "exists; use --overwrite" in capsys.readouterr().err
    assert (tmp_path / "label_budget.csv").read_text() == "mine\n"
