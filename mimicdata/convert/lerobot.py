"""Import and export LeRobot v3.0 datasets (pyarrow only; the ``lerobot`` package is not needed).

Layout (as written by lerobot 0.4.x)::

    meta/info.json                              codebase_version "v3.0", fps, features, path templates
    meta/stats.json                             dataset statistics per feature
    meta/tasks.parquet                          task_index, indexed by task text (pandas metadata)
    meta/episodes/chunk-000/file-000.parquet    one row per episode: tasks, length, row range, stats/...
    data/chunk-000/file-000.parquet             frames; one row group per episode; images as PNG bytes

Mapping to an ``episodes`` store: ``observation.state`` <-> ``state``, ``action`` <-> ``action``,
``observation.images.<cam>`` (dtype ``image``) <-> ``image.<cam>``, ``next.reward`` / ``next.done`` as is.
LeRobot timestamps are seconds from the episode's first frame; imported ones are stored as ns from the
episode start (store attribute ``time_origin: "episode_start"``), and an export writes each frame's real
time minus its episode's first timestamp, so a loop that ran late shows in the export too.

Import commits episode by episode: a damaged data file (a LeRobot session killed before
``finalize()`` leaves a parquet file without footer) stops the import there and keeps every episode
read before it; the report says where it stopped.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mimicdata.convert import ConvertReport
from mimicdata.convert import lerobot_format as fmt
from mimicdata.episodes import EpisodeRecorder
from mimicdata.episodes.config import RECORDING_ATTR, RecordingConfig
from mimicdata.episodes.stats import ImageStats, merge_all
from mimicdata.errors import CorruptStoreError, SchemaError, SchemaVersionError, StoreExistsError, ValidationError
from mimicdata.store import open as open_store

STATE_KEY, ACTION_KEY, IMAGE_PREFIX = "observation.state", "action", "observation.images."
PASS_THROUGH = ("next.reward", "next.done")


def detect(path: str | Path) -> bool:
    """True for a directory holding a LeRobot v3.x dataset (``meta/info.json``)."""
    info = Path(path) / fmt.INFO_PATH
    try:
        return str(json.loads(info.read_text()).get("codebase_version", "")).startswith("v3")
    except (OSError, ValueError, AttributeError):
        return False


def _pool() -> ThreadPoolExecutor:
    # PNG coding releases the GIL in Pillow, so threads use every core.
    import os

    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))


# -------------------------------------------------------------------------------------------- import
def _read_info(root: Path) -> dict[str, Any]:
    try:
        info = json.loads((root / fmt.INFO_PATH).read_text())
    except FileNotFoundError:
        raise SchemaError(f"{root}: no {fmt.INFO_PATH}; not a LeRobot dataset") from None
    except ValueError as exc:
        raise SchemaError(f"{root / fmt.INFO_PATH}: not valid JSON ({exc})") from None
    version = str(info.get("codebase_version"))
    if version != fmt.CODEBASE_VERSION:
        hint = (" (convert it first with `python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`)"
                if version.startswith("v2") else "")
        raise SchemaVersionError(f"{root}: LeRobot codebase_version {version!r}; this reads v3.0{hint}")
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise SchemaError(f"{root / fmt.INFO_PATH}: missing {key!r}")
    _check_info(info, root / fmt.INFO_PATH)
    return info


def _check_info(info: dict[str, Any], where: Path) -> None:
    """The parts of info.json the import relies on have the types it relies on."""
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < float("inf"):
        raise SchemaError(f"{where}: fps must be a positive number, got {fps!r}")
    if not isinstance(info["data_path"], str):
        raise SchemaError(f"{where}: data_path must be a path template, got {info['data_path']!r}")
    feats = info["features"]
    if not isinstance(feats, dict):
        raise SchemaError(f"{where}: features must be an object of name -> feature, got {type(feats).__name__}")
    for name, feat in feats.items():
        shape = feat.get("shape") if isinstance(feat, dict) else None
        if (not isinstance(feat, dict) or not isinstance(feat.get("dtype"), str) or not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise SchemaError(f"{where}: feature {name!r} must have a dtype and a shape of positive integers, "
                              f"got {feat!r}")
        if feat["dtype"] == "image" and len(shape) != 3:
            raise SchemaError(f"{where}: image feature {name!r} must have shape [height, width, 3], got {shape}")


def _plan_features(info: dict[str, Any], root: Path) -> dict[str, Any]:
    feats: dict[str, Any] = info["features"]
    known = {STATE_KEY, ACTION_KEY, *fmt.DEFAULT_FEATURES, *PASS_THROUGH}
    images = {k: k[len(IMAGE_PREFIX):] if k.startswith(IMAGE_PREFIX) else k.replace(".", "_")
              for k, f in feats.items() if f.get("dtype") == "image"}
    videos = [k for k, f in feats.items() if f.get("dtype") == "video"]
    other = [k for k in feats if k not in known and k not in images and k not in videos]
    if videos:
        raise SchemaError(f"{root}: video features {videos} are not supported (no video decoder); "
                          f"re-record them as 'image' features")
    if other:
        raise SchemaError(f"{root}: features {other} have no place in an episodes store (it takes "
                          f"{STATE_KEY}, {ACTION_KEY}, image features and {list(PASS_THROUGH)})")
    for key in (STATE_KEY, ACTION_KEY):
        if key not in feats:
            raise SchemaError(f"{root}: feature {key!r} is missing; features are {list(feats)}")
    shapes = {tuple(feats[k]["shape"][:2]) for k in images}
    if len(shapes) > 1:
        raise SchemaError(f"{root}: image features of different sizes {sorted(shapes)} are not supported")
    return {"images": images, "extra": [k for k in PASS_THROUGH if k in feats]}


def _decode_image(cell: Mapping[str, Any] | None, root: Path, where: str) -> np.ndarray:
    from PIL import Image

    if cell is None:
        raise ValidationError(f"{where}: image is null")
    data = cell.get("bytes")
    if data is None and cell.get("path") and (root / cell["path"]).is_file():
        data = (root / cell["path"]).read_bytes()
    if data is None:
        raise ValidationError(f"{where}: image has no bytes and no readable path ({cell.get('path')!r})")
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _episode_rows(root: Path) -> list[dict[str, Any]]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise SchemaError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
    columns = ["episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index",
               "data/chunk_index", "data/file_index"]
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += pq.read_table(f, columns=columns).to_pylist()
    return sorted(rows, key=lambda r: r["episode_index"])


def convert(src: str | Path, dst: str | Path, *, overwrite: bool = False, robot: str | None = None,
            default_task: str | None = None) -> ConvertReport:
    """Import a LeRobot v3.0 dataset directory into a new episodes store at ``dst``."""
    root = Path(src)
    info = _read_info(root)
    plan = _plan_features(info, root)
    feats = info["features"]
    tasks = fmt.read_tasks(pq.read_table(root / fmt.TASKS_PATH))
    episodes = _episode_rows(root)
    cameras = {cam: feats[key]["shape"][:2] for key, cam in plan["images"].items()}
    names = {k: feats[k].get("names") for k in (STATE_KEY, ACTION_KEY)}
    state = names[STATE_KEY] if isinstance(names[STATE_KEY], list) else int(feats[STATE_KEY]["shape"][0])
    action = names[ACTION_KEY] if isinstance(names[ACTION_KEY], list) else int(feats[ACTION_KEY]["shape"][0])
    source = {"codebase_version": info["codebase_version"], "robot_type": info.get("robot_type"),
              "features": feats, "images": plan["images"]}
    report = ConvertReport(str(root), str(dst), "lerobot")
    rec = EpisodeRecorder.create(dst, fps=float(info["fps"]), state=state, action=action, robot=robot,
                                 cameras=cameras, overwrite=overwrite, default_task=default_task,
                                 attrs={"lerobot": source, "time_origin": "episode_start"})
    try:
        _import_episodes(rec, root, info, plan, tasks, episodes, report)
    finally:
        rec.close()
    report.rows = {"episodes": report.details.get("episodes", 0), "frames": report.details.get("frames", 0)}
    return report


def _import_episodes(rec: EpisodeRecorder, root: Path, info: dict[str, Any], plan: dict[str, Any],
                     tasks: dict[int, str], episodes: list[dict[str, Any]], report: ConvertReport) -> None:
    done = frames = 0
    table: pa.Table | None = None
    table_file: Path | None = None
    with _pool() as pool:
        for ep in episodes:
            path = root / info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                                   file_index=ep["data/file_index"])
            where = f"{path.relative_to(root)} episode {ep['episode_index']}"
            if path != table_file:
                try:
                    table, table_file = _read_data_file(path), path
                except CorruptStoreError as exc:
                    report.stopped_at = f"{where}: {exc}"
                    report.problems.append(report.stopped_at)
                    break
            assert table is not None
            index = np.asarray(table.column("index"))
            rows = np.flatnonzero((index >= ep["dataset_from_index"]) & (index < ep["dataset_to_index"]))
            if len(rows) != ep["length"] or (len(rows) and rows[-1] - rows[0] + 1 != len(rows)):
                report.stopped_at = f"{where}: {len(rows)} contiguous rows found, episodes metadata says {ep['length']}"
                report.problems.append(report.stopped_at)
                break
            part = table.slice(int(rows[0]), len(rows))
            rec.add_frames(_checked_frames_batch(part, plan, tasks, root, where, pool))
            rec.save_episode()
            done, frames = done + 1, frames + len(rows)
    report.details.update(episodes=done, frames=frames, tasks=len(tasks), cameras=list(plan["images"].values()))


def _read_data_file(path: Path) -> pa.Table:
    """A data parquet file; a damaged one (no footer, flipped bytes) is a CorruptStoreError."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptStoreError(f"cannot read data file ({exc})") from None


def _checked_frames_batch(part: pa.Table, plan: dict[str, Any], tasks: dict[int, str], root: Path, where: str,
                          pool: ThreadPoolExecutor) -> dict[str, Any]:
    """:func:`_frames_batch`, with a damaged column (missing, null, wrong type, bad PNG) as a ValidationError."""
    try:
        return _frames_batch(part, plan, tasks, root, where, pool)
    except (ValidationError, SchemaError):
        raise
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, OSError, pa.ArrowException) as exc:
        raise ValidationError(f"{where}: damaged frames ({type(exc).__name__}: {exc})") from None


def _frames_batch(part: pa.Table, plan: dict[str, Any], tasks: dict[int, str], root: Path, where: str,
                  pool: ThreadPoolExecutor) -> dict[str, Any]:
    def vectors(key: str) -> np.ndarray:
        col = part.column(key).combine_chunks()
        return np.asarray(col.flatten()).reshape(len(col), -1)

    stamps = np.asarray(part.column("timestamp"), np.float64)
    batch: dict[str, Any] = {"state": vectors(STATE_KEY), "action": vectors(ACTION_KEY),
                             "timestamp": np.round(stamps * 1e9).astype(np.int64)}
    try:
        batch["task"] = [tasks[int(i)] for i in part.column("task_index").to_pylist()]
    except KeyError as exc:
        raise ValidationError(f"{where}: task_index {exc} is not in meta/tasks.parquet") from None
    for key, cam in plan["images"].items():
        cells = part.column(key).to_pylist()
        places = [f"{where} frame {i} {key}" for i in range(len(cells))]
        batch[f"image.{cam}"] = np.stack(list(pool.map(_decode_image, cells, [root] * len(cells), places)))
    for key in plan["extra"]:
        batch[key] = np.asarray(part.column(key)).reshape(len(part))
    return batch


# -------------------------------------------------------------------------------------------- export
def _export_features(config: RecordingConfig, frame_fields: list[str]) -> dict[str, dict[str, Any]]:
    feats = {STATE_KEY: fmt.vector_feature(config.state_dim, config.state_names),
             ACTION_KEY: fmt.vector_feature(config.action_dim, config.action_names)}
    for cam, (h, w) in config.cameras.items():
        feats[IMAGE_PREFIX + cam] = fmt.image_feature(h, w)
    if "next.reward" in frame_fields:
        feats["next.reward"] = fmt.vector_feature(1, None, "float32")
    if "next.done" in frame_fields:
        feats["next.done"] = fmt.vector_feature(1, None, "bool")
    return {**feats, **fmt.default_features()}


def _config_of(store: Any) -> RecordingConfig:
    """The recording setup: from the recorder's attributes, else read off the frames stream."""
    if "frames" not in store or "episodes" not in store or store["frames"].schema != "episodes":
        raise SchemaError(f"{store.location}: not an episodes store (streams {list(store.streams)})")
    doc = store.attrs.get(RECORDING_ATTR)
    if doc is not None:
        return RecordingConfig.from_doc(doc)
    frames = store["frames"]
    dims, fps = frames.dims, store.fps or frames.fps
    if not fps or "state" not in dims or "action" not in dims:
        raise SchemaError(f"{store.location}: frames have no fps or no state/action sizes; nothing to export")
    cams = {f[len("image."):]: (dims["height"], dims["width"]) for f in frames.fields if f.startswith("image.")}
    return RecordingConfig(float(fps), store.robot.name if store.robot else None, dims["state"], dims["action"],
                           None, None, cams)


def _encode_png(img: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG", compress_level=1)
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


def export(store_path: str | Path, out_dir: str | Path, *, repo_id: str, overwrite: bool = False) -> ConvertReport:
    """Write an episodes store as a LeRobot v3.0 dataset directory that
    ``LeRobotDataset(repo_id, root=out_dir)`` loads offline. Written to ``<out_dir>.partial`` and
    renamed at the end, so an interrupted export never leaves a half dataset at ``out_dir``."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    out = Path(out_dir)
    store = open_store(store_path, "r")
    try:
        config = _config_of(store)
        frames, episodes = store["frames"], store["episodes"]
        feats = _export_features(config, frames.fields)
        tmp = _prepare_out(out, overwrite)
        spans = frames.segments()
        try:
            tasks, ep_rows, dataset = _write_data(tmp, store, feats, spans)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        robot_type = (store.attrs.get("lerobot") or {}).get("robot_type") or (store.robot.name if store.robot else None)
        fps = store.fps or config.fps
        info = {"codebase_version": fmt.CODEBASE_VERSION, "robot_type": robot_type,
                "total_episodes": len(spans), "total_frames": int(spans[-1, 1]) if len(spans) else 0,
                "total_tasks": len(tasks), "chunks_size": fmt.CHUNKS_SIZE,
                "data_files_size_in_mb": fmt.DATA_FILES_SIZE_IN_MB,
                "video_files_size_in_mb": fmt.VIDEO_FILES_SIZE_IN_MB,
                "fps": int(fps) if float(fps).is_integer() else fps,
                "splits": {"train": f"0:{len(spans)}"}, "data_path": fmt.DATA_PATH, "video_path": None,
                "features": feats}
        (tmp / "meta").mkdir(exist_ok=True)
        (tmp / fmt.INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))
        (tmp / fmt.STATS_PATH).write_text(json.dumps(fmt.stats_json(dataset), indent=4))
        pq.write_table(fmt.tasks_table(tasks), tmp / fmt.TASKS_PATH, compression="snappy")
        ep_path = tmp / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(ep_rows, schema=fmt.episodes_schema(feats)), ep_path,
                       compression="snappy")
        n_episodes = episodes.num_rows
    finally:
        store.close()
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return ConvertReport(str(store.location), str(out), "lerobot",
                         rows={"episodes": n_episodes, "frames": info["total_frames"]},
                         details={"repo_id": repo_id, "tasks": len(tasks), "features": list(feats)})


def _write_data(tmp: Path, store: Any, feats: dict[str, dict[str, Any]], spans: np.ndarray
                ) -> tuple[list[str], list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Data files, one row group per episode; returns tasks, episode metadata rows, dataset stats."""
    frames = store["frames"]
    tasks: list[str] = []
    ep_rows: list[dict[str, Any]] = []
    gathered: dict[str, list[Any]] = {k: [] for k in feats}
    chunk = file = 0
    writer: pq.ParquetWriter | None = None
    file_bytes = 0
    limit = fmt.DATA_FILES_SIZE_IN_MB * 1024 * 1024
    with _pool() as pool:
        try:
            for e, (start, end) in enumerate(spans.tolist()):
                values = _episode_values(frames, feats, start, end, e, tasks)
                table = _episode_table(values, feats, pool, f"{chunk}:{file}:{start}")
                if writer is not None and file_bytes and file_bytes + table.nbytes > limit:
                    writer.close()
                    writer, file_bytes = None, 0
                    chunk, file = fmt.next_file(chunk, file)
                if writer is None:
                    path = tmp / fmt.DATA_PATH.format(chunk_index=chunk, file_index=file)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(path, table.schema, compression="snappy")
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                file_bytes += table.nbytes
                stats = {k: fmt.feature_stats(values[k], f, end - start) for k, f in feats.items()}
                for k in feats:
                    gathered[k].append(values[k])
                row: dict[str, Any] = {
                    "episode_index": e, "tasks": list(dict.fromkeys(values["_tasks"])), "length": end - start,
                    "data/chunk_index": chunk, "data/file_index": file,
                    "dataset_from_index": start, "dataset_to_index": end}
                row.update({f"stats/{k}/{s}": np.asarray(v).tolist() for k, st in stats.items() for s, v in st.items()})
                row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                ep_rows.append(row)
        finally:
            if writer is not None:
                writer.close()
    total = int(spans[-1, 1]) if len(spans) else 0
    dataset = {}
    for k, f in feats.items():
        if not gathered[k]:
            continue
        merged = merge_all(gathered[k]) if f["dtype"] == "image" else np.concatenate(gathered[k])
        dataset[k] = fmt.feature_stats(merged, f, total)
    return tasks, ep_rows, dataset


def _episode_values(frames: Any, feats: Mapping[str, Any], start: int, end: int, e: int,
                    tasks: list[str]) -> dict[str, Any]:
    stamps = frames.read("timestamp", start, end).astype(np.int64)
    task_text = frames.read("task", start, end).astype(str).tolist()
    for t in task_text:
        if t not in tasks:
            tasks.append(t)
    lookup = {t: i for i, t in enumerate(tasks)}
    values: dict[str, Any] = {
        STATE_KEY: frames.read("state", start, end), ACTION_KEY: frames.read("action", start, end),
        "timestamp": ((stamps - stamps[0]) / 1e9).astype(np.float32),
        "frame_index": np.arange(end - start, dtype=np.int64),
        "episode_index": np.full(end - start, e, np.int64),
        "index": np.arange(start, end, dtype=np.int64),
        "task_index": np.asarray([lookup[t] for t in task_text], np.int64),
        "_tasks": task_text,
    }
    for key in ("next.reward", "next.done"):
        if key in feats:
            values[key] = frames.read(key, start, end)
    for key, f in feats.items():
        if f["dtype"] == "image":
            values["_png_" + key] = frames.read("image." + key[len(IMAGE_PREFIX):], start, end)
            values[key] = ImageStats.of(values["_png_" + key])
    return values


def _episode_table(values: dict[str, Any], feats: Mapping[str, Any], pool: ThreadPoolExecutor,
                   fingerprint: str) -> pa.Table:
    schema = fmt.data_schema(feats, fingerprint)
    columns = []
    for key, f in feats.items():
        typ = schema.field(key).type
        if f["dtype"] == "image":
            images = values["_png_" + key]
            data = list(pool.map(_encode_png, images))
            paths = [f"frame-{i:06d}.png" for i in range(len(images))]
            columns.append(pa.StructArray.from_arrays([pa.array(data, pa.binary()), pa.array(paths, pa.string())],
                                                      fields=list(typ)))
        elif pa.types.is_fixed_size_list(typ):
            arr = np.ascontiguousarray(values[key], dtype=f["dtype"])
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), type=typ))
        else:
            columns.append(pa.array(np.asarray(values[key]).reshape(-1), typ))
    return pa.Table.from_arrays(columns, schema=schema)
