"""``python -m lam_models.train vq``: trains from a grid dataset, scores the model on held-out
episodes, saves a run that reproduces its metrics, and refuses bad input with one line and
exit 2.

Datasets are tiny (a few thousand transitions, in tmp_path) and runs a few hundred updates.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lam_envs.collect import CollectConfig, collect
from lam_models.train import main as train_main
from lam_models.train_vq import GridSource, TrainVQConfig, evaluate
from lam_models.vq import VQLAM, VQLAMConfig


def _collect(root, **kw):
    config = CollectConfig(**{"episodes": 20, "episode_length": 50, "seed": 0, **kw})
    return str(collect(config, root=root, progress=False).path)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    return {
        "low": _collect(root, preset="low", label_fraction=0.05),
        "none": _collect(root, preset="none", label_fraction=0.05),
        "unlabelled": _collect(root, preset="low", label_fraction=0.0, episodes=4),
        "linear": _collect(root, env="LinearLAM-v0", env_kwargs={"d_o": 16, "d_a": 4}, episodes=4),
    }


def run_cli(capsys, *args):
    code = train_main(["vq", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_saves_a_model_that_reproduces_its_metrics(datasets, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys,
        "--dataset", datasets["low"], "--steps", "120", "--action-prediction",
        "--held-out", "0.2", "--seed", "3", "--quiet", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    for text in ("controllable loss", "stochastic loss", "perplexity", "action accuracy"):
        assert text in out
    record = json.loads((out_dir / "run.json").read_text())
    assert record["method"] == "vq"
    config = record["config"]
    assert config["dataset"] == datasets["low"] and config["seed"] == 3
    assert config["action_prediction"] and config["codebook_size"] == 5
    assert record["model_config"]["steps"] == 120 and record["model_config"]["action_weight"] > 0
    assert record["history"]["step"][-1] == 120
    metrics = record["metrics"]
    # 4 of the 20 episodes (50 transitions each) are held out.
    assert metrics["eval_transitions"] == 200
    assert 1.0 <= metrics["perplexity"] <= 5.0 and 1 <= metrics["codes_used"] <= 5
    assert 0.0 <= metrics["action_accuracy"] <= 1.0
    assert 0.0 <= metrics["assigned_action_accuracy"] <= 1.0
    assert (out_dir / "transitions.png").stat().st_size > 5_000

    # model.pt + run.json are the whole run: reloaded, the model scores the same.
    model_config = VQLAMConfig(
        **{**record["model_config"], "obs_shape": tuple(record["model_config"]["obs_shape"])}
    )
    model = VQLAM(model_config, [3])
    model.load_state_dict(torch.load(out_dir / "model.pt"))
    again = evaluate(model, GridSource(TrainVQConfig(**config)).held_out)
    for key in ("controllable_loss", "stochastic_loss", "perplexity", "action_accuracy"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6), key


def test_no_noise_stochastic_loss_is_undefined_and_eval_dataset_is_used(datasets, tmp_path):
    source = GridSource(TrainVQConfig(dataset=datasets["none"], eval_dataset=datasets["low"]))
    held_out = source.held_out
    assert "gridlam-low" in held_out.description
    assert held_out.obs[:, 0, 3].max() == 1.0  # the low-noise row: the eval dataset's data
    assert (source.train["obs"][:, 0, 3] == 0).all()  # trained on the no-noise data
    code = train_main(
        ["vq", "--dataset", datasets["none"], "--steps", "20", "--quiet",
         "--out", str(tmp_path / "r")]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "r" / "run.json").read_text())["metrics"]
    assert metrics["stochastic_loss"] is None  # NaN in JSON: the noise row never varies
    assert math.isfinite(metrics["controllable_loss"])


def test_labelled_share_fills_batches_with_labelled_transitions(datasets):
    source = GridSource(
        TrainVQConfig(dataset=datasets["low"], action_prediction=True, labelled_share=0.25)
    )
    counts = [int(source.sampler()(step)[3].sum()) for step in range(20)]
    assert min(counts) >= 32  # 25% of 128 at least; the rest drawn from all transitions
    plain = GridSource(TrainVQConfig(dataset=datasets["low"], labelled_share=0.25))
    assert np.mean([int(plain.sampler()(s)[3].sum()) for s in range(20)]) < 16


def _bad_inputs(datasets):
    low = ["--dataset", datasets["low"], "--steps", "5"]
    return {
        "codebook zero": (low + ["--codebook-size", "0"], "codebook_size", "0"),
        "codebook below actions": (
            low + ["--codebook-size", "3", "--action-prediction"],
            "codebook_size=3",
            "num_actions=5",
        ),
        "linear dataset": (["--dataset", datasets["linear"]], "LinearLAM", "grid"),
        "no labels": (
            ["--dataset", datasets["unlabelled"], "--action-prediction"],
            "no labelled transitions",
            "--action-prediction",
        ),
        "linear eval dataset": (
            low + ["--eval-dataset", datasets["linear"]],
            "LinearLAM",
            "grid",
        ),
        "missing dataset": (["--dataset", "lam_envs/no-such-thing-v0"], "no-such-thing", "no"),
        "bad flag value": (low + ["--steps", "many"], "--steps", "many"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "codebook zero",
        "codebook below actions",
        "linear dataset",
        "no labels",
        "linear eval dataset",
        "missing dataset",
        "bad flag value",
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, datasets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))  # ids resolve here
    args, *names = _bad_inputs(datasets)[case]
    if case == "bad flag value":
        with pytest.raises(SystemExit) as exit_info:
            train_main(["vq", *args])
        code, err = exit_info.value.code, capsys.readouterr().err
    else:
        code, _, err = run_cli(capsys, *args, "--quiet", "--out", str(tmp_path / "never"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], lines[0]
    assert not (tmp_path / "never").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["vq", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flags = (
        "--dataset", "--eval-dataset", "--held-out", "--eval-transitions", "--codebook-size",
        "--augment", "--action-prediction", "--action-weight", "--labelled-share", "--steps",
        "--batch-size", "--lr", "--seed", "--out", "--threads", "--quiet",
    )  # fmt: skip
    for flag in flags:
        assert flag in text


def test_config_rejects_bad_values_naming_them():
    with pytest.raises(ValueError, match="codebook_size must be >= 1, got -2"):
        TrainVQConfig(dataset="x", codebook_size=-2)
    with pytest.raises(ValueError, match="held_out"):
        TrainVQConfig(dataset="x", held_out=0.0)
    with pytest.raises(ValueError, match="labelled_share"):
        TrainVQConfig(dataset="x", labelled_share=1.5)
