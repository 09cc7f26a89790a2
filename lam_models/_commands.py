"""What the package's commands share at their end: a failure as one line and a status.

try:
    ...
except COMMAND_ERRORS as error:
    return report_error(error)
"""

from __future__ import annotations

import sys

__all__ = ["COMMAND_ERRORS", "report_error"]

#: What a command reports as one line instead of a traceback: bad input (ValueError, which
#: includes lam_envs.dataset.DatasetError) and the machine (OSError: a full disk, an I/O
#: error).
COMMAND_ERRORS = (ValueError, OSError)


def report_error(error: BaseException) -> int:
    """Print ``error: <error>`` on stderr; the exit status: 2 for bad input (a ValueError,
    a DatasetError), 1 for the machine (an OSError)."""
    print(f"error: {error}", file=sys.stderr)
    return 2 if isinstance(error, ValueError) else 1
