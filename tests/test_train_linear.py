"""``python -m lam_models.train linear``: trains from a dataset or a stream, probes the latent
on held-out transitions, saves the run, and refuses bad input with one line and exit 2.

Small spaces (d_o = 16, d_a = 4) keep each run to a second or two on two cores.
"""

from __future__ import annotations

import json
import math

import pytest

from lam_envs.collect import CollectConfig, collect
from lam_models.train import main as train_main
from lam_models.train_linear import TrainLinearConfig, train_and_evaluate_many

SMALL = {"d_o": 16, "d_a": 4, "d_b": 4}


def _collect(root, **kw):
    config = CollectConfig(**{"env": "LinearLAM-v0", "env_kwargs": SMALL, "seed": 0, **kw})
    return collect(config, root=root, progress=False).path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    return {
        # one-step episodes: every o ~ N(0, I), the paper's i.i.d. setting
        "linear": _collect(root, episodes=3000, episode_length=1, label_fraction=0.5),
        "unlabelled": _collect(root, episodes=40, episode_length=5, label_fraction=0.0),
        "one_episode": _collect(root, episodes=1, episode_length=50),
        "grid": collect(
            CollectConfig(policy="snaking", episodes=4, episode_length=5), root=root, progress=False
        ).path,
    }


def run_cli(capsys, *args):
    code = train_main(["linear", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dataset_run_reaches_the_action_and_saves_everything(datasets, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys,
        "--dataset", str(datasets["linear"]), "--latent-dim", "4", "--steps", "800",
        "--quiet", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    assert "surrogate" in out and "true z" in out and "analytic minimum" in out
    record = json.loads((out_dir / "run.json").read_text())
    assert (out_dir / "model.pt").is_file()
    assert record["method"] == "linear"
    assert record["config"]["dataset"] == str(datasets["linear"])
    assert record["config"]["latent_dim"] == 4 and record["model_config"]["d_o"] == 16
    metrics = record["metrics"]
    assert metrics["true"]["latent"] == "true" and metrics["surrogate"]["latent"] == "surrogate"
    # No noise and d_z = d_a: on held-out episodes the latent predicts q and a exactly,
    # and holds nothing of o (nmse(o) about 1, up to the probe's sampling error).
    surrogate = metrics["surrogate"]
    assert surrogate["nmse_q"] < 1e-3 and surrogate["nmse_a"] < 1e-3
    assert surrogate["nmse_o"] > 0.95 and surrogate["eps_zero_variance"]
    assert surrogate["llo"] == pytest.approx(2.0, abs=0.05)
    assert metrics["recon_loss"] < 1e-3 * 4  # total variance of q is d_a = 4
    assert metrics["analytic_loss"] == pytest.approx(0.0, abs=1e-6)


def test_stream_run_with_strong_other_agents_fits_the_noise_first(tmp_path, capsys):
    out_dir = tmp_path / "stream"
    code, out, err = run_cli(
        capsys,
        "--env", "LinearLAM-v0", "-k", "d_o=16", "-k", "d_a=4", "-k", "d_b=4",
        "-k", "sigma_exo=2.0", "--latent-dim", "4", "--steps", "1200", "--quiet",
        "--eval-transitions", "2048", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((out_dir / "run.json").read_text())["metrics"]
    surrogate = metrics["surrogate"]
    # σ_exo² = 4 > 1: the top d_z = 4 directions of o' − o are the other agents'.
    assert surrogate["nmse_eps"] < 0.02 and surrogate["nmse_q"] > 0.95
    # The trainer reaches the PCA optimum (4 action directions of variance 1 left over).
    assert metrics["analytic_loss"] == pytest.approx(4.0, rel=0.1)
    assert abs(metrics["relative_gap"]) < 0.02


def test_batched_configurations_keep_their_own_kappa_and_data():
    base = dict(env_kwargs=SMALL, latent_dim=4, steps=600, train_transitions=2048)
    configs = [
        TrainLinearConfig(**base, seed=0),
        TrainLinearConfig(**{**base, "env_kwargs": {**SMALL, "sigma_exo": 2.0}}, seed=1),
    ]
    _, (clean, noisy) = train_and_evaluate_many(configs)
    assert clean["sigma_exo"] == 0 and noisy["sigma_exo"] == 2.0
    assert clean["surrogate"]["nmse_q"] < 1e-3  # d_z = d_a, no noise
    assert noisy["surrogate"]["nmse_q"] > 0.95  # the noise wins the latent


def _bad_inputs(datasets):
    stream = ["--env", "LinearLAM-v0", "-k", "d_o=16", "-k", "d_a=4", "--steps", "5"]
    return {
        "latent zero": (stream + ["--latent-dim", "0"], "latent_dim", "0"),
        "latent above d_o": (stream + ["--latent-dim", "17"], "latent_dim", "17"),
        "negative kappa": (stream + ["--kappa", "-0.5"], "kappa", "-0.5"),
        "no labels (stream)": (
            stream + ["--action-head", "--label-fraction", "0"],
            "label_fraction",
            "0",
        ),
        "no labels (dataset)": (
            ["--dataset", str(datasets["unlabelled"]), "--action-head", "--steps", "5"],
            "labelled",
            "0",
        ),
        "wrong environment": (
            ["--dataset", str(datasets["grid"]), "--steps", "5"],
            "GridLAM",
            "linear",
        ),
        "too small to hold out": (
            ["--dataset", str(datasets["one_episode"]), "--steps", "5"],
            "1 episode",
            "hold out",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "latent zero",
        "latent above d_o",
        "negative kappa",
        "no labels (stream)",
        "no labels (dataset)",
        "wrong environment",
        "too small to hold out",
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, datasets, tmp_path, capsys):
    args, *names = _bad_inputs(datasets)[case]
    code, out, err = run_cli(capsys, *args, "--quiet", "--out", str(tmp_path / "never"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], lines[0]
    assert not (tmp_path / "never").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["linear", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--env", "--latent-dim", "--kappa", "--action-weight", "--out"):
        assert flag in text


def test_config_rejects_nan_and_bad_held_out():
    with pytest.raises(ValueError, match="kappa"):
        TrainLinearConfig(kappa=math.nan)
    with pytest.raises(ValueError, match="held_out"):
        TrainLinearConfig(dataset="x", held_out=1.0)
