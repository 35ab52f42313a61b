"""One progress line per finished step on stderr, for long jobs (retargeting, LeRobot import/export)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_printer(progress: bool | Callable[[str], None], total: int, what: str = "") -> Callable[[str], None]:
    """``show(msg)`` prints ``[####----] done/total what msg``; ``progress`` may instead be the caller's
    callback (returned as is) or False (nothing is printed)."""
    if callable(progress):
        return progress
    if not progress:
        return lambda _msg: None
    done = [0]
    label = f" {what}" if what else ""

    def show(msg: str) -> None:
        done[0] += 1
        filled = int(24 * min(done[0], total) / max(total, 1))
        print(f"[{'#' * filled}{'-' * (24 - filled)}] {min(done[0], total)}/{total}{label} {msg}",
              file=sys.stderr, flush=True)

    return show
