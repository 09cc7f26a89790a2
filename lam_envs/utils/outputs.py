"""What every command that writes files shares: paths the filesystem takes, an exclusive
claim of an output folder, sizes in readable units, and disk-full errors in one line.

The claim (``claim_output_folder``) is a file created with ``O_CREAT | O_EXCL``, which is
atomic on local filesystems and on NFS alike (``flock`` is not honoured across NFS
clients, and a check of the folder at start is not atomic at all): of two runs that
want the same folder at once exactly one gets it, and the other is refused before any
work. The claim file names its owner like a staging folder (``lam_envs.utils.staging``:
``PID.START.RANDOM@HOST``); it is removed when the run ends, and a claim left by a process
that died on this host is broken by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lam_envs.utils import staging

CLAIM = ".lam-envs-claim"  # in a claimed folder: which run writes there now
NAME_MAX = 255  # bytes of one path component on common filesystems (ext4, xfs, NFS, APFS)
PATH_MAX = 4096  # bytes of a whole path on Linux


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1: '512 bytes', '3.4 MiB'."""
    if n < 1024:
        return f"{n:,.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}"
    raise AssertionError  # unreachable


def check_path(path: str | Path, what: str) -> Path:
    """``path`` as a Path, refused (``ValueError`` naming ``what``) when one of its parts is
    longer than a filename may be (``NAME_MAX`` bytes) or the whole is longer than
    ``PATH_MAX``: the filesystem would answer with an OSError deep inside the run."""
    text = str(path)
    if "\x00" in text:
        raise ValueError(f"{what} {text[:60]!r} holds a NUL character, which no path may")
    for part in Path(text).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ValueError(
                f"{what} {text[:60]!r}... has a part of {size} bytes ({part[:24]!r}...); "
                f"a file or folder name is at most {NAME_MAX} bytes: choose a shorter name"
            )
    size = len(os.fsencode(os.path.abspath(text)))
    if size >= PATH_MAX:
        raise ValueError(
            f"{what} {text[:60]!r}... is {size} bytes long as an absolute path; the "
            f"filesystem takes at most {PATH_MAX - 1}: choose a shorter path"
        )
    return Path(path)


class DiskFull(OSError):
    """Writing failed for lack of space (or quota): ``DiskFull(errno.ENOSPC, message)``,
    shown as the one-line message alone."""

    def __str__(self) -> str:
        return str(self.strerror)


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` is the filesystem's 'no space left' or 'quota exceeded'."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)  # torch and HDF5 wrap the OS's error in their own
    return "No space left on device" in text or "Disk quota exceeded" in text


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then rename it to
    ``path``: readers never see a half-written file, and a failed write (a full disk)
    leaves neither the temporary file nor a changed ``path``. A full disk is raised as
    :class:`DiskFull` with a one-line message naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if disk_full(error):
            raise DiskFull(
                errno.ENOSPC,
                f"no space left on the device to write {path} (nothing was left half-written; "
                "free some space and run again)",
            ) from None
        raise
    return path


# ---------------------------------------------------------------- claims


class FolderBusy(ValueError):
    """Another live run holds the claim of the folder."""


def _holder(claim: Path) -> str | None:
    try:
        return claim.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def _describe(holder: str) -> str:
    owner = staging.owner_of(holder.strip())
    if owner is None:
        return "a run this package cannot identify"
    where = f" on {owner.host}" if owner.host else ""
    return f"process {owner.pid}{where}"


def _break_stale(claim: Path, holder: str) -> None:
    """Remove the claim of a dead process. Renaming is atomic: of several runs breaking it
    at once one moves it; a run that moved a fresh claim instead (made in between by a
    live run) puts it back."""
    moved = claim.with_name(f"{claim.name}.stale-{staging.new_name()}")
    try:
        os.rename(claim, moved)
    except FileNotFoundError:
        return  # another run broke it first
    if _holder(moved) != holder:  # not the dead one's: give it back
        with contextlib.suppress(FileExistsError):
            os.link(moved, claim)
    with contextlib.suppress(OSError):
        moved.unlink()


@contextlib.contextmanager
def claim(claim_file: str | Path, what: str) -> Iterator[None]:
    """Hold ``claim_file`` (created exclusively) for the block; refuse (:class:`FolderBusy`)
    when a live run holds it. ``what`` names the output in messages."""
    path = Path(claim_file)
    me = staging.new_name()
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:
                continue  # released meanwhile: try again
            owner = staging.owner_of(holder.strip())
            if owner is not None and staging.state(owner) == "dead":
                _break_stale(path, holder)
                continue
            raise FolderBusy(
                f"{what} is being written by another run ({_describe(holder)}); wait for it to "
                f"end or choose another folder (if no run is writing there, delete {path})"
            ) from None
        except OSError as error:
            raise ValueError(f"{what} cannot be written ({error.strerror or error})") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    else:
        raise FolderBusy(f"{what} is claimed and released by other runs too fast; try again")
    try:
        yield
    finally:
        if _holder(path) == me:
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def claim_output_folder(
    path: str | Path,
    overwrite: bool = False,
    results: Iterable[str] | None = None,
    what: str = "--out",
) -> Iterator[Path]:
    """Claim the folder ``path`` for this run (created with its parents if needed) and
    yield it; refuse, before any work, a folder that another live run holds
    (:class:`FolderBusy`), a file, a path the filesystem cannot take, or — unless
    ``overwrite`` — a folder that holds earlier results: any entry, or only the names in
    ``results`` when given. The claim is released when the block ends; a folder this call
    created is removed again when the block fails before anything was written into it.
    """
    out = check_path(path, what)
    label = f"{what} {str(out)!r}"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{label} is a file, not a folder")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if existing != out.absolute() and not existing.is_dir():
        raise ValueError(f"{label} cannot be written ({str(existing)!r} is a file)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(out)  # atomic: of two runs that make it, one gets FileExistsError
        created = True
    except FileExistsError:
        if not out.is_dir():
            raise ValueError(f"{label} is a file, not a folder") from None
        created = False
    except OSError as error:
        raise ValueError(f"{label} cannot be written ({error.strerror or error})") from None
    try:
        with claim(out / CLAIM, label):
            wanted = None if results is None else set(results)
            earlier = sorted(
                p.name
                for p in out.iterdir()
                if not p.name.startswith(CLAIM) and (wanted is None or p.name in wanted)
            )
            if earlier and not overwrite:
                names = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
                raise ValueError(
                    f"{label} already holds files ({names}: an earlier run?); choose another "
                    "folder, or pass --overwrite to replace them"
                )
            yield out
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: what was written stays
        raise


def remove_stale(folder: Path, pattern: str, owner_of_name: Callable[[str], str]) -> list[Path]:
    """Remove the entries of ``folder`` matching ``pattern`` whose owner (``owner_of_name``
    maps an entry's name to a staging owner name) is a dead process of this host; return
    those removed. Entries of live processes, other hosts or unknown owners stay."""
    removed = []
    for entry in folder.glob(pattern):
        owner = staging.owner_of(owner_of_name(entry.name))
        if owner is None or staging.state(owner) != "dead":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        if not os.path.lexists(entry):
            removed.append(entry)
    return removed


@contextlib.contextmanager
def staged_files(out: Path) -> Iterator[Path]:
    """A hidden folder inside the claimed folder ``out`` to write a run's files into; when
    the block succeeds they are moved into ``out`` (replacing those of the same names), and
    when it fails (a full disk) they are removed: a run that cannot save all its files
    changes nothing in ``out``. Such folders left by killed runs are removed here too."""
    out = Path(out)
    prefix = f"{CLAIM}.partial-"
    remove_stale(out, f"{prefix}*", lambda name: name[len(prefix) :])
    tmp = out / f"{prefix}{staging.new_name()}"
    tmp.mkdir()
    try:
        yield tmp
        for entry in sorted(tmp.iterdir()):
            target = out / entry.name
            if entry.is_dir() and target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
