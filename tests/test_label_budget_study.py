"""examples/label_budget_study.py --quick, end to end: the CSV, the plot, and what it shows."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = (
    "setting,noise_intensity,action_leak,method,label_fraction,seed,nmse_action,"
    "probe_controllable_loss,probe_stochastic_loss,agreement,return,full_bc_return,"
    "normalised_return"
).split(",")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("label_budget")
    module = load_example("label_budget_study")
    assert module.main(["--quick", "--out", str(out)]) == 0
    with (out / "label_budget.csv").open() as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    return module, out, header, rows


def test_csv_and_plot(quick_run):
    module, out, header, rows = quick_run
    assert header == COLUMNS
    assert (out / "label_budget.png").stat().st_size > 20_000
    quick = module.QUICK
    cells = defaultdict(set)
    for r in rows:
        cells[r["setting"], r["method"], r["label_fraction"]].add(r["seed"])
        assert math.isfinite(float(r["normalised_return"]))
        if r["method"] != "labelled_bc":
            assert 0 <= float(r["nmse_action"]) <= 1.5
    methods = (*module.METHODS, "labelled_bc")
    assert len(cells) == len(quick.settings) * len(quick.fractions) * len(methods)
    assert all(len(seeds) == len(quick.seeds) for seeds in cells.values())
    assert len(module.FULL.seeds) >= 3 and module.FULL.fractions == (0.005, 0.01, 0.025, 0.05, 0.1)


def test_labels_make_the_laom_latent_hold_the_action(quick_run):
    _, _, _, rows = quick_run

    def probe(method, setting, fraction=0.1):
        values = [
            float(r["nmse_action"])
            for r in rows
            if (r["method"], r["setting"], float(r["label_fraction"]))
            == (method, setting, fraction)
        ]
        return sum(values) / len(values)

    # With 10% labels in its head, the LAOM latent holds the action far better, with or
    # without the action leaking into the noise row (the unsupervised models are the same at
    # every fraction).
    for setting in ("none", "correlated"):
        assert probe("laom+labels", setting) < probe("laom", setting) - 0.1
    # Fully labelled BC is the yardstick: it follows the snake (the quick episodes are short).
    assert min(float(r["full_bc_return"]) for r in rows) > 0.8 * 60
