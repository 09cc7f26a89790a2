"""lam_envs.utils.cli: the progress display every command shares, and the quiet Ctrl-C."""

from __future__ import annotations

import io
import signal
import subprocess
import sys

import pytest
import tqdm
from conftest import interrupt_once_loaded, sigint_as_in_a_terminal

from lam_envs.utils import cli


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


INTERRUPTED_IMPORT = """
import sys
sys.orig_argv[:] = [sys.executable, "-m", "{module}"]  # as `python -m {module}` sets it
sys.path.insert(0, {folder!r})
import lam_envs  # what such a command imports first
{then}
"""
# a module whose import is interrupted by Ctrl-C (a slow import: torch, minari, ...)
SLOW_IMPORT = "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n"


def _interrupt(tmp_path, module: str, then: str) -> subprocess.CompletedProcess:
    (tmp_path / "slow_import.py").write_text(SLOW_IMPORT)
    script = INTERRUPTED_IMPORT.format(module=module, folder=str(tmp_path), then=then)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )


@pytest.mark.slow
def test_ctrl_c_while_a_command_imports_exits_quietly_with_130(tmp_path):
    result = _interrupt(tmp_path, "lam_envs.collect", "import slow_import")
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")
    # once main() runs, Python's KeyboardInterrupt is back (the command cleans up)
    in_main = "def main():\n" + "".join(f"    {line}\n" for line in SLOW_IMPORT.splitlines())
    result = _interrupt(tmp_path, "lam_envs.collect", in_main + "main()")
    assert result.returncode == -signal.SIGINT and "KeyboardInterrupt" in result.stderr
    # and another program that imports lam_envs keeps Python's behaviour everywhere
    result = _interrupt(tmp_path, "someone_else.tool", "import slow_import")
    assert result.returncode == -signal.SIGINT and "KeyboardInterrupt" in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_the_real_startup_of_collect(tmp_path):
    """A real `python -m lam_envs.collect`, interrupted while it imports (once numpy is
    loaded, which the package imports after setting the quiet Ctrl-C up)."""
    cmd = [sys.executable, "-m", "lam_envs.collect", "--quiet", "--root", str(tmp_path)]
    code, err = interrupt_once_loaded(cmd, b"numpy", timeout=30)
    assert code == 130
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
