"""Every registered LAM, the pipeline and the report card on a CUDA device (skipped where
there is none: CI has none; run ``pytest tests/test_cuda.py`` on a machine with a GPU).

What must hold on the GPU is what holds on the CPU: the model lives on the device, its
latents are finite and come back as CPU arrays, and a few updates from the same seed give
the same model up to floating-point reassociation (the GPU sums in another order)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lam_models.lams.base import get_lam, lam_names
from lam_models.split import DataSplit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

# A few updates of each built-in method on the test datasets (conftest.lam_datasets); a
# method registered later trains on the grid with its defaults, cut to a few updates.
SETTINGS = {
    "linear": ("linear", {"latent_dim": 4, "kappa": 0.1}),
    "vq": ("grid", {"augment": True, "action_prediction": True}),
    "laom": ("grid", {"action_head": True}),
}


def _setting(method: str):
    dataset, settings = SETTINGS.get(method, ("grid", {}))
    fields = {f.name for f in dataclasses.fields(get_lam(method).Config)}
    if "steps" in fields:
        settings = {**settings, "steps": 20}
    return dataset, settings


@pytest.fixture
def full_precision():
    """CUDA's convolutions in plain float32: cuDNN's default TF32 (10-bit mantissa) moves a
    model by about 1e-3 relative per update, which batch norm and a dead-code reset (codes
    set to encoder outputs) amplify past any tolerance that would still catch a real
    difference."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("method", lam_names())
def test_every_method_trains_on_cuda_like_on_the_cpu(method, lam_datasets, full_precision):
    dataset, settings = _setting(method)
    cls = get_lam(method)
    split = DataSplit(lam_datasets[dataset], seed=0)
    o, o2 = split.test.obs()[:, :512], split.test.next_obs()[:, :512]
    trained = {
        device: cls.train(cls.Config(**settings), [split], [0], device=device)
        for device in ("cpu", "cuda")
    }
    gpu = trained["cuda"]
    assert all(p.device.type == "cuda" for p in gpu.module.parameters())
    z = {device: np.asarray(lam.latents(o, o2)[0]) for device, lam in trained.items()}
    assert np.isfinite(z["cuda"]).all() and z["cuda"].shape == z["cpu"].shape
    # 20 updates from the same seed: the same model up to summation order. A discrete code
    # may flip where two are nearly equidistant, so compare the bulk of the latents, each
    # relative to its own size.
    error = np.linalg.norm(z["cuda"] - z["cpu"], axis=-1)
    size = np.linalg.norm(z["cpu"], axis=-1) + 1e-3 * np.linalg.norm(z["cpu"], axis=-1).mean()
    close = error <= 0.02 * size
    assert close.mean() > 0.95, f"{method}: {close.mean():.3f} of the latents agree"
    numbers = list(_numbers(gpu.metrics([split])[0]))
    assert numbers and np.isfinite(numbers).all()


def _numbers(tree):
    """Every number in a nested dict/list of metrics."""
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _numbers(item)
    elif isinstance(tree, (int, float, np.number)) and not isinstance(tree, bool):
        yield float(tree)


def test_the_training_command_and_the_pipeline_run_on_cuda(lam_datasets, tmp_path):
    from lam_models.pipeline import run_pipeline
    from lam_models.train import main as train_main

    out = tmp_path / "run"
    grid = lam_datasets["grid"]
    args = ["vq", "--dataset", grid, "--steps", "20", "--device", "cuda", "--quiet"]
    assert train_main([*args, "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["device"].startswith("cuda")
    summary = run_pipeline(grid, out_dir=tmp_path / "pipeline", quick=True, device="cuda")
    assert np.isfinite(summary["normalised_return"])


def test_the_report_card_runs_on_cuda(tmp_path):
    from lam_models.benchmark import main as benchmark_main

    out = tmp_path / "card"
    code = benchmark_main(
        ["--method", "vq", "--suite", "tiny", "--device", "cuda", "--out", str(out)]
    )
    assert code == 0 and (out / "card.csv").is_file()
