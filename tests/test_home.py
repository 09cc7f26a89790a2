"""The test suite never writes to the user's home: Minari's root is a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from minari.storage.datasets_root_dir import get_dataset_path

from lam_envs.collect import CollectConfig, collect

REPO = Path(__file__).resolve().parents[1]


def test_default_root_is_a_temporary_folder():
    # collect() without a root writes under Minari's root, as a user's call would
    summary = collect(CollectConfig(episodes=1, episode_length=2), progress=False)
    root = Path(get_dataset_path()).resolve()
    assert summary.path.resolve().is_relative_to(root)
    assert root.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert not root.is_relative_to(Path.home().resolve())


@pytest.mark.slow
def test_the_suite_leaves_a_home_untouched(tmp_path):
    """Run a test that writes to Minari's default root with HOME pointing at an empty
    folder and no MINARI_DATASETS_PATH, as on a user's machine: nothing appears there.
    Without the conftest (the control) the same test writes ~/.minari, so this can fail."""
    env = {k: v for k, v in os.environ.items() if k != "MINARI_DATASETS_PATH"}
    node = f"{Path(__file__).name}::test_default_root_is_a_temporary_folder"
    for control in (False, True):
        home = tmp_path / ("home-control" if control else "home")
        home.mkdir()
        flags = ["--noconftest"] if control else []
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *flags, node],
            cwd=REPO / "tests",
            env={**env, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if control:
            assert result.returncode != 0 and (home / ".minari" / "datasets").is_dir()
        else:
            assert result.returncode == 0, result.stdout + result.stderr
            assert list(home.iterdir()) == [], list(home.rglob("*"))
