"""Export an episodes store as a LeRobot v3.0 dataset that ``LeRobotDataset(repo_id, root=...)`` loads.

Every feature of the store goes out under its LeRobot name with its declared dtype, shape and names.
Cameras are written as PNG images inside the data files, or with ``video=True`` as one mp4 per camera
(PyAV; AV1 through libsvtav1 as lerobot encodes, or H.264), each episode's frames at its rows' times;
``video=None`` keeps what each feature declares. Timestamps are each frame's real time minus its
episode's first, so a loop that ran late shows in the export too. The dataset is written to
``<out_dir>.partial`` and renamed at the end: an interrupted export never leaves a half dataset.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mimicdata.convert import ConvertReport
from mimicdata.convert import lerobot_format as fmt
from mimicdata.convert.lerobot_video import VideoWriter
from mimicdata.episodes.config import RECORDING_ATTR, RecordingConfig
from mimicdata.episodes.features import IMAGE_PREFIX, SHORT_IMAGE_PREFIX, STATE, Feature
from mimicdata.episodes.stats import ImageStats, merge_all
from mimicdata.errors import SchemaError, StoreExistsError
from mimicdata.store import Store
from mimicdata.store import open as open_store

BUILT_IN = ("timestamp", "frame_index", "episode_index", "task")


def _pool() -> ThreadPoolExecutor:
    import os

    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))


def store_features(store: Store) -> list[Feature]:
    """The store's features in declaration order, optional ones only where its frames have them."""
    if "frames" not in store or "episodes" not in store or store["frames"].schema != "episodes":
        raise SchemaError(f"{store.location}: not an episodes store (streams {list(store.streams)})")
    frames = store["frames"]
    doc = store.attrs.get(RECORDING_ATTR)
    if doc is not None:
        config = RecordingConfig.from_doc(doc)
        return [f for f in config.all_features.values() if f.required or f.field in frames.fields]
    out = []  # a store written without the recorder: its fields are the features
    for name in frames.fields:
        if name in BUILT_IN:
            continue
        spec, shape = frames.field_spec(name), frames.shape_of(name)
        if name.startswith(SHORT_IMAGE_PREFIX):
            out.append(Feature(IMAGE_PREFIX + name[len(SHORT_IMAGE_PREFIX):], "image", shape,
                               ["height", "width", "channels"], None, name))
        else:
            lerobot = STATE if name == "state" else name
            out.append(Feature(lerobot, spec.dtype, shape or (1,), None, None, name))
    if not out:
        raise SchemaError(f"{store.location}: the frames have no features to export")
    return out


def _lerobot_features(features: list[Feature], video: bool | None) -> dict[str, dict[str, Any]]:
    out = {}
    for f in features:
        doc = f.lerobot()
        if f.visual and video is not None:
            doc["dtype"] = "video" if video else "image"
            doc.pop("info", None)
        out[f.name] = doc
    return {**out, **fmt.default_features()}


def _encode_png(img: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _prepare_out(out: Path, overwrite: bool) -> Path:
    occupied = any(out.iterdir()) if out.is_dir() else out.exists()
    if occupied:
        if not overwrite:
            raise StoreExistsError(f"{out} already exists; pass overwrite=True to replace it")
        if not (out / fmt.INFO_PATH).is_file():
            raise StoreExistsError(f"refusing to overwrite {out}: it is not a LeRobot dataset")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def export(store_path: str | Path, out_dir: str | Path, *, repo_id: str, overwrite: bool = False,
           video: bool | None = None, video_codec: str = "libsvtav1", crf: int = 23,
           progress: bool | Callable[[str], None] = False) -> ConvertReport:
    """Write an episodes store as a LeRobot v3.0 dataset directory (see the module doc)."""
    from mimicdata.progress import progress_printer

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    out = Path(out_dir)
    store = open_store(store_path, "r")
    try:
        features = store_features(store)
        feats = _lerobot_features(features, video)
        spans = store["frames"].segments()
        tmp = _prepare_out(out, overwrite)
        fps = float(store.fps or store["frames"].fps or 0)
        if fps <= 0:
            raise SchemaError(f"{store.location}: no fps; LeRobot datasets need one")
        writer = _Writer(tmp, store, features, feats, fps, video_codec, crf)
        try:
            writer.write(spans, progress_printer(progress, len(spans), "episodes"))
        except BaseException:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        robot_type = (store.attrs.get("lerobot") or {}).get("robot_type") or (store.robot.name if store.robot else None)
        info = {"codebase_version": fmt.CODEBASE_VERSION, "robot_type": robot_type,
                "total_episodes": len(spans), "total_frames": int(spans[-1, 1]) if len(spans) else 0,
                "total_tasks": len(writer.tasks), "chunks_size": fmt.CHUNKS_SIZE,
                "data_files_size_in_mb": fmt.DATA_FILES_SIZE_IN_MB,
                "video_files_size_in_mb": fmt.VIDEO_FILES_SIZE_IN_MB,
                "fps": int(fps) if fps.is_integer() else fps,
                "splits": {"train": f"0:{len(spans)}"}, "data_path": fmt.DATA_PATH,
                "video_path": fmt.VIDEO_PATH if writer.video_keys else None, "features": feats}
        (tmp / "meta").mkdir(exist_ok=True)
        (tmp / fmt.INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))
        (tmp / fmt.STATS_PATH).write_text(json.dumps(fmt.stats_json(writer.dataset_stats()), indent=4))
        pq.write_table(fmt.tasks_table(writer.tasks), tmp / fmt.TASKS_PATH, compression="snappy")
        ep_path = tmp / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(writer.ep_rows, schema=fmt.episodes_schema(feats)), ep_path,
                       compression="snappy")
        n_episodes = store["episodes"].num_rows
    finally:
        store.close()
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return ConvertReport(str(store.location), str(out), "lerobot",
                         rows={"episodes": n_episodes, "frames": info["total_frames"]},
                         details={"repo_id": repo_id, "tasks": len(writer.tasks), "features": list(feats),
                                  "videos": writer.video_keys})


class _Writer:
    """Data files (one row group per episode), mp4s per camera, episode rows and statistics."""

    def __init__(self, tmp: Path, store: Store, features: list[Feature], feats: dict[str, dict[str, Any]],
                 fps: float, codec: str, crf: int) -> None:
        self.tmp, self.frames, self.fps, self.codec, self.crf = tmp, store["frames"], fps, codec, crf
        self.features = {f.name: f for f in features}
        self.feats = feats
        self.columns = {k: f for k, f in feats.items() if f["dtype"] != "video"}
        self.video_keys = [k for k, f in feats.items() if f["dtype"] == "video"]
        self.tasks: list[str] = []
        self.ep_rows: list[dict[str, Any]] = []
        self.gathered: dict[str, list[Any]] = {k: [] for k, f in feats.items() if fmt.has_stats(f)}
        self.total = 0
        self._data: pq.ParquetWriter | None = None
        self._data_at, self._data_bytes = (0, 0), 0
        self._videos: dict[str, VideoWriter] = {}
        self._video_at: dict[str, tuple[int, int]] = {k: (0, 0) for k in self.video_keys}
        self._video_time: dict[str, float] = {k: 0.0 for k in self.video_keys}

    def write(self, spans: np.ndarray, step: Callable[[str], None]) -> None:
        with _pool() as pool:
            for e, (start, end) in enumerate(spans.tolist()):
                values = self._episode_values(start, end, e)
                row = self._write_data(values, pool, start, end, e)
                row.update(self._write_videos(values))
                stats = {k: fmt.feature_stats(values[k] if not fmt.is_visual(self.feats[k])
                                              else ImageStats.of(values[k]), self.feats[k], end - start)
                         for k in self.gathered}
                for k in self.gathered:
                    self.gathered[k].append(stats_input(values[k], self.feats[k]))
                row.update({f"stats/{k}/{s}": np.asarray(v).tolist() for k, st in stats.items() for s, v in st.items()})
                row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                self.ep_rows.append(row)
                self.total = end
                step(f"episode {e}: {end - start} frames")
        self._close()

    def _episode_values(self, start: int, end: int, e: int) -> dict[str, Any]:
        frames = self.frames
        stamps = frames.read("timestamp", start, end).astype(np.int64)
        task_text = frames.read("task", start, end).astype(str).tolist()
        for t in task_text:
            if t not in self.tasks:
                self.tasks.append(t)
        lookup = {t: i for i, t in enumerate(self.tasks)}
        values: dict[str, Any] = {
            "timestamp": ((stamps - stamps[0]) / 1e9).astype(np.float32),
            "frame_index": np.arange(end - start, dtype=np.int64),
            "episode_index": np.full(end - start, e, np.int64),
            "index": np.arange(start, end, dtype=np.int64),
            "task_index": np.asarray([lookup[t] for t in task_text], np.int64),
            "_tasks": task_text,
        }
        for name, f in self.features.items():
            values[name] = frames.read(f.field, start, end)
        return values

    def _write_data(self, values: dict[str, Any], pool: ThreadPoolExecutor, start: int, end: int,
                    e: int) -> dict[str, Any]:
        chunk, file = self._data_at
        table = _episode_table(values, self.columns, pool, f"{chunk}:{file}:{start}")
        limit = fmt.DATA_FILES_SIZE_IN_MB * 1024 * 1024
        if self._data is not None and self._data_bytes and self._data_bytes + table.nbytes > limit:
            self._data.close()
            self._data, self._data_bytes = None, 0
            self._data_at = chunk, file = fmt.next_file(chunk, file)
        if self._data is None:
            path = self.tmp / fmt.DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data = pq.ParquetWriter(path, table.schema, compression="snappy")
        self._data.write_table(table, row_group_size=max(1, table.num_rows))
        self._data_bytes += table.nbytes
        return {"episode_index": e, "tasks": list(dict.fromkeys(values["_tasks"])), "length": end - start,
                "data/chunk_index": chunk, "data/file_index": file,
                "dataset_from_index": start, "dataset_to_index": end}

    def _write_videos(self, values: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        stamps = np.asarray(values["timestamp"], np.float32).astype(np.float64)
        limit = fmt.VIDEO_FILES_SIZE_IN_MB * 1024 * 1024
        for key in self.video_keys:
            writer = self._videos.get(key)
            if writer is not None and writer.path.stat().st_size > limit:
                writer.close()
                del self._videos[key]
                self._video_at[key] = fmt.next_file(*self._video_at[key])
                self._video_time[key], writer = 0.0, None
            chunk, file = self._video_at[key]
            if writer is None:
                h, w = self.feats[key]["shape"][:2]
                path = self.tmp / fmt.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                writer = self._videos[key] = VideoWriter(path, h, w, self.fps, self.codec, self.crf)
                self.feats[key]["info"] = writer.info(self.fps)
            begin = self._video_time[key]
            writer.add(values[key], begin + stamps)
            # the next episode starts one frame period after this one's last frame
            self._video_time[key] = begin + float(stamps[-1]) + 1.0 / self.fps
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": begin, f"videos/{key}/to_timestamp": self._video_time[key]})
        return row

    def _close(self) -> None:
        if self._data is not None:
            self._data.close()
            self._data = None
        for writer in self._videos.values():
            writer.close()
        self._videos.clear()

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # the partial folder is removed anyway
            pass

    def dataset_stats(self) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for k, parts in self.gathered.items():
            if parts:
                merged = merge_all(parts) if fmt.is_visual(self.feats[k]) else np.concatenate(parts)
                out[k] = fmt.feature_stats(merged, self.feats[k], self.total)
        return out


def stats_input(values: np.ndarray, feature: Mapping[str, Any]) -> Any:
    """What dataset statistics keep of an episode: a pixel histogram for cameras, the values otherwise."""
    return ImageStats.of(values) if fmt.is_visual(feature) else np.asarray(values)


def _episode_table(values: dict[str, Any], columns: Mapping[str, Mapping[str, Any]], pool: ThreadPoolExecutor,
                   fingerprint: str) -> pa.Table:
    schema = fmt.data_schema(columns, fingerprint)
    arrays = []
    for key, f in columns.items():
        typ = schema.field(key).type
        value = values[key]
        if f["dtype"] == "image":
            data = list(pool.map(_encode_png, value))
            paths = [f"frame-{i:06d}.png" for i in range(len(value))]
            arrays.append(pa.StructArray.from_arrays([pa.array(data, pa.binary()), pa.array(paths, pa.string())],
                                                     fields=list(typ)))
        elif f["dtype"] == "string":
            arrays.append(pa.array([str(v) for v in value], pa.string()))
        elif pa.types.is_fixed_size_list(typ):
            arr = np.ascontiguousarray(value, dtype=f["dtype"])
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), type=typ))
        elif pa.types.is_list(typ):
            arrays.append(pa.array(np.asarray(value, dtype=f["dtype"]).tolist(), typ))
        else:
            arrays.append(pa.array(np.asarray(value, dtype=f["dtype"]).reshape(-1), typ))
    return pa.Table.from_arrays(arrays, schema=schema)
