"""The seed's policy interface: ``enable_logging`` / ``log_dir`` options on a deployed policy loop.

The seed added to its BeyondMimic policy class: ``enable_logging`` and ``log_dir`` constructor
options, a ``log`` of the observation and action dicts in ``run()``, and closing the logger in
``exit()``. :class:`PolicyLogging` is that, over :class:`StreamingLogger`, for any policy class to
hold; :func:`run_policy_loop` is a paced control loop around a ``step()`` that returns the
``(observation, action)`` records (for example :class:`mimicdata.sim.G1DeployLoop`).

One session is one store: ``<log_dir>/log_YYYYMMDD_HHMMSS.zarr`` with streams ``observations`` and
``actions`` (the seed wrote ``observations_YYYYMMDD_HHMMSS.pkl`` and ``actions_YYYYMMDD_HHMMSS.pkl``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimicdata.logger.streaming import LoggerStatus, StreamingLogger

Record = Mapping[str, Any]


class PolicyLogging:
    """Logging as a deployed policy holds it: off unless ``enable_logging``; never stops the policy.

    Args:
        enable_logging: create a logger; when False every call is a no-op.
        log_dir: folder for the session's store (created if needed).
        robot: robot name of the policy (``g1_29dof``, ``g1_23dof``).
        fps: the control rate.
        **logger_options: passed to :class:`StreamingLogger` (batch_size, flush_interval, ...).
    """

    def __init__(self, enable_logging: bool = False, log_dir: str | Path = "./logs/beyond_mimic", *,
                 robot: str | None = None, fps: float | None = None, **logger_options: Any) -> None:
        self.enabled = bool(enable_logging)
        self.logger: StreamingLogger | None = None
        self.path: Path | None = None
        if self.enabled:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d_%H%M%S")
            self.path = folder / f"log_{stamp}.zarr"
            n = 1
            while self.path.exists():  # two sessions started in the same second
                n += 1
                self.path = folder / f"log_{stamp}_{n}.zarr"
            self.logger = StreamingLogger(self.path, robot=robot, fps=fps, **logger_options)

    def log_step(self, observation: Record, action: Record) -> None:
        """Log one control step's observation and action records (copied; never waits)."""
        if self.logger is not None:
            self.logger.log("observations", observation)
            self.logger.log("actions", action)

    def log(self, stream: str, record: Record) -> None:
        """Log a record of any other stream (an IMU at 1 kHz, a camera timestamp, ...)."""
        if self.logger is not None:
            self.logger.log(stream, record)

    @property
    def status(self) -> LoggerStatus | None:
        return self.logger.status if self.logger is not None else None

    def exit(self) -> LoggerStatus | None:
        """Write everything and close (the seed's ``exit()``); returns the final status."""
        if self.logger is None:
            return None
        return self.logger.close()


@dataclass
class LoopResult:
    """What a paced run did: steps, wall time, how many steps started late, the logger's final status."""

    steps: int
    wall_s: float
    late_steps: int
    log_path: Path | None
    log_status: LoggerStatus | None


def run_policy_loop(step: Callable[[], tuple[Record, Record]], *, seconds: float, rate_hz: float,
                    policy_logging: PolicyLogging, realtime: bool = True,
                    on_step: Callable[[int, Record, Record], None] | None = None) -> LoopResult:
    """Run ``step()`` at ``rate_hz`` for ``seconds``, logging each step's records.

    ``realtime`` sleeps to each deadline like a robot's control loop; False runs as fast as it can.
    The logger is closed at the end, also when ``step`` raises or the run is interrupted (Ctrl-C).
    """
    if rate_hz <= 0 or seconds < 0:
        raise ValueError(f"rate_hz must be > 0 and seconds >= 0 (got {rate_hz}, {seconds})")
    period = 1.0 / rate_hz
    steps = round(seconds * rate_hz)
    late = 0
    start = time.perf_counter()
    deadline = start
    done = 0
    try:
        for i in range(steps):
            observation, action = step()
            policy_logging.log_step(observation, action)
            if on_step is not None:
                on_step(i, observation, action)
            done += 1
            deadline += period
            if realtime:
                wait = deadline - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                else:
                    late += 1
    finally:
        status = policy_logging.exit()
    return LoopResult(done, time.perf_counter() - start, late, policy_logging.path, status)
