"""examples/reproduce_linear.py --quick, end to end: both protocols' CSV, plots and science.

The quick sweeps run at d_o = 32, d_a = 4, d_b = 4 with 3 seeds (the published protocol with
3,000 steps and 500 probe steps; the package's at 500 steps); their numbers already show the
clean effects, which these tests state.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow  # runs an example end to end

COLUMNS = (
    "protocol,projection,figure,seed,d_o,d_a,d_z,d_b,noise,sigma,chi,kappa,label_fraction,action_weight,"
    "steps,latent,probe,nmse_a,nmse_noise,nmse_o,llo,recon_loss,analytic_loss"
).split(",")
FIGURES = ("F3a", "F3b", "F3c", "F6a", "F6b", "F6c")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, load_example):
    out = tmp_path_factory.mktemp("linear")
    main = load_example("reproduce_linear").main
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--quick", "--protocol", "all", "--out", str(out)]) == 0
    with (out / "linear_results.csv").open() as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    return out, header, rows, printed.getvalue()


def means(quick_run, protocol):
    """``mean(figure, metric, **where)``: a metric's mean over the quick run's rows of one
    protocol and figure (at least 3 seeds) where the columns ``where`` hold those values."""
    rows = quick_run[2]

    def mean(figure, metric, **where):
        values = [
            float(r[metric])
            for r in rows
            if r["protocol"] == protocol
            and r["figure"] == figure
            and all(float(r[k]) == v for k, v in where.items())
        ]
        assert len(values) >= 3, (protocol, figure, where)
        return sum(values) / len(values)

    return mean


def test_printed_summary_and_elapsed_time(quick_run):
    *_, printed = quick_run
    for protocol in ("published", "package"):
        for figure in FIGURES:
            assert f"{figure} ({protocol}):" in printed
    assert re.search(r"nmse\(a\) by d_z: 2: \d\.\d{3}±\d\.\d{3}", printed)
    assert re.search(r"^elapsed \d+\.\d s$", printed, re.MULTILINE)


def test_csv_and_plots(quick_run):
    out, header, rows, _ = quick_run
    assert header == COLUMNS
    for protocol in ("published", "package"):
        for figure in FIGURES:
            assert (out / f"{figure}_{protocol}.png").stat().st_size > 10_000
    settings = [c for c in COLUMNS[: COLUMNS.index("probe") + 1] if c != "seed"]
    seeds = defaultdict(set)
    for r in rows:
        seeds[tuple(r[k] for k in settings)].add(r["seed"])
        for key in ("nmse_a", "nmse_noise", "nmse_o", "llo", "recon_loss", "analytic_loss"):
            assert math.isfinite(float(r[key])), (r, key)
    assert {(r["protocol"], r["figure"]) for r in rows} == {
        (p, f) for p in ("published", "package") for f in FIGURES
    }
    assert min(len(s) for s in seeds.values()) >= 3
    published = [r for r in rows if r["protocol"] == "published"]
    assert {r["probe"] for r in published} == {"adam"}
    latents = {(r["figure"], r["latent"]) for r in published}
    assert latents == {("F3a", "change"), ("F3b", "change"), ("F3c", "change"),
                       ("F6a", "change"), ("F6b", "true"), ("F6c", "true")}  # fmt: skip
    assert {r["noise"] for r in published if r["figure"] == "F6b"} == {"uniform"}
    # F6c's published head: weight 1 in the mean-over-dimensions loss, λ_a = d_o/d_a here.
    heads = {float(r["action_weight"]) for r in published if float(r["label_fraction"]) > 0}
    assert heads == {32 / 4}
    assert {float(r["kappa"]) for r in published if r["figure"] == "F6c"} == {0.1}


def test_published_quick_run_shows_the_effects(quick_run):
    mean = means(quick_run, "published")
    # F3a: no noise: nmse(a) = 1 − d_z/d_a below d_a, about 0 from d_z = d_a on.
    assert mean("F3a", "nmse_a", d_a=4, d_z=2) == pytest.approx(0.5, abs=0.05)
    assert mean("F3a", "nmse_a", d_a=4, d_z=4) < 0.05
    # F3c: strong other agents take the latent first, weak ones come after the action.
    assert mean("F3c", "nmse_a", sigma=2.0, d_z=4) > 0.9
    assert mean("F3c", "nmse_noise", sigma=2.0, d_z=4) < 0.1
    assert mean("F3c", "nmse_a", sigma=0.5, d_z=4) < 0.1
    # F6a: a deterministic policy's latent, probed on random-policy data, misses the action;
    # with Π's orthonormal rows (Πo ~ N(0, I), a's variance at most 1) the miss is of order 1.
    assert 10 > mean("F6a", "nmse_a", chi=1.0) > 1 > 0.1 > mean("F6a", "nmse_a", chi=0.0)
    # F6b: augmentation takes o out of the true latent and gives it the action.
    assert mean("F6b", "nmse_o", kappa=0.5) > mean("F6b", "nmse_o", kappa=0.0)
    assert mean("F6b", "nmse_a", kappa=0.5) < mean("F6b", "nmse_a", kappa=0.0) - 0.3
    # F6c: 10% labels pull the latent from strong other agents to the action.
    assert mean("F6c", "nmse_a", label_fraction=0.1) < 0.3
    assert mean("F6c", "nmse_a", label_fraction=0.0) > 0.9


def test_package_quick_run_shows_the_effects(quick_run):
    mean = means(quick_run, "package")
    assert mean("F3a", "nmse_a", d_a=4, d_z=2) == pytest.approx(0.5, abs=0.05)
    assert mean("F3a", "nmse_a", d_a=4, d_z=4) < 0.01
    # Probed on noisy data the latent holds a noisy action: nmse(a) grows with σ.
    assert mean("F3b", "nmse_a", sigma=2.0) > 0.5 > 0.01 > mean("F3b", "nmse_a", sigma=0.0)
    assert mean("F3c", "nmse_a", sigma=2.0, d_z=4) > 0.9
    assert mean("F3c", "nmse_a", sigma=0.5, d_z=4) < 0.05
    for sigma in (0.0, 1.0):  # Gaussian noise in the package's F6b
        assert mean("F6b", "nmse_o", sigma=sigma, kappa=0.5) > mean(
            "F6b", "nmse_o", sigma=sigma, kappa=0.0
        )
    assert mean("F6b", "nmse_a", sigma=0.0, kappa=0.5) < 0.05
    assert mean("F6c", "nmse_a", label_fraction=0.1) < 0.1
    assert mean("F6c", "nmse_a", label_fraction=0.0) > 0.9


def test_an_earlier_run_is_kept_without_overwrite(load_example, tmp_path, capsys):
    (tmp_path / "linear_results.csv").write_text("earlier\n")
    with pytest.raises(SystemExit):
        load_example("reproduce_linear").main(["--quick", "--out", str(tmp_path)])
    assert "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "linear_results.csv").read_text() == "earlier\n"


def test_the_default_grid_keeps_the_points_that_carry_each_finding(load_example):
    example = load_example("reproduce_linear")
    runs = example.published_runs(example.PUBLISHED, example.FIGURES)

    def points(figure, *keys):
        return {
            tuple(getattr(r.law, k) if hasattr(r.law, k) else getattr(r.config, k) for k in keys)
            for r in runs
            if r.figure == figure
        }

    # F3c at d_z = 10: noise enters only once d_z passes d_a = 8.
    assert {(0.5, 10), (2.0, 10)} <= points("F3c", "sigma", "latent_dim")
    # F6a at every published χ for d_z 4 and 8, Π with orthonormal rows.
    chis = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert points("F6a", "chi", "latent_dim") == {(c, d) for c in chis for d in (4, 8)}
    assert points("F6a", "projection") == {("orthonormal",)}
    # F6b at σ 0.5 and 1 with κ 0 and 0.1; F6c at σ_exo = 1.
    assert {(s, k) for s in (0.5, 1.0) for k in (0.0, 0.1)} <= points("F6b", "sigma", "kappa")
    assert (1.0,) in points("F6c", "sigma")


def test_the_published_grid_is_the_papers_full_sweep(load_example):
    full = load_example("reproduce_linear").PUBLISHED_FULL
    assert full.f3a_d_a == (2, 4, 6, 8, 10, 12, 14, 16) and full.f3a_d_z == tuple(range(1, 17))
    assert full.f3b_sigma == tuple(i / 10 for i in range(16))
    assert full.f3b_d_z == (2, 4, 6, 8, 10, 12, 14, 16)
    assert full.f6a_chi == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert full.f6b_kappa == (0.0, 0.01, 0.1, 0.5) and full.f6b_sigma == (0.0, 0.1, 0.5, 1.0)
    assert full.f6c_fraction == (0.0, 0.01, 0.05, 0.1) and full.f6c_sigma == (0.5, 1.0, 2.0)
    for d_z in (full.f3c_d_z, full.f6a_d_z, full.f6b_d_z, full.f6c_d_z):
        assert d_z == tuple(range(2, 17))
    assert (full.f3a_steps, full.f3b_steps, full.steps) == (20_000, 10_000, 40_000)
