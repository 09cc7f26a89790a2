"""Test-wide settings and fixtures."""

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
import torch

# The suite never writes to the user's home (~/.minari, ~/.cache/huggingface) nor to
# their own Minari root: both roots are fresh temporary folders for the whole session, set
# before any test module is imported (subprocesses inherit them). Tests that need their
# own root set it.
SESSION_DIR = Path(tempfile.mkdtemp(prefix="lam-envs-tests-"))
MINARI_ROOT = SESSION_DIR / "minari"
os.environ["MINARI_DATASETS_PATH"] = str(MINARI_ROOT)
os.environ["HF_HOME"] = str(SESSION_DIR / "huggingface")  # datasets' cache

# The suite's models are tiny: one thread is faster than two fighting over a busy CPU.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# Venvs for libraries whose pins clash with ours (d3rlpy, AgileRL): built once, outside
# the clone, reused by later runs; LAM_ENVS_SKIP_VENV_TESTS=1 skips the tests that need them.
VENV_CACHE = Path(
    os.environ.get("LAM_ENVS_VENV_CACHE") or Path(tempfile.gettempdir()) / "lam-envs-venvs"
)


# The grid's scripted policy in most test datasets: the snake, with 30% random actions.
SNAKING = {"policy": "snaking", "epsilon": 0.3}


def collect_into(root: Path, **config) -> Path:
    """The folder of a dataset collected quietly with ``CollectConfig(**config)`` under the
    Minari root ``root``."""
    from lam_envs.collect import CollectConfig, collect

    return collect(CollectConfig(**config), root=root, progress=False).path


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` of a test's subprocess that is sent Ctrl-C: SIGINT as a shell gives
    it (pytest-xdist's workers ignore SIGINT, and a child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_once_loaded(cmd: list[str], library: bytes, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` and press Ctrl-C (as a terminal does) once it has mapped a shared library
    whose path holds ``library`` (b"numpy", b"libtorch"), within ``timeout`` seconds and
    before it ends; its exit status and standard error."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    deadline = time.time() + timeout
    while library not in Path(f"/proc/{proc.pid}/maps").read_bytes():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def load_example():
    """``load_example("reproduce_linear")``: a script of examples/ imported as a module."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def lam_datasets(tmp_path_factory):
    """Small datasets the trainer, pipeline and interface tests share (paths, as str).

    grid: low noise row, snaking ε = 0.3, 40 × 50 transitions, 5% labelled.
    grid_none: the same without a noise row (20 episodes). grid_unlabelled: no labels.
    linear: d_o = 16, d_a = 4, strong other agents (σ_exo = 2), one-step episodes (every
    o ~ N(0, I)), 3000 transitions, half labelled. linear_unlabelled: no labels.
    one_episode: a linear dataset too small to hold anything out.
    """
    root = tmp_path_factory.mktemp("shared-minari")
    small = {"d_o": 16, "d_a": 4, "d_b": 4}

    def make(**kw):
        return str(collect_into(root, **kw))

    grid = dict(SNAKING, episode_length=50, seed=0)
    return {
        "grid": make(**grid, episodes=40, label_fraction=0.05),
        "grid_none": make(**grid, preset="none", episodes=20, label_fraction=0.05),
        "grid_unlabelled": make(**grid, episodes=10, label_fraction=0.0),
        "linear": make(
            env="LinearLAM-v0",
            env_kwargs={**small, "sigma_exo": 2.0},
            episodes=3000,
            episode_length=1,
            label_fraction=0.5,
        ),  # fmt: skip
        "linear_unlabelled": make(
            env="LinearLAM-v0", env_kwargs=small, episodes=40, episode_length=5, label_fraction=0.0
        ),  # fmt: skip
        "one_episode": make(env="LinearLAM-v0", env_kwargs=small, episodes=1, episode_length=50),
    }


@pytest.fixture(scope="session")
def external_venv():
    """``external_venv("d3rlpy", ["d3rlpy==2.8.1"])``: the python of a venv holding those
    packages beside lam-envs's own requirements (and this torch version), which runs this
    clone through PYTHONPATH. Skips, saying why, when they cannot be installed together
    (pip's conflict is remembered until the requirements change) or pip fails."""

    def build(name: str, requirements: list[str]) -> Path:
        if os.environ.get("LAM_ENVS_SKIP_VENV_TESTS"):
            pytest.skip("LAM_ENVS_SKIP_VENV_TESTS is set")
        ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        wanted = [*ours, f"torch=={torch.__version__.split('+')[0]}", *requirements]
        key = hashlib.sha256(json.dumps([sys.version, wanted]).encode()).hexdigest()[:12]
        venv = VENV_CACHE / f"{name}-{key}"
        python, done, conflict = venv / "bin" / "python", venv / ".complete", venv / ".conflict"
        VENV_CACHE.mkdir(parents=True, exist_ok=True)
        with open(VENV_CACHE / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time
            if conflict.is_file():
                pytest.skip(conflict.read_text())
            if done.is_file():
                return python
            shutil.rmtree(venv, ignore_errors=True)
            print(f"\nbuilding the {name} venv in {venv} (once; minutes)", file=sys.__stderr__)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            try:
                result = subprocess.run(
                    [str(python), "-m", "pip", "install", *wanted],
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
            except subprocess.TimeoutExpired:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(f"installing {requirements} took more than 15 minutes")
            if result.returncode != 0:
                out = result.stdout + result.stderr
                lines = [line.strip() for line in out.splitlines() if line.strip()]
                if "The conflict is caused by:" in lines:
                    cause = []
                    for line in lines[lines.index("The conflict is caused by:") + 1 :]:
                        if line.startswith("To fix"):
                            break
                        cause.append(line)
                    cause = "; ".join(cause)
                    reason = f"{requirements} cannot be installed beside lam-envs: {cause}"
                    shutil.rmtree(venv, ignore_errors=True)
                    venv.mkdir(parents=True)
                    conflict.write_text(reason[:500])
                    pytest.skip(reason[:500])
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(f"pip could not install {requirements}: {lines[-1] if lines else ''}")
            done.touch()
            return python

    return build


@pytest.fixture(scope="session")
def run_in_venv():
    """``run_in_venv(python, args)``: run a venv's python with this clone importable."""

    def run(python: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [str(python), *args], env=env, capture_output=True, text=True, timeout=600, **kwargs
        )

    return run
