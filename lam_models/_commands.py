"""What the package's commands share at their end: a failure as one line and a status.

try:
    ...
except COMMAND_ERRORS as error:
    return report_error(error)
"""

from __future__ import annotations

import sys

__all__ = ["COMMAND_ERRORS", "RunnerError", "report_error"]


class RunnerError(RuntimeError):
    """A sweep's job failed where it ran (a Ray task, its tries spent; Ray unreachable):
    the message is one line."""


#: What a command reports as one line instead of a traceback: bad input (ValueError, which
#: includes lam_envs.dataset.DatasetError), the machine (OSError: a full disk, an I/O
#: error) and a job that failed on a cluster (RunnerError).
COMMAND_ERRORS = (ValueError, OSError, RunnerError)


def report_error(error: BaseException) -> int:
    """Print ``error: <error>`` on stderr; the exit status: 2 for bad input (a ValueError,
    a DatasetError), 1 for the machine (an OSError, a RunnerError)."""
    print(f"error: {error}", file=sys.stderr)
    return 2 if isinstance(error, ValueError) else 1
