"""Fuzzing the converters' readers: the seed's pickle / pickle.gz / JSON / JSON-lines logs, and LeRobot v3.0
``meta/info.json`` and data parquet files.

Every case ends in records / a plan (a correct result) or one MimicDataError, never another exception or a
hang; and a log cut inside a record is never read as a whole one: the reader reports where it stopped
(which makes the conversion report not ``ok`` and the CLI exit 1).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import pickle
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicdata.convert import lerobot
from mimicdata.convert import lerobot_format as fmt
from mimicdata.convert.seedlog import SeedFile, Stop, read_records
from mimicdata.episodes import EpisodeRecorder
from tests.fuzzing import FUZZ, clear_outcome, corrupt_bytes, corrupt_text, random_byte_ops, random_text_ops, seeds

SESSION = "20251113_143022"


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mimicdata-fuzz-") as tmp:
        yield Path(tmp)


def _records(n: int = 5) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [{"joint_pos": rng.normal(size=29).astype(np.float32), "raw_action": rng.normal(size=29),
             "counter_step": i, "_timestamp": 1_763_044_222.0 + 0.02 * i} for i in range(n)]


RECORDS = _records()


def _encode(kind: str) -> tuple[bytes, list[int]]:
    """A valid seed log of RECORDS in one format, and the byte offsets where its records end."""
    if kind in ("pkl", "pkl.gz"):
        parts = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in RECORDS]
        data = b"".join(parts)
        ends = list(np.cumsum([len(p) for p in parts]))
        return (gzip.compress(data, mtime=0), []) if kind == "pkl.gz" else (data, ends)
    if kind == "list.pkl":
        return pickle.dumps(RECORDS, protocol=4), []
    rows = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in RECORDS]
    if kind == "jsonl":
        lines = [json.dumps(r) + "\n" for r in rows]
        return "".join(lines).encode(), list(np.cumsum([len(line) for line in lines]))
    return json.dumps(rows).encode(), []


def _read(path: Path, ext: str) -> tuple[list[dict[str, Any]], list[Stop]]:
    stops: list[Stop] = []
    return list(read_records(SeedFile(path, "observations", SESSION, ext), stops)), stops


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


@FUZZ
@given(kind=st.sampled_from(["pkl", "pkl.gz", "list.pkl", "jsonl", "json"]), seed=seeds)
def test_seed_logs(work: Path, kind: str, seed: int) -> None:
    """A third of the cases are a cut at a random offset (a logger killed while writing), the others
    line-level and/or byte-level damage."""
    rng = np.random.default_rng(seed)
    how = rng.integers(3)
    cut = rng.random()
    raw = random_byte_ops(rng) if how == 1 or (how == 2 and rng.random() < 0.5) else None
    text = random_text_ops(rng) if how == 2 else None
    data, ends = _encode(kind)
    ext = "pkl" if kind == "list.pkl" else kind
    damaged = raw is not None or (text is not None and kind in ("jsonl", "json"))
    if kind in ("jsonl", "json") and text:
        data = corrupt_text(data.decode(), text).encode()
    if raw:
        data = corrupt_bytes(data, raw)
    if not damaged:
        data = data[: int(cut * (len(data) - 1))]  # killed while writing: a cut before the end
    path = work / f"observations_{SESSION}.{ext}"
    path.write_bytes(data)
    outcome = clear_outcome(lambda: _read(path, ext))
    if outcome is None or damaged:
        return
    records, stops = outcome
    # A cut: what is read is exactly the records before it, and a cut inside a record is reported.
    assert len(records) <= len(RECORDS) and all(_same(r, o) for r, o in zip(records, RECORDS, strict=False))
    on_boundary = len(data) in (0, *ends)
    assert on_boundary or any(s.final for s in stops), (kind, len(data), stops)


# ------------------------------------------------------------------------------------------ LeRobot
def _info() -> dict[str, Any]:
    return {"codebase_version": "v3.0", "robot_type": "g1", "fps": 30, "total_episodes": 1, "total_frames": 4,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "features": {"observation.state": {"dtype": "float32", "shape": [3], "names": ["a", "b", "c"]},
                         "action": {"dtype": "float32", "shape": [2], "names": None},
                         "observation.images.front": {"dtype": "image", "shape": [8, 8, 3]},
                         **fmt.default_features()}}


_INFO_KEYS = ("codebase_version", "fps", "features", "data_path", "observation.state", "action",
              "observation.images.front")
_INFO_VALUES = (None, 0, -1, "x", [], {}, 1e400, "v2.1", {"dtype": "video"}, {"dtype": "image"},
                {"dtype": "float32", "shape": "3"}, {"shape": [3]}, {"dtype": "image", "shape": [8, 8]})


@FUZZ
@given(seed=seeds)
def test_lerobot_info_json(work: Path, seed: int) -> None:
    """A field swapped for a wrong value (type, range, version, feature kind), and/or text or byte damage."""
    rng = np.random.default_rng(seed)
    how = rng.integers(4)
    text = random_text_ops(rng) if how in (1, 3) else None
    raw = random_byte_ops(rng) if how == 2 else None
    mutate = (_INFO_KEYS[rng.integers(len(_INFO_KEYS))], _INFO_VALUES[rng.integers(len(_INFO_VALUES))]) \
        if how in (0, 3) else None
    info = _info()
    if mutate:
        key, value = mutate
        if key in info:
            info[key] = value
        else:
            info["features"][key] = value
    data = json.dumps(info, indent=1)
    data = corrupt_text(data, text) if text else data
    root = work / "lerobot"
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / fmt.INFO_PATH).write_bytes(corrupt_bytes(data.encode(), raw) if raw else data.encode())
    feats = clear_outcome(lambda: lerobot._features(lerobot._read_info(root), root))
    if feats is not None:
        assert all(f.shape is not None for f in feats.values())


def _data_table() -> pa.Table:
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    n = 4
    return pa.table({
        "observation.state": pa.array(np.arange(3 * n, dtype=np.float32).reshape(n, 3).tolist(),
                                      pa.list_(pa.float32(), 3)),
        "action": pa.array(np.ones((n, 2), np.float32).tolist(), pa.list_(pa.float32(), 2)),
        "observation.images.front": pa.array([{"bytes": png.getvalue(), "path": None}] * n,
                                             pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "timestamp": pa.array(np.arange(n) / 30.0, pa.float32()),
        "frame_index": pa.array(np.arange(n)), "episode_index": pa.array(np.zeros(n, np.int64)),
        "index": pa.array(np.arange(n)), "task_index": pa.array(np.zeros(n, np.int64)),
    })


DATA = _data_table()


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


_COLUMN_DAMAGE = ("drop", "nulls", "nan", "wrong_width", "strings", "bad_png", "task_unknown")


@pytest.fixture(scope="module")
def recorder() -> Iterator[EpisodeRecorder]:
    """Where imported frames go: its add_frames() checks them (shapes, NaN, tasks, time) before any write."""
    rec = EpisodeRecorder.create("memory://fuzz-lerobot", fps=30, features=_info()["features"], overwrite=True)
    yield rec
    rec.close()


EPISODE = {"episode_index": 0, "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": 0,
           "dataset_to_index": 4, "length": 4}


@FUZZ
@given(seed=seeds)
def test_lerobot_data_parquet(work: Path, recorder: EpisodeRecorder, seed: int) -> None:
    """The importer's path for one episode of a data file: read its rows, build the frames, hand them to
    the recorder. Damage: a column dropped / nulled / NaN / of another width or type / a bad PNG / an
    unknown task, and/or bytes of the file; or the file cut (a session killed before its footer)."""
    rng = np.random.default_rng(seed)
    how = rng.integers(4)
    column = DATA.column_names[rng.integers(DATA.num_columns)]
    damage = _COLUMN_DAMAGE[rng.integers(len(_COLUMN_DAMAGE))] if how in (0, 2) else None
    raw = random_byte_ops(rng) if how in (1, 2) else None
    data = _damaged_parquet(column, damage)
    if raw:
        data = corrupt_bytes(data, raw)
    elif not damage:
        data = data[: int(rng.integers(len(data)))]  # a session killed before finalize(): no footer
    root = work / f"lerobot{seed % 2}"  # a fresh path per case: the reader keeps its file open
    path = root / "data" / "chunk-000" / "file-000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    info = _info()
    feats = lerobot._features(info, root)
    columns = ["timestamp", "index", "task_index", *feats]

    def read() -> int:
        part = lerobot._DataFiles(root, info["data_path"]).rows(EPISODE, columns, "episode 0")
        batch = lerobot._frames_batch(part, feats, {0: "walk"}, root, "episode 0", POOL)
        recorder.clear_episode_buffer()
        recorder.add_frames(batch)
        return recorder.buffer.num_frames

    frames = clear_outcome(read)
    recorder.clear_episode_buffer()
    if frames is not None:
        assert 0 < frames <= len(DATA)


POOL = ThreadPoolExecutor(max_workers=2)  # the importer's PNG pool, made once here (not per case)


@functools.cache
def _damaged_parquet(column: str, damage: str | None) -> bytes:
    """The data file with one column damaged (or none), encoded once per kind of damage."""
    return _parquet_bytes(_damage_column(DATA, column, damage) if damage else DATA)


def _damage_column(table: pa.Table, column: str, damage: str) -> pa.Table:
    i = table.column_names.index(column)
    col = table.column(column)
    n = len(col)
    if damage == "drop":
        return table.remove_column(i)
    if damage == "nulls":
        return table.set_column(i, column, pa.nulls(n, col.type))
    if damage == "strings":
        return table.set_column(i, column, pa.array(["x"] * n))
    if damage == "nan" and pa.types.is_fixed_size_list(col.type):
        values = np.asarray(col.combine_chunks().flatten(), np.float32).reshape(n, -1).copy()
        values[1, 0] = np.nan
        return table.set_column(i, column, pa.array(values.tolist(), col.type))
    if damage == "wrong_width" and pa.types.is_fixed_size_list(col.type):
        return table.set_column(i, column, pa.array([[1.0]] * n, pa.list_(pa.float32(), 1)))
    if damage == "bad_png" and pa.types.is_struct(col.type):
        return table.set_column(i, column, pa.array([{"bytes": b"\x89PNG junk", "path": None}] * n, col.type))
    if damage == "task_unknown" and column == "task_index":
        return table.set_column(i, column, pa.array(np.full(n, 7, np.int64)))
    return table
