"""The README's main command (make demo) in quick mode: every stage runs and reports."""

from __future__ import annotations

import minari
import pytest

from lam_models import demo

pytestmark = pytest.mark.slow  # runs an example end to end


def test_demo_runs_the_whole_story(tmp_path, capsys):
    assert demo.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for label, _, _ in demo.METHODS:
        assert label in out
    assert "BC on the 1% alone" in out and "transitions/s" in out
    for name in ("grid_frames.png", "pipeline.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    dataset = minari.load_dataset(str(tmp_path / "minari" / demo.DATASET_ID))
    assert dataset.total_steps == 20 * 50
    runs = sorted(p.name for p in (tmp_path / "pipeline").iterdir())
    assert runs == ["laom-mlp", "laom-mlp-head", "vq"]
    assert all((tmp_path / "pipeline" / run / "results.json").exists() for run in runs)
