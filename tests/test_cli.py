"""lam_envs.cli: the progress display every command shares, and the quiet Ctrl-C."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tqdm

from lam_envs import cli


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_a_line_per_tenth_when_not_a_terminal():
    out = io.StringIO()
    with cli.progress(total=1000, desc="collect", unit="tr", file=out) as bar:
        for _ in range(1000):
            bar.update(1)
        bar.set_postfix(loss="0.25")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("collect:  10% 100/1,000 tr, ") and lines[0].endswith(" s")
    assert lines[8].startswith("collect:  90% 900/1,000 tr")
    assert lines[9].startswith("collect: done 1,000/1,000 tr") and "loss=0.25" in lines[9]


def test_progress_wraps_iterables_and_can_be_silent_or_forced(monkeypatch):
    out = io.StringIO()
    assert list(cli.progress(range(50), desc="x", file=out, lines=5)) == list(range(50))
    assert len(out.getvalue().splitlines()) == 5
    out = io.StringIO()
    assert list(cli.progress(range(50), file=out, enabled=False)) == list(range(50))
    assert out.getvalue() == ""
    monkeypatch.setenv("LAM_PROGRESS", "off")
    bar = cli.progress(total=3, file=io.StringIO())
    bar.update(3)
    bar.close()
    monkeypatch.setenv("LAM_PROGRESS", "bar")
    assert isinstance(cli.progress(total=3, file=io.StringIO()), tqdm.tqdm)
    monkeypatch.delenv("LAM_PROGRESS")
    assert isinstance(cli.progress(total=3, file=Terminal()), tqdm.tqdm)
    with pytest.raises(ValueError, match="progress mode must be 'bar', 'lines' or 'off'"):
        cli.progress(total=3, mode="loud")


def test_progress_that_stops_early_says_so():
    out = io.StringIO()
    bar = cli.progress(total=100, desc="d", file=out)
    bar.update(5)
    bar.close()
    bar.close()  # once only
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("d: stopped 5/100 it")


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["python", "-m", "lam_envs.collect", "--quiet"], "lam_envs.collect"),
        (["python", "-Im", "lam_models.train", "linear"], "lam_models.train"),
        (["python", "-X", "importtime", "-m", "lam_envs.collect"], "lam_envs.collect"),
        (["python", "-W", "ignore", "-mlam_envs.demo"], "lam_envs.demo"),
        (["python", "script.py", "-m", "lam_envs.collect"], None),
        (["python", "-c", "import lam_envs", "-m", "x"], None),
        (["python"], None),
    ],
)
def test_the_command_module_is_read_from_the_interpreter_arguments(monkeypatch, argv, module):
    monkeypatch.setattr(sys, "orig_argv", argv)
    assert cli._command_module() == module


INTERRUPT_AFTER_IMPORT = """
import os, signal, sys, time
sys.orig_argv[:] = [sys.executable, "-m", "{module}"]
import lam_envs  # what `python -m lam_envs.collect` imports first
os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C before main() starts
time.sleep(30)
"""


@pytest.mark.slow
def test_ctrl_c_while_a_command_imports_exits_quietly_with_130():
    script = INTERRUPT_AFTER_IMPORT.format(module="lam_envs.collect")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")
    # a library import by another program keeps Python's own KeyboardInterrupt
    script = INTERRUPT_AFTER_IMPORT.format(module="someone_else.tool")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGINT and "KeyboardInterrupt" in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_the_real_startup_of_collect(tmp_path):
    """A real `python -m lam_envs.collect`, interrupted while it imports (once numpy is
    loaded, which the package imports after setting the quiet Ctrl-C up)."""
    cmd = [sys.executable, "-m", "lam_envs.collect", "--quiet", "--root", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while b"numpy" not in Path(f"/proc/{proc.pid}/maps").read_bytes():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert (
        "Traceback" not in err
        and err in ("", "interrupted\n")
        or err.startswith("interrupted: the dataset")
    )
    assert not (tmp_path / "lam_envs").exists()


def test_run_main_turns_an_escaping_interrupt_into_130(capsys):
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        cli.run_main(main)
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(SystemExit) as exit_:
        cli.run_main(lambda: 3)
    assert exit_.value.code == 3
