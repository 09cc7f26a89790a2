"""The LAPO-style pipeline (lam_models.pipeline): it acts well on an easy grid, its stages run
one by one exactly as all together, every LAM plugs in, and bad input fails in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SNAKING, collect_into

from lam_envs.collect import CollectConfig, collect
from lam_models.data import LAMDataset
from lam_models.lams.base import load_lam
from lam_models.pipeline import PipelineConfig, format_results, main, run_pipeline
from lam_models.pipeline.rollout import rollout_returns
from lam_models.split import DataSplit

FAST = {"lam_options": {"steps": 300}, "policy_steps": 300, "rollout_episodes": 8}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    grid = dict(SNAKING, env_kwargs={"noise_intensity": 0.0}, episodes=30, episode_length=50)
    linear = dict(env="LinearLAM-v0", env_kwargs={"d_o": 8, "d_a": 2, "d_b": 2}, episodes=20)
    return {
        "none": str(collect_into(root, **grid, label_fraction=0.1, seed=1)),
        "unlabelled": str(collect_into(root, **grid, label_fraction=0.0, seed=1)),
        "linear": str(collect_into(root, **linear, episode_length=20, label_fraction=0.2, seed=0)),
    }


def _cli(capsys, *args):
    code = main([*args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_composed_policy_snakes_clearly_better_than_random(datasets, tmp_path):
    summary = run_pipeline(
        datasets["none"],
        lam="laom-mlp",
        out_dir=tmp_path / "run",
        label_fraction=0.05,
        lam_options={"steps": 800, "action_head": True},
        policy_steps=600,
        rollout_episodes=8,
    )
    data = LAMDataset(datasets["none"])
    rng = np.random.default_rng(0)
    random = rollout_returns(data, lambda o: rng.integers(5, size=o.shape[:2]), 1, 8, seed=0)[0]
    # Reward 1 per step along the snake: random earns ~1/5 of the episode, the snake all of it.
    assert random < 0.3 * data.episode_length
    assert summary["full_bc_return"] > 0.9 * data.episode_length
    assert summary["composed_return"] > 2 * random
    assert summary["composed_agreement"] > 0.5
    assert summary["normalised_return"] == pytest.approx(
        summary["composed_return"] / summary["full_bc_return"]
    )
    text = format_results(summary)
    assert "composed" in text and "BC on the labelled subset" in text and "normalised" in text
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["metrics"]["composed_return"] == summary["composed_return"]


def test_stage_by_stage_equals_all_stages(datasets, tmp_path, capsys):
    common = ["--dataset", datasets["none"], "--lam", "laom-mlp", "--label-fraction", "0.05"]
    common += ["--lam-steps", "150", "--policy-steps", "150", "--rollout-episodes", "4"]
    code, out, err = _cli(capsys, *common, "--out", str(tmp_path / "all"))
    assert code == 0, err
    assert "composed" in out
    code, _, err = _cli(capsys, *common, "--out", str(tmp_path / "staged"), "--stage", "lam")
    assert code == 0, err
    for stage in ("relabel", "bc", "decoder", "rollout"):
        code, out, err = _cli(capsys, "--out", str(tmp_path / "staged"), "--stage", stage)
        assert code == 0, err
        assert out.startswith(f"stage {stage}:")
    with np.load(tmp_path / "all" / "relabel" / "latents.npz") as a:
        with np.load(tmp_path / "staged" / "relabel" / "latents.npz") as b:
            np.testing.assert_array_equal(a["z_train"], b["z_train"])
    together = json.loads((tmp_path / "all" / "rollout" / "run.json").read_text())["metrics"]
    staged = json.loads((tmp_path / "staged" / "rollout" / "run.json").read_text())["metrics"]
    assert staged == together


@pytest.mark.parametrize("lam", ["vq", "linear"])
def test_every_lam_plugs_into_the_pipeline(datasets, tmp_path, lam):
    summary = run_pipeline(datasets["none"], lam=lam, out_dir=tmp_path / lam, quick=True)
    assert summary["lam"] == lam
    for key in ("composed_return", "labelled_bc_return", "full_bc_return", "normalised_return"):
        assert np.isfinite(summary[key])
    assert 0 <= summary["lam_probe"]["nmse_action"] <= 1.5


def test_the_decoder_can_read_the_latent_policys_output(datasets, tmp_path, monkeypatch):
    """decoder_input="actor" (the published LAOM pipeline): the decoder is fitted on π(o) of
    the labelled transitions, not on their z."""
    import lam_models.pipeline as pipeline

    seen = []
    fit = pipeline.fit_decoder

    def spy(inputs, *args, **kwargs):
        seen.append(np.asarray(inputs))
        return fit(inputs, *args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_decoder", spy)
    for how in ("latent", "actor"):
        summary = run_pipeline(
            datasets["none"],
            lam="laom-mlp",
            out_dir=tmp_path / how,
            quick=True,
            label_fraction=0.05,
            decoder_input=how,
        )
        assert np.isfinite(summary["composed_return"])
    with np.load(tmp_path / "latent" / "relabel" / "latents.npz") as saved:
        z = saved["z_train"]
    np.testing.assert_allclose(seen[0][0], z)  # the relabelled latents
    assert seen[1].shape == seen[0].shape and not np.allclose(seen[1][0], z, atol=1e-3)
    # ... and the actor run's are the saved latent policy's outputs on the train observations.
    from lam_models.pipeline.bc import actor_outputs
    from lam_models.split import DataSplit

    policy = pipeline.load_policy(tmp_path / "actor" / "bc" / "latent_policy.pt")
    train = DataSplit(datasets["none"], 0.1, 0, label_fraction=0.05).train
    expected = actor_outputs(policy, train.obs().reshape(1, len(train), -1))
    np.testing.assert_allclose(seen[1], expected, rtol=1e-5, atol=1e-6)


def test_linear_environment_runs_with_continuous_actions(datasets, tmp_path):
    summary = run_pipeline(datasets["linear"], lam="laom-mlp", out_dir=tmp_path / "lin", quick=True)
    assert "llo" in summary["lam_probe"] and np.isfinite(summary["composed_agreement"])
    # Agreement is 1 − nmse(a) here; the random policy's a ~ N(0, I) ignores o: nothing to clone.
    assert summary["full_bc_agreement"] < 0.2
    assert summary["full_bc_return"] < 0  # reward −‖o'‖² / d_o


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lam", "vqq"], "unknown LAM 'vqq'; registered: "),
        (["--label-fraction", "1.5"], "label_fraction must be in [0.0, 1.0], got 1.5"),
        (["--label-fraction", "0.9"], "label fraction 0.9 out of range"),
        (["--lam", "laom-mlp", "--lam-k", "0"], "k must be >= 1, got 0"),
        (["--lam-option", "stepz=3"], "unknown VQConfig field(s) ['stepz']"),
        (["--stage", "train"], "unknown stage 'train'; allowed: 'lam', 'relabel'"),
        (["--decoder-input", "pixels"], "unknown decoder_input 'pixels'; allowed: 'latent'"),
    ],
)
def test_bad_input_fails_with_one_line(datasets, tmp_path, capsys, args, message):
    code, _, err = _cli(capsys, "--dataset", datasets["none"], "--out", str(tmp_path), *args)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_missing_artefacts_and_unlabelled_data_fail_clearly(datasets, tmp_path, capsys):
    code, _, err = _cli(capsys, "--out", str(tmp_path / "empty"), "--stage", "bc")
    assert code == 2 and "missing artefacts" in err and "has no config.json" in err
    # The decoder will need labels: a dataset without any is refused before the LAM trains.
    run = tmp_path / "run"

    def lam_stage(dataset, steps):
        args = ["--dataset", dataset, "--lam", "laom-mlp", "--lam-steps", str(steps)]
        return [*args, "--out", str(run), "--stage", "lam"]

    code, _, err = _cli(capsys, *lam_stage(datasets["unlabelled"], 20))
    assert code == 2 and "no labelled transition in its train split" in err
    assert not (run / "lam").exists()
    code, _, err = _cli(capsys, *lam_stage(datasets["none"], 20))
    assert code == 0, err
    code, _, err = _cli(capsys, "--out", str(run), "--stage", "bc")
    assert code == 2 and "missing artefacts of stage 'relabel'" in err
    assert _cli(capsys, "--out", str(run), "--stage", "relabel")[0] == 0
    code, _, err = _cli(capsys, "--out", str(run), "--stage", "bc", "--lam", "vq")
    assert code == 2 and "was made with other settings: lam='vq' (folder: 'laom-mlp')" in err
    # A first stage over a run made with other settings is refused unless --overwrite.
    code, _, err = _cli(capsys, *lam_stage(datasets["none"], 21))
    assert code == 2 and "other settings" in err and "--overwrite" in err
    before = json.loads((run / "config.json").read_text())
    assert before["lam_options"] == {"steps": 20}


def test_config_rejects_a_zero_label_fraction():
    with pytest.raises(ValueError, match="label_fraction must be in \\(0, 1\\], got 0"):
        PipelineConfig(dataset="x", label_fraction=0.0)


def test_a_dataset_collected_again_between_stages_is_refused(tmp_path, capsys):
    root = tmp_path / "minari"

    def collect_as(seed: int) -> str:
        config = CollectConfig(
            policy="snaking",
            epsilon=0.3,
            episodes=12,
            episode_length=30,
            label_fraction=0.1,
            seed=seed,
            dataset_id="test/again-v0",
        )
        return str(collect(config, root=root, overwrite=True, progress=False).path)

    path = collect_as(0)
    run = tmp_path / "run"
    common = ["--lam", "laom-mlp", "--lam-steps", "10", "--out", str(run)]
    assert _cli(capsys, "--dataset", path, *common, "--stage", "lam")[0] == 0
    assert _cli(capsys, "--out", str(run), "--stage", "relabel")[0] == 0
    collect_as(1)  # the same id, other data
    code, _, err = _cli(capsys, "--out", str(run), "--stage", "bc")
    assert code == 2 and "changed since stage 'lam' ran" in err and err.count("\n") == 1


def test_relabelling_gives_laom_its_stacked_frames(datasets, tmp_path):
    out = tmp_path / "laom"
    lam_options = {"steps": 20, "channels": (8,), "blocks": 1, "width": 32, "latent_dim": 16}
    run_pipeline(datasets["none"], lam="laom", out_dir=out, quick=True, lam_options=lam_options)
    lam = load_lam(out / "lam", device="cpu")
    assert lam.frame_stack == 3  # the authors' laom stacks 3 frames of the 4×4 images
    split = DataSplit(datasets["none"], held_out=0.1, seed=0)  # the pipeline's defaults
    test = split.test
    expected = lam.latents(test.obs(history=3), test.far_obs(lam.lookahead, history=3))[0]
    stored = np.load(out / "relabel" / "latents.npz")["z_test"]
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
