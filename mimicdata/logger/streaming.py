"""StreamingLogger: log observations, actions and any other stream from a control loop without slowing it.

>>> logger = StreamingLogger("run.zarr", robot="g1_29dof", fps=50)      # doctest: +SKIP
>>> logger.log("observations", {"joint_pos": q, ..., "full_obs": obs})   # doctest: +SKIP
>>> logger.log("imu", {"acc": acc, "gyro": gyro})                        # doctest: +SKIP
>>> logger.close()                                                        # doctest: +SKIP

Design (measured against the seed's queue + pickle thread; see benchmarks/logger_latency.py):

- ``log()`` copies the record into a shared-memory ring (:mod:`mimicdata.logger.ring`) and returns;
  a separate *process* (:mod:`mimicdata.logger.writer`) compresses and commits batches to the Zarr
  store, so it never competes with the control loop for the GIL.
- Each stream has its own wall-clock ``timestamp``, ``monotonic_ns`` and ``counter_step`` (filled in at
  ``log()`` unless the record carries them), so streams at different rates line up by time.
- When the writer cannot keep up the ring fills, and ``on_full`` decides: ``"drop"`` (default, never
  waits) or ``"block"`` (waits up to ``block_timeout`` seconds, then drops). Every dropped record is
  counted (:attr:`status`) and recorded in the store's ``drops`` stream (stream, first/last sequence
  number, count, the wall-clock gap), and its ``counter_step`` is skipped, so a reader sees the gap.
- Crash safety: the writer commits at least every ``flush_interval`` seconds with the store's atomic
  commit, so a SIGKILL of both processes loses at most about one flush interval and leaves a valid
  store. If only the logging process dies (SIGKILL, SIGTERM, crash), the writer sees its pipe close,
  drains everything already logged and commits it. A normal exit, Ctrl-C or an uncaught exception
  runs :meth:`close` (context manager or ``atexit``).
- A write error (disk full, read-only path) never reaches the control loop: it shows in
  :attr:`status` and :meth:`close` raises :class:`LoggerWriteError` at the end.
- The first ``log()`` of a stream fixes its layout and maps its ring (~0.7 ms measured);
  :meth:`StreamingLogger.declare` does that before the loop. Log only from the process that created
  the logger (not from a child forked after it).
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mimicdata
from mimicdata.errors import MimicDataError, StoreExistsError
from mimicdata.logger.layout import SCHEMA_STREAMS, custom_layout, schema_layout
from mimicdata.logger.producer import Producer, SlotLoan
from mimicdata.logger.ring import (
    C_CPU_NS,
    C_ERRORS,
    C_FLUSHED,
    C_STATE,
    FILE_PREFIX,
    H_LOST,
    H_READ,
    H_REFUSED,
    H_WRITTEN,
    STATE_CLOSED,
    STATE_RUNNING,
    STATE_STARTING,
    Control,
    Ring,
    ring_dir,
    sweep_stale,
)
from mimicdata.logger.spawn import WriterProcess, WriterThread, start_writer
from mimicdata.logger.writer import DROP_FIELDS, DROPS
from mimicdata.schema import Robot, load_robot, load_schema

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class LoggerWriteError(MimicDataError, OSError):
    """The writer could not store everything that was logged (raised by ``close()``)."""


@dataclass(frozen=True)
class StreamStatus:
    """Counters of one stream. ``logged`` counts every record accepted by ``log()``, dropped ones included;
    ``dropped`` also counts the records the store refuses right now (disk full): they are kept for a retry
    and move to ``written`` if one succeeds, else they are lost at ``close()``."""

    logged: int
    written: int
    dropped: int
    queue_depth: int


@dataclass(frozen=True)
class LoggerStatus:
    """A snapshot of the logger: totals over all streams, plus per-stream counters."""

    path: str
    session_id: str
    logged: int
    written: int
    dropped: int
    queue_depth: int
    last_error: str | None
    errors: int
    writer_alive: bool
    writer_cpu_s: float
    streams: dict[str, StreamStatus] = field(default_factory=dict)


class StreamingLogger:
    """Log records of named streams to a mimicdata store without blocking the caller.

    Args:
        path: the store to create (a local path; ``s3://`` works where the writer has credentials).
        robot: robot name (``"g1_29dof"``) or :class:`mimicdata.Robot`; needed for joint-shaped fields.
        fps: nominal rate of the ``observations``/``actions`` streams (other streams: :meth:`declare`).
        batch_size: rows a stream needs before it may be written before its flush deadline; writes of a
            stream are also at least ``min_write_interval`` apart (default: ``flush_interval``, so by
            default a stream is written once per flush interval): each Zarr append costs ~40-50 ms
            of writer CPU whatever its size (measured, 11 fields), so fewer, larger appends win.
        flush_interval: longest a logged record waits before it is committed; bounds the loss when
            the machine or both processes die.
        queue_size: records each stream's ring holds (rounded up to a power of two).
        on_full: ``"drop"`` (default: never wait) or ``"block"`` (wait up to ``block_timeout`` s).
        overwrite: replace an existing store at ``path``.
        attrs: JSON-serialisable values stored with the session.
        lossy: opt-in mantissa bits per field name (see :func:`mimicdata.create`).
        schemas: stream names written with the shipped schema of the same name.
        writer_nice: niceness added to the writer process, so the control loop wins a contended CPU.
        writer_cpus: CPUs the writer process may run on (``os.sched_setaffinity``), e.g. the cores
            not reserved for the control loop; default: any.
        poll_interval: how often the writer looks at the rings (seconds).
        start_timeout: how long the constructor waits for the writer process to open the store
            (about a second: it imports zarr). From then on the loss bound holds.
        writer: ``"process"`` (default) or ``"thread"``: the writer in a thread of this process,
            which competes with the control loop for the GIL and dies with it (for comparison, or
            where no helper process may be started).
    """

    def __init__(self, path: str | os.PathLike[str], *, robot: str | Robot | None = None,
                 fps: float | None = None, batch_size: int = 50, flush_interval: float = 3.0,
                 queue_size: int = 16384, on_full: str = "drop", block_timeout: float = 0.005,
                 min_write_interval: float | None = None, overwrite: bool = False,
                 attrs: Mapping[str, Any] | None = None, lossy: Mapping[str, int] | None = None,
                 schemas: tuple[str, ...] = SCHEMA_STREAMS, writer_nice: int = 5,
                 writer_cpus: set[int] | None = None,
                 poll_interval: float = 0.01, start_timeout: float = 30.0, writer: str = "process") -> None:
        if writer not in ("process", "thread"):
            raise ValueError(f"writer must be 'process' or 'thread', not {writer!r}")
        if on_full not in ("drop", "block"):
            raise ValueError(f"on_full must be 'drop' or 'block', not {on_full!r}")
        if batch_size < 1 or flush_interval <= 0 or queue_size < 16 or poll_interval <= 0:
            raise ValueError("batch_size >= 1, flush_interval > 0, queue_size >= 16 and poll_interval > 0 "
                             f"are required (got {batch_size}, {flush_interval}, {queue_size}, {poll_interval})")
        self.path = os.fspath(path)
        if self.path.startswith("memory://"):
            raise ValueError("StreamingLogger writes from a separate process: memory:// stores cannot be "
                             "shared with it; use a local path")
        self.robot = load_robot(robot) if isinstance(robot, str) else robot
        self.fps = float(fps) if fps else None
        self.schemas = tuple(schemas)
        for name in self.schemas:  # parse them now, not in the first log() of the control loop
            load_schema(name)
        self.on_full = on_full
        self.block_timeout = float(block_timeout)
        self.queue_size = int(queue_size)
        self.session_id = time.strftime("%Y%m%d_%H%M%S") + "-" + secrets.token_hex(3)
        self.start_time_ns = time.time_ns()
        self.start_monotonic_ns = time.monotonic_ns()
        self._producers: dict[str, Producer] = {}
        self._rings: dict[str, Ring] = {}
        self._declare_lock = threading.Lock()
        self._pipe_lock = threading.Lock()
        self._closed = False
        self._failed_drops: dict[str, int] = {}
        self._error: str | None = None
        self._flush_id = 0
        self._proc: WriterProcess | WriterThread | None = None
        self._control: Control | None = None
        self._final_status: LoggerStatus | None = None
        self._prefix = f"{FILE_PREFIX}{os.getpid()}-{self.session_id}"
        if min_write_interval is None:
            min_write_interval = flush_interval
        config = {"batch_size": batch_size, "flush_interval": flush_interval,
                  "min_write_interval": min_write_interval, "poll_interval": poll_interval,
                  "max_pending_rows": max(8 * self.queue_size, 1 << 16), "lossy": dict(lossy or {}),
                  "nice": writer_nice, "cpus": sorted(writer_cpus) if writer_cpus else None,
                  "start_wall_ns": self.start_time_ns, "path": self.path}
        session = {"session_id": self.session_id,
                   "start_time": _dt.datetime.fromtimestamp(self.start_time_ns / 1e9, _dt.UTC).isoformat(),
                   "start_time_ns": self.start_time_ns, "start_monotonic_ns": self.start_monotonic_ns,
                   "host": socket.gethostname(), "pid": os.getpid(),
                   "logger": {"batch_size": batch_size, "flush_interval": flush_interval,
                              "queue_size": self.queue_size, "on_full": on_full,
                              "mimicdata": mimicdata.__version__}}
        if self._create_store({**dict(attrs or {}), **session}, overwrite):
            self._start_writer(config, start_timeout, writer)
        _LIVE.add(self)

    # ------------------------------------------------------------------------------------ set-up
    def _create_store(self, attrs: dict[str, Any], overwrite: bool) -> bool:
        """Create the store here, so a bad robot name or an existing path fails at once, in the caller."""
        try:
            json.dumps(attrs)
        except TypeError as exc:
            raise ValueError(f"attrs must be JSON-serialisable: {exc}") from None
        try:
            # No store-wide fps: streams inherit it, and a 1 kHz imu must not claim the control rate.
            with mimicdata.create(self.path, robot=self.robot, overwrite=overwrite,
                                  attrs={**attrs, "control_fps": self.fps}) as store:
                store.add_stream(DROPS, fields=DROP_FIELDS, time_field="timestamp")
        except (StoreExistsError, ValueError):
            raise  # usage errors: the caller must fix them
        except OSError as exc:  # read-only location, disk full: keep the control loop running
            self._error = f"cannot create the log store {self.path}: {exc}"
            warnings.warn(f"StreamingLogger: {self._error}; nothing will be logged", RuntimeWarning,
                          stacklevel=3)
            return False
        return True

    def _start_writer(self, config: dict[str, Any], timeout: float, kind: str) -> None:
        folder = ring_dir()
        sweep_stale(folder)
        control_path = folder / f"{self._prefix}.control"
        self._control = Control.create(control_path)
        config["control"] = str(control_path)
        self._proc = start_writer(kind)
        self._pipe = self._proc.fd
        self._send(config)
        deadline = time.monotonic() + timeout
        while self._control[C_STATE] == STATE_STARTING and self._proc.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if self._control[C_STATE] != STATE_RUNNING:
            problem = self._control.error() or (f"the writer exited with code {self._proc.exit_code()}"
                                                if not self._proc.alive()
                                                else f"the writer did not start within {timeout} s")
            self._error = problem
            warnings.warn(f"StreamingLogger: {problem}; records are queued but may not be stored",
                          RuntimeWarning, stacklevel=3)

    def _send(self, message: dict[str, Any]) -> bool:
        data = (json.dumps(message) + "\n").encode()
        with self._pipe_lock:
            try:
                while data:
                    data = data[os.write(self._pipe, data):]
            except OSError as exc:  # writer gone
                self._error = self._error or f"the writer process is gone ({exc.strerror})"
                return False
        return True

    def declare(self, stream: str, example: Mapping[str, Any] | None = None, *,
                fields: Mapping[str, Mapping[str, Any]] | None = None, fps: float | None = None) -> None:
        """Fix a stream's fields before the control loop starts, rather than in its first ``log()``.

        Declaring also maps the stream's ring into memory page by page (a few ms for the default
        16384 records), so no ``log()`` call ever waits for the kernel to allocate a page.
        ``example`` is a record like the ones to come; ``fields`` gives custom streams explicit specs
        (``{"acc": {"dtype": "float32", "shape": [3], "unit": "m/s^2", "allow_nan": False}}``);
        ``fps`` is the stream's nominal rate, used by timing reports.
        """
        if stream in self._producers:
            raise ValueError(f"stream {stream!r} is already declared")
        self._declare(stream, example, fields=fields, fps=fps, prefault=True)

    def _declare(self, stream: str, example: Mapping[str, Any] | None, *,
                 fields: Mapping[str, Mapping[str, Any]] | None, fps: float | None, prefault: bool) -> None:
        with self._declare_lock:
            if stream in self._producers:
                return  # declared meanwhile by another thread's first log()
            if not STREAM_NAME.match(stream) or stream == DROPS:
                raise ValueError(f"stream name {stream!r} is not allowed: letters, digits, '_', '-', '.', "
                                 f"starting with a letter or digit, and not {DROPS!r}")
            if stream in self.schemas:
                if example is None:
                    raise ValueError(f"declare({stream!r}) needs an example record to fix its shapes")
                layout = schema_layout(stream, stream, example, self.robot, fps or self.fps)
            else:
                layout = custom_layout(stream, example, fields=fields, fps=fps)
            if self._proc is None:  # no writer (store could not be created): count, do not copy
                self._failed_drops.setdefault(stream, 0)
                return
            dtype, blocks = layout.slot_dtype()
            ring_path = ring_dir() / f"{self._prefix}-{len(self._rings)}.ring"
            ring = Ring.create(ring_path, dtype, self.queue_size)
            if prefault:
                ring.prefault()
            self._rings[stream] = ring
            self._send({"op": "stream", "layout": layout.to_json(), "ring": str(ring_path)})
            self._producers[stream] = Producer(layout, ring, on_full=self.on_full,
                                               block_timeout=self.block_timeout, blocks=blocks)

    # --------------------------------------------------------------------------------------- log
    def log(self, stream: str, record: Mapping[str, Any]) -> bool:
        """Log one record (dict of numpy arrays / numbers) to ``stream``; never waits for I/O.

        The values are copied, so the caller may reuse its arrays at once. Returns False when the
        record was dropped (queue full, logger closed or failed). Raises
        :class:`mimicdata.ValidationError` for a record that does not fit the stream (unknown or
        missing field, wrong shape, NaN/Inf where not allowed); nothing logged before is affected.
        """
        producer = self._producers.get(stream)
        if producer is None:
            if self._closed or self._proc is None:
                self._failed_drops[stream] = self._failed_drops.get(stream, 0) + 1
                return False
            self._declare(stream, record, fields=None, fps=None, prefault=False)
            producer = self._producers[stream]
        if self._closed:
            self._failed_drops[stream] = self._failed_drops.get(stream, 0) + 1
            return False
        return producer.put(record)

    def slot(self, stream: str) -> SlotLoan:
        """Lend the stream's next ring slot for zero-copy logging from a control loop::

            with logger.slot("observations") as rec:
                rec["joint_pos"][:] = q          # written straight into shared memory
                rec["counter_step"] = step

        The stream must be declared (:meth:`declare`, or a first :meth:`log`). The slot starts zeroed,
        so every field should be written; on leaving the block the record is checked (NaN/Inf) and
        published, and a block that raises publishes nothing. With the queue full the block writes into
        a scratch record that is dropped and counted, as ``log()`` would. Holds the stream's lock for
        the block: keep it short, and do not call ``log()`` for the same stream inside it.
        """
        producer = self._producers.get(stream)
        if producer is None:
            raise ValueError(f"stream {stream!r} is not declared; call declare({stream!r}, example) or log() "
                             f"one record first")
        return producer.loan()

    # ----------------------------------------------------------------------------------- status
    @property
    def status(self) -> LoggerStatus:
        """Counters and the last error; cheap enough to poll from the control loop now and then."""
        if self._final_status is not None:
            return self._final_status
        return self._snapshot()

    def _snapshot(self) -> LoggerStatus:
        streams = {}
        for name, p in self._producers.items():
            header = p.ring.header
            streams[name] = StreamStatus(logged=p.next_seq, written=int(header[H_WRITTEN]),
                                         dropped=p.dropped + int(header[H_LOST]) + int(header[H_REFUSED]),
                                         queue_depth=p.write_index - int(header[H_READ]))
        for name, n in self._failed_drops.items():
            old = streams.get(name, StreamStatus(0, 0, 0, 0))
            streams[name] = StreamStatus(old.logged + n, old.written, old.dropped + n, old.queue_depth)
        control = self._control
        last = (control.error() if control else None) or self._error
        errors = (control[C_ERRORS] if control else 0) + (1 if self._error else 0)
        alive = self._proc is not None and self._proc.alive()
        if self._proc is not None and not alive and self._proc.exit_code() != 0:
            last = last or f"the writer exited with code {self._proc.exit_code()}"
            errors = max(errors, 1)
        return LoggerStatus(
            path=self.path, session_id=self.session_id,
            logged=sum(s.logged for s in streams.values()), written=sum(s.written for s in streams.values()),
            dropped=sum(s.dropped for s in streams.values()),
            queue_depth=sum(s.queue_depth for s in streams.values()), last_error=last, errors=errors,
            writer_alive=alive, writer_cpu_s=(control[C_CPU_NS] / 1e9 if control else 0.0), streams=streams)

    # ---------------------------------------------------------------------------- flush / close
    def flush(self, timeout: float = 30.0) -> bool:
        """Commit everything logged so far; waits (not for the control loop). False on error or timeout."""
        if self._closed or self._proc is None or self._control is None:
            return False
        errors_before = self._control[C_ERRORS]
        with self._pipe_lock:
            self._flush_id += 1
            flush_id = self._flush_id
        if not self._send({"op": "flush", "id": flush_id}):
            return False
        deadline = time.monotonic() + timeout
        while self._control[C_FLUSHED] < flush_id:
            if not self._proc.alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return self._control[C_ERRORS] == errors_before

    def close(self, timeout: float = 120.0, *, raise_errors: bool = True) -> LoggerStatus:
        """Write everything logged, close the store and stop the writer; returns the final status.

        Raises :class:`LoggerWriteError` (after cleaning up) if records could not be stored.
        """
        if self._closed:
            return self.status
        self._closed = True
        _LIVE.discard(self)
        for producer in self._producers.values():
            with producer.lock:  # no log() is half-way through a slot once this returns
                producer.closed = True
        if self._proc is not None:
            self._send({"op": "close"})
            self._proc.close_pipe()
            if not self._proc.wait(timeout):
                # It keeps draining on its own (its stdin is closed); report instead of killing it.
                self._error = self._error or (f"the writer is still writing after {timeout} s; "
                                              f"it will finish in the background (pid {self._proc.pid})")
        status = self._snapshot()
        if self._proc is not None and self._control is not None and self._control[C_STATE] != STATE_CLOSED:
            status = _with_error(status, status.last_error or "the writer did not close the store")
        self._final_status = status
        self._release()
        problem = status.errors or status.written + status.dropped < status.logged
        if problem and raise_errors:
            raise LoggerWriteError(
                f"{self.path}: {status.written} of {status.logged} records stored, {status.dropped} dropped; "
                f"last error: {status.last_error or 'none'}")
        return status

    def _release(self) -> None:
        for producer in self._producers.values():
            producer.checks = []
            producer.items = []
        for ring in self._rings.values():
            ring.close()
            ring.unlink()
        if self._control is not None:
            self._control.close()
            self._control.path.unlink(missing_ok=True)

    def _close_at_exit(self) -> None:
        try:
            self.close(raise_errors=False)
        except Exception as exc:  # at exit there is nobody left to raise to
            print(f"mimicdata StreamingLogger: closing at exit failed: {exc}", file=sys.stderr)

    def __enter__(self) -> StreamingLogger:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # While an exception propagates, report write problems as a warning rather than replace it.
        status = self.close(raise_errors=exc_type is None)
        if exc_type is not None and status.errors:
            warnings.warn(f"StreamingLogger: {status.last_error}", RuntimeWarning, stacklevel=2)

    def __repr__(self) -> str:
        s = self.status
        return (f"<StreamingLogger {self.path} session={self.session_id} logged={s.logged} "
                f"written={s.written} dropped={s.dropped}{' closed' if self._closed else ''}>")


# Loggers not closed yet; closed at interpreter exit (normal end, uncaught exception, Ctrl-C).
_LIVE: weakref.WeakSet[StreamingLogger] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for logger in list(_LIVE):
        logger._close_at_exit()


def _with_error(status: LoggerStatus, message: str) -> LoggerStatus:
    from dataclasses import replace

    return replace(status, last_error=message, errors=max(1, status.errors))
