"""examples/reproduce_table1.py --quick --arch all, end to end: datasets from the recipes
(reduced, in tmp_path), the CSV with its exact columns for both models, the Markdown
table, the pictures, and the cache a rerun resumes from.

The quick run trains a few updates: too short for the science, which the full runs show
(see the README); here the structure and the bookkeeping are checked.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = [
    "group",
    "setting",
    "seed",
    "controllable_loss",
    "stochastic_loss",
    "perplexity",
    "action_accuracy",
    "arch",
    "augmentation",
    "budget",
    "controllable_loss_signal",
    "controllable_loss_noaction",
    "stochastic_loss_signal",
    "stochastic_loss_noaction",
]
SETTINGS = {
    "noise": {"none", "low", "high"},
    "policy": {"uniform", "correlated"},
    "augmentation": {"without", "shift (text)", "noise copy (released)"},
    "action prediction": {"without", "with (1% of trajectories)"},
}
TRAININGS = ["none", "low", "high", "correlated", "shift", "noise-copy", "action-prediction"]


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
        seeds[(r["arch"], r["group"], r["setting"])].add(r["seed"])
        assert r["budget"] == "quick"
        assert 1.0 <= float(r["perplexity"]) <= 5.0 and 0.0 <= float(r["action_accuracy"]) <= 1.0
        for scale in ("signal", "noaction"):
            assert math.isfinite(float(r[f"controllable_loss_{scale}"]))
            # Without noise the noise row never varies: the stochastic loss is undefined.
            stochastic = float(r[f"stochastic_loss_{scale}"])
            assert math.isnan(stochastic) == (r["setting"] == "none")
        # the columns of earlier versions repeat the signal scale
        assert r["controllable_loss"] == r["controllable_loss_signal"]
        assert r["stochastic_loss"] == r["stochastic_loss_signal"]
        expected = {"shift (text)": "shift", "noise copy (released)": "noise-copy"}
        assert r["augmentation"] == expected.get(r["setting"], "none")
    for arch in ("published", "ours"):
        found = {g: {s for (a, g2, s) in seeds if g2 == g and a == arch} for g in SETTINGS}
        assert found == SETTINGS
    assert all(s == {"0", "1"} for s in seeds.values())
    # Built from the reduced recipes under the output folder, never Minari's root.
    built = sorted(p.name for p in (out / "datasets").glob("*/*-v0"))
    assert built == [
        f"table1-grid-{name}-quick-v0"
        for name in ("high-uniform", "low-correlated", "low-uniform", "none-uniform")
    ]


def test_every_row_is_on_the_base_and_baselines_reuse_the_base_model(quick_run):
    _, _, _, rows = quick_run

    def metrics(arch, group, setting):
        return [
            tuple(r[k] for k in COLUMNS[2:7])
            for r in rows
            if (r["arch"], r["group"], r["setting"]) == (arch, group, setting)
        ]

    for arch in ("published", "ours"):
        base = metrics(arch, "noise", "low")
        assert metrics(arch, "policy", "uniform") == base
        assert metrics(arch, "augmentation", "without") == base
        assert metrics(arch, "action prediction", "without") == base
        for setting in ("shift (text)", "noise copy (released)"):
            assert metrics(arch, "augmentation", setting) != base
    # The no-action scale is one constant for every row: on the rows scored on the base
    # data, the two scales differ by one factor (the signal's variance over the constant).
    ratios = [
        float(r["controllable_loss_noaction"]) / float(r["controllable_loss_signal"])
        for r in rows
        if r["group"] in ("augmentation", "action prediction")
    ]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-4)  # the CSV keeps 6 digits


def test_markdown_table_pictures_and_the_no_action_constant(quick_run):
    _, out, _, _ = quick_run
    text = (out / "table1_quick.md").read_text()
    for arch in ("published", "ours"):
        assert f"## {arch} model" in text
    for group, settings in SETTINGS.items():
        for setting in settings:
            assert text.count(f"| {group} | {setting} |") == 2
    assert "Published directions" in text and "the authors' code uses 0.060" in text
    for arch in ("published", "ours"):
        assert (out / f"table1_quick_{arch}.png").stat().st_size > 10_000
        for training in TRAININGS:
            folder = out / "pictures" / f"{arch}_quick_{training}"
            for name in ("codes.png", "transitions.png"):
                assert (folder / name).stat().st_size > 5_000


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
    args = [
        "--quick",
        "--settings",
        "low",
        "shift",
        "--out",
        str(tmp_path),
        "--data-root",
        str(out / "datasets"),
    ]
    assert module.main(args) == 0
    assert "1 model(s) × 2 settings × 2 seeds, budget quick: 4 cached, 0 to train" in (
        capsys.readouterr().out
    )
    _, subset = read(tmp_path / "table1_quick.csv")
    rows_used = [
        ("noise", "low"),
        ("policy", "uniform"),
        ("augmentation", "without"),
        ("augmentation", "shift (text)"),
        ("action prediction", "without"),
    ]
    assert sorted({(r["group"], r["setting"]) for r in subset}) == sorted(rows_used)
    assert subset == [
        r for r in rows if r["arch"] == "published" and (r["group"], r["setting"]) in rows_used
    ]
    text = (tmp_path / "table1_quick.md").read_text()
    assert "- augmentation without -> shift (text)" in text
    assert "noise none -> low" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--budget", "huge"], "invalid choice: 'huge'"),
        (["--arch", "mine"], "invalid choice: 'mine'"),
        (["--settings", "loud"], "invalid choice: 'loud'"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message, load_example, capsys, tmp_path):
    module = load_example("reproduce_table1")
    with pytest.raises(SystemExit) as exit_info:
        module.main([*args, "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "never").exists()
