"""What every LAM's training shares: :class:`TrainingLog` (per-copy training curves kept on
the device between log points, a run stopped once its losses or parameters stop being
finite), progress bars and TensorBoard, and reading saved weights back safely (one-line
errors for another method's or a corrupt ``model.pt``). :mod:`lam_models.lams.base` uses
these and re-exports the names methods import from it."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from lam_models.lams.base import LAM

__all__ = [
    "COMPILE_MODES",
    "TrainingDiverged",
    "TrainingLog",
    "check_finite_parameters",
    "check_compile",
    "check_finite_state",
    "compile_networks",
    "load_state",
    "load_weights",
    "open_tensorboard",
    "progress_bar",
]


class TrainingDiverged(ValueError):
    """A training run whose losses or parameters are no longer finite."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def load_state(module: nn.Module, state: Any, path: Path, what: str) -> None:
    """``module.load_state_dict(state)``, a mismatch said in one line (another method's
    or another configuration's weights)."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path} is not a state dict (names to tensors)")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            extra = ", ".join(unexpected[:3]) + (" ..." if len(unexpected) > 3 else "")
            parts.append(f"unexpected {extra}")
        if shapes:
            parts.append(f"shapes differ: {'; '.join(shapes[:2])}")
        raise ValueError(
            f"{path} does not hold the weights of {what} as its run.json describes it "
            f"({'; '.join(parts)}): another method's or another run's model?"
        )
    module.load_state_dict(state)


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A state dict saved with ``torch.save``, loaded as weights only (no code can run)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"missing model weights: {path}") from None
    except pickle.UnpicklingError as error:
        # torch's weights-only unpickler met an object it will not build
        raise ValueError(
            f"{path} is not a weights-only state dict (refused: loading it could run code); "
            f"{_one_line(error)}"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError) as error:
        raise ValueError(
            f"{path} is truncated or corrupt: not a file torch.save wrote ({_one_line(error)})"
        ) from None


def check_finite_state(state: Any, path: str | Path, what: str = "weights") -> None:
    """Refuse a state dict (loaded, or about to be saved) with NaN or infinite values."""
    items = state.items() if isinstance(state, dict) else []
    bad = [
        k
        for k, v in items
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise ValueError(
            f"{path} holds {what} that are NaN or infinite ({', '.join(map(str, bad[:4]))}); "
            "refusing to use them"
        )


def check_finite_parameters(module: nn.Module, name: str) -> None:
    """Raise :class:`TrainingDiverged` if any parameter or buffer is NaN or infinite."""
    bad = [
        k
        for k, v in module.state_dict().items()
        if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise TrainingDiverged(
            f"training of the {name!r} LAM diverged: parameters {', '.join(bad[:4])} are not "
            "finite; nothing was saved (lower the learning rate, or check the data)"
        )


class TrainingLog:
    """Per-copy training curves, kept on the device and copied out every ``log_every`` steps.

    Each step, :meth:`add` accumulates (M,) tensors (losses); at a log point, :meth:`flush`
    appends their window means and any point values to each copy's ``history``, checks that
    every value is finite (else :class:`TrainingDiverged`), and refreshes the progress bar.
    """

    def __init__(self, lam: LAM, steps: int, log_every: int, progress: bool, unit: str = "step"):
        self.lam, self.steps, self.log_every = lam, steps, max(1, min(log_every, steps))
        self.window: dict[str, torch.Tensor] = {}
        self.count = 0
        self.bar = progress_bar(steps, f"{lam.name} LAM ×{lam.num_copies}", unit, progress)
        import time

        self._clock, self._start = time.perf_counter, time.perf_counter()

    def add(self, **values: torch.Tensor) -> None:
        for key, value in values.items():
            value = value.detach()
            if key in self.window:
                self.window[key] += value
            else:
                self.window[key] = value.clone()

    def due(self, step: int) -> bool:
        """Whether ``step`` (0-based) ends a log window."""
        return (step + 1) % self.log_every == 0 or step == self.steps - 1

    def step(self, step: int, **point: torch.Tensor | Sequence[float]) -> None:
        """Count one step; at a log point, flush (``point``: values measured at that step)."""
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.due(step):
            self.flush(step, **point)

    def flush(self, step: int, **point: torch.Tensor | Sequence[float]) -> None:
        means = {k: (v / max(self.count, 1)).cpu().tolist() for k, v in self.window.items()}
        points = {k: torch.as_tensor(v).detach().float().cpu().tolist() for k, v in point.items()}
        seconds = self._clock() - self._start
        for key, values in {**means, **points}.items():
            bad = [m for m, v in enumerate(values) if not math.isfinite(v)]
            if bad:
                raise TrainingDiverged(
                    f"training of the {self.lam.name!r} LAM diverged at step {step + 1}: "
                    f"{key} is not finite for copies {bad}; nothing was saved (lower the "
                    "learning rate, or check the data)"
                )
        for m, history in enumerate(self.lam.history):
            history.setdefault("step", []).append(step + 1)
            for key, values in {**means, **points}.items():
                history.setdefault(key, []).append(values[m])
            history.setdefault("seconds", []).append(seconds)
        writer = getattr(self.lam, "tensorboard", None)
        if writer is not None:
            for key, values in {**means, **points}.items():
                for m, value in enumerate(values):
                    tag = key if len(values) == 1 else f"{key}/seed{self.lam.seeds[m]}"
                    writer.add_scalar(tag, value, step + 1)
        for value in self.window.values():
            value.zero_()
        self.count = 0
        if self.bar is not None:
            loss = means.get("loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(np.mean(loss)):.4g}", refresh=False)
            if step == self.steps - 1:
                self.bar.close()


#: ``torch.compile`` modes of ``--compile``: "default" fuses kernels; "reduce-overhead" also
#: replays them as CUDA graphs; "max-autotune" searches kernels too (slow to start).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def check_compile(mode: str, device: torch.device | str) -> None:
    """Refuse a ``--compile`` mode that is not in :data:`COMPILE_MODES`, or off CUDA."""
    if mode not in COMPILE_MODES:
        allowed = ", ".join(COMPILE_MODES)
        raise ValueError(f"unknown compile mode {mode!r}; allowed: {allowed}")
    if torch.device(device).type != "cuda":
        raise ValueError(
            f"--compile needs a CUDA device (it cuts the kernel launches of a GPU's training "
            f"loop), got {device}; drop --compile on the CPU"
        )


def compile_networks(
    module: nn.Module, device: torch.device | str, mode: str = "default", backend: str = "inductor"
) -> int:
    """``torch.compile`` each network of a LAM's ``module`` in place (its children: the
    trainers call them, not ``module.forward``), keeping the state dict's names; returns how
    many. On a CUDA device only: there launching kernels, not arithmetic, bounds the
    models' small updates; on a CPU the eager loop is the default and starts at once.
    ``backend`` other than inductor (``"eager"``: traced, run as written) is for tests."""
    if backend == "inductor":
        check_compile(mode, device)
    options = {"mode": mode} if backend == "inductor" else {}
    networks = list(module.children())
    for network in networks:
        network.compile(backend=backend, **options)
    return len(networks)


def open_tensorboard(folder: str | Path):
    """A ``torch.utils.tensorboard.SummaryWriter`` logging into ``folder``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "--tensorboard needs the tensorboard package: pip install 'lam-envs[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=str(folder))


def progress_bar(total: int, desc: str, unit: str, enabled: bool):
    """The package's progress display (:func:`lam_envs.utils.cli.progress`: a bar on a terminal,
    a line per 10% in a log); None when disabled."""
    if not enabled:
        return None
    from lam_envs.utils.cli import progress

    return progress(total=total, desc=desc, unit=unit)
