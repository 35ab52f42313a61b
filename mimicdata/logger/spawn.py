"""Starting the writer: a separate process (the default) or a thread of the logging process.

Both run the same :class:`mimicdata.logger.writer.Writer` loop, fed the same JSON-line commands
through a pipe. The process is what keeps the writer's Python (Zarr, asyncio, compression glue) off
the control loop's GIL, and what lets it finish the job when the logging process is killed. The
thread exists to measure exactly that difference (benchmarks/logger_latency.py) and for platforms
where a helper process cannot be started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import mimicdata


def _writer_pythonpath() -> str:
    """Make the writer import this very copy of mimicdata, however the caller found it."""
    root = str(Path(mimicdata.__file__).resolve().parent.parent)
    current = os.environ.get("PYTHONPATH")
    return root if not current else root + os.pathsep + current


class WriterProcess:
    """``python -c "...writer.main()"`` with its stdin as the command pipe."""

    kind = "process"

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=_writer_pythonpath())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from mimicdata.logger.writer import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, close_fds=True)
        assert self.proc.stdin is not None
        self.fd = self.proc.stdin.fileno()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def close_pipe(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout: float | None) -> bool:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class WriterThread:
    """The writer loop in a daemon thread of this process, fed through an ``os.pipe()``."""

    kind = "thread"

    def __init__(self) -> None:
        self.read_fd, self.fd = os.pipe()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="mimicdata-log-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from mimicdata.logger.writer import serve

        try:
            serve(self.read_fd, in_thread=True)
        except BaseException as exc:  # reported through the control block too
            self.error = exc
        finally:
            os.close(self.read_fd)

    @property
    def pid(self) -> int:
        return os.getpid()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def exit_code(self) -> int | None:
        if self.thread.is_alive():
            return None
        return 1 if self.error is not None else 0

    def close_pipe(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

    def wait(self, timeout: float | None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_writer(kind: str) -> Any:
    """A running writer of the given kind (``"process"`` or ``"thread"``)."""
    if kind == "process":
        return WriterProcess()
    if kind == "thread":
        return WriterThread()
    raise ValueError(f"writer must be 'process' or 'thread', not {kind!r}")
