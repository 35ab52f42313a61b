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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.episodes.buffer import EpisodeBuffer, check_layout
from mimicdata.episodes.config import INFO_STREAM, RECORDING_ATTR, STATS_ATTR, RecordingConfig, collect_features
from mimicdata.episodes.features import IMAGE_PREFIX, Feature
from mimicdata.episodes.info import info_fields, info_row, load_summaries
from mimicdata.episodes.saver import AsyncEpisodeSaver, EpisodeSaveResult
from mimicdata.episodes.stats import Summary, dataset_stats, merge_all, summarize
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
        self._keys = self.config.lookup()
        if INFO_STREAM not in store:
            store.add_stream(INFO_STREAM, fields=info_fields(self.config), chunk_rows=256)
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
    def create(cls, url: str | Path, *, fps: float, features: Mapping[str, Mapping[str, Any]] | None = None,
               state: int | Sequence[str] | None = None, action: int | Sequence[str] | None = None,
               robot: str | None = None, cameras: Mapping[str, Sequence[int]] | None = None,
               overwrite: bool = False, attrs: Mapping[str, Any] | None = None,
               default_task: str | None = None) -> EpisodeRecorder:
        """A new episodes store at ``url`` with the given per-frame features.

        ``features`` is LeRobot's features dict as it is (``{"observation.state": {"dtype": "float32",
        "shape": [29], "names": [...]}, "observation.images.head": {"dtype": "video", "shape": [480, 640, 3],
        ...}, ...}``), stored under those names. The short form ``state``/``action`` (sizes or lists of
        names) and ``cameras`` (camera name -> (height, width) of uint8 RGB frames; sizes may differ)
        declares ``observation.state``, ``action`` and ``observation.images.<camera>`` stored as
        ``state``, ``action`` and ``image.<camera>``. Both forms may be combined."""
        config = RecordingConfig.declare(fps=fps, robot=robot, state=state, action=action, cameras=cameras,
                                         features=features)
        user = dict(attrs or {})
        user[RECORDING_ATTR] = config.to_doc()
        store = create_store(url, SCHEMA, robot=robot, fps=fps, overwrite=overwrite, attrs=user,
                             fields={"frames": config.frame_fields()})
        try:
            return cls(store, default_task=default_task)
        except BaseException:
            store.close()
            raise

    @classmethod
    def resume(cls, url: str | Path, *, fps: float | None = None, state: int | Sequence[str] | None = None,
               action: int | Sequence[str] | None = None, robot: str | None = None,
               cameras: Mapping[str, Sequence[int]] | None = None, break_lock: bool = False,
               default_task: str | None = None,
               features: Mapping[str, Mapping[str, Any]] | None = None) -> EpisodeRecorder:
        """Reopen a store to record more episodes; every declared setting must equal the stored one."""
        store = open_store(url, "a", break_lock=break_lock)
        try:
            rec = cls(store, default_task=default_task)
            stored = rec.config
            # what is not declared again is taken as stored; declared cameras replace the stored ones
            merged: dict[str, Feature] = dict(stored.features)
            if cameras is not None:
                merged = {k: f for k, f in merged.items() if not (f.visual and k.startswith(IMAGE_PREFIX))}
            merged.update(collect_features(state=state, action=action, cameras=cameras, features=features))
            declared = RecordingConfig(float(fps or stored.fps), robot if robot is not None else stored.robot,
                                       merged)
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
    def open(cls, url: str | Path, *, fps: float, features: Mapping[str, Mapping[str, Any]] | None = None,
             state: int | Sequence[str] | None = None, action: int | Sequence[str] | None = None,
             robot: str | None = None, cameras: Mapping[str, Sequence[int]] | None = None,
             attrs: Mapping[str, Any] | None = None, default_task: str | None = None) -> EpisodeRecorder:
        """Resume the store at ``url`` if it exists (checking the setup), else create it."""
        try:
            return cls.resume(url, fps=fps, state=state, action=action, robot=robot, cameras=cameras,
                              default_task=default_task, features=features)
        except StoreNotFoundError:
            return cls.create(url, fps=fps, features=features, state=state, action=action, robot=robot,
                              cameras=cameras, attrs=attrs, default_task=default_task)

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
        return [f.field for f in self.config.stat_features]

    # ---------------------------------------------------------------------------------------- frames
    def add_frame(self, frame: Mapping[str, Any]) -> None:
        """Add one frame: a value for every declared feature under its LeRobot name (``observation.state``,
        ``observation.images.head``, ...), its stored field name or its short alias (``state``, ``action``,
        ``image.<camera>``); images uint8 HxWxC (or CxHxW, or PIL images); optional ``task`` (else the
        recorder's default), ``timestamp`` (int ns since the Unix epoch; default: now), ``next.reward``,
        ``next.done``. A bad frame raises and leaves the episode as it was."""
        where = f"episode {self.buffer.episode_index} frame {self.buffer.num_frames}"
        if not isinstance(frame, Mapping):
            raise ValidationError(f"{where}: a frame is a mapping of field -> value, got {type(frame).__name__}")
        values, task = self._check_frame(frame, where)
        check_layout(self.buffer, values, where)
        self.buffer.add(values, task)
        self._last_stamp = int(values["timestamp"])

    def add_frames(self, batch: Mapping[str, Any]) -> None:
        """Add ``n`` frames at once (arrays with a leading frame axis under the keys :meth:`add_frame`
        takes; ``task`` one string or ``n``; ``timestamp`` required)."""
        columns = {k: v for k, v in batch.items() if k != "task"}
        n = len(next(iter(columns.values()))) if columns else 0
        where = f"episode {self.buffer.episode_index} frames {self.buffer.num_frames}..+{n}"
        tasks = batch.get("task", self.default_task)
        if isinstance(tasks, str) or tasks is None:
            tasks = [tasks] * n
        tasks = [str(t) if t is not None else None for t in tasks]
        if None in tasks or len(tasks) != n:
            raise ValidationError(f"{where}: no task for every frame; pass 'task' or set default_task")
        if "timestamp" not in batch:
            raise ValidationError(f"{where}: bulk frames need a 'timestamp' column (int ns)")
        if n == 0:
            return
        # validate through the single-frame path on the first frame, then shapes of the whole batch
        first = {k: (np.asarray(v)[0] if k == "timestamp" else v[0]) for k, v in columns.items()}
        values, _ = self._check_frame({**first, "task": tasks[0]}, where)
        check_layout(self.buffer, values, where)
        cols: dict[str, np.ndarray] = {"timestamp": np.asarray(batch["timestamp"]).astype(np.int64)}
        for key, value in columns.items():
            if key == "timestamp":
                continue
            feature = self._keys[key]
            cols[feature.field] = _column(feature, key, value, n, where)
        stamps = cols["timestamp"]
        if stamps.shape != (n,):
            raise ValidationError(f"{where}: 'timestamp' has shape {stamps.shape}, expected ({n},)")
        if n > 1 and (np.diff(stamps) < 0).any():
            back = int(np.argmax(np.diff(stamps) < 0)) + 1
            raise ValidationError(f"{where}: timestamps go backwards at frame {back}")
        self.buffer.extend(cols, tasks)
        self._last_stamp = int(stamps[-1])

    def _check_frame(self, frame: Mapping[str, Any], where: str) -> tuple[dict[str, np.ndarray], str]:
        values: dict[str, np.ndarray] = {}
        unknown = []
        for key, value in frame.items():
            if key in ("task", "timestamp"):
                continue
            feature = self._keys.get(key)
            if feature is None:
                unknown.append(key)
                continue
            if feature.field in values:
                raise ValidationError(f"{where}: {feature.name!r} is given twice (also as {key!r})")
            values[feature.field] = feature.coerce(value, where)
        if unknown:
            takes = sorted({f.alias or f.name for f in self._keys.values()} | {"task", "timestamp"})
            raise ValidationError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; a frame takes {takes}")
        missing = [f.alias or f.field for f in self.config.features.values() if f.required and f.field not in values]
        if missing:
            raise ValidationError(f"{where}: missing {sorted(missing)}")
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
        optional = [f.field for f in self.config.all_features.values() if not f.required]
        stored = {f for f in optional if f in frames.fields}
        given = {f for f in optional if f in values}
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
        return {f.field: summarize(batch[f.field], image=f.visual) for f in self.config.stat_features}

    def _episode_summaries(self, buf: EpisodeBuffer, small: Mapping[str, np.ndarray]) -> dict[str, Summary]:
        summaries: dict[str, Summary] = {}
        for f in self.config.stat_features:
            if f.visual:  # exact histograms merge: one per block
                parts = [summarize(buf.block(f.field, b), image=True) for b, _, _ in buf.spans()]
                summaries[f.field] = merge_all(parts)  # type: ignore[assignment]
            else:
                summaries[f.field] = summarize(small[f.field])
        return summaries

    def _commit(self, buf: EpisodeBuffer) -> int:
        """Write one episode (frames, statistics row, episode row, dataset statistics); see the module doc.

        Camera frames go out block by block, as the buffer holds them (joining them would copy the
        episode once more); the frames of the episode stay invisible until its row is committed."""
        with self._commit_lock:
            store = self.store
            frames, info = store["frames"], store[INFO_STREAM]
            index = store["episodes"].num_rows
            n = buf.num_frames
            visual = [f.field for f in self.config.all_features.values() if f.visual and f.field in buf.layout]
            small = {name: buf.column(name) for name in buf.layout if name not in visual}
            small["task"] = np.asarray(buf.tasks)
            small["episode_index"] = np.full(n, index, np.int64)
            small["frame_index"] = np.arange(n, dtype=np.int64)
            # statistics on a second thread while the frames are written (bincount and blosc release the GIL)
            with ThreadPoolExecutor(1, thread_name_prefix="mimicdata-episode-stats") as pool:
                pending = pool.submit(self._episode_summaries, buf, small)
                try:
                    if not visual:
                        frames.append(small)
                    for b, start, end in buf.spans() if visual else ():
                        part = {k: v[start:end] for k, v in small.items()}
                        frames.append(part | {name: buf.block(name, b) for name in visual})
                    summaries = pending.result()
                    info.append(info_row(index, n, summaries, buf.metadata))
                    stored = store.append_segment("episodes", None,
                                                  {"task": buf.tasks[0], "success": np.int8(buf.success)})
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


def _column(feature: Feature, key: str, value: Any, n: int, where: str) -> np.ndarray:
    """``n`` frames of one feature from a bulk batch, checked as a whole (the first went through coerce)."""
    if feature.is_string:
        col = np.asarray(value, dtype=object)
        if col.shape != (n,) or not all(isinstance(v, str) for v in col):
            raise ValidationError(f"{where}: {key!r} must be {n} strings")
        return col
    col = np.asarray(value)
    expected = (n, *feature.frame_shape)
    if col.shape != expected and feature.frame_shape == () and col.shape == (n, 1):
        col = col.reshape(n)
    if col.shape != expected:
        raise ValidationError(f"{where}: {key!r} has shape {col.shape}, expected {expected}")
    if feature.visual:
        if col.dtype != np.uint8:
            raise ValidationError(f"{where}: {key!r} has dtype {col.dtype}; images must be uint8")
        return col
    if col.dtype.kind == "f" and not np.isfinite(col).all():
        raise ValidationError(f"{where}: {key!r} holds NaN/Inf")
    return col.astype(feature.storage_dtype, copy=False)
