"""Running a collection's shards: in worker processes on this machine, or as Ray tasks.

Each job writes one shard file (``lam_envs.collect.shards.run_shard``); the caller links the
shards into one dataset. Whatever happens, no worker outlives the collection:

- processes are started with ``spawn`` (no inherited locks or threads), with SIGINT
  blocked so that a Ctrl-C in the terminal reaches only the parent, which stops them,
  and with one BLAS thread each (a worker is one core's work; more threads only contend,
  badly so on a busy machine), unless the caller set those variables;
- a worker whose parent has died (SIGKILL) notices within one environment step and exits;
- a worker's error or death stops the others and becomes one line (``WorkerError``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING

from lam_envs.collect import shards
from lam_envs.collect.shards import ShardResult

if TYPE_CHECKING:
    from lam_envs.collect.config import CollectConfig

_POLL_SECONDS = 0.1
_PROGRESS_SECONDS = 0.2
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class WorkerError(RuntimeError):
    """A worker failed or died; the message is one line."""


@dataclass(frozen=True)
class Job:
    index: int
    blocks: range
    path: Path


@dataclass(frozen=True)
class Supervisor:
    """What the parent does while its workers run: ``progress(transitions)`` on each report;
    between polls ``check()``, which may raise to stop them all, then ``idle()`` (the
    parent's own work)."""

    progress: Callable[[int], None]
    check: Callable[[], None]
    idle: Callable[[], None]

    def between_polls(self) -> None:
        self.check()
        self.idle()


def run_processes(config: CollectConfig, jobs: list[Job], parent: Supervisor) -> list[ShardResult]:
    """Run each job in its own process."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.Process] = []
    conns: dict[Connection, Job] = {}
    results: dict[int, ShardResult] = {}
    try:
        one_thread = {k: "1" for k in _ONE_THREAD if k not in os.environ}
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:  # children inherit the blocked mask, so a Ctrl-C cannot hit them mid-import
            with _environment(one_thread):
                for job in jobs:
                    reader, writer = ctx.Pipe(duplex=False)
                    proc = ctx.Process(
                        target=_process_main,
                        args=(config, job.blocks, str(job.path), writer),
                        name=f"lam-envs-collect-{job.index}",
                        daemon=True,
                    )
                    proc.start()
                    writer.close()  # the child holds the only writer: EOF here when it ends
                    procs.append(proc)
                    conns[reader] = job
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        while conns:
            for conn in wait(list(conns), timeout=_POLL_SECONDS):
                job = conns[conn]
                try:
                    kind, value = conn.recv()
                except EOFError:
                    del conns[conn]
                    if job.index not in results:
                        raise WorkerError(_death(procs[job.index], job, len(jobs))) from None
                    continue
                if kind == "progress":
                    parent.progress(value)
                elif kind == "done":
                    results[job.index] = value
                else:  # HDF5's messages hold newlines: the error stays one line
                    value = " ".join(str(value).split())
                    raise WorkerError(f"worker {job.index + 1} of {len(jobs)} failed: {value}")
            parent.between_polls()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [results[job.index] for job in jobs]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by processes started meanwhile), then undo."""
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)


def _death(proc: multiprocessing.Process, job: Job, n: int) -> str:
    proc.join(5)
    code = proc.exitcode
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with status {code} without finishing"
    return f"worker {job.index + 1} of {n} (pid {proc.pid}) {how}"


def _process_main(config: CollectConfig, blocks: range, path: str, conn: Connection) -> None:
    """A worker process: run one shard, report progress, never print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it terminates us
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = os.getppid()
    pending, last = 0, time.monotonic()

    def check() -> None:
        if os.getppid() != parent:  # the parent died: its staging folder is stale now
            os._exit(1)

    def progress(n: int) -> None:
        nonlocal pending, last
        pending += n
        if time.monotonic() - last > _PROGRESS_SECONDS:
            conn.send(("progress", pending))
            pending, last = 0, time.monotonic()

    try:
        result = shards.run_shard(config, blocks, Path(path), progress, check)
        conn.send(("progress", pending))
        conn.send(("done", result))
    except BaseException as error:  # noqa: BLE001  (reported to the parent, which decides)
        with contextlib.suppress(BaseException):
            conn.send(("error", f"{type(error).__name__}: {error}"))
        os._exit(1)


# ---------------------------------------------------------------- Ray


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--ray needs Ray, which is not installed: pip install 'lam-envs[ray]'"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[int]:
    """Connect to Ray (or use the connection the caller made) and yield its CPU count.

    ``address``: '' starts a local instance (or joins ``$RAY_ADDRESS``), 'auto' joins the
    cluster this machine belongs to, anything else is passed to ``ray.init``.
    """
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, log_to_driver=False, include_dashboard=False)
        except Exception as error:  # noqa: BLE001  (Ray raises many kinds)
            where = address or "a new local instance"
            raise WorkerError(f"cannot start or reach Ray at {where}: {error}") from None
        started = True
    try:
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()


def _ray_main(config: CollectConfig, blocks: range, path: str) -> ShardResult:
    return shards.run_shard(config, blocks, Path(path))


def run_ray(config: CollectConfig, jobs: list[Job], parent: Supervisor) -> list[ShardResult]:
    """Run each job as a Ray task (one CPU each); the shard paths must be on a filesystem
    that every node sees at the same path."""
    ray = _import_ray()
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_main)
    refs = {task.remote(config, job.blocks, str(job.path)): job for job in jobs}
    results: dict[int, ShardResult] = {}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL_SECONDS)
            for ref in done:
                job = refs.pop(ref)
                try:
                    results[job.index] = ray.get(ref)
                except ray.exceptions.RayError as error:
                    cause = getattr(error, "cause", None) or error
                    message = f"{type(cause).__name__}: {cause}".splitlines()[0]
                    raise WorkerError(
                        f"Ray task {job.index + 1} of {len(jobs)} failed: {message}"
                    ) from None
                parent.progress(results[job.index].transitions)
            parent.between_polls()
    finally:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
    return [results[job.index] for job in jobs]
