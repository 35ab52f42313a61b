"""The writer process: drains the rings of a :class:`StreamingLogger` into its store.

Started by the logger as ``python -c "from mimicdata.logger.writer import main; main()"``. It reads
commands as JSON lines on stdin (first line: configuration; then ``stream``, ``flush``, ``close``).
End of file on stdin means the logging process is gone (exited, crashed, killed): the writer then
drains every record already published in the rings, commits them and exits, so killing the
logging process loses nothing it logged. It ignores SIGINT/SIGTERM for that reason: Ctrl-C in a
terminal signals the whole process group, and the logging process decides when logging ends.

When is a stream written? When its oldest pending record would otherwise wait longer than
``flush_interval`` (taking the last append's duration into account), or once it has ``batch_size``
rows and ``min_write_interval`` has passed since its last append: a Zarr append has a fixed cost of
tens of milliseconds, so rows are written in batches of about a second or more.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.errors import ValidationError
from mimicdata.logger.layout import COUNTER, MONOTONIC, TIMESTAMP, StreamLayout
from mimicdata.logger.ring import (
    C_CPU_NS,
    C_FLUSHED,
    C_HEARTBEAT,
    C_PID,
    C_STATE,
    C_WRITES,
    H_LOST,
    H_NEXT_SEQ,
    H_READ,
    H_REFUSED,
    H_WRITE,
    H_WRITTEN,
    STATE_CLOSED,
    STATE_FAILED,
    STATE_RUNNING,
    Control,
    Ring,
)

DROPS = "drops"
DROP_FIELDS: dict[str, dict[str, Any]] = {
    "stream": {"dtype": "string", "shape": [], "description": "Stream whose records were dropped."},
    "reason": {"dtype": "string", "shape": [],
               "description": "queue_full: the writer could not keep up (log() never waits); "
                              "write_error: the store refused writes for too long; "
                              "rejected: the store refused the rows as invalid."},
    "first_seq": {"dtype": "int64", "shape": [], "unit": "record",
                  "description": "Sequence number (the stream's auto counter_step) of the first dropped record."},
    "last_seq": {"dtype": "int64", "shape": [], "unit": "record", "description": "Last dropped record."},
    "count": {"dtype": "int64", "shape": [], "unit": "record", "description": "Records dropped."},
    "gap_end": {"dtype": "int64", "shape": [], "unit": "ns", "time": "unix_ns",
                "description": "Wall clock of the first record kept after the gap (or of the close)."},
}
# 'timestamp' (added by the store as the time field): wall clock of the last record kept before the gap.


class Sink:
    """One stream: its ring, the rows taken from it and not yet committed, and the stream in the store."""

    def __init__(self, writer: Writer, layout: StreamLayout, ring_path: str) -> None:
        self.writer = writer
        self.layout = layout
        self.name = layout.stream
        dtype, _ = layout.slot_dtype()
        self.ring = Ring.attach(Path(ring_path), dtype)
        self.ring.prefault()
        store = writer.store
        lossy = {k: v for k, v in writer.lossy.items() if k in layout.field_names}
        if self.name in store.streams:
            self.stream = store[self.name]
        elif layout.schema:
            self.stream = store.add_stream(self.name, schema=layout.schema, fps=layout.fps,
                                           dims=layout.dims or None, lossy=lossy or None)
        else:
            self.stream = store.add_stream(self.name, fields=layout.store_fields(), fps=layout.fps,
                                           time_field=TIMESTAMP, lossy=lossy or None)
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.seen_write = 0          # write index seen on the previous poll
        self.last_seq = -1
        self.last_wall = writer.start_wall
        self.last_write = time.monotonic()
        self.last_duration = 0.0
        self.retry_at = 0.0
        self.written = 0
        self.lost = 0
        self.failing = False  # the last append failed: pending rows are bounded while it lasts

    # ---------------------------------------------------------------------------------- draining
    def drain(self, take_all: bool) -> None:
        header = self.ring.header
        w = header[H_WRITE]
        limit = w if take_all else self.seen_write  # only slots published at least one poll ago
        self.seen_write = w
        r = header[H_READ]
        if limit <= r:
            return
        rows = self.ring.copy_out(r, limit)
        header[H_READ] = limit
        self._find_gaps(rows["_seq"], rows["_wall"])
        self.pending.append(rows)
        self.pending_rows += len(rows)
        if self.failing and self.pending_rows > self.writer.max_pending_rows:
            self._discard_oldest(self.pending_rows - self.writer.max_pending_rows)
        if self.failing:  # rows drained while the store refuses count as refused at once
            self.ring.header[H_REFUSED] = self.pending_rows

    def _find_gaps(self, seq: np.ndarray, wall: np.ndarray) -> None:
        before_seq = np.concatenate([[self.last_seq], seq[:-1]])
        before_wall = np.concatenate([[self.last_wall], wall[:-1]])
        for i in np.flatnonzero(seq - before_seq > 1):
            self.writer.add_drop(self.name, "queue_full", int(before_seq[i]) + 1, int(seq[i]) - 1,
                                 int(before_wall[i]), int(wall[i]))
        self.last_seq, self.last_wall = int(seq[-1]), int(wall[-1])

    def _discard_oldest(self, n: int, reason: str = "write_error") -> None:
        rows = np.concatenate(self.pending)
        gone, keep = rows[:n], rows[n:]
        self.pending, self.pending_rows = ([keep] if len(keep) else []), len(keep)
        self.writer.add_drop(self.name, reason, int(gone["_seq"][0]), int(gone["_seq"][-1]),
                             int(gone["_wall"][0]), int(keep["_wall"][0]) if len(keep) else time.time_ns())
        self.lost += n
        self.ring.header[H_LOST] = self.lost

    def trailing_drops(self) -> None:
        """Records dropped after the last one kept (the ring was full until the end)."""
        next_seq = self.ring.header[H_NEXT_SEQ]
        if next_seq - 1 > self.last_seq:
            self.writer.add_drop(self.name, "queue_full", self.last_seq + 1, next_seq - 1,
                                 self.last_wall, time.time_ns())
            self.last_seq = next_seq - 1

    # ----------------------------------------------------------------------------------- writing
    def due(self, now: float) -> bool:
        if not self.pending_rows or now < self.retry_at:
            return False
        oldest = self.pending[0]["_mono"][0] / 1e9
        margin = self.last_duration + 2 * self.writer.poll_interval
        if now - oldest + margin >= self.writer.flush_interval:
            return True
        return (self.pending_rows >= self.writer.batch_size
                and now - self.last_write >= self.writer.min_write_interval)

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: rows[name] for name in self.layout.field_names}
        auto = self.layout.auto
        if TIMESTAMP in auto:
            out[TIMESTAMP] = rows["_wall"]
        if MONOTONIC in auto:
            out[MONOTONIC] = rows["_mono"]
        if COUNTER in auto:
            out[COUNTER] = rows["_seq"]
        return out

    def write(self) -> None:
        """Commit the pending rows; on failure keep them (bounded) and retry later."""
        if not self.pending_rows:
            return
        rows = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending = [rows]
        start = time.monotonic()
        try:
            self.writer.write_drops()  # a reader must never see a gap before its drop record
            self.stream.append(self.batch(rows))
        except ValidationError as exc:  # retrying cannot help: record the rows as rejected, go on
            self.writer.report(f"{len(rows)} rows of {self.name!r} rejected by the store: {exc}")
            self._discard_oldest(len(rows), reason="rejected")
            return
        except Exception as exc:  # disk full, folder gone...: keep the rows, try again later
            self.writer.report(f"writing {len(rows)} rows of {self.name!r} failed: {type(exc).__name__}: {exc}")
            self.retry_at = time.monotonic() + min(1.0, self.writer.flush_interval)
            self.failing = True
            self.ring.header[H_REFUSED] = self.pending_rows
            return
        self.failing = False
        self.ring.header[H_REFUSED] = 0
        self.last_duration = time.monotonic() - start
        self.last_write = time.monotonic()
        self.pending, self.pending_rows = [], 0
        self.written += len(rows)
        self.ring.header[H_WRITTEN] = self.written
        self.writer.control[C_WRITES] = self.writer.control[C_WRITES] + 1


class Writer:
    """The writer process's main loop."""

    def __init__(self, config: dict[str, Any], control: Control, fd: int = 0, in_thread: bool = False) -> None:
        import mimicdata as md

        self.config = config
        self.control = control
        self.fd = fd
        # CPU time of the writer alone: its thread, or its whole process
        self.cpu_ns = time.thread_time_ns if in_thread else time.process_time_ns
        self.batch_size = int(config["batch_size"])
        self.flush_interval = float(config["flush_interval"])
        self.min_write_interval = float(config["min_write_interval"])
        self.poll_interval = float(config["poll_interval"])
        self.max_pending_rows = int(config["max_pending_rows"])
        self.lossy = dict(config.get("lossy") or {})
        self.start_wall = int(config["start_wall_ns"])
        self.store = md.open(config["path"], mode="a")
        self.sinks: dict[str, Sink] = {}
        self.drop_rows: list[dict[str, Any]] = []
        self.buffer = b""
        self.parent_gone = False

    def report(self, message: str) -> None:
        self.control.set_error(message)
        print(f"mimicdata logger writer: {message}", file=sys.stderr, flush=True)

    def add_drop(self, stream: str, reason: str, first: int, last: int, start_wall: int, end_wall: int) -> None:
        self.drop_rows.append({"stream": stream, "reason": reason, "first_seq": first, "last_seq": last,
                               "count": last - first + 1, "timestamp": start_wall, "gap_end": end_wall})

    def write_drops(self) -> None:
        """Commit the drop records gathered so far (a failure is an OSError-like error, never a ValidationError:
        these rows are built here, so the caller retries the data rows along with them)."""
        if not self.drop_rows:
            return
        rows = self.drop_rows
        try:
            self.store[DROPS].append({k: np.asarray([r[k] for r in rows]) for k in rows[0]})
        except ValidationError as exc:  # a bug here must not be mistaken for bad data rows
            raise RuntimeError(f"drop records refused: {exc}") from exc
        self.drop_rows = []

    # -------------------------------------------------------------------------------- commands
    def read_commands(self, timeout: float) -> list[dict[str, Any]]:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.parent_gone = True
            return [{"op": "close"}]
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def run(self) -> None:
        closing = False
        while not closing:
            flush_ids = []
            for cmd in self.read_commands(self.poll_interval):
                op = cmd.get("op")
                if op == "stream":
                    layout = StreamLayout.from_json(cmd["layout"])
                    try:
                        self.sinks[layout.stream] = Sink(self, layout, cmd["ring"])
                    except Exception as exc:
                        self.report(f"cannot add stream {layout.stream!r}: {type(exc).__name__}: {exc}")
                elif op == "flush":
                    flush_ids.append(int(cmd["id"]))
                elif op == "close":
                    closing = True
            take_all = closing or bool(flush_ids)
            now = time.monotonic()
            for sink in self.sinks.values():
                sink.drain(take_all)
            for sink in self.sinks.values():
                if take_all or sink.due(now):
                    if take_all:
                        sink.retry_at = 0.0
                    sink.write()
            if take_all:
                self._write_drops_safely()
            if flush_ids:
                self.control[C_FLUSHED] = max(flush_ids)
            self.control[C_HEARTBEAT] = time.monotonic_ns()
            self.control[C_CPU_NS] = self.cpu_ns()
        self.finish()

    def _write_drops_safely(self) -> None:
        try:
            self.write_drops()
        except Exception as exc:
            self.report(f"writing the drops table failed: {type(exc).__name__}: {exc}")

    def finish(self) -> None:
        for sink in self.sinks.values():
            sink.drain(True)
            sink.trailing_drops()
            if sink.pending_rows:
                sink.retry_at = 0.0
                sink.write()
                if sink.pending_rows:  # the store still refuses: these rows are lost
                    sink.lost += sink.pending_rows
                    sink.ring.header[H_LOST] = sink.lost
                    sink.ring.header[H_REFUSED] = 0
        self._write_drops_safely()
        stats = {name: {"logged": int(s.ring.header[H_NEXT_SEQ]), "written": s.written,
                        "dropped": int(s.ring.header[H_NEXT_SEQ]) - s.written}
                 for name, s in self.sinks.items()}
        ended = "logging process exited without close()" if self.parent_gone else "close()"
        try:
            self.store.update_attrs({"end_time_ns": time.time_ns(), "ended_by": ended, "stats": stats})
            self.store.close()
        except Exception as exc:
            self.report(f"closing the store failed: {type(exc).__name__}: {exc}")
        self.control[C_CPU_NS] = self.cpu_ns()
        self.control[C_STATE] = STATE_CLOSED
        for sink in self.sinks.values():
            sink.ring.close()
            if self.parent_gone:
                sink.ring.unlink()
        if self.parent_gone:
            self.control.path.unlink(missing_ok=True)


def serve(fd: int, *, in_thread: bool = False) -> None:
    """Read the configuration line from ``fd``, open the store and run the writer loop until close/EOF."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return  # the logging process died before sending the configuration
        line += chunk
    config = json.loads(line)
    control = Control.attach(Path(config["control"]))
    control[C_PID] = os.getpid()
    if not in_thread:
        try:
            os.nice(int(config.get("nice", 0)))
            if config.get("cpus") and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, config["cpus"])
        except OSError as exc:
            control.set_error(f"cannot set the writer's priority/CPUs ({exc}); running without")
    try:
        writer = Writer(config, control, fd, in_thread)
    except Exception as exc:
        control.set_error(f"cannot open the store for writing: {type(exc).__name__}: {exc}")
        control[C_STATE] = STATE_FAILED
        raise
    control[C_STATE] = STATE_RUNNING
    try:
        writer.run()
    except BaseException as exc:
        writer.report(f"writer crashed: {type(exc).__name__}: {exc}")
        control[C_STATE] = STATE_FAILED
        raise


def main() -> None:
    """Entry point of the writer process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(0)


if __name__ == "__main__":
    main()
