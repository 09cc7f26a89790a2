"""``python -m lam_models.train METHOD``: one command for every registered LAM. It trains on a
dataset (or, for the linear LAM, on fresh streamed transitions), prints the method's metrics,
saves a run that reloads to the same numbers, and refuses bad input with one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import interrupt_once_loaded

from lam_models.lams.base import get_lam, lam_names, load_lam
from lam_models.split import DataSplit
from lam_models.train import RunConfig, main, train_and_evaluate

# The dataset each built-in method is exercised on, and a few quick steps.
DATA = {"linear": "linear", "vq": "grid", "laom-mlp": "grid"}
QUICK = ["--steps", "60", "--quiet"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_quietly(capsys, out, *args):
    """``python -m lam_models.train ARGS --quiet --out OUT``."""
    return run_cli(capsys, *args, "--quiet", "--out", str(out))


def one_line_error(code, err, *names):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], lines[0]


@pytest.mark.parametrize("method", sorted(DATA))
def test_a_run_reloads_to_the_same_metrics(method, lam_datasets, tmp_path, capsys):
    out = tmp_path / "run"
    dataset = lam_datasets[DATA[method]]
    code, text, err = run_cli(
        capsys, method, "--dataset", dataset, "--seed", "3", *QUICK, "--out", str(out)
    )
    assert code == 0, err
    assert f"saved {out}/" in text
    for name in ("model.pt", "run.json", "training.png"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == method and record["seeds"] == [3]
    assert record["run_config"]["dataset"] == dataset and record["config"][0]["steps"] == 60
    assert record["history"][0]["step"][-1] == 60
    # model.pt + run.json are the whole model: reloaded, it scores the same on the same split.
    lam = load_lam(out, device="cpu")
    run = RunConfig(**record["run_config"])
    split = run.split()
    again = lam.metrics([split])[0]
    for key, value in record["metrics"].items():
        if isinstance(value, float):
            assert again[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key


@pytest.mark.parametrize("method", sorted(DATA))
def test_the_default_device_is_the_cpu_here_and_gives_the_same_numbers(method, lam_datasets):
    cls = get_lam(method)
    config = dataclasses.replace(cls.Config(), steps=30)
    run = RunConfig(dataset=lam_datasets[DATA[method]])
    _, on_cpu, _ = train_and_evaluate(method, config, run, device="cpu")
    lam, default, _ = train_and_evaluate(method, config, run)
    assert str(lam.device) == "cpu"  # no GPU on this machine: auto falls back to the CPU
    assert json.dumps(on_cpu, sort_keys=True, default=str) == json.dumps(
        default, sort_keys=True, default=str
    )


@pytest.mark.parametrize("method", lam_names())
def test_help_shows_every_setting_and_its_default(method, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([method, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    cls = get_lam(method)
    for config in (RunConfig, cls.Config):
        for field in dataclasses.fields(config):
            assert f"--{field.name.replace('_', '-')}" in text, field.name
    for flag in ("--out", "--device", "--threads", "--quiet", "--overwrite"):
        assert flag in text
    assert text.count("(default:") >= len(dataclasses.fields(cls.Config))


def test_bad_input_is_one_line(lam_datasets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))  # ids resolve here
    never = ["--quiet", "--out", str(tmp_path / "never")]
    grid, linear = lam_datasets["grid"], lam_datasets["linear"]
    stream = ["--env", "LinearLAM-v0", "-k", "d_o=16", "-k", "d_a=4", "--steps", "5"]
    cases = [
        (["linear", *stream, "--latent-dim", "0"], "latent_dim", "0"),
        (["linear", *stream, "--latent-dim", "17"], "latent_dim", "17"),
        (["linear", *stream, "--kappa", "-0.5"], "kappa", "-0.5"),
        (["linear", "--dataset", linear, "-k", "d_o=8"], "--env-kwarg", "--dataset"),
        (["linear", "--dataset", lam_datasets["linear_unlabelled"], "--action-head"], "labelled"),
        (["linear", "--dataset", lam_datasets["one_episode"]], "1 episode", "hold out"),
        (["vq", "--dataset", linear], "'vq' LAM works on grid data", "linear"),
        (["vq", "--dataset", grid, "--codebook-size", "0"], "codebook_size", "0"),
        (
            ["vq", "--dataset", grid, "--codebook-size", "3", "--action-prediction"],
            "codebook_size must be >= 5",
        ),
        (
            ["vq", "--dataset", lam_datasets["grid_unlabelled"], "--action-prediction"],
            "needs labelled transitions",
        ),
        (["vq", "--dataset", grid, "--eval-dataset", linear], "does not match"),
        (["vq", "--dataset", "lam_envs/no-such-thing-v0"], "no-such-thing"),
        (["vq", "--dataset", grid, "--held-out", "1.5"], "held_out", "1.5"),
        (["vq", "--dataset", grid, "--label-fraction", "0.9"], "label fraction 0.9 out of range"),
        (["vq", "--dataset", grid, "--device", "tpu"], "unknown device 'tpu'"),
        (["vq"], "needs --dataset"),
        (["laom-mlp", "--dataset", grid, "--k", "0"], "k must be >= 1, got 0"),
        (["laom-mlp", "--dataset", grid, "--ema-decay", "1.0"], "ema_decay", "(0, 1)"),
        (["laom", "--dataset", grid, "--k-max", "0"], "k_max must be >= 1, got 0"),
        (["laom", "--dataset", grid, "--target-tau", "1.5"], "target_tau", "(0, 1]"),
        (["laom", "--dataset", grid, "--channels", "0"], "channels must be >= 1, got 0"),
        (["laom", "--dataset", grid, "--stem", "3"], "stem 3 must divide the image size"),
        (["idm", "--dataset", lam_datasets["grid_unlabelled"]], "learns from labelled"),
        (["vqq", "--dataset", grid], "unknown LAM 'vqq'", "linear"),
    ]
    for args, *names in cases:
        code, _, err = run_cli(capsys, *args, *never)
        one_line_error(code, err, *names)
        assert "Traceback" not in err
    assert not (tmp_path / "never").exists()
    # argparse's own errors are one line too
    with pytest.raises(SystemExit) as exit_info:
        main(["vq", "--dataset", grid, "--steps", "many"])
    one_line_error(exit_info.value.code, capsys.readouterr().err, "--steps", "many")


def test_out_is_checked_before_training(lam_datasets, tmp_path, capsys):
    grid = lam_datasets["grid"]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, _, err = run_cli(capsys, "vq", "--dataset", grid, "--out", str(a_file), *QUICK)
    one_line_error(code, err, "is a file")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.json").write_text("{}")  # e.g. a pipeline's run folder
    code, _, err = run_cli(capsys, "vq", "--dataset", grid, "--out", str(busy), *QUICK)
    one_line_error(code, err, "already holds files", "--overwrite")
    assert sorted(p.name for p in busy.iterdir()) == ["config.json"]
    code, _, err = run_cli(
        capsys, "vq", "--dataset", grid, "--out", str(busy), "--overwrite", *QUICK
    )
    assert code == 0, err


# ------------------------------------------------------------------------- method by method


def test_linear_reaches_the_pca_optimum_on_a_dataset(lam_datasets, tmp_path, capsys):
    out, linear = tmp_path / "run", lam_datasets["linear"]
    args = ["linear", "--dataset", linear, "--latent-dim", "4", "--steps", "800"]
    code, text, err = run_quietly(capsys, out, *args)
    assert code == 0, err
    assert "surrogate" in text and "true z" in text and "analytic minimum" in text
    metrics = json.loads((out / "run.json").read_text())["metrics"]
    surrogate = metrics["surrogate"]
    # σ_exo² = 4 > 1: the top d_z = 4 directions of o' − o are the other agents'.
    assert surrogate["nmse_eps"] < 0.02 and surrogate["nmse_q"] > 0.95
    # The trainer reaches the PCA optimum (4 action directions of variance 1 left over).
    assert metrics["analytic_loss"] == pytest.approx(4.0, rel=0.1)
    assert abs(metrics["relative_gap"]) < 0.02


def test_linear_streams_fresh_transitions(tmp_path, capsys):
    env = ["--env", "LinearLAM-v0", "-k", "d_o=16", "-k", "d_a=4", "-k", "d_b=4"]
    args = ["linear", *env, "-k", "sigma_exo=2.0", "--latent-dim", "4", "--steps", "600"]
    code, text, err = run_quietly(capsys, tmp_path / "run", *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]
    assert "stream LinearLAM-v0" in metrics["data"]
    assert metrics["surrogate"]["nmse_q"] > 0.95  # strong other agents win the latent


def test_linear_copies_keep_their_own_settings_and_data():
    from lam_models.lams.linear import LinearConfig, LinearLAM, StreamConfig, StreamSource

    small = {"d_o": 16, "d_a": 4, "d_b": 4}
    sources = [
        StreamSource(StreamConfig(env_kwargs=small, train_transitions=2048), seed=0),
        StreamSource(
            StreamConfig(env_kwargs={**small, "sigma_exo": 2.0}, train_transitions=2048), seed=1
        ),
    ]
    config = LinearConfig(latent_dim=4, steps=600)
    lam = LinearLAM.train([config, config], sources, [0, 1], device="cpu")
    clean, noisy = lam.metrics(sources)
    assert clean["sigma_exo"] == 0 and noisy["sigma_exo"] == 2.0
    assert clean["surrogate"]["nmse_q"] < 1e-3  # d_z = d_a, no noise
    assert noisy["surrogate"]["nmse_q"] > 0.95  # the noise wins the latent


def test_vq_without_a_noise_row_has_no_stochastic_loss(lam_datasets, tmp_path, capsys):
    args = ["vq", "--dataset", lam_datasets["grid_none"], "--steps", "20"]
    code, _, err = run_quietly(capsys, tmp_path / "r", *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "r" / "run.json").read_text())["metrics"]
    assert metrics["stochastic_loss"] is None  # NaN in JSON: the noise row never varies
    assert math.isfinite(metrics["controllable_loss"])
    assert (tmp_path / "r" / "transitions.png").stat().st_size > 5_000


def test_vq_scores_on_the_eval_dataset(lam_datasets):
    from lam_models.lams.vq import VQConfig

    run = RunConfig(dataset=lam_datasets["grid_none"], eval_dataset=lam_datasets["grid"])
    _, metrics, split = train_and_evaluate("vq", VQConfig(steps=20), run, device="cpu")
    assert split.test.obs()[:, 0, 3].max() == 1.0  # the low-noise row: the eval dataset's
    assert (split.train.obs()[:, 0, 3] == 0).all()  # trained on the no-noise data
    assert math.isfinite(metrics["stochastic_loss"])


def test_laom_labels_pull_the_latent_to_the_action(lam_datasets, tmp_path, capsys):
    runs = {}
    for name, extra in (("plain", []), ("head", ["--action-head"])):
        out = tmp_path / name
        args = ["laom-mlp", "--dataset", lam_datasets["grid"], "--steps", "600", *extra]
        code, text, err = run_quietly(capsys, out, *args)
        assert code == 0, err
        assert "nmse(true action)" in text and "probe controllable loss" in text
        runs[name] = json.loads((out / "run.json").read_text())["metrics"]
    plain, head = runs["plain"], runs["head"]
    # 5% labels through the linear head: the action becomes linearly readable from z.
    assert head["nmse_action"] < plain["nmse_action"] - 0.2
    assert head["head_accuracy"] > 0.7  # wall bumps of the ε-random actions look like "stay"
    # No collapse of the target embedding (LayerNorm output: std near 1 when healthy).
    assert plain["embed_std"] > 0.3 and head["embed_std"] > 0.3
    assert np.isfinite(plain["probe_controllable_loss"])


# ------------------------------------------------------------------------- runs that go wrong


def test_a_diverging_run_stops_and_saves_nothing(lam_datasets, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["linear", "--dataset", lam_datasets["linear"], "--lr", "1e30", "--steps", "100"]
    code, _, err = run_quietly(capsys, out, *args)
    one_line_error(code, err, "diverged", "nothing was saved")
    assert not out.exists()


def test_a_diverging_copy_is_named(lam_datasets):
    from lam_models.lams.base import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: .* copies \[1\]"):
        _diverge_copy_one(lam_datasets)


def _diverge_copy_one(lam_datasets):
    """Copy 1 of two trains on observations poisoned with NaN."""
    from lam_models.lams.vq import VQLAM, VQConfig
    from lam_models.split import CopyBatches

    splits = [DataSplit(lam_datasets["grid"], seed=s) for s in (0, 1)]
    poisoned = splits[1].train
    splits[1].train = dataclasses.replace(poisoned, frames=poisoned.frames * np.nan)
    data = CopyBatches(splits, [0, 1], "cpu")
    VQLAM.train(VQConfig(steps=20, log_every=5), data, [0, 1], device="cpu")


def test_a_linear_run_far_from_the_optimum_is_flagged(lam_datasets, tmp_path, capsys):
    args = ["linear", "--dataset", lam_datasets["linear"], "--steps", "3", "--latent-dim", "4"]
    code, text, err = run_quietly(capsys, tmp_path / "run", *args)
    assert code == 0, err
    assert "warning: the reconstruction loss ends" in text and "above the analytic optimum" in text


def test_the_label_fraction_is_honoured_on_a_dataset(lam_datasets, tmp_path, capsys):
    args = ["linear", "--dataset", lam_datasets["linear"], "--action-head", "--steps", "20"]
    code, _, err = run_quietly(capsys, tmp_path / "run", *args, "--label-fraction", "0.01")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["run_config"]["label_fraction"] == 0.01
    assert "27 labelled" in record["metrics"]["data"]  # round(0.01 · 2700 train transitions)


def test_an_out_folder_under_a_file_is_refused_before_training(lam_datasets, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "run"
    code, _, err = run_cli(
        capsys, "vq", "--dataset", lam_datasets["grid"], *QUICK, "--out", str(out)
    )
    one_line_error(code, err, "cannot be written")


def test_latents_that_are_not_finite_are_refused_clearly(lam_datasets):
    import lam_models

    with pytest.raises(ValueError, match="the latents hold NaN or infinite values"):
        lam_models.evaluate(
            lambda o, o2: torch.full((len(o), 2), float("nan")), lam_datasets["grid"]
        )


def test_training_curves_go_to_a_png_and_to_tensorboard(lam_datasets, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, board = tmp_path / "run", tmp_path / "board"
    args = ["vq", "--dataset", lam_datasets["grid"], "--steps", "200", "--tensorboard", str(board)]
    code, _, err = run_quietly(capsys, out, *args)
    assert code == 0, err
    assert (out / "training.png").stat().st_size > 10_000
    events = EventAccumulator(str(board))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"loss", "fdm_loss", "commitment_loss", "perplexity", "codes_used"} <= set(tags)
    history = json.loads((out / "run.json").read_text())["history"][0]
    logged = [e.value for e in events.Scalars("perplexity")]
    assert logged == pytest.approx(history["perplexity"])  # the same numbers as run.json
    assert [e.step for e in events.Scalars("loss")] == history["step"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["lam_models.train", "lam_models.pipeline"])
def test_ctrl_c_while_a_training_command_imports_torch_exits_quietly(command, tmp_path):
    """A real `python -m lam_models.train`, interrupted while it loads torch."""
    import sys

    args = ["vq", "--dataset", "x"] if command.endswith("train") else ["--out", str(tmp_path)]
    code, err = interrupt_once_loaded([sys.executable, "-m", command, *args], b"libtorch", 60)
    assert code == 130 and "Traceback" not in err, err
