"""The LAM interface (lam_models.lams.base): a method defined outside the package plugs into the
training command, the pipeline and the scoring by registering one class; every built-in
method trains its copies independently; saved runs load weights only."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import lam_models
from lam_envs.utils.config import option
from lam_models.lams.base import LAM, TrainingLog, get_lam, load_lam, register_lam, registry
from lam_models.pipeline import run_pipeline
from lam_models.split import DataSplit
from lam_models.train import main as train_main

# ------------------------------------------------------------------------- a toy user method


@dataclass
class ToyConfig:
    latent_dim: int = option(3, "latent size")
    steps: int = option(100, "Adam updates")
    batch_size: int = option(64, "transitions per update")
    lr: float = option(1e-2, "Adam learning rate")


class ToyNet(nn.Module):
    """z = W (o' − o), trained to reconstruct o' − o through V: a linear autoencoder of the
    change, M copies."""

    def __init__(self, copies: int, d: int, latent: int, seeds: list[int]):
        super().__init__()
        draws = [
            torch.randn(2, latent, d, generator=torch.Generator().manual_seed(s)) * 0.1
            for s in seeds
        ]
        self.W = nn.Parameter(torch.stack([w[0] for w in draws]))
        self.V = nn.Parameter(torch.stack([w[1].T for w in draws]))


class ToyLAM(LAM):
    """A linear autoencoder of o' − o (a user's own method, defined in this test)."""

    Config = ToyConfig

    def build(self) -> nn.Module:
        d = int(np.prod(self.spec.obs_shape))
        return ToyNet(self.num_copies, d, self.config.latent_dim, self.seeds)

    def encode(self, o, o_far):
        return (o_far - o).flatten(2) @ self.module.W.mT

    def fit(self, data, progress=False):
        c = self.config
        optimiser = torch.optim.Adam(self.module.parameters(), lr=c.lr)
        log = TrainingLog(self, c.steps, 20, progress)
        for step in range(c.steps):
            batch = data.sample(c.batch_size)
            delta = (batch.next_obs - batch.obs).flatten(2)
            z = self.encode(batch.obs, batch.next_obs)
            loss = (z @ self.module.V.mT - delta).pow(2).mean((1, 2))
            optimiser.zero_grad()
            loss.sum().backward()
            optimiser.step()
            log.add(loss=loss)
            log.step(step)


@pytest.fixture
def toy():
    register_lam("toy")(ToyLAM)
    yield ToyLAM
    registry.pop("toy")


def test_a_method_defined_outside_the_package_trains_runs_the_pipeline_and_scores(
    toy, lam_datasets, tmp_path, capsys
):
    grid = lam_datasets["grid"]
    # 1. the training command finds it by name, and its run folder loads back
    out = tmp_path / "run"
    code = train_main(["toy", "--dataset", grid, "--latent-dim", "4", "--quiet", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "nmse(true action)" in text  # scored by the package's probes, with no code of its own
    lam = load_lam(out, device="cpu")
    assert isinstance(lam, ToyLAM) and lam.config.latent_dim == 4
    record = json.loads((out / "run.json").read_text())
    # 2. the package's evaluate() of its latent function gives the run's own numbers
    split = DataSplit(grid, seed=0, eval_transitions=20_000)
    scores = lam_models.evaluate(lambda o, o2: lam.latents(o, o2)[0], split)
    for key in ("nmse_action", "probe_controllable_loss", "probe_stochastic_loss"):
        assert scores[key] == pytest.approx(record["metrics"][key], rel=1e-6), key
    # 3. the pipeline takes it like a built-in method
    summary = run_pipeline(grid, lam="toy", out_dir=tmp_path / "pipeline", quick=True, device="cpu")
    assert summary["lam"] == "toy" and np.isfinite(summary["normalised_return"])
    assert 0 <= summary["lam_probe"]["nmse_action"] <= 1.5


def test_the_registry_refuses_clashes_and_names_what_it_knows(toy):
    with pytest.raises(ValueError, match="a LAM named 'toy' is already registered"):
        register_lam("toy")(type("Other", (ToyLAM,), {}))
    with pytest.raises(ValueError, match="unknown LAM 'toyy'; registered: .*linear.*vq.*toy"):
        get_lam("toyy")
    with pytest.raises(ValueError, match="a LAM name must be"):
        register_lam("no spaces")
    with pytest.raises(TypeError, match="decorates LAM subclasses"):
        register_lam("not-a-lam")(dict)


# ------------------------------------------------------------------------- every built-in method


SETTINGS = {
    "linear": ("linear", {"steps": 40, "latent_dim": 4, "kappa": 0.1}),
    "vq": ("grid", {"steps": 40, "augment": True, "action_prediction": True}),
    "laom": (
        "grid",
        {"steps": 40, "action_head": True, "latent_dim": 32, "channels": (4, 8), "blocks": 1},
    ),
    "laom-mlp": ("grid", {"steps": 40, "action_head": True}),
    "idm": ("grid", {"steps": 40, "channels": (4,), "blocks": 1}),
}


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_a_copy_trains_as_it_would_alone(method, lam_datasets):
    """Initialisation, batches, augmentation and labels come from each copy's own seed: a
    copy's model does not depend on the copies it is trained with."""
    dataset, settings = SETTINGS[method]
    cls = get_lam(method)
    config = cls.Config(**settings)
    splits = [DataSplit(lam_datasets[dataset], seed=s) for s in (0, 1)]
    pair = cls.train(config, splits, [0, 1], device="cpu")
    alone = cls.train(config, splits[1:], [1], device="cpu")
    o, o2 = splits[1].test.obs(), splits[1].test.next_obs()
    np.testing.assert_allclose(
        pair.latents(o, o2)[1], alone.latents(o, o2)[0], rtol=1e-4, atol=1e-5
    )


def test_a_model_file_holding_objects_is_refused(lam_datasets, tmp_path):
    cls = get_lam("vq")
    lam = cls.train(cls.Config(steps=5), [DataSplit(lam_datasets["grid"])], [0], device="cpu")
    lam.save(tmp_path)
    # any pickled object (here a harmless one) could as well be one that runs code on load
    torch.save(
        {"state": lam.module.state_dict(), "why": argparse.Namespace(x=1)}, tmp_path / "model.pt"
    )
    with pytest.raises(ValueError, match="not a weights-only state dict"):
        load_lam(tmp_path, device="cpu")


def test_evaluate_scores_a_plain_function_on_either_environment(lam_datasets):
    # On the linear env (σ_exo = 2, Y ⟂ X) the change o' − o holds q and ε apart: a probe reads
    # either from it; a random latent holds neither.
    change = lam_models.evaluate(lambda o, o2: o2 - o, lam_datasets["linear"])
    assert change["nmse_q"] < 1e-3 and change["nmse_eps"] < 1e-3 and change["nmse_action"] < 1e-3
    noise = lam_models.evaluate(lambda o, o2: torch.randn(len(o), 4), lam_datasets["linear"])
    assert noise["nmse_q"] > 0.95 and noise["nmse_action"] > 0.95
    # On the grid, the change of the top rows shows the move; the noise row's change does not.
    moves = lam_models.evaluate(lambda o, o2: (o2 - o)[:, 0, :3].flatten(1), lam_datasets["grid"])
    assert moves["nmse_action"] < 0.5 and moves["probe_stochastic_loss"] > 0.9
    with pytest.raises(ValueError, match="returned 3 latents"):
        lam_models.evaluate(lambda o, o2: torch.zeros(3, 2), lam_datasets["grid"])


def test_the_readme_examples_run(lam_datasets, tmp_path, monkeypatch):
    """The README's own method and scoring examples, as written (on a test dataset)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "lam-interface.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    mine = next(b for b in blocks if 'register_lam("mine")' in b)
    scoring = next(b for b in blocks if "class MyIDM" in b)
    try:
        exec(compile(mine, "README: adding your own LAM", "exec"), {})
        cls = get_lam("mine")
        lam = cls.train(cls.Config(steps=50), [DataSplit(lam_datasets["grid"])], [0], "cpu")
        assert np.isfinite(lam.history[0]["loss"]).all()
    finally:
        registry.pop("mine", None)
    scoring = scoring.replace('"lam_envs/linear-other-agents-2p0-v0"', "DATASET")
    scoring = scoring.replace("MyIDM()", "MyIDM(d_o=16)")
    exec(compile(scoring, "README: scoring any LAM", "exec"), {"DATASET": lam_datasets["linear"]})


def test_a_latent_function_with_a_history_is_given_stacked_frames(lam_datasets):
    seen = []

    class Stacked:
        history = 3

        def __call__(self, o, o_next):
            seen.append((o.numpy(), o_next.numpy()))
            return o.flatten(1)[:, :4]

    lam_models.evaluate(Stacked(), lam_datasets["grid"])
    o, o_next = (np.concatenate(parts) for parts in zip(*seen, strict=True))
    assert o.shape[1:] == o_next.shape[1:] == (3, 4, 4)  # 3 frames of (1, 4, 4) on channels
    np.testing.assert_array_equal(o_next[:, :2], o[:, 1:])  # (t-1, t, t+1) after (t-2, t-1, t)
    with pytest.raises(ValueError, match="latent_fn.history must be an integer >= 1, got 0"):
        Stacked.history = 0
        lam_models.evaluate(Stacked(), lam_datasets["grid"])


def test_the_card_passes_laoms_stacked_frames_to_it():
    from types import SimpleNamespace

    from lam_models.evaluation.suite import LAMLatents

    latents = LAMLatents(SimpleNamespace(frame_stack=3, latents=lambda o, n: (o, n)))
    assert latents.history == 3 and latents(1, 2) == 1
    vq = get_lam("vq")  # a LAM of single frames (the LAM interface's default)
    assert vq.frame_stack == 1
    assert LAMLatents(SimpleNamespace(frame_stack=vq.frame_stack, latents=None)).history == 1
