"""examples/reproduce_table1.py --quick --arch all, end to end: datasets from the published
recipes (reduced, in tmp_path), the CSV with its exact columns for both models, the policy
row scored on uniform data, the authors' loss scale, the released data process, the
Markdown table beside the published values, named variants, the pictures, and the cache a
rerun resumes from.

The quick run trains a few updates: too short for the science, which the full runs show
(see the README); here the structure and the bookkeeping are checked.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

#: The CSV's columns as docs/reproductions/table1.md states them.
COLUMNS = [
    column.rstrip(",")
    for column in re.search(
        r"table1_<budget>\.csv` \(columns\s+`([^`]+)`",
        (Path(__file__).parents[1] / "docs" / "reproductions" / "table1.md").read_text(),
    )[1].split()
]
TRAININGS = ["none", "low", "high", "correlated", "noise-copy", "shift", "action-prediction"]


def read(path):
    with path.open() as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("table1")
    module = load_example("reproduce_table1")
    assert module.main(["--quick", "--arch", "all", "--out", str(out)]) == 0
    header, rows = read(out / "table1_quick.csv")
    return module, out, header, rows


def test_csv_has_the_exact_columns_and_every_model_setting_and_seed(quick_run):
    _, out, header, rows = quick_run
    assert header == COLUMNS
    seeds = defaultdict(set)
    for r in rows:
        seeds[(r["arch"], r["setting"])].add(r["seed"])
        assert r["budget"] == "quick" and r["protocol"] == "published"
        assert 1.0 <= float(r["perplexity"]) <= 5.0 and 0.0 <= float(r["action_accuracy"]) <= 1.0
        for key in ("controllable_loss", "stochastic_loss", "controllable_loss_signal"):
            assert math.isfinite(float(r[key])), key
        # Without noise the noise row never varies: its held-out loss is undefined.
        for scale in ("signal", "noaction"):
            stochastic = float(r[f"stochastic_loss_{scale}"])
            assert math.isnan(stochastic) == (r["setting"] == "none")
    for arch in ("published", "ours"):
        assert {s for (a, s) in seeds if a == arch} == set(TRAININGS)
    assert all(s == {"0", "1"} for s in seeds.values())
    # Built from the reduced published recipes under the output folder, never Minari's root.
    built = sorted(p.name for p in (out / "datasets").glob("*/*-v1"))
    assert built == [
        f"table1-grid-{name}-quick-v1"
        for name in ("high-uniform", "low-correlated", "low-uniform", "none-uniform")
    ]


def test_the_policy_row_is_scored_on_the_uniform_data_and_the_rest_on_their_training(
    quick_run,
):
    _, out, _, rows = quick_run
    for r in rows:
        if r["setting"] == "correlated":
            assert r["scored_on"].endswith("table1-grid-low-uniform-quick-v1")
        else:
            assert r["scored_on"] == "training batches"


def test_the_published_losses_are_on_the_authors_scale(quick_run):
    """controllable ÷ 0.060; stochastic ÷ 0.25 at low noise, ÷ 1.0 at high, raw without."""
    module, _, _, rows = quick_run
    from lam_models.evaluation.metrics import published_table1_losses

    assert published_table1_losses(0.06, 0.25, 1.0) == (1.0, 1.0)
    assert published_table1_losses(0.03, 0.5, 2.0) == (0.5, 0.5)
    assert published_table1_losses(0.0, 0.01, 0.0) == (0.0, 0.01)
    recipes = [module.TRAININGS[t].recipe for t in ("none", "low", "high")]
    assert [module.noise_intensity(r) for r in recipes] == [0.0, 1.0, 2.0]
    assert module.PAPER["correlated"]["controllable_loss"] == (1.997, 0.022)


def test_the_published_data_process_as_released(quick_run):
    """Every trajectory starts in (1, 2); the policy row's data follow the released snake
    and wrap from (0, 3) to (0, 0) stored as "stay"."""
    from lam_models.data import LAMDataset

    _, out, _, _ = quick_run
    root = out / "datasets" / "lam_envs"
    for name in ("low-uniform", "low-correlated"):
        data = LAMDataset(root / f"table1-grid-{name}-quick-v1")
        oracle = data.oracle()
        first = np.arange(0, data.num_transitions(), data.episode_length)  # episodes' starts
        assert (oracle["position_before"][first] == [1, 2]).all(), name
    snake = LAMDataset(root / "table1-grid-low-correlated-quick-v1").oracle()
    before, after, action = snake["position_before"], snake["position"], snake["action"]
    corner = (before == [0, 3]).all(1)
    wrapped = corner & (after == [0, 0]).all(1)
    assert wrapped.sum() > 0 and (action[wrapped] == 0).all()
    # Elsewhere the snake goes down column 0 (95% of the time: ε = 0.05).
    column0 = (before[:, 1] == 0) & (before[:, 0] < 2)
    assert (action[column0] == 2).mean() > 0.9


def test_the_markdown_gives_the_published_values_directions_and_pictures(quick_run):
    _, out, _, _ = quick_run
    text = (out / "table1_quick.md").read_text()
    for arch in ("published", "ours"):
        assert f"## {arch} model" in text
    assert text.count("| correlated policy | 1.997 ± 0.022 |") == 2
    assert text.count("| 1% action prediction | 0.295 ± 0.011 |") == 2
    assert "controllable ÷ 0.060" in text and "(base)" in text
    for arch in ("published", "ours"):
        assert (out / f"table1_quick_{arch}.png").stat().st_size > 10_000
        for training in TRAININGS:
            folder = out / "pictures" / f"{arch}_quick_{training}"
            for name in ("codes.png", "transitions.png"):
                assert (folder / name).stat().st_size > 5_000


def test_a_named_variant_says_its_name_and_changes_the_model(load_example, tmp_path, capsys):
    module = load_example("reproduce_table1")
    args = ["--quick", "--settings", "correlated", "--variant", "skip", "--variant",
            "own-data-scoring", "--out", str(tmp_path)]  # fmt: skip
    assert module.main(args) == 0
    _, rows = read(tmp_path / "table1_quick.csv")
    assert {r["protocol"] for r in rows} == {"own-data-scoring+skip"}
    assert {r["scored_on"] for r in rows} == {"training batches"}  # its own snaking data
    training = module.TRAININGS["correlated"]
    config = module.model_config("published", training, "quick", ["skip"], "")
    assert config.fdm_skip and config.reset_schedule == "released"
    published = module.model_config("published", training, "quick", [], "")
    assert not published.fdm_skip and published.label_mechanism == "detached"
    assert module.recipe_of(training, ["package-data"]) == "table1-package-grid-low-correlated"


def test_a_rerun_resumes_from_the_cache(quick_run, capsys):
    module, out, _, rows = quick_run
    capsys.readouterr()
    args = ["--quick", "--arch", "all", "--out", str(out)]
    assert module.main(args) == 0
    assert "28 cached, 0 to train" in capsys.readouterr().out
    assert read(out / "table1_quick.csv")[1] == rows
    # One finished setting × seed lost: only it is trained again.
    lost = next((out / "cache" / "published_quick_shift").glob("seed1-*.json"))
    lost.unlink()
    assert module.main(args) == 0
    printed = capsys.readouterr().out
    assert "27 cached, 1 to train (1 batched runs)" in printed
    assert "[1/1] published_quick_shift: 1 seeds" in printed
    assert lost.is_file()


def test_settings_train_a_subset_and_give_the_rows_that_use_it(quick_run, tmp_path, capsys):
    import shutil

    module, out, _, rows = quick_run
    shutil.copytree(out / "cache", tmp_path / "cache")  # the results of the full run
    capsys.readouterr()
    args = ["--quick", "--settings", "low", "shift", "--out", str(tmp_path), "--data-root",
            str(out / "datasets")]  # fmt: skip
    assert module.main(args) == 0
    assert "1 model(s) × 2 settings × 2 seeds, budget quick: 4 cached, 0 to train" in (
        capsys.readouterr().out
    )
    _, subset = read(tmp_path / "table1_quick.csv")
    assert {r["setting"] for r in subset} == {"low", "shift"}
    assert subset == [
        r for r in rows if r["arch"] == "published" and r["setting"] in ("low", "shift")
    ]
    text = (tmp_path / "table1_quick.md").read_text()
    assert "| augmentation: shift (text, a variant) |" in text and "| no noise |" not in text
