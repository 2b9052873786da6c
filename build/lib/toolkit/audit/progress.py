"""Progress lines of a running audit (stderr, so stdout stays the result)."""

from __future__ import annotations

import sys


def log(progress: bool, msg: str) -> None:
    """Print ``msg`` on stderr when ``progress`` is on."""
    if progress:
        print(msg, file=sys.stderr, flush=True)
