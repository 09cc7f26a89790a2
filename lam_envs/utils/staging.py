"""Where a dataset is built before it exists: hidden staging folders, and publishing.

Everything of a run is written under ``ROOT/.lam-envs-staging/<owner>`` (Minari lists no
hidden folder) and renamed to ``ROOT/<id>`` only when complete, so an interrupted run
never leaves a dataset under its id.

Ownership: a staging folder's name says which process made it, ``PID.START.RANDOM@HOST``
(START: the process's start time, so a reused pid is not mistaken for the owner). A
folder whose owner is dead on this host is stale: any later collect into the root
removes it (``python -m lam_envs.collect --clean`` lists and removes them on demand).
Folders of live processes, and of other hosts (a shared filesystem), are never touched.

Publishing never replaces a dataset unless asked: without ``overwrite``, a dataset that
appeared under the id while the run was collecting stays, and the new data is moved to
``ROOT/.lam-envs-unpublished/<id>.<time>`` (hidden from Minari, never cleaned), which the
error message names.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

STAGING = ".lam-envs-staging"
UNPUBLISHED = ".lam-envs-unpublished"


class PublishRefused(FileExistsError):
    """A dataset appeared under the id during the run; the new data was kept elsewhere
    (``kept``: its folder)."""

    kept: Path | None = None


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or '0'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rpartition(")")[2].split()[19]  # field 22 of proc(5)


def _host() -> str:
    return socket.gethostname().replace("@", "_") or "localhost"


def new_name() -> str:
    """A folder name that identifies this process: ``PID.START.RANDOM@HOST``."""
    pid = os.getpid()
    return f"{pid}.{_start_time(pid)}.{uuid.uuid4().hex[:8]}@{_host()}"


@dataclass(frozen=True)
class Owner:
    pid: int
    start: str  # '0': unknown
    host: str | None  # None: a folder of an older version, which named no host


def owner_of(name: str) -> Owner | None:
    """The process that made a staging folder, from its name (None: not ours)."""
    owner, at, host = name.rpartition("@")
    if at:
        parts = owner.split(".")
        if len(parts) == 3 and parts[0].isdigit():
            return Owner(int(parts[0]), parts[1], host)
        return None
    pid = name.split("-")[0]  # older versions: PID-RANDOM
    return Owner(int(pid), "0", None) if pid.isdigit() else None


def state(owner: Owner) -> str:
    """'live', 'dead' or 'elsewhere' (another host: cannot be checked from here)."""
    if owner.host is not None and owner.host != _host():
        return "elsewhere"
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # alive, someone else's
    if owner.start != "0" and _start_time(owner.pid) not in (owner.start, "0"):
        return "dead"  # the pid was reused by another process
    return "live"


def clean(root: Path) -> list[tuple[Path, str]]:
    """Remove the staging folders of dead processes under ``root``.

    Returns every folder found with what became of it: 'removed', 'live' (kept),
    'elsewhere' (kept: made on another host), 'unknown' (kept: not named by this package),
    or 'stuck: REASON' (stale, but it could not be removed: it is still there).
    """
    staging = Path(root) / STAGING
    report = []
    if not staging.is_dir():
        return report
    for entry in sorted(staging.iterdir()):
        owner = owner_of(entry.name)
        status = "unknown" if owner is None else state(owner)
        if status == "dead":
            failure = _remove(entry)
            status = "removed" if failure is None else f"stuck: {failure}"
        report.append((entry, status))
    return report


def _remove(entry: Path) -> str | None:
    """Remove a file or folder; None when it is gone, else why it is still there."""
    errors: list[str] = []

    def note(function, path, error) -> None:
        errors.append(f"{getattr(error, 'strerror', None) or error} ({path})")

    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, onerror=lambda f, p, info: note(f, p, info[1]))
        else:
            entry.unlink()
    except OSError as error:
        note(None, entry, error)
    if not os.path.lexists(entry):
        return None
    return errors[0] if errors else "it is still there"


def unpublished(root: Path) -> list[Path]:
    """Complete datasets that publishing refused to put in place (see the module doc)."""
    folder = Path(root) / UNPUBLISHED
    return sorted(p for p in folder.rglob("*") if (p / "data").is_dir()) if folder.is_dir() else []


def check_writable(root: Path) -> None:
    """Create ``root`` if needed and check that this process can write files in it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".lam-envs-write-probe-{new_name()}"  # unique: collects run together
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"output folder {str(root)!r} is not writable ({error.strerror or error})"
        ) from None


def new_folder(root: Path) -> Path:
    """A fresh staging folder of this process under ``root`` (stale ones removed first)."""
    clean(root)
    folder = Path(root) / STAGING / new_name()
    folder.mkdir(parents=True)
    return folder


def is_dataset(folder: Path) -> bool:
    """Whether ``folder`` is a dataset (Minari's layout: a ``data`` folder, which holds
    ``metadata.json`` and the HDF5 files)."""
    return os.path.isdir(Path(folder) / "data")


def nesting_problem(root: Path, dataset_id: str) -> str | None:
    """Why ``dataset_id`` cannot be a dataset under ``root`` next to the ones there: its
    folder would lie inside another dataset's folder, or its folder (replaced by
    ``--overwrite``) holds another dataset, or something that is not a dataset. None: fine.
    """
    parts = dataset_id.split("/")
    for depth in range(1, len(parts)):
        outer = Path(root, *parts[:depth])
        if is_dataset(outer):
            return (
                f"dataset id {dataset_id!r} would put a dataset inside the folder of dataset "
                f"{'/'.join(parts[:depth])!r} ({outer}), where replacing that one would delete "
                "it: choose an id outside it"
            )
    target = Path(root, dataset_id)
    if not os.path.lexists(target):
        return None
    if not target.is_dir() or target.is_symlink():
        return f"{target} exists and is not a dataset folder: refusing to replace it"
    for folder, subfolders, _ in os.walk(target):
        here = Path(folder)
        if here != target and is_dataset(here):
            inner = here.relative_to(root).as_posix()
            return (
                f"the folder of dataset id {dataset_id!r} ({target}) holds dataset {inner!r}: "
                "refusing to replace it (it would be deleted); choose another id"
            )
        if here == target:
            subfolders[:] = [d for d in subfolders if d != "data"]  # the dataset's own files
    if not is_dataset(target):
        return (
            f"{target} exists and is not a dataset (no data folder): refusing to "
            f"replace it with dataset {dataset_id!r}; choose another id"
        )
    return None


def publish(folder: Path, root: Path, dataset_id: str, overwrite: bool) -> Path:
    """Move the complete dataset ``folder`` to ``root/dataset_id``, atomically.

    Without ``overwrite`` an existing dataset is never replaced, even one that appeared
    after the run started: the rename itself refuses a non-empty target, and the new data
    is then moved under ``root/.lam-envs-unpublished`` (``PublishRefused`` names it).
    With ``overwrite`` the old dataset is renamed away first and deleted afterwards.
    """
    target = Path(root, dataset_id)
    problem = nesting_problem(root, dataset_id)  # again: datasets may appear during a run
    if problem is not None:
        raise _refuse(folder, root, dataset_id, target, problem)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):  # another --overwrite run may publish between our two renames
        if overwrite and target.exists():
            trash = Path(root) / STAGING / new_name()
            try:
                os.replace(target, trash)
            except FileNotFoundError:
                trash = None  # someone else moved it away first
        else:
            trash = None
        try:
            os.rename(folder, target)  # fails on a non-empty target: nothing is replaced
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise
            if overwrite and error.errno != errno.ENOTDIR:
                continue
            raise _refuse(folder, root, dataset_id, target) from None
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        return target
    raise _refuse(folder, root, dataset_id, target)


def _refuse(
    folder: Path, root: Path, dataset_id: str, target: Path, problem: str | None = None
) -> PublishRefused:
    kept = Path(root, UNPUBLISHED, f"{dataset_id}.{time.strftime('%Y%m%d-%H%M%S')}")
    kept = kept.with_name(f"{kept.name}-{uuid.uuid4().hex[:4]}")
    kept.parent.mkdir(parents=True, exist_ok=True)
    os.rename(folder, kept)
    if problem is not None:
        refused = PublishRefused(f"{problem}; the new data is kept at {kept}")
    else:
        refused = PublishRefused(
            f"dataset {dataset_id!r} appeared at {target} while this run was collecting and "
            f"was not replaced (no --overwrite); the new data is kept at {kept} (move it there "
            "yourself to replace the other, or delete it)"
        )
    refused.kept = kept
    return refused
