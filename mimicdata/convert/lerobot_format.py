"""LeRobot v3.0 file formats: paths, feature declarations, Arrow schemas and statistics.

Matched against a dataset written by the ``lerobot`` library 0.4.4 (``LeRobotDataset.create``,
``add_frame``, ``save_episode``, ``finalize``): the same info.json keys, parquet column types, episode
metadata columns and statistics layout (min, max, mean, std, count, q01, q10, q50, q90, q99; images
per channel as ``(3, 1, 1)`` nested lists scaled to [0, 1]).

Statistics differ from lerobot's in one respect: quantiles here are exact (numpy's linear
interpolation; exact histogram quantiles for uint8 images), where lerobot approximates them with
running histograms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from mimicdata.episodes.stats import ImageStats

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH, STATS_PATH, TASKS_PATH = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
CHUNKS_SIZE = 1000               # files per chunk directory
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_ORDER = ("min", "max", "mean", "std", "count", *QUANTILES)
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
# pandas writes this layout for a one-column frame indexed by task; pyarrow's reader ignores the version.
PANDAS_VERSION_TAG = "2.2.3"


# ------------------------------------------------------------------------------------------ features
def vector_feature(dim: int, names: list[str] | None, dtype: str = "float32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": [int(dim)], "names": names}


def default_features() -> dict[str, dict[str, Any]]:
    out = {"timestamp": vector_feature(1, None, "float32")}
    for key in DEFAULT_FEATURES[1:]:
        out[key] = vector_feature(1, None, "int64")
    return out


def _value_type(dtype: str) -> pa.DataType:
    return pa.string() if dtype == "string" else pa.from_numpy_dtype(np.dtype(dtype))


def arrow_type(feature: Mapping[str, Any]) -> pa.DataType:
    """The parquet column type lerobot (through ``datasets``) uses for a feature (videos have none)."""
    if feature["dtype"] == "image":
        return pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    shape = list(feature["shape"])
    if shape == [1]:
        return _value_type(feature["dtype"])
    if len(shape) == 1:
        return pa.list_(pa.field("element", _value_type(feature["dtype"])), shape[0])
    out = _value_type(feature["dtype"])  # datasets' Array2D..Array5D: nested lists
    for _ in shape:
        out = pa.list_(out)
    return out


def hf_feature(feature: Mapping[str, Any]) -> dict[str, Any]:
    """The ``datasets`` feature description kept in each data file's ``huggingface`` metadata."""
    if feature["dtype"] == "image":
        return {"_type": "Image"}
    shape = list(feature["shape"])
    if shape == [1]:
        return {"dtype": feature["dtype"], "_type": "Value"}
    if len(shape) == 1:
        return {"feature": {"dtype": feature["dtype"], "_type": "Value"}, "length": int(shape[0]),
                "_type": "List"}
    return {"shape": shape, "dtype": feature["dtype"], "_type": f"Array{len(shape)}D"}


def has_stats(feature: Mapping[str, Any]) -> bool:
    """lerobot keeps statistics of every feature but strings."""
    return feature["dtype"] != "string"


def is_visual(feature: Mapping[str, Any]) -> bool:
    return feature["dtype"] in ("image", "video")


def data_schema(features: Mapping[str, Mapping[str, Any]], fingerprint_key: str) -> pa.Schema:
    hf = {"info": {"features": {k: hf_feature(f) for k, f in features.items()}},
          "fingerprint": hashlib.sha256(fingerprint_key.encode()).hexdigest()[:16]}
    return pa.schema([pa.field(k, arrow_type(f)) for k, f in features.items()],
                     metadata={"huggingface": json.dumps(hf)})


def tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet``: a pandas frame indexed by task text with one ``task_index`` column."""
    meta = {"index_columns": ["__index_level_0__"],
            "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "str",
                                "metadata": {"encoding": "UTF-8"}}],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": None, "field_name": "__index_level_0__", "pandas_type": "object",
                         "numpy_type": "str", "metadata": None}],
            "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": PANDAS_VERSION_TAG}
    schema = pa.schema([pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.large_string())],
                       metadata={"pandas": json.dumps(meta)})
    return pa.table([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.large_string())], schema=schema)


def read_tasks(table: pa.Table) -> dict[int, str]:
    """task_index -> task text from ``meta/tasks.parquet`` (index column named by the pandas metadata)."""
    meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}") or b"{}")
    index_cols = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    text_col = next((c for c in ("task", *index_cols) if c in table.column_names), None)
    if text_col is None or "task_index" not in table.column_names:
        raise ValueError(f"tasks.parquet has columns {table.column_names}; expected task_index and the task text")
    return dict(zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist(), strict=True))


# ---------------------------------------------------------------------------------------- statistics
def _vector_stats(values: np.ndarray, integer: bool) -> dict[str, np.ndarray]:
    arr = values.reshape(len(values), -1)
    as64 = arr.astype(np.float64)
    out = {"min": arr.min(axis=0), "max": arr.max(axis=0), "mean": as64.mean(axis=0), "std": as64.std(axis=0),
           "count": np.array([len(arr)], np.int64)}
    if not integer:
        out["min"], out["max"] = out["min"].astype(np.float64), out["max"].astype(np.float64)
    for key, q in QUANTILES.items():
        out[key] = np.quantile(as64, q, axis=0)
    return out


def _image_stats(hist: ImageStats, frames: int) -> dict[str, np.ndarray]:
    vec = hist.vector()

    def per_channel(values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, np.float64) / 255.0).reshape(-1, 1, 1)

    out = {"min": per_channel(vec.min), "max": per_channel(vec.max), "mean": per_channel(vec.mean),
           "std": per_channel(vec.std), "count": np.array([frames], np.int64)}
    for (key, _), row in zip(QUANTILES.items(), hist.quantiles(QUANTILES.values()), strict=True):
        out[key] = per_channel(row)
    return out


def feature_stats(values: np.ndarray | ImageStats, feature: Mapping[str, Any], frames: int) -> dict[str, np.ndarray]:
    """One feature's statistics in lerobot's layout (``values`` is an ImageStats for images)."""
    if is_visual(feature):
        assert isinstance(values, ImageStats)
        return _image_stats(values, frames)
    return _vector_stats(np.asarray(values), integer=feature["dtype"].startswith("int"))


def stats_arrow_type(feature: Mapping[str, Any], stat: str) -> pa.DataType:
    if stat == "count":
        return pa.list_(pa.field("element", pa.int64()))
    if is_visual(feature):
        inner = pa.list_(pa.field("element", pa.float64()))
        return pa.list_(pa.field("element", pa.list_(pa.field("element", inner))))
    integer = feature["dtype"].startswith("int") and stat in ("min", "max")
    return pa.list_(pa.field("element", pa.int64() if integer else pa.float64()))


def episodes_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Columns of ``meta/episodes/*.parquet`` in lerobot's order."""
    fields = [pa.field("episode_index", pa.int64()), pa.field("tasks", pa.list_(pa.field("element", pa.string()))),
              pa.field("length", pa.int64()), pa.field("data/chunk_index", pa.int64()),
              pa.field("data/file_index", pa.int64()), pa.field("dataset_from_index", pa.int64()),
              pa.field("dataset_to_index", pa.int64())]
    for key in (k for k, f in features.items() if f["dtype"] == "video"):
        fields += [pa.field(f"videos/{key}/chunk_index", pa.int64()), pa.field(f"videos/{key}/file_index", pa.int64()),
                   pa.field(f"videos/{key}/from_timestamp", pa.float64()),
                   pa.field(f"videos/{key}/to_timestamp", pa.float64())]
    for key, feature in features.items():
        if has_stats(feature):
            fields += [pa.field(f"stats/{key}/{stat}", stats_arrow_type(feature, stat)) for stat in STAT_ORDER]
    fields += [pa.field("meta/episodes/chunk_index", pa.int64()), pa.field("meta/episodes/file_index", pa.int64())]
    return pa.schema(fields)


def stats_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {k: {s: np.asarray(v).tolist() for s, v in st.items()} for k, st in stats.items()}


def next_file(chunk_index: int, file_index: int) -> tuple[int, int]:
    """lerobot's file numbering: CHUNKS_SIZE files per chunk directory."""
    file_index += 1
    if file_index == CHUNKS_SIZE:
        return chunk_index + 1, 0
    return chunk_index, file_index
