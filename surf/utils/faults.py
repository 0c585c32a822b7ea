"""A hook for the interruption tests: stop at a named point of a run until a real signal arrives.

With ``SURF_PAUSE_AT=<point>`` (e.g. ``step:3``, ``validate:2``, ``checkpoint:4``, ``evaluate``) a run that reaches
that point writes its name to the file ``SURF_PAUSE_FILE`` and waits there (up to a minute) until ``stop()`` says a
signal was handled, or a signal ends it, so that a test can send SIGKILL, SIGTERM or SIGINT at an exact point of a
real process. Without the variable it does nothing. Nothing else reads these variables.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

PAUSE_AT, PAUSE_FILE = "SURF_PAUSE_AT", "SURF_PAUSE_FILE"


def pause_point(*where: object, stop: Callable[[], bool] = lambda: False, timeout: float = 60.0) -> None:
    """Announce and wait when ``SURF_PAUSE_AT`` names this point (``":".join(where)``)."""
    point = ":".join(str(part) for part in where)
    if os.environ.get(PAUSE_AT) != point:
        return
    Path(os.environ[PAUSE_FILE]).write_text(point)
    deadline = time.monotonic() + timeout
    while not stop() and time.monotonic() < deadline:
        time.sleep(0.01)
