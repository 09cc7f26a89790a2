"""The runner's Ray backend (``--ray [ADDRESS]``): each task a Ray task that asks for its
CPUs and, on a CUDA device, a GPU or a share of one, tried again a bounded number of times.

The session (start a local Ray, join a cluster, or use the connection the caller made) is
:func:`lam_envs.collect.workers.ray_session`'s, the one ``python -m lam_envs.collect --ray``
uses. Results travel back through Ray; the caller caches them on its side, so the cache
folder is written by this process only (keep it on a path every node sees all the same:
the scripts' datasets and pictures are written by the tasks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from lam_models._commands import RunnerError

if TYPE_CHECKING:
    from lam_models.sweep import RunnerOptions, Task

__all__ = ["run_ray"]

_POLL_SECONDS = 0.1


def _ray_task(threads: int, runner: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """One task on a Ray worker: ``threads`` torch threads, as a local worker has."""
    torch.set_num_threads(threads)
    return runner(*args)


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    lines = f"{type(cause).__name__}: {cause}".strip().splitlines()
    return " ".join(lines[-1].split()) if lines else type(cause).__name__


def _outcome(ray: Any, ref: Any, name: str, options: RunnerOptions) -> tuple[float, Any]:
    """A finished task's (seconds, result); its failure, tries spent, as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        tries = options.max_retries + 1
        raise RunnerError(
            f"job {name!r} failed on Ray ({tries} {'try' if tries == 1 else 'tries'}): "
            f"{_one_line(error)}"
        ) from None


def run_ray(
    todo: dict[int, Task],
    options: RunnerOptions,
    ended: Callable[[int, float, Any], None],
    progress: Any,
) -> None:
    """Run ``todo`` as Ray tasks; ``ended(index, seconds, result)`` as each ends, here."""
    from lam_envs.collect.workers import WorkerError, ray_session
    from lam_models.sweep_code import portable

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(ray_session(options.ray))
        except WorkerError as error:
            raise RunnerError(str(error)) from None
        import ray

        gpus = options.gpus_per_job if options.device.startswith("cuda") else 0
        remote = ray.remote(_ray_task).options(
            num_cpus=options.cpus_per_job,
            num_gpus=gpus,
            max_retries=options.max_retries,
            retry_exceptions=True,
        )
        refs = {
            remote.remote(options.cpus_per_job, *portable(task)): index
            for index, task in todo.items()
        }
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL_SECONDS)
                if ready:
                    index = refs.pop(ready[0])
                    ended(index, *_outcome(ray, ready[0], todo[index].name, options))
        except KeyboardInterrupt:
            progress.cancelled()
            raise
        finally:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
