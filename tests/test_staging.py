"""No data loss around publishing: a dataset that appears during a run is never replaced,
stale staging folders of dead processes are cleaned (never those of live ones), and the
write probe of concurrent runs does not collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import minari
import numpy as np
import pytest

from lam_envs.collect import main
from lam_envs.utils import staging
from lam_models.data import LAMDataset


def _collect_cmd(root: Path, dataset_id: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lam_envs.collect",
        "--quiet",
        "--root",
        str(root),
        "--dataset-id",
        dataset_id,
        *args,
    ]


def _wait_until_writing(root: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        shards = (root / staging.STAGING).glob("*/data/shard-*.hdf5")
        if any(f.stat().st_size > 100_000 for f in shards):
            return
        if proc.poll() is not None:
            pytest.fail(f"the collector ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the collector never started writing")


@pytest.mark.slow
def test_a_dataset_that_appears_during_the_run_is_not_replaced(tmp_path, monkeypatch):
    root, dataset_id = tmp_path / "minari", "tests/race-v0"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    slow = subprocess.Popen(
        _collect_cmd(root, dataset_id, "--episodes", "400", "--episode-length", "1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_until_writing(root, slow)
    slow.send_signal(signal.SIGSTOP)  # held mid-run while another run publishes the id
    try:
        fast = subprocess.run(
            _collect_cmd(root, dataset_id, "--episodes", "2", "--episode-length", "5"),
            capture_output=True,
            text=True,
        )
    finally:
        slow.send_signal(signal.SIGCONT)
    assert fast.returncode == 0, fast.stderr
    _, err = slow.communicate(timeout=300)
    assert slow.returncode == 2, err
    assert err.startswith(f"error: dataset '{dataset_id}' appeared at") and "not replaced" in err
    assert len(err.strip().splitlines()) == 1
    # the dataset that appeared is intact ...
    assert LAMDataset(root / dataset_id).num_transitions() == 10
    # ... and the run's data is kept, complete, where the message says
    kept = Path(err.split("kept at ")[1].split(" (move")[0])
    assert kept.parent == root / staging.UNPUBLISHED / "tests"
    kept_data = LAMDataset(kept)
    assert kept_data.num_transitions() == 400_000
    assert kept_data.read(np.array([399])).obs.shape == (1000, 1, 4, 4)
    assert staging.unpublished(root) == [kept]
    assert list(minari.list_local_datasets()) == [dataset_id]  # the kept one stays hidden
    assert [p for p, status in staging.clean(root)] == []  # nothing left in staging


def test_publish_refuses_an_existing_target_and_keeps_the_data(tmp_path):
    root = tmp_path
    (root / "ns" / "x-v0" / "data").mkdir(parents=True)
    (root / "ns" / "x-v0" / "data" / "old").write_text("old")
    folder = staging.new_folder(root)
    (folder / "new").write_text("new")
    with pytest.raises(staging.PublishRefused, match="'ns/x-v0' appeared at") as refused:
        staging.publish(folder, root, "ns/x-v0", overwrite=False)
    assert (root / "ns" / "x-v0" / "data" / "old").read_text() == "old"
    kept = Path(str(refused.value).split("kept at ")[1].split(" (move")[0])
    assert (kept / "new").read_text() == "new" and not folder.exists()
    # with overwrite the new data replaces the old, and no trash is left behind
    folder = staging.new_folder(root)
    (folder / "newer").write_text("newer")
    staging.publish(folder, root, "ns/x-v0", overwrite=True)
    assert sorted(p.name for p in (root / "ns" / "x-v0").iterdir()) == ["newer"]
    assert list((root / staging.STAGING).iterdir()) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_staging_of_dead_processes_is_cleaned_never_live_ones(tmp_path, capsys):
    root = tmp_path / "minari"
    area = root / staging.STAGING
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = staging.new_name().rpartition("@")[2]
        dead_pid = _dead_pid()
        folders = {
            "dead": f"{dead_pid}.{staging._start_time(dead_pid)}.aaaa@{host}",
            "old-format dead": f"{dead_pid}-abcdef12",
            "live": f"{live.pid}.{staging._start_time(live.pid)}.bbbb@{host}",
            # a live pid with another start time: the pid was reused, the owner is dead
            "reused pid": f"{live.pid}.1.cccc@{host}",
            "other host": f"{dead_pid}.5.dddd@another-host.example",
            "not ours": "something-else",
        }
        for name in folders.values():
            (area / name / "data").mkdir(parents=True)
        assert main(["--clean", "--root", str(root)]) == 0
        out = capsys.readouterr().out
        left = {p.name for p in area.iterdir()}
        assert left == {folders["live"], folders["other host"], folders["not ours"]}
        assert "removed 3 stale staging folder(s)" in out
        assert f"live      {area / folders['live']}" in out
        assert f"elsewhere {area / folders['other host']}" in out
        # any collect into the root cleans the same way
        (area / folders["dead"]).mkdir()
        args = ["--root", str(root), "--quiet", "--episodes", "1", "--episode-length", "2"]
        assert main([*args, "--dataset-id", "tests/after-v0"]) == 0
        assert {p.name for p in area.iterdir()} == left
    finally:
        live.kill()
        live.wait()


def test_write_probe_is_unique_per_run(tmp_path):
    """Concurrent collects into one root used to share one probe file, so one run's
    unlink made the other's fail: 'not writable'."""
    errors = []

    def probe():
        for _ in range(300):
            try:
                staging.check_writable(tmp_path)
            except ValueError as error:
                errors.append(error)

    threads = [threading.Thread(target=probe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert os.listdir(tmp_path) == []
