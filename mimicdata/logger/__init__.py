"""Deployment logging: a non-blocking streaming logger for control loops, and reading its logs back.

>>> from mimicdata.logger import StreamingLogger, load_log      # doctest: +SKIP
>>> with StreamingLogger("run.zarr", robot="g1_29dof", fps=50) as logger:   # doctest: +SKIP
...     logger.log("observations", obs_record)
>>> log = load_log("run.zarr")                                  # doctest: +SKIP
>>> log["observations"]["joint_pos"].shape                      # doctest: +SKIP
"""

from __future__ import annotations

from mimicdata.logger.streaming import LoggerStatus, LoggerWriteError, StreamingLogger, StreamStatus

__all__ = ["LogData", "LoggerStatus", "LoggerWriteError", "StreamStatus", "StreamingLogger", "load_log"]


def __getattr__(name: str) -> object:
    # The reader pulls in pyarrow/polars helpers; import it only when asked for.
    if name in ("load_log", "LogData"):
        from mimicdata.logger import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'mimicdata.logger' has no attribute {name!r}")
