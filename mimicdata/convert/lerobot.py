"""Import LeRobot v3.0 datasets into episodes stores (pyarrow and PyAV; the ``lerobot`` package is not needed).

Layout (as written by lerobot 0.4.x)::

    meta/info.json                              codebase_version "v3.0", fps, features, path templates
    meta/stats.json                             dataset statistics per feature
    meta/tasks.parquet                          task_index, indexed by task text (pandas metadata)
    meta/episodes/chunk-000/file-000.parquet    one row per episode: tasks, length, row range, video
                                                time ranges, stats/...
    data/chunk-000/file-000.parquet             frames; images as PNG bytes
    videos/<key>/chunk-000/file-000.mp4         video features, one mp4 per camera (episodes in a row)

Every feature of ``info.json`` is kept under its LeRobot name (``observation.state``,
``observation.images.head``, ``observation.effort``, ``next.reward``, ...): numbers and bools of any
shape, strings, images and videos (decoded to uint8 frames with PyAV and checked against the
dataset's timestamps, see :mod:`mimicdata.convert.lerobot_video`). A feature of a dtype the store
cannot hold is refused before anything is written, with its name.

LeRobot timestamps are seconds from the episode's first frame; imported ones are stored as ns from the
episode start (store attribute ``time_origin: "episode_start"``).

The import streams episode by episode (memory: one episode's frames plus one data file's row groups)
and prints a progress bar. It writes ``<dst>.partial`` and renames it to ``dst`` only when every
episode is in: a truncated or corrupted file (a parquet without footer, an mp4 cut short) stops it with
one error naming the file and episode, and leaves no store behind (an existing ``dst`` is untouched).
``salvage=True`` instead keeps the episodes read before the damage; that store says so in its
attributes (``lerobot_import.complete`` false, ``stopped_at``) and the report has ``stopped_at``.
"""

from __future__ import annotations

import io
import json
import os
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
from mimicdata.convert.lerobot_export import export
from mimicdata.convert.lerobot_video import TOLERANCE_S, VideoReader
from mimicdata.episodes import EpisodeRecorder
from mimicdata.episodes.features import Feature, parse_features
from mimicdata.errors import (
    CorruptStoreError,
    MimicDataError,
    SchemaError,
    SchemaVersionError,
    StoreExistsError,
    ValidationError,
)
from mimicdata.progress import progress_printer

__all__ = ["convert", "detect", "export"]
IMPORT_ATTR = "lerobot_import"


def detect(path: str | Path) -> bool:
    """True for a directory holding a LeRobot v3.x dataset (``meta/info.json``)."""
    info = Path(path) / fmt.INFO_PATH
    try:
        return str(json.loads(info.read_text()).get("codebase_version", "")).startswith("v3")
    except (OSError, ValueError, AttributeError):
        return False


def _pool() -> ThreadPoolExecutor:
    # PNG coding releases the GIL in Pillow, so threads use every core.
    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))


# ---------------------------------------------------------------------------------------- metadata
def _read_info(root: Path) -> dict[str, Any]:
    try:
        info = json.loads((root / fmt.INFO_PATH).read_text())
    except FileNotFoundError:
        raise SchemaError(f"{root}: no {fmt.INFO_PATH}; not a LeRobot dataset") from None
    except ValueError as exc:
        raise SchemaError(f"{root / fmt.INFO_PATH}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise SchemaError(f"{root / fmt.INFO_PATH}: not a JSON object but {type(info).__name__}")
    version = str(info.get("codebase_version"))
    if version != fmt.CODEBASE_VERSION:
        hint = (" (convert it first with `python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`)"
                if version.startswith("v2") else "")
        raise SchemaVersionError(f"{root}: LeRobot codebase_version {version!r}; this reads v3.0{hint}")
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise SchemaError(f"{root / fmt.INFO_PATH}: missing {key!r}")
    _check_info(info, root / fmt.INFO_PATH)
    if any(f.get("dtype") == "video" for f in info["features"].values() if isinstance(f, Mapping)) \
            and not info.get("video_path"):
        raise SchemaError(f"{root / fmt.INFO_PATH}: video features but no 'video_path'")
    return info


def _check_info(info: dict[str, Any], where: Path) -> None:
    """The types the import relies on (a damaged info.json must fail here, clearly, not deep inside)."""
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < float("inf"):
        raise SchemaError(f"{where}: fps must be a positive number, got {fps!r}")
    if not isinstance(info["data_path"], str):
        raise SchemaError(f"{where}: data_path must be a path template, got {info['data_path']!r}")
    if not isinstance(info["features"], dict):
        raise SchemaError(f"{where}: features must be an object of name -> feature, got "
                          f"{type(info['features']).__name__}")


def _features(info: dict[str, Any], root: Path) -> dict[str, Feature]:
    try:
        return parse_features(info["features"])
    except SchemaError as exc:
        raise SchemaError(f"{root / fmt.INFO_PATH}: {exc}") from None


def _read_parquet(path: Path, what: str, **kw: Any) -> pa.Table:
    try:
        return pq.read_table(path, **kw)
    except FileNotFoundError:
        raise CorruptStoreError(f"{path}: {what} is missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise CorruptStoreError(f"{path}: cannot read {what} (truncated or corrupted: {exc})") from None


def _episode_rows(root: Path, feats: Mapping[str, Feature]) -> list[dict[str, Any]]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise SchemaError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
    columns = ["episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index",
               "data/chunk_index", "data/file_index"]
    for key in (k for k, f in feats.items() if f.dtype == "video"):
        columns += [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
    rows: list[dict[str, Any]] = []
    for f in files:
        try:
            rows += _read_parquet(f, "episode metadata", columns=columns).to_pylist()
        except pa.ArrowException as exc:
            raise SchemaError(f"{f}: episode metadata lacks columns ({exc})") from None
    return sorted(rows, key=lambda r: r["episode_index"])


# -------------------------------------------------------------------------------------------- import
def convert(src: str | Path, dst: str | Path, *, overwrite: bool = False, robot: str | None = None,
            default_task: str | None = None, progress: bool | Callable[[str], None] = True,
            tolerance_s: float = TOLERANCE_S, salvage: bool = False) -> ConvertReport:
    """Import a LeRobot v3.0 dataset directory into a new episodes store at ``dst`` (a local path).

    ``tolerance_s``: how far a decoded video frame may be from its row's timestamp (lerobot's default).
    """
    if "://" in str(dst):
        raise SchemaError(f"{dst}: a LeRobot import writes a local store (it is renamed into place when "
                          f"complete); import to a local path, then copy it")
    root, out = Path(src), Path(dst)
    info = _read_info(root)
    feats = _features(info, root)
    if not feats:
        raise SchemaError(f"{root / fmt.INFO_PATH}: no features besides lerobot's own columns")
    tasks = fmt.read_tasks(_read_parquet(root / fmt.TASKS_PATH, "the task table"))
    episodes = _episode_rows(root, feats)
    if (out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()) and not overwrite:
        raise StoreExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    tmp = out.with_name(out.name + ".partial")
    source = {"codebase_version": info["codebase_version"], "robot_type": info.get("robot_type"),
              "features": info["features"]}
    report = ConvertReport(str(root), str(out), "lerobot")
    rec = EpisodeRecorder.create(tmp, fps=float(info["fps"]), features=info["features"], robot=robot,
                                 overwrite=True, default_task=default_task,
                                 attrs={"lerobot": source, "time_origin": "episode_start"})
    try:
        _import_episodes(rec, root, info, feats, tasks, episodes, report, tolerance_s,
                         progress_printer(progress, len(episodes), "episodes"), salvage)
        rec.store.update_attrs({IMPORT_ATTR: {"complete": report.stopped_at is None,
                                              "stopped_at": report.stopped_at}})
        rec.close()
    except BaseException:
        try:
            rec.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
    report.rows = {"episodes": report.details.get("episodes", 0), "frames": report.details.get("frames", 0)}
    return report


class _DataFiles:
    """Rows of the data files, read a row group range at a time (the ``index`` column locates them)."""

    def __init__(self, root: Path, template: str) -> None:
        self.root, self.template = root, template
        self._path: Path | None = None
        self._file: pq.ParquetFile | None = None
        self._index = np.zeros(0, np.int64)
        self._group_starts = np.zeros(1, np.int64)

    def rows(self, ep: Mapping[str, Any], columns: list[str], where: str) -> pa.Table:
        path = self.root / self.template.format(chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])
        try:
            if path != self._path:
                self._file = pq.ParquetFile(path)
                self._index = np.asarray(self._file.read(columns=["index"]).column("index"))
                sizes = [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)]
                self._group_starts, self._path = np.concatenate([[0], np.cumsum(sizes)]), path
            assert self._file is not None
            lo, hi = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
            rows = np.flatnonzero((self._index >= lo) & (self._index < hi))
            if not len(rows) or len(rows) != ep["length"] or rows[-1] - rows[0] + 1 != len(rows):
                raise ValidationError(f"{where}: {len(rows)} contiguous rows found in {path.name}, the episode "
                                      f"metadata says {ep['length']}")
            first = int(np.searchsorted(self._group_starts, rows[0], side="right")) - 1
            last = int(np.searchsorted(self._group_starts, rows[-1], side="right")) - 1
            table = self._file.read_row_groups(list(range(first, last + 1)), columns=columns)
        except FileNotFoundError:
            self._path = None
            raise CorruptStoreError(f"{where}: data file {path} is missing") from None
        except MimicDataError:
            raise
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as exc:  # no or a text index column
            self._path = None
            raise CorruptStoreError(f"{where}: cannot read data file {path} (truncated or corrupted: {exc})") from None
        return table.slice(int(rows[0] - self._group_starts[first]), len(rows))


def _import_episodes(rec: EpisodeRecorder, root: Path, info: dict[str, Any], feats: Mapping[str, Feature],
                     tasks: dict[int, str], episodes: list[dict[str, Any]], report: ConvertReport,
                     tolerance_s: float, step: Callable[[str], None], salvage: bool) -> None:
    done = frames = 0
    data = _DataFiles(root, info["data_path"])
    readers = {k: VideoReader(k, f.shape, tolerance_s) for k, f in feats.items() if f.dtype == "video"}
    columns = ["timestamp", "index", "task_index", *(k for k, f in feats.items() if f.dtype != "video")]
    try:
        with _pool() as pool:
            for ep in episodes:
                where = f"episode {ep['episode_index']}"
                try:
                    part = data.rows(ep, columns, where)
                    batch = _frames_batch(part, feats, tasks, root, where, pool)
                    for key, reader in readers.items():
                        video = root / info["video_path"].format(
                            video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                            file_index=ep[f"videos/{key}/file_index"])
                        stamps = np.asarray(part.column("timestamp"), np.float32).astype(np.float64)
                        batch[key] = reader.episode(video, ep[f"videos/{key}/from_timestamp"] + stamps, where)
                except MimicDataError as exc:
                    if not salvage:
                        raise
                    report.stopped_at = str(exc)
                    report.problems.append(report.stopped_at)
                    break
                rec.add_frames(batch)
                rec.save_episode()
                done, frames = done + 1, frames + part.num_rows
                step(f"{where}: {part.num_rows} frames")
    finally:
        for reader in readers.values():
            reader.close()
    report.details.update(episodes=done, frames=frames, tasks=len(tasks), features=list(feats))


def _numbers(col: pa.ChunkedArray | pa.Array, feature: Feature, n: int, where: str) -> np.ndarray:
    values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) \
            or pa.types.is_large_list(values.type):
        values = values.flatten()
    flat = np.asarray(values.to_numpy(zero_copy_only=False))
    want = int(np.prod(feature.frame_shape, dtype=np.int64)) * n
    if flat.size != want:
        raise ValidationError(f"{where}: {feature.name} holds {flat.size} values for {n} frames of shape "
                              f"{feature.shape} (info.json)")
    return flat.reshape(n, *feature.frame_shape)


def _frames_batch(part: pa.Table, feats: Mapping[str, Feature], tasks: dict[int, str], root: Path, where: str,
                  pool: ThreadPoolExecutor) -> dict[str, Any]:
    """The episode's rows as a batch for the recorder; a damaged column (null, wrong type) is a ValidationError."""
    try:
        return _frames_batch_of(part, feats, tasks, root, where, pool)
    except MimicDataError:
        raise
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
        raise ValidationError(f"{where}: damaged frame data ({type(exc).__name__}: {exc})") from None


def _frames_batch_of(part: pa.Table, feats: Mapping[str, Feature], tasks: dict[int, str], root: Path, where: str,
                     pool: ThreadPoolExecutor) -> dict[str, Any]:
    n = part.num_rows
    stamps = np.asarray(part.column("timestamp"), np.float64)
    batch: dict[str, Any] = {"timestamp": np.round(stamps * 1e9).astype(np.int64)}
    try:
        batch["task"] = [tasks[int(i)] for i in part.column("task_index").to_pylist()]
    except KeyError as exc:
        raise ValidationError(f"{where}: task_index {exc} is not in meta/tasks.parquet") from None
    for key, feature in feats.items():
        if feature.dtype == "video":
            continue
        if key not in part.column_names:
            raise ValidationError(f"{where}: the data file has no column {key!r} (declared in info.json)")
        if feature.dtype == "image":
            cells = part.column(key).to_pylist()
            places = [f"{where} frame {i} {key}" for i in range(n)]
            batch[key] = np.stack(list(pool.map(_decode_image, cells, [root] * n, places, [feature.shape[2]] * n)))
        elif feature.is_string:
            batch[key] = np.asarray([str(v) for v in part.column(key).to_pylist()], dtype=object)
        else:
            batch[key] = _numbers(part.column(key), feature, n, where)
    return batch


def _decode_image(cell: Mapping[str, Any] | None, root: Path, where: str, channels: int) -> np.ndarray:
    from PIL import Image

    if cell is None:
        raise ValidationError(f"{where}: image is null")
    data = cell.get("bytes")
    if data is None and cell.get("path") and (root / cell["path"]).is_file():
        data = (root / cell["path"]).read_bytes()
    if data is None:
        raise ValidationError(f"{where}: image has no bytes and no readable path ({cell.get('path')!r})")
    try:
        with Image.open(io.BytesIO(data)) as img:
            pixels = np.asarray(img.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels]))
    except (OSError, ValueError) as exc:
        raise CorruptStoreError(f"{where}: cannot decode the image ({exc})") from None
    return pixels[:, :, None] if channels == 1 else pixels
