"""AsyncEpisodeSaver: commit finished episodes on a background thread so recording never waits.

The interface is the one of the asynchronous-saving design for LeRobot (``submit_episode``,
``get_results``, ``wait_for_completion``, ``get_status``, ``stop``), with three differences that close
its gaps:

- memory is bounded twice: by the number of queued episodes *and* by their bytes (a queue of ten
  1000-frame camera episodes is gigabytes); a submit that would pass either bound returns False and the
  caller saves synchronously instead;
- a failed save keeps its episode buffer in the result (``EpisodeSaveResult.episode_buffer``), so the
  episode can be retried; failures are also logged, never dropped;
- at interpreter exit the queue is drained before the process ends (a hook that runs before the
  thread pools zarr writes through are shut down; the worker is not a daemon either);
- while a save runs, the interpreter's GIL switch interval is lowered to 0.2 ms (and restored after):
  the recording thread then waits at most that long for the GIL behind the saver's Python code.

The saver knows nothing about stores: it calls ``save_fn(episode_buffer)``, which returns the index
the episode was committed under (see :class:`mimicdata.episodes.EpisodeRecorder`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)
SAVE_SWITCH_INTERVAL_S = 0.0002  # GIL hand-over interval while a background save runs (Python's default: 5 ms)


class SizedBuffer(Protocol):
    """What the saver needs from an episode buffer: its size in bytes."""

    @property
    def nbytes(self) -> int: ...


@dataclass
class EpisodeSaveResult:
    """Outcome of one background save."""

    episode_index: int                 # index given at submit time
    success: bool
    stored_index: int | None = None    # index it was committed under (differs if an earlier save failed)
    error: str | None = None
    duration_s: float = 0.0
    frames: int = 0
    episode_buffer: Any = field(default=None, repr=False)  # kept on failure so nothing is lost

    def to_dict(self) -> dict[str, Any]:
        return {"episode_index": self.episode_index, "success": self.success, "stored_index": self.stored_index,
                "error": self.error, "duration_s": self.duration_s, "frames": self.frames}


@dataclass
class _Task:
    buffer: Any
    episode_index: int
    nbytes: int
    submitted: float


class AsyncEpisodeSaver:
    """Background committer of episode buffers (one worker thread, bounded queue).

    Args:
        save_fn: commits one buffer, returns the index it was stored under; runs on the worker thread.
        max_queue_size: episodes that may wait (not counting the one being saved).
        save_timeout: seconds a single save may take before the status reports it as stalled.
        max_queue_bytes: bytes of episode data that may be held by waiting and in-flight episodes.
    """

    def __init__(self, save_fn: Callable[[Any], int], max_queue_size: int = 10, save_timeout: float = 300.0,
                 max_queue_bytes: int = 2 << 30) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        if save_timeout <= 0 or max_queue_bytes <= 0:
            raise ValueError("save_timeout and max_queue_bytes must be positive")
        self._save_fn = save_fn
        self.max_queue_size = int(max_queue_size)
        self.save_timeout = float(save_timeout)
        self.max_queue_bytes = int(max_queue_bytes)
        self._queue: queue.Queue[_Task | None] = queue.Queue(maxsize=self.max_queue_size)
        self._results: queue.Queue[EpisodeSaveResult] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._submitted = 0
        self._completed = 0
        self._failed = 0
        self._pending = 0          # submitted, not finished (queued + in flight)
        self._held_bytes = 0       # bytes of pending episodes
        self._last_error: str | None = None
        self._current: _Task | None = None
        self._current_started = 0.0
        self._rejected = 0
        # Not a daemon: queued episodes are written before the interpreter exits.
        self._worker = threading.Thread(target=self._run, name="mimicdata-episode-saver", daemon=False)
        self._worker.start()
        _drain_at_exit(self)

    # -------------------------------------------------------------------------------------- producer
    def submit_episode(self, episode_buffer: SizedBuffer, episode_index: int) -> bool:
        """Queue a finished episode; False (nothing queued) when the saver is stopped or a bound is hit."""
        nbytes = int(getattr(episode_buffer, "nbytes", 0))
        with self._lock:
            if self._stop.is_set() or not self._worker.is_alive():
                return False
            if self._pending and self._held_bytes + nbytes > self.max_queue_bytes:
                self._rejected += 1
                return False
            task = _Task(episode_buffer, int(episode_index), nbytes, time.perf_counter())
            try:
                self._queue.put_nowait(task)
            except queue.Full:
                self._rejected += 1
                return False
            self._submitted += 1
            self._pending += 1
            self._held_bytes += nbytes
        return True

    def get_results(self, timeout: float = 0.0) -> list[EpisodeSaveResult]:
        """Results finished since the last call; waits up to ``timeout`` s for the first one."""
        out: list[EpisodeSaveResult] = []
        try:
            out.append(self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def wait_for_completion(self, timeout: float | None = None) -> bool:
        """Block until every submitted episode is saved (or failed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                if not self._worker.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(timeout=0.2 if remaining is None else min(remaining, 0.2))
        return True

    def get_status(self) -> dict[str, Any]:
        """Counters and health of the saver (the design's keys plus memory and stall information)."""
        with self._lock:
            running_for = time.perf_counter() - self._current_started if self._current else 0.0
            return {
                "is_running": not self._stop.is_set() and self._worker.is_alive(),
                "total_submitted": self._submitted,
                "total_completed": self._completed,
                "total_failed": self._failed,
                "queue_size": self._queue.qsize(),
                "pending_tasks": self._pending,
                "last_error": self._last_error,
                "worker_alive": self._worker.is_alive(),
                "queued_bytes": self._held_bytes,
                "max_queue_bytes": self.max_queue_bytes,
                "max_queue_size": self.max_queue_size,
                "rejected": self._rejected,
                "current_episode": self._current.episode_index if self._current else None,
                "current_save_s": running_for,
                "stalled": running_for > self.save_timeout,
            }

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting episodes; with ``wait`` finish the queued ones first (up to ``timeout`` s)."""
        if wait:
            self.wait_for_completion(timeout)
        with self._lock:
            self._stop.set()
        try:
            self._queue.put_nowait(None)  # wake the worker
        except queue.Full:
            pass
        if wait:
            self._worker.join(timeout=timeout)

    # ---------------------------------------------------------------------------------------- worker
    def _next_task(self) -> _Task | None:
        main = threading.main_thread()
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return None
                if not main.is_alive():  # interpreter is exiting and nothing is left to save
                    return None

    def _run(self) -> None:
        while True:
            task = self._next_task()
            if task is None:
                if self._stop.is_set() and not self._queue.empty():
                    continue  # stop(wait=False) racing with late items: drain what was accepted
                return
            with self._lock:
                self._current, self._current_started = task, time.perf_counter()
            # The control loop must get the GIL back within a fraction of a millisecond while this
            # thread runs numpy/zarr code: a shorter switch interval for the duration of the save.
            with _short_switch_interval():
                result = self._save(task)
            with self._idle:
                self._current = None
                self._pending -= 1
                self._held_bytes -= task.nbytes
                if result.success:
                    self._completed += 1
                else:
                    self._failed += 1
                    self._last_error = f"episode {task.episode_index}: {result.error}"
                if result.duration_s > self.save_timeout:
                    self._last_error = (f"episode {task.episode_index}: save took {result.duration_s:.1f} s, "
                                        f"longer than save_timeout={self.save_timeout} s")
                self._results.put(result)
                self._idle.notify_all()

    def _save(self, task: _Task) -> EpisodeSaveResult:
        start = time.perf_counter()
        frames = int(getattr(task.buffer, "num_frames", 0))
        try:
            stored = self._save_fn(task.buffer)
        except Exception as exc:  # reported with the episode and its data, never swallowed
            log.error("saving episode %d failed: %s: %s", task.episode_index, type(exc).__name__, exc)
            return EpisodeSaveResult(task.episode_index, False, None, f"{type(exc).__name__}: {exc}",
                                     time.perf_counter() - start, frames, episode_buffer=task.buffer)
        return EpisodeSaveResult(task.episode_index, True, int(stored), None, time.perf_counter() - start, frames)


_switch_lock = threading.Lock()
_switch_state = {"active": 0, "previous": 0.005}


@contextlib.contextmanager
def _short_switch_interval() -> Iterator[None]:
    """Lower the GIL switch interval while any saver is saving; the last one to finish restores it."""
    with _switch_lock:
        if _switch_state["active"] == 0:
            _switch_state["previous"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_state["previous"], SAVE_SWITCH_INTERVAL_S))
        _switch_state["active"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_state["active"] -= 1
            if _switch_state["active"] == 0:
                sys.setswitchinterval(_switch_state["previous"])


def _drain_at_exit(saver: AsyncEpisodeSaver) -> None:
    """Finish queued saves when the interpreter exits.

    ``threading._register_atexit`` hooks run before non-daemon threads are joined and in reverse order
    of registration, so this one runs before concurrent.futures refuses new work (zarr's writes go
    through its thread pools); a plain ``atexit`` hook would run too late.
    """
    ref = weakref.ref(saver)

    def drain() -> None:
        live = ref()
        if live is not None and live.get_status()["pending_tasks"]:
            pending = live.get_status()["pending_tasks"]
            log.info("waiting for %d queued episode(s) before exit", pending)
            live.stop(wait=True, timeout=live.save_timeout * pending)

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(drain)
        except RuntimeError:  # interpreter already shutting down
            pass
