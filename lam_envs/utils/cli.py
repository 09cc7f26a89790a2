"""What every command line of the package shares: one-line errors, ``KEY=VALUE`` values,
the seeds of a run's independent random streams, progress display, and a quiet Ctrl-C.

Entry points (``python -m lam_envs.X`` / ``python -m lam_models.X``) end with::

    if __name__ == "__main__":
        run_main(main)

and the package ``__init__`` of each calls ``quiet_interrupt_during_startup()`` first
thing, so a Ctrl-C while the command is still importing (seconds, with torch) exits with
status 130 and no traceback. This module imports nothing heavy, so that call is cheap.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

#: Packages whose ``python -m`` commands get the quiet Ctrl-C at startup.
PACKAGES = ("lam_envs", "lam_models")
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line ``error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_value(text: str) -> Any:
    """The value of a ``KEY=VALUE`` flag: JSON when it parses (numbers, true, null, lists),
    the text itself otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# ---------------------------------------------------------------- Ctrl-C


def _command_module() -> str | None:
    """The module this process runs as ``python -m MODULE``, or None."""
    args = iter(getattr(sys, "orig_argv", [])[1:])  # the interpreter's own options first
    for arg in args:
        if arg == "-" or not arg.startswith("-"):
            return None  # a script, or stdin
        if arg.startswith("--"):
            if arg == "--check-hash-based-pycs":
                next(args, None)
            continue
        for i, flag in enumerate(arg[1:], start=1):  # combined short options: -Im
            if flag in "cmWX":
                value = arg[i + 1 :] or next(args, None)
                if flag == "m":
                    return value
                if flag == "c":
                    return None
                break
    return None


def _starting(frame) -> bool:
    """Whether the interrupted code is an import (importlib on the stack), or a top-level
    statement of the command's own module (which runs its imports, then ``main``)."""
    if frame is not None and frame.f_code.co_name == "<module>":
        if frame.f_globals.get("__name__") == "__main__":
            return True
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _interrupt_during_startup(signum, frame) -> None:
    """SIGINT while starting: exit at once, status 130 and nothing printed (nothing has
    begun that needs cleaning up); anywhere else, Python's usual KeyboardInterrupt."""
    if _starting(frame):
        os._exit(INTERRUPTED)
    raise KeyboardInterrupt


def quiet_interrupt_during_startup() -> None:
    """If this process is one of our commands (``python -m lam_envs.X``), make a Ctrl-C
    that lands while it imports exit with status 130 and no traceback.

    Call it first thing in a package ``__init__``. A library import (a notebook, another
    program) is left alone, and outside imports Ctrl-C still raises KeyboardInterrupt;
    ``run_main`` puts Python's own handler back once ``main`` starts.
    """
    module = _command_module()
    if module is None or module.partition(".")[0] not in PACKAGES:
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt_during_startup)


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``main()`` and exit with its status: KeyboardInterrupt is raised
    again from here on (the command cleans up), and one that escapes ``main`` exits
    with status 130 and the line ``interrupted`` instead of a traceback."""
    if signal.getsignal(signal.SIGINT) is _interrupt_during_startup:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = INTERRUPTED
    sys.exit(status or 0)


# ---------------------------------------------------------------- progress


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    enabled: bool = True,
    mode: str | None = None,
    lines: int = 10,
    file: Any = None,
) -> Any:
    """The progress display of every long loop of the package.

    ``progress(items, desc=...)`` wraps an iterable; ``progress(total=n, unit="tr")`` is
    updated by hand (``bar.update(k)``). Either also takes ``bar.set_postfix(loss=...)``
    and works as a context manager (``close()`` on exit).

    ``mode``: 'bar' (a tqdm bar), 'lines' (a line at each 1/``lines`` of the total, and
    one at the end, so a log file stays small) or 'off'. By default 'bar' when ``file``
    (stderr) is a terminal, 'lines' otherwise; the environment variable
    ``LAM_PROGRESS=bar|lines|off`` overrides the default. ``enabled=False`` is 'off'.
    """
    file = sys.stderr if file is None else file
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled:
        mode = "off"
    elif mode is None:
        mode = os.environ.get("LAM_PROGRESS") or (
            "bar" if getattr(file, "isatty", lambda: False)() else "lines"
        )
    if mode not in ("bar", "lines", "off"):
        raise ValueError(f"progress mode must be 'bar', 'lines' or 'off', got {mode!r}")
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, file=file)
    return _Lines(iterable, total, desc, unit, lines if mode == "lines" else 0, file)


class _Lines:
    """``progress``'s quiet forms: a line per 1/n of the total (n = 0: silent)."""

    _UNKNOWN_TOTAL_SECONDS = 30.0  # without a total, a line this often

    def __init__(self, iterable, total, desc, unit, n, file):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n_lines, self.file = n, file
        self.n, self.postfix, self.closed = 0, "", False
        self.start = self.last = time.monotonic()
        self._next_line = 1

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if not self.n_lines:
            return
        if self.total:
            step = math.floor(self.n / self.total * self.n_lines)
            if step >= self._next_line and self.n < self.total:
                self._next_line = step + 1
                self._print(f"{self.n / self.total:4.0%}")
        elif time.monotonic() - self.last > self._UNKNOWN_TOTAL_SECONDS:
            self.last = time.monotonic()
            self._print("")

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n_lines:
            done = self.total is None or self.n >= self.total
            self._print("done" if done else "stopped")

    def _print(self, what: str) -> None:
        seconds = time.monotonic() - self.start
        count = f"{self.n:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        parts = [f"{self.desc}: " if self.desc else "", f"{what} " if what else ""]
        parts.append(f"{count} {self.unit}, {seconds:.1f} s")
        if self.postfix:
            parts.append(f", {self.postfix}")
        print("".join(parts), file=self.file, flush=True)
