"""examples/reproduce_table1.py --quick, end to end: datasets from the recipes (reduced, in
tmp_path), the CSV with its exact columns, the Markdown table and the PNGs.

The quick run trains 150 updates: too short for the science, which the full run shows
(see the README); here the structure and the bookkeeping are checked.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = [
    "group", "setting", "seed", "controllable_loss", "stochastic_loss", "perplexity",
    "action_accuracy",
]  # fmt: skip
SETTINGS = {
    "noise": {"none", "low", "high"},
    "policy": {"uniform", "correlated"},
    "augmentation": {"without", "with"},
    "action prediction": {"without", "with"},
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("table1")
    assert load_example("reproduce_table1").main(["--quick", "--out", str(out)]) == 0
    with (out / "table1_results.csv").open() as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    return out, header, rows


def test_csv_has_the_exact_columns_and_every_setting_and_seed(quick_run):
    out, header, rows = quick_run
    assert header == COLUMNS
    seeds = defaultdict(set)
    for r in rows:
        seeds[(r["group"], r["setting"])].add(r["seed"])
        perplexity, accuracy = float(r["perplexity"]), float(r["action_accuracy"])
        assert 1.0 <= perplexity <= 5.0 and 0.0 <= accuracy <= 1.0
        assert math.isfinite(float(r["controllable_loss"]))
        stochastic = float(r["stochastic_loss"])
        # Without noise the noise row never varies: the stochastic loss is undefined.
        assert math.isnan(stochastic) == (r["setting"] == "none")
    assert {g: {s for (g2, s) in seeds if g2 == g} for g in SETTINGS} == SETTINGS
    assert all(s == {"0", "1"} for s in seeds.values())
    # Built from the reduced recipes under the output folder, never Minari's root.
    built = (out / "datasets" / "lam_envs").glob("*-v0")
    assert sorted(p.name for p in built) == [
        f"grid-{name}-quick-v0"
        for name in ("high-uniform", "low-correlated", "low-uniform", "none-uniform")
    ]


def test_baseline_rows_reuse_the_models_of_their_base_setting(quick_run):
    _, _, rows = quick_run

    def metrics(group, setting):
        return [
            tuple(r[k] for k in COLUMNS[2:])
            for r in rows
            if r["group"] == group and r["setting"] == setting
        ]

    assert metrics("policy", "uniform") == metrics("noise", "low")
    assert metrics("action prediction", "without") == metrics("noise", "low")
    assert metrics("augmentation", "without") == metrics("policy", "correlated")
    assert metrics("augmentation", "with") != metrics("augmentation", "without")


def test_markdown_table_and_plots(quick_run):
    out, _, rows = quick_run
    text = (out / "table1.md").read_text()
    assert "| group | setting | controllable loss" in text
    for group, settings in SETTINGS.items():
        for setting in settings:
            assert f"| {group} | {setting} |" in text
    assert text.count(" ± ") >= 4 * 9 - 1  # every cell but the undefined stochastic loss
    assert "Published directions" in text
    for name in ("table1_transitions.png", "table1_bars.png"):
        assert (out / name).stat().st_size > 10_000
