"""EpisodeRecorder: record frames, commit whole episodes atomically, save in the background.

Commit order of one episode (what makes a kill at any moment harmless):

1. the frames (state, action, images, real timestamps) are appended to the ``frames`` stream; they
   lie past the end of the last committed episode, so no reader sees them yet;
2. the episode's statistics and user metadata are appended to the ``episode_info`` stream;
3. the episode row is appended to ``episodes``: **this is the commit point**;
4. the dataset statistics in the store attributes are refreshed (a cache of step 2's rows).

A writer killed before step 3 leaves an episode that reopening discards (frames by the store, the
statistics row by :meth:`EpisodeRecorder._repair_info`); one killed after it leaves the episode whole.
Reopening for recording resumes at the next episode index and refuses a different rate, robot,
schema or feature set.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.episodes.buffer import EpisodeBuffer, check_layout
from mimicdata.episodes.config import (
    INFO_STREAM,
    OPTIONAL_FRAME_FIELDS,
    RECORDING_ATTR,
    STATS_ATTR,
    RecordingConfig,
)
from mimicdata.episodes.info import info_fields, info_row, load_summaries
from mimicdata.episodes.saver import AsyncEpisodeSaver, EpisodeSaveResult
from mimicdata.episodes.stats import Summary, dataset_stats, summarize
from mimicdata.errors import SchemaError, StoreNotFoundError, ValidationError
from mimicdata.store import Store
from mimicdata.store import create as create_store
from mimicdata.store import open as open_store

log = logging.getLogger(__name__)
SCHEMA = "episodes"


class EpisodeRecorder:
    """Records episodes into an ``episodes`` store. Build one with :meth:`create`, :meth:`resume` or :meth:`open`.

    >>> rec = EpisodeRecorder.create("memory://rec-doc", fps=50, state=3, action=2, overwrite=True)
    >>> for t in range(4):
    ...     rec.add_frame({"state": np.zeros(3), "action": np.ones(2), "task": "stand"})
    >>> rec.save_episode()
    0
    >>> rec.close()
    """

    def __init__(self, store: Store, *, default_task: str | None = None) -> None:
        if store.mode != "a":
            raise SchemaError(f"{store.location}: open the store with mode='a' to record")
        if "frames" not in store or "episodes" not in store or store["frames"].schema != SCHEMA:
            raise SchemaError(f"{store.location} is not an episodes store (streams {list(store.streams)})")
        doc = store.attrs.get(RECORDING_ATTR)
        if doc is None:
            raise SchemaError(f"{store.location}: no 'recording' attributes; create it with EpisodeRecorder.create")
        self.store = store
        self.config = RecordingConfig.from_doc(doc)
        self.default_task = default_task
        self._commit_lock = threading.RLock()
        self._saver: AsyncEpisodeSaver | None = None
        self.failed_episodes: list[EpisodeSaveResult] = []
        if INFO_STREAM not in store:
            store.add_stream(INFO_STREAM, fields=info_fields(self.config), chunk_rows=256,
                             dims={"state": self.config.state_dim, "action": self.config.action_dim})
        self._repair_info()
        self._stats: dict[str, Summary] = load_summaries(store[INFO_STREAM], self.config,
                                                         store["episodes"].num_rows)
        # Label of the next episode: committed + handed to the saver. A failed background save shifts
        # the stored index of later ones down by one (results report both numbers).
        self._next_index = store["episodes"].num_rows
        self.buffer = EpisodeBuffer(self._next_index)
        self._last_stamp: int | None = None

    # ---------------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, url: str | Path, *, fps: float, state: int | Sequence[str], action: int | Sequence[str],
               robot: str | None = None, cameras: Mapping[str, Sequence[int]] | None = None,
               overwrite: bool = False, attrs: Mapping[str, Any] | None = None,
               default_task: str | None = None) -> EpisodeRecorder:
        """A new episodes store at ``url``; ``state``/``action`` are sizes or lists of names,
        ``cameras`` maps camera name -> (height, width) of its uint8 RGB frames."""
        config = RecordingConfig.declare(fps=fps, robot=robot, state=state, action=action, cameras=cameras)
        user = dict(attrs or {})
        user[RECORDING_ATTR] = config.to_doc()
        store = create_store(url, SCHEMA, robot=robot, fps=fps, overwrite=overwrite, attrs=user,
                             dims={"state": config.state_dim, "action": config.action_dim})
        try:
            return cls(store, default_task=default_task)
        except BaseException:
            store.close()
            raise

    @classmethod
    def resume(cls, url: str | Path, *, fps: float | None = None, state: int | Sequence[str] | None = None,
               action: int | Sequence[str] | None = None, robot: str | None = None,
               cameras: Mapping[str, Sequence[int]] | None = None, break_lock: bool = False,
               default_task: str | None = None) -> EpisodeRecorder:
        """Reopen a store to record more episodes; every declared setting must equal the stored one."""
        store = open_store(url, "a", break_lock=break_lock)
        try:
            rec = cls(store, default_task=default_task)
            stored = rec.config
            declared = RecordingConfig.declare(
                fps=fps or stored.fps, robot=robot if robot is not None else stored.robot,
                state=state if state is not None else (stored.state_names or stored.state_dim),
                action=action if action is not None else (stored.action_names or stored.action_dim),
                cameras=cameras if cameras is not None else stored.cameras)
            problems = stored.differences(declared)
            if store.robot is not None and robot is not None and store.robot.name != robot:
                problems.append(f"robot: store has {store.robot.name!r}, recorder declares {robot!r}")
            if problems:
                raise SchemaError(f"{store.location}: cannot resume recording, the setup differs: "
                                  + "; ".join(dict.fromkeys(problems)))
            return rec
        except BaseException:
            store.close()
            raise

    @classmethod
    def open(cls, url: str | Path, *, fps: float, state: int | Sequence[str], action: int | Sequence[str],
             robot: str | None = None, cameras: Mapping[str, Sequence[int]] | None = None,
             attrs: Mapping[str, Any] | None = None, default_task: str | None = None) -> EpisodeRecorder:
        """Resume the store at ``url`` if it exists (checking the setup), else create it."""
        try:
            return cls.resume(url, fps=fps, state=state, action=action, robot=robot, cameras=cameras,
                              default_task=default_task)
        except StoreNotFoundError:
            return cls.create(url, fps=fps, state=state, action=action, robot=robot, cameras=cameras,
                              attrs=attrs, default_task=default_task)

    # ---------------------------------------------------------------------------------------- state
    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return self.store["episodes"].num_rows

    @property
    def next_episode_index(self) -> int:
        """Index the episode being recorded will get (committed + queued episodes)."""
        return self._next_index

    def _repair_info(self) -> None:
        """Drop statistics rows of episodes that never committed; rebuild missing ones from frames."""
        info, episodes = self.store[INFO_STREAM], self.store["episodes"]
        n = episodes.num_rows
        if info.committed_rows > n:
            info.truncate(n)
        if info.committed_rows < n:
            spans = self.store["frames"].segments()
            for index in range(info.committed_rows, n):
                start, end = (int(v) for v in spans[index])
                batch = {f: self.store["frames"].read(f, start, end) for f in self._stat_fields()}
                info.append(info_row(index, end - start, self._summaries(batch), "{}"))

    def _stat_fields(self) -> list[str]:
        return ["state", "action", *self.config.image_fields]

    # ---------------------------------------------------------------------------------------- frames
    def add_frame(self, frame: Mapping[str, Any]) -> None:
        """Add one frame: ``state``, ``action``, ``image.<camera>`` (uint8 HxWx3) for every declared camera,
        optional ``task`` (else the recorder's default), ``timestamp`` (int ns since the Unix epoch;
        default: now), ``next.reward``, ``next.done``. A bad frame raises and leaves the episode as it was."""
        where = f"episode {self.buffer.episode_index} frame {self.buffer.num_frames}"
        if not isinstance(frame, Mapping):
            raise ValidationError(f"{where}: a frame is a mapping of field -> value, got {type(frame).__name__}")
        values, task = self._check_frame(frame, where)
        check_layout(self.buffer, values, where)
        self.buffer.add(values, task)
        self._last_stamp = int(values["timestamp"])

    def add_frames(self, batch: Mapping[str, Any]) -> None:
        """Add ``n`` frames at once (arrays with a leading frame axis; ``task`` one string or ``n``)."""
        n = len(np.asarray(batch["state"])) if "state" in batch else 0
        where = f"episode {self.buffer.episode_index} frames {self.buffer.num_frames}..+{n}"
        tasks = batch.get("task", self.default_task)
        if isinstance(tasks, str) or tasks is None:
            tasks = [tasks] * n
        tasks = [str(t) if t is not None else None for t in tasks]
        if None in tasks:
            raise ValidationError(f"{where}: no task; pass 'task' or set default_task")
        if "timestamp" not in batch:
            raise ValidationError(f"{where}: bulk frames need a 'timestamp' column (int ns)")
        # validate through the single-frame path on the first frame, then shapes of the whole batch
        first = {k: (v if k == "task" else np.asarray(v)[0]) for k, v in batch.items() if k != "task"}
        values, _ = self._check_frame({**first, "task": tasks[0]}, where)
        check_layout(self.buffer, values, where)
        cols: dict[str, np.ndarray] = {}
        for name, (dtype, shape) in {k: (v.dtype, v.shape) for k, v in values.items()}.items():
            col = np.asarray(batch[name])
            if col.shape != (n, *shape):
                raise ValidationError(f"{where}: {name!r} has shape {col.shape}, expected {(n, *shape)}")
            if col.dtype.kind == "f" and not np.isfinite(col).all():
                raise ValidationError(f"{where}: {name!r} holds NaN/Inf")
            cols[name] = col.astype(dtype, copy=False)
        stamps = cols["timestamp"]
        if n > 1 and (np.diff(stamps) < 0).any():
            back = int(np.argmax(np.diff(stamps) < 0)) + 1
            raise ValidationError(f"{where}: timestamps go backwards at frame {back}")
        self.buffer.extend(cols, tasks)
        self._last_stamp = int(stamps[-1])

    def _check_frame(self, frame: Mapping[str, Any], where: str) -> tuple[dict[str, np.ndarray], str]:
        cfg = self.config
        allowed = {"state", "action", "task", "timestamp", *OPTIONAL_FRAME_FIELDS, *cfg.image_fields}
        unknown = sorted(set(frame) - allowed)
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {unknown}; a frame takes {sorted(allowed)}")
        missing = sorted({"state", "action", *cfg.image_fields} - set(frame))
        if missing:
            raise ValidationError(f"{where}: missing {missing}")
        values: dict[str, np.ndarray] = {}
        for name, dim in (("state", cfg.state_dim), ("action", cfg.action_dim)):
            arr = np.asarray(frame[name])
            if arr.shape != (dim,):
                raise ValidationError(f"{where}: {name!r} has shape {arr.shape}, expected ({dim},)")
            if arr.dtype.kind not in "fiub":
                raise ValidationError(f"{where}: {name!r} has dtype {arr.dtype}, expected float")
            if not np.isfinite(arr).all():
                bad = np.flatnonzero(~np.isfinite(arr)).tolist()
                raise ValidationError(f"{where}: {name!r} holds NaN/Inf at components {bad}")
            values[name] = arr.astype(np.float32)
        for name in cfg.image_fields:
            img = frame[name]
            h, w = cfg.cameras[name[len("image."):]]
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
                kind = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
                raise ValidationError(f"{where}: {name!r} has dtype {kind}; images must be uint8 HxWx3 "
                                      f"(convert floats in [0, 1] with (img * 255).round().astype(np.uint8))")
            if img.shape != (h, w, 3):
                raise ValidationError(f"{where}: {name!r} has shape {img.shape}, the camera is declared {(h, w, 3)}")
            values[name] = img
        stamp = frame.get("timestamp")
        if stamp is None:
            stamp = time.time_ns()
        elif not isinstance(stamp, (int, np.integer)) or isinstance(stamp, bool):
            raise ValidationError(f"{where}: timestamp must be an int of ns since the Unix epoch "
                                  f"(time.time_ns()), got {type(stamp).__name__} {stamp!r}")
        if self.buffer.num_frames and self._last_stamp is not None and int(stamp) < self._last_stamp:
            raise ValidationError(f"{where}: timestamp {int(stamp)} is earlier than the previous frame's "
                                  f"{self._last_stamp}")
        values["timestamp"] = np.asarray(stamp, np.int64)
        if "next.reward" in frame:
            values["next.reward"] = np.asarray(frame["next.reward"], np.float32).reshape(())
        if "next.done" in frame:
            values["next.done"] = np.asarray(bool(frame["next.done"]))
        task = frame.get("task", self.default_task)
        if not isinstance(task, str) or not task:
            raise ValidationError(f"{where}: task must be a non-empty string (pass 'task' or default_task), "
                                  f"got {task!r}")
        if self.buffer.num_frames == 0:
            self._check_optional_fields(values, where)
        return values, task

    def _check_optional_fields(self, values: Mapping[str, np.ndarray], where: str) -> None:
        frames = self.store["frames"]
        if not frames.committed_rows:
            return
        stored = {f for f in OPTIONAL_FRAME_FIELDS if f in frames.fields}
        given = {f for f in OPTIONAL_FRAME_FIELDS if f in values}
        if stored != given:
            raise ValidationError(f"{where}: the store's frames have optional fields {sorted(stored)}, this "
                                  f"episode {sorted(given)}; a field is present in every episode or in none")

    def clear_episode_buffer(self) -> None:
        """Discard the frames recorded since the last save."""
        self.buffer = EpisodeBuffer(self._next_index)
        self._last_stamp = None

    # ---------------------------------------------------------------------------------------- saving
    def _finish_buffer(self, success: bool | None, metadata: Mapping[str, Any] | None) -> EpisodeBuffer:
        buf = self.buffer
        if buf.num_frames == 0:
            raise ValidationError(f"{self.store.location}: episode {buf.episode_index} is empty; "
                                  f"add frames before saving")
        try:
            buf.metadata = json.dumps(dict(metadata or {}), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"episode {buf.episode_index}: metadata is not JSON-serialisable ({exc})") from None
        buf.success = -1 if success is None else int(bool(success))
        return buf

    def save_episode(self, *, success: bool | None = None, metadata: Mapping[str, Any] | None = None) -> int:
        """Commit the recorded frames as one episode now; returns its index. On failure the frames stay
        in the buffer (call again, or :meth:`clear_episode_buffer`)."""
        buf = self._finish_buffer(success, metadata)
        index = self._commit(buf)
        self._start_next_episode()
        return index

    def _start_next_episode(self) -> None:
        self._next_index += 1
        self.buffer = EpisodeBuffer(self._next_index)
        self._last_stamp = None

    def _summaries(self, batch: Mapping[str, np.ndarray]) -> dict[str, Summary]:
        return {f: summarize(batch[f], image=f.startswith("image.")) for f in self._stat_fields()}

    def _commit(self, buf: EpisodeBuffer) -> int:
        """Write one episode (frames, statistics row, episode row, dataset statistics); see the module doc."""
        with self._commit_lock:
            store = self.store
            frames, info = store["frames"], store[INFO_STREAM]
            index = store["episodes"].num_rows
            batch = buf.to_batch()
            n = buf.num_frames
            batch["task"] = np.asarray(buf.tasks)
            batch["episode_index"] = np.full(n, index, np.int64)
            batch["frame_index"] = np.arange(n, dtype=np.int64)
            summaries = self._summaries(batch)
            try:
                frames.append(batch)
                info.append(info_row(index, n, summaries, buf.metadata))
                stored = store.append_segment("episodes", None, {"task": buf.tasks[0], "success": np.int8(buf.success)})
            except BaseException:
                self._rollback(index)
                raise
            for name, s in summaries.items():
                self._stats[name] = self._stats[name].merge(s) if name in self._stats else s  # type: ignore[arg-type]
            try:
                store.update_attrs({STATS_ATTR: {"episodes": stored + 1, **dataset_stats(self._stats)}})
            except Exception as exc:  # the episode is committed; the cache is rebuilt from episode_info
                log.warning("episode %d committed but dataset statistics not refreshed: %s", stored, exc)
            return stored

    def _rollback(self, index: int) -> None:
        """Remove what an interrupted commit wrote past the last committed episode."""
        try:
            frames, info = self.store["frames"], self.store[INFO_STREAM]
            if frames.committed_rows > frames.num_rows:
                frames.truncate(frames.num_rows)
            if info.committed_rows > index:
                info.truncate(index)
        except Exception as exc:  # reopening repairs it too
            log.error("could not roll back the failed episode %d: %s", index, exc)

    # ------------------------------------------------------------------------------- async saving
    def enable_async_saving(self, max_queue_size: int = 10, save_timeout: float = 300.0,
                            max_queue_bytes: int = 2 << 30) -> None:
        """Start the background saver (no-op if running)."""
        if self._saver is not None and self._saver.get_status()["is_running"]:
            return
        self._saver = AsyncEpisodeSaver(self._commit, max_queue_size=max_queue_size,
                                        save_timeout=save_timeout, max_queue_bytes=max_queue_bytes)

    def save_episode_async(self, *, success: bool | None = None, metadata: Mapping[str, Any] | None = None,
                           fallback_to_sync: bool = True) -> bool:
        """Hand the recorded episode to the background saver and start a new one; True when queued.

        When the queue (or its memory bound) is full, or async saving is off, the episode is saved
        synchronously right here, after the episodes already queued (so indices follow recording
        order), and False is returned; ``fallback_to_sync=False`` instead leaves the frames in the
        buffer for the caller's own ``save_episode()``.
        """
        buf = self._finish_buffer(success, metadata)
        saver = self._saver
        if saver is not None and saver.submit_episode(buf, buf.episode_index):
            self._start_next_episode()
            return True
        if fallback_to_sync:
            if saver is not None:
                # Commit after the queued episodes, so stored order stays recording order.
                pending = max(1, saver.get_status()["pending_tasks"])
                if not saver.wait_for_completion(timeout=saver.save_timeout * pending):
                    log.warning("background saves are stalled; saving episode %d out of order", buf.episode_index)
            self.save_episode(success=success, metadata=metadata)
        return False

    def get_async_save_status(self) -> dict[str, Any]:
        """The saver's status (``is_running`` False and zero counters when async saving is off)."""
        if self._saver is None:
            return {"is_running": False, "total_submitted": 0, "total_completed": 0, "total_failed": 0,
                    "queue_size": 0, "pending_tasks": 0, "last_error": None, "worker_alive": False,
                    "queued_bytes": 0}
        return self._saver.get_status()

    def wait_for_async_saves(self, timeout: float | None = None) -> bool:
        """Wait until queued episodes are committed; False on timeout."""
        return True if self._saver is None else self._saver.wait_for_completion(timeout)

    def get_async_save_results(self) -> list[dict[str, Any]]:
        """Results of background saves finished since the last call (failures keep their frames in
        :attr:`failed_episodes`; retry them with :meth:`retry_failed_saves`)."""
        if self._saver is None:
            return []
        results = self._saver.get_results()
        self.failed_episodes.extend(r for r in results if not r.success)
        return [r.to_dict() for r in results]

    def retry_failed_saves(self) -> list[int]:
        """Save failed background episodes again, synchronously; returns their new indices."""
        self.get_async_save_results()
        done = []
        while self.failed_episodes:
            done.append(self._commit(self.failed_episodes[0].episode_buffer))
            self.failed_episodes.pop(0)
        return done

    def disable_async_saving(self, wait_for_completion: bool = True, timeout: float | None = None) -> None:
        """Stop the background saver (by default after it has committed everything queued)."""
        if self._saver is None:
            return
        self._saver.stop(wait=wait_for_completion, timeout=timeout)
        self.get_async_save_results()
        self._saver = None

    # ----------------------------------------------------------------------------------------- close
    def close(self) -> None:
        """Finish queued saves and close the store (frames still in the buffer are not saved)."""
        try:
            self.disable_async_saving(wait_for_completion=True)
            if self.failed_episodes:
                log.error("%d episode(s) failed to save: %s", len(self.failed_episodes),
                          [r.episode_index for r in self.failed_episodes])
        finally:
            self.store.close()

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
