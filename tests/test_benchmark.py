"""The LAM report card (lam_models.benchmark): a user's method, defined here, is trained and
scored on the tiny suite; its card agrees with lam_models.evaluate on the same data."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

import lam_models
from lam_models import benchmark
from lam_models.evaluation.suite import MAIN_DISTRACTING, standard_settings
from lam_models.recipes import recipe_config
from lam_models.split import DataSplit


def change_of_the_top_rows(data, seed):
    """A user's 'LAM': no training, z = the change of the observation (the top rows on the
    grid, everything on the linear environment)."""
    grid = len(data.spec.obs_shape) == 3
    assert data.test is None and data.train.oracle == {}  # no held-out part, no ground truth
    assert data.train.obs().shape[0] > 0

    def latent(o, o_next):
        change = o_next - o
        return change[:, 0, :3].flatten(1) if grid else change

    return latent


def test_a_users_method_gets_a_card_that_matches_evaluate(tmp_path):
    rows = benchmark.run_benchmark([change_of_the_top_rows], "tiny", out=tmp_path, workers=1)
    suite = benchmark.SUITES["tiny"]
    assert len(rows) == len(suite.settings) * suite.seeds
    for name in ("card.csv", "card.md", "card.png"):
        assert (tmp_path / name).stat().st_size > 100, name
    with (tmp_path / "card.csv").open() as f:
        card = list(csv.DictReader(f))
    assert {r["method"] for r in card} == {"change_of_the_top_rows"}
    assert {r["suite_version"] for r in card} == {benchmark.SUITE_VERSION}
    # Every number on the card is lam_models.evaluate's on the same split.
    for row in card:
        setting = next(s for s in suite.settings if s.name == row["setting"])
        path = benchmark.ensure_dataset(
            setting.recipe, tmp_path / "datasets", transitions=suite.transitions
        )
        split = DataSplit(path, seed=int(row["seed"]), eval_transitions=20_000)
        scores = lam_models.evaluate(
            change_of_the_top_rows(split.training_view(), 0), split, nuisance=setting.nuisance
        )
        assert float(row["nmse_action"]) == pytest.approx(scores["nmse_action"], rel=1e-5)
        held = [1 - scores[f"nmse_{n}"] for n in setting.nuisance]
        assert float(row["nuisance_held"]) == pytest.approx(np.clip(max(held), 0, 1), abs=1e-5)
    # What the card says: the change of the top rows holds much of the move (a linear probe
    # reads the row and column changes, not all five one-hot actions) and none of the noise
    # row; on the linear env o' − o holds the action and the other agents alike.
    by = {(r["setting"], r["seed"]): r for r in card}
    grid = by["grid/low", "0"]
    assert float(grid["action_held"]) > 0.3 and float(grid["nuisance_held"]) < 0.05
    linear = by["linear/agents-strong", "0"]
    assert float(linear["action_held"]) > 0.99 and float(linear["nuisance_held"]) > 0.99
    markdown = (tmp_path / "card.md").read_text()
    assert "✗" not in markdown  # the mark lives in the picture
    # A function without a loss history is never marked unconverged.
    assert {r["unconverged"] for r in card} == {"False"} and "**unconverged**" not in markdown
    assert f"suite v{benchmark.SUITE_VERSION}" in markdown and benchmark.SUITE_VERSION == "2"


def test_a_builtin_method_and_a_module_function_by_name(tmp_path, capsys, monkeypatch):
    # A user's module on the path (worker processes inherit it).
    (tmp_path / "my_lam_method.py").write_text(
        "def train(data, seed):\n    return lambda o, o_next: (o_next - o).flatten(1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = benchmark.main(
        [
            "--method",
            "my_lam_method:train",
            "--method",
            "vq",
            "--suite",
            "tiny",
            "--seeds",
            "1",
            "--workers",
            "2",
            "--out",
            str(tmp_path / "card"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| vq | grid/low |" in out and "linear/agents-strong" in out
    with (tmp_path / "card" / "card.csv").open() as f:
        card = list(csv.DictReader(f))
    # The VQ LAM works on images only: it has no linear row.
    assert {(r["method"], r["setting"]) for r in card if r["method"] == "vq"} == {
        ("vq", "grid/low")
    }
    assert all(math.isfinite(float(r["nmse_action"])) for r in card)


def test_the_published_vq_is_a_builtin_method(tmp_path):
    # The published grid VQ LAM of Table 1 gives its reference rows through the same code
    # path as a user's method (a few updates here: the card's plumbing, not its numbers).
    method = benchmark.builtin_method("vq-published", steps=3)
    assert method.supports("grid") and not method.supports("linear")
    suite = benchmark.Suite(benchmark.SUITES["tiny"].settings, 2400, 3, seeds=1)
    rows = benchmark.run_benchmark(["vq-published"], suite, out=tmp_path, workers=1)
    assert [(r["method"], r["setting"]) for r in rows] == [("vq-published", "grid/low")]
    assert math.isfinite(rows[0]["nmse_action"]) and 0 <= rows[0]["nuisance_held"] <= 1
    assert "| vq-published | grid/low |" in (tmp_path / "card.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "vqq"], "unknown method 'vqq'"),
        (["--method", "no_such_module:f"], "cannot import 'no_such_module'"),
        (["--method", "lam_models:no_such_function"], "has no function 'no_such_function'"),
        (["--method", "vq", "--suite", "huge"], "unknown suite 'huge'"),
        (["--method", "vq", "--seeds", "0"], "seeds must be >= 1"),
        (["--method", "vq", "--sizes", "huge"], "unknown sizes 'huge'"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    assert benchmark.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_earlier_card_is_kept_unless_overwrite(tmp_path, capsys):
    (tmp_path / "card.csv").write_text("an earlier card\n")
    args = ["--method", "linear", "--suite", "tiny", "--seeds", "1", "--out", str(tmp_path)]
    assert benchmark.main(args) == 2
    err = capsys.readouterr().err
    assert "already holds files (card.csv: an earlier run?)" in err and err.count("\n") == 1
    assert "--overwrite" in err
    assert (tmp_path / "card.csv").read_text() == "an earlier card\n"
    assert benchmark.main([*args, "--workers", "1", "--overwrite"]) == 0
    assert (tmp_path / "card.csv").read_text().startswith("suite_version,method")


def test_the_cpu_sizes_shrink_the_builtins_on_images_and_the_published_ones_do_not():
    laom = benchmark.builtin_method("laom+labels", steps=5)
    on_grid, on_images = laom.options(image=False), laom.options(image=True)
    assert on_grid["latent_dim"] == 128 and on_grid["shift"] == 0 and "stem" not in on_grid
    assert on_images["stem"] == 4 and on_images["shift"] == 2 and on_images["action_head"]
    assert benchmark.builtin_method("vq-published", 5).options(image=True) is None
    assert benchmark.builtin_method("vq-published", 5).options(image=False) == {"batch_size": 128}
    published = benchmark.builtin_method("laom", 5, sizes="published")
    assert published.options(image=True) == published.options(image=False) == {}


def test_the_cpu_sizes_are_each_lams_own(monkeypatch):
    from lam_models.lams.base import get_lam

    vq = get_lam("vq")
    monkeypatch.setattr(vq, "cpu_sizes", {"all": {"batch_size": 7}, "image": {"codes": 3}})
    method = benchmark.builtin_method("vq", 5)
    assert method.options(image=False) == {"batch_size": 7}
    assert method.options(image=True) == {"batch_size": 7, "codes": 3}
    monkeypatch.setattr(vq, "cpu_sizes", {"image": None})
    assert method.options(image=True) is None and method.options(image=False) == {}
    assert get_lam("laom-mlp").cpu_sizes == {}  # not LAOM's encoder sizes, which it inherits


def test_on_the_distracting_grid_the_cpu_sizes_leave_out_the_published_vq(tmp_path):
    # 32×32 frames: laom trains at its CPU image sizes; vq-published (dozens of times
    # slower per update there) has no row, and the card says which sizes it used. The
    # goal task with its main distractors probes their low-dimensional change.
    goal = standard_settings("distracting/goal-clean", "distracting/goal-lights")
    assert goal[1].recipe == MAIN_DISTRACTING and goal[1].nuisance == ("distractor_change",)
    suite = benchmark.Suite(goal, 400, 2, seeds=1)  # 4 episodes of 100 steps
    rows = benchmark.run_benchmark(["vq-published", "laom"], suite, out=tmp_path, workers=1)
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("laom", "distracting/goal-clean"),
        ("laom", "distracting/goal-lights"),
    ]
    assert math.isnan(rows[0]["nuisance_held"]) and 0 <= rows[1]["nuisance_held"] <= 1
    assert math.isfinite(rows[1]["nmse_distractor_change"])
    assert "built-in methods at cpu sizes" in (tmp_path / "card.md").read_text()


def test_the_full_suite_covers_the_standard_settings():
    names = {s.name for s in benchmark.SUITES["full"].settings}
    for wanted in (
        "linear/no-noise",
        "linear/iid",
        "linear/agents-weak",
        "linear/agents-strong",
        "linear/deterministic",
        "grid/none",
        "grid/low",
        "grid/high",
        "grid/correlated",
        "distracting/goal-clean",
        "distracting/goal-lights",
    ):
        assert wanted in names
    assert benchmark.SUITES["full"].seeds == 3
    # The card's linear settings have their own data: short episodes, not the figures'
    # random walks of 200 steps.
    for setting in benchmark.STANDARD:
        if setting.name.startswith("linear/"):
            config = recipe_config(setting.recipe)
            assert setting.recipe.startswith("card-linear-") and config.episode_length == 10


def test_with_the_pipeline_the_card_reports_the_normalised_return(tmp_path):
    suite = benchmark.Suite(standard_settings("grid/low"), transitions=2400, steps=60, seeds=1)
    (row,) = benchmark.run_benchmark(
        [change_of_the_top_rows], suite, out=tmp_path, with_pipeline=True
    )
    assert math.isfinite(row["normalised_return"]) and row["normalised_return"] >= 0
    assert "norm. return" in (tmp_path / "card.md").read_text()


def test_the_readme_example_of_a_users_lam_gets_a_card(tmp_path, monkeypatch, capsys):
    """The README's plain-PyTorch LAM, as written, through the command line."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "docs" / "report-card.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "# my_lam.py" in b)
    (tmp_path / "my_lam.py").write_text(block.replace("range(2000)", "range(300)"))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "card"
    args = ["--method", "my_lam:train", "--suite", "tiny", "--seeds", "1", "--workers", "1"]
    assert benchmark.main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
    with (out / "card.csv").open() as f:
        card = list(csv.DictReader(f))
    assert {r["setting"] for r in card} == {s.name for s in benchmark.SUITES["tiny"].settings}
    assert all(0 <= float(r["nmse_action"]) < 1.5 for r in card)


def test_a_rerun_reads_every_cell_from_the_cache(tmp_path, capsys):
    suite = benchmark.Suite(benchmark.SUITES["tiny"].settings, 2400, 3, seeds=1)
    first = benchmark.run_benchmark([change_of_the_top_rows], suite, out=tmp_path)
    assert "0 cached, 2 to run, 1 worker(s)" in capsys.readouterr().out
    again = benchmark.run_benchmark([change_of_the_top_rows], suite, out=tmp_path, overwrite=True)
    assert "2 cached, 0 to run" in capsys.readouterr().out
    assert repr(again) == repr(first)  # its seconds included (and NaN): read back, not rerun
    other = benchmark.run_benchmark(
        [change_of_the_top_rows], suite, seeds=2, out=tmp_path, overwrite=True
    )
    assert "0 cached, 2 to run" in capsys.readouterr().out and len(other) == 4
