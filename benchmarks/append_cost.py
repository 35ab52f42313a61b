"""Cost of a small append: 10 rows to the 7-field ``actions`` stream, this mimicdata against the path it
replaced (a copy kept below) and zarr's own append, in the same run on the same disk.

    python benchmarks/append_cost.py [--appends 300] [--rows 10] [--dir /tmp]

- ``mimicdata``: ``Stream.append`` — whole chunks encoded by mimicdata.chunkwrite (the still-filling last
  chunk with lz4), chunk objects, array shapes (only when a chunk starts) and the commit written directly
  through the store;
- ``previous``: the path before this change, copied here: whole chunks encoded with the array's codec
  chain at the then default blosc-zstd level 7, stored through zarr's asyncio store API, then zarr's
  ``resize`` of every array, then zarr's ``update_attributes`` for the commit;
- ``zarr``: zarr's own append on the same arrays (``resize`` + ``arr[start:stop] = values`` per field, then
  ``update_attributes``), the generic path.

Prints CPU time (process, all threads) and wall time per append, and the ratios. Target: >= 5x cheaper
than the previous path.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Blosc
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import mimicdata as md
import mimicdata.stream as stream_module
from mimicdata.batch_check import normalise_batch
from mimicdata.codecs import codecs_for

META = "mimicdata"
T0 = 1_790_000_000_000_000_000


def batch(i: int, rows: int) -> dict[str, np.ndarray]:
    q = np.sin(np.arange(i * rows, (i + 1) * rows)[:, None] * 0.01 + np.arange(29)).astype(np.float32)
    steps = np.arange(i * rows, (i + 1) * rows, dtype=np.int64)
    return {"raw_action": q, "scaled_action": q * 0.25, "target_pos_full": q * 0.5,
            "kps": np.full((rows, 29), 40.0, np.float32), "kds": np.full((rows, 29), 2.5, np.float32),
            "counter_step": steps, "timestamp": T0 + steps * 1_000_000}


# ------------------------------------------------------------------ the previous path (kept as it was)
def _previous_encoder(arr: Any) -> Callable[[np.ndarray], bytes]:
    order, blosc = None, None
    for codec in arr.metadata.to_dict()["codecs"]:
        conf = codec.get("configuration", {}) or {}
        if codec["name"] == "transpose":
            order = tuple(conf["order"])
        elif codec["name"] == "blosc":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[conf["shuffle"]]
            blosc = Blosc(cname=conf["cname"], clevel=conf["clevel"], shuffle=shuffle, typesize=conf["typesize"])

    def encode(chunk: np.ndarray) -> bytes:
        raw = np.ascontiguousarray(chunk.transpose(order) if order else chunk).tobytes()
        return bytes(blosc.encode(raw)) if blosc is not None else raw

    return encode


class PreviousAppend:
    """mimicdata's append before this change: chunk encode, zarr store API, zarr resize, zarr attrs."""

    def __init__(self, stream: md.Stream) -> None:
        self.s = stream
        self.tails: dict[str, np.ndarray] = {}
        self.encoders: dict[str, Callable[[np.ndarray], bytes]] = {}

    def __call__(self, values: dict[str, np.ndarray]) -> None:
        s = self.s
        data, n, _ = normalise_batch(s, values)
        start, stop = s.committed_rows, s.committed_rows + n
        present = list(s.meta.get("fields_present", []))
        arrays = {}
        for name in data:
            if name not in present:
                arrays[name] = s._create_array(name, s.spec.fields[name], data[name].shape[1:])
                present.append(name)
            else:
                arrays[name] = s._arrays[name] if name in s._arrays else s.array(name)
        blobs, tails = [], {}
        for name, arr in arrays.items():
            encoder = self.encoders.setdefault(name, _previous_encoder(arr))
            rows = arr.chunks[0]
            first = start - start % rows
            tail = self.tails.get(name)
            if tail is None or len(tail) != start - first:
                tail = np.asarray(arr[first:start])
            joined = np.concatenate([tail, data[name]])
            for offset in range(0, len(joined), rows):
                piece = joined[offset:offset + rows]
                if len(piece) < rows:
                    full = np.zeros((rows, *piece.shape[1:]), arr.dtype)
                    full[:len(piece)] = piece
                    piece = full
                key = f"{arr.path}/c/" + "/".join([str((first + offset) // rows)] + ["0"] * (arr.ndim - 1))
                blobs.append((key, encoder(piece)))
            kept = len(joined) % rows
            tails[name] = joined[len(joined) - kept:].copy() if kept else joined[:0].copy()
        prototype = default_buffer_prototype()

        async def everything() -> None:
            zstore = s.store.zstore
            await asyncio.gather(*(zstore.set(k, prototype.buffer.from_bytes(b)) for k, b in blobs))
            await asyncio.gather(*(a._async_array.resize((stop, *a.shape[1:])) for a in arrays.values()))

        sync(everything())
        meta = dict(s.meta, committed_rows=stop, fields_present=present)
        s.group.update_attributes({META: meta})
        s.meta = meta
        self.tails = tails


def zarr_append(stream: md.Stream) -> Callable[[dict[str, np.ndarray]], None]:
    def append(values: dict[str, np.ndarray]) -> None:
        data, n, _ = normalise_batch(stream, values)
        start, stop = stream.committed_rows, stream.committed_rows + n
        present = list(stream.meta.get("fields_present", []))
        for name, v in data.items():
            if name not in present:
                arr = stream._create_array(name, stream.spec.fields[name], v.shape[1:])
                present.append(name)
            else:
                arr = stream._arrays[name] if name in stream._arrays else stream.array(name)
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = v
        meta = dict(stream.meta, committed_rows=stop, fields_present=present)
        stream.group.update_attributes({META: meta})
        stream.meta = meta

    return append


def level7(preset: str, dtype: np.dtype, ndim: int, *, lossy: bool = False) -> dict[str, Any]:
    """The codec presets as they were: blosc-zstd level 7."""
    out = codecs_for(preset, dtype, ndim, lossy=lossy)
    out["compressors"] = tuple(type(c)(**{**c.to_dict()["configuration"], "clevel": 7})
                               for c in out["compressors"])
    return out


def measure(path: Path, make: Callable[[md.Stream], Callable[[dict[str, np.ndarray]], None]], appends: int,
            rows: int, *, old_codecs: bool = False) -> tuple[float, float]:
    original = stream_module.codecs_for
    if old_codecs:
        stream_module.codecs_for = level7  # type: ignore[assignment]
    try:
        store = md.create(path, "actions", robot="g1_29dof", fps=1000)
        append = make(store["actions"])
        for i in range(20):  # warm-up: arrays created, first chunk started
            append(batch(i, rows))
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(20, 20 + appends):
            append(batch(i, rows))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        got = md.open(path)["actions"]
        assert got.num_rows == (20 + appends) * rows
        np.testing.assert_array_equal(got.read("counter_step")[-rows:], batch(19 + appends, rows)["counter_step"])
        store.close()
        return cpu / appends, wall / appends
    finally:
        stream_module.codecs_for = original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mimicdata-append-", dir=args.dir))
    try:
        cases = {
            "mimicdata": measure(root / "new.zarr", lambda s: s.append, args.appends, args.rows),
            "previous (level 7)": measure(root / "old.zarr", PreviousAppend, args.appends, args.rows, old_codecs=True),
            "zarr's own append": measure(root / "zarr.zarr", zarr_append, args.appends, args.rows),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    new_cpu = cases["mimicdata"][0]
    print(f"{args.appends} appends of {args.rows} rows to the 7-field actions stream, in {root.parent}")
    print(f"{'path':22s} {'CPU ms/append':>14s} {'wall ms/append':>15s} {'CPU vs mimicdata':>17s}")
    for name, (cpu, wall) in cases.items():
        print(f"{name:22s} {cpu * 1e3:14.2f} {wall * 1e3:15.2f} {cpu / new_cpu:16.1f}x")
    ratio = cases["previous (level 7)"][0] / new_cpu
    print(f"target: >= 5x cheaper than the previous path: {ratio:.1f}x, {'met' if ratio >= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
