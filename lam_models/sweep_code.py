"""How a sweep's tasks travel to where they run, and what their results are keyed by.

A task's function and arguments travel pickled; those of a script (a module that cannot be
imported by name where the task runs: ``__main__``, or an example loaded by its path) are
found again in the script, loaded by its path there. :func:`code_hash` hashes the code a
result depends on, for :class:`lam_models.sweep.ResultCache`'s keys.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import pickle
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import lam_envs

if TYPE_CHECKING:
    from lam_models.sweep import Task

__all__ = ["RESULTS_VERSION", "code_hash", "modules_of", "portable", "timed", "versioned"]

#: Part of every cache key: bumped when what a cached result means changes (2: the
#: published Table 1 losses measured during training; 3: keys hold the package's version,
#: its code and the device; earlier caches are not reused).
RESULTS_VERSION = 3


def _script_of(name: str) -> str | None:
    """The file of the module ``name`` when it cannot be imported by name where a task
    runs (``__main__``, or a file loaded by its path), else None."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path is None:
        return None
    if name != "__main__" and _importable(name):
        return None
    return str(Path(path).resolve())


def _importable(name: str) -> bool:
    """Whether the import system finds the module ``name``'s package by name (not only in
    ``sys.modules``, where a file loaded by its path is too)."""
    top = name.partition(".")[0]
    if top in sys.builtin_module_names:
        return True
    for finder in sys.meta_path:
        try:
            if getattr(finder, "find_spec", None) and finder.find_spec(top, None) is not None:
                return True
        except Exception:  # noqa: BLE001  (a finder that cannot answer: ask the next)
            continue
    return False


class _RecordingPickler(pickle.Pickler):
    """A pickler that notes the modules of the classes and functions it pickles by name."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str):
                self.modules.add(module)
        return NotImplemented


@functools.cache
def _load_script(path: str) -> Any:
    name = "_lam_script_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _ScriptUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, scripts: dict[str, str]):
        super().__init__(io.BytesIO(data))
        self.scripts = scripts

    def find_class(self, module: str, name: str) -> Any:
        if module in self.scripts:
            return functools.reduce(getattr, name.split("."), _load_script(self.scripts[module]))
        return super().find_class(module, name)


def timed(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[float, Any]:
    """``function(*args)`` and the seconds it took (where it ran)."""
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def _timed_script(scripts: dict[str, str], payload: bytes) -> tuple[float, Any]:
    """:func:`timed` of a pickled (function, args) that refer to scripts' functions."""
    return timed(*_ScriptUnpickler(payload, scripts).load())


def portable(task: Task) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """What a worker runs for ``task``: its function and arguments pickled here, with the
    files of the scripts they refer to (found there by path)."""
    buffer = io.BytesIO()
    pickler = _RecordingPickler(buffer)
    pickler.dump((task.function, task.args))
    scripts = {name: path for name in pickler.modules if (path := _script_of(name))}
    return _timed_script, (scripts, buffer.getvalue())


def _sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.cache
def _package_hash() -> str:  # read once per process: the package's code does not change in a run
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in _sources(root):
        digest.update(str(path.relative_to(root)).encode() + _file_hash(str(path)).encode())
    return digest.hexdigest()


def code_hash(*objects: Any) -> str:
    """A hash of the code a result depends on: every source file of ``lam_models`` (the
    models, their training, the split, the scoring: a narrower choice would miss a
    dependency), and the file of each of ``objects`` (functions: a script's, the user's
    method; or modules) that lives outside it."""
    digest = hashlib.sha256(_package_hash().encode())
    package = Path(__file__).resolve().parent
    files = set()
    for obj in objects:
        module = obj if isinstance(obj, types.ModuleType) else sys.modules.get(obj.__module__)
        path = getattr(module, "__file__", None)
        if path is not None and package not in Path(path).resolve().parents:
            files.add(str(Path(path).resolve()))
    for path in sorted(files):
        digest.update(_file_hash(path).encode())
    return digest.hexdigest()[:16]


def versioned(record: dict[str, Any], device: str, *code: Any) -> str:
    """The cache key of ``record`` with what every result depends on."""
    record = {
        **record,
        "results": RESULTS_VERSION,
        "version": lam_envs.__version__,
        "code": code_hash(*code),
        "device": torch.device(device).type if device != "auto" else device,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]


def modules_of(task: Task) -> list[types.ModuleType]:
    """The modules whose functions or classes ``task`` (its function, its arguments) refers
    to by name."""
    pickler = _RecordingPickler(io.BytesIO())
    pickler.dump((task.function, task.args))
    return [sys.modules[name] for name in sorted(pickler.modules) if name in sys.modules]
