"""examples/reproduce_linear.py --quick, end to end: the CSV, the plots, and the science.

The quick sweep runs at d_o = 32, d_a = 4 with 3 seeds; its numbers already show the clean
effects, which these tests state.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = (
    "figure,seed,d_o,d_a,d_z,d_b,sigma_iid,sigma_exo,chi,kappa,label_fraction,latent,"
    "nmse_a,nmse_q,nmse_eps,nmse_o,llo,recon_loss,analytic_loss"
).split(",")
FIGURES = ("F3a", "F3b", "F3c", "F6a", "F6b", "F6c")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("linear")
    assert load_example("reproduce_linear").main(["--quick", "--out", str(out)]) == 0
    with (out / "linear_results.csv").open() as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    return out, header, rows


def _mean(rows, figure, metric, **where):
    values = [
        float(r[metric])
        for r in rows
        if r["figure"] == figure and all(float(r[k]) == v for k, v in where.items())
    ]
    assert len(values) >= 3, (figure, where)
    return sum(values) / len(values)


def test_csv_and_plots(quick_run):
    out, header, rows = quick_run
    assert header == COLUMNS
    for figure in FIGURES:
        assert (out / f"{figure}.png").stat().st_size > 10_000
    settings = COLUMNS[: COLUMNS.index("latent") + 1]
    seeds = defaultdict(set)
    for r in rows:
        seeds[tuple(r[k] for k in settings if k != "seed")].add(r["seed"])
        for key in ("nmse_q", "nmse_o", "llo", "recon_loss", "analytic_loss"):
            assert math.isfinite(float(r[key]))
    assert {r["figure"] for r in rows} == set(FIGURES)
    assert min(len(s) for s in seeds.values()) >= 3


def test_quick_run_shows_the_clean_effects(quick_run, capsys):
    _, _, rows = quick_run
    # F3a: no noise: nmse(q) = 1 − d_z/d_a below d_a, 0 from d_z = d_a on.
    assert _mean(rows, "F3a", "nmse_q", d_a=4, d_z=2) == pytest.approx(0.5, abs=0.05)
    assert _mean(rows, "F3a", "nmse_q", d_a=4, d_z=4) < 0.01
    # F3c: strong other agents take the latent first, weak ones come after the action.
    assert _mean(rows, "F3c", "nmse_q", sigma_exo=2.0, d_z=4) > 0.9
    assert _mean(rows, "F3c", "nmse_q", sigma_exo=0.5, d_z=4) < 0.05
    # F6b: augmentation takes o out of the true latent and gives it the action.
    for sigma in (0.0, 2.0):
        assert _mean(rows, "F6b", "nmse_o", sigma_exo=sigma, kappa=0.5) > _mean(
            rows, "F6b", "nmse_o", sigma_exo=sigma, kappa=0.0
        )
        assert _mean(rows, "F6b", "nmse_q", sigma_exo=sigma, kappa=0.5) < 0.05
    # F6c: labels pull the latent to the action under strong other agents.
    assert _mean(rows, "F6c", "nmse_q", label_fraction=0.1) < 0.1
    assert _mean(rows, "F6c", "nmse_q", label_fraction=0.0) > 0.9
