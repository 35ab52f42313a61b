"""Chunking and codec presets, chosen by measurement (benchmarks/compression.py, RESULTS.md).

Only codecs from the Zarr v3 specification and its registered extensions are used (transpose, bytes,
blosc, zstd), so tensorstore, zarr-python and other readers can open a store without mimicdata.

Why time-major: a row of joint data mixes 29 unrelated channels; each channel alone is a smooth time
series. Transposing a (rows, channels) chunk to channel-major order before byte-shuffling puts the
matching bytes of consecutive samples of one channel side by side, which zstd compresses far better.

Lossy precision is opt-in per field: values are rounded to ``mantissa_bits`` bits of mantissa *before*
they are stored, so the stored array is an ordinary float array (no special codec to read it) whose
trailing zero bits compress well. Relative error is at most 2**-(mantissa_bits+1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, BytesCodec, TransposeCodec

# Target uncompressed chunk size; rows per chunk are derived from the row size (see chunk_rows_for).
TARGET_CHUNK_BYTES = 1 << 20
MIN_CHUNK_ROWS = 256
MAX_CHUNK_ROWS = 65536


def chunk_rows_for(row_bytes: int, requested: int | None = None) -> int:
    """Rows per chunk: the schema's value if given, else about 1 MiB of raw data, a power of two."""
    if requested:
        return int(requested)
    rows = max(1, TARGET_CHUNK_BYTES // max(1, row_bytes))
    rows = 1 << int(np.floor(np.log2(rows)))
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows)))


def codecs_for(preset: str, dtype: np.dtype, ndim: int, *, lossy: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``zarr.create_array``: filters, serializer, compressors.

    ``default``: (rows, ...) arrays are transposed to time-major order, byte-shuffled (bit-shuffled
    for integers and mantissa-rounded floats, whose zero low bits then line up) and compressed with
    zstd at blosc level 3. Chosen by measurement on real mocap (bvhtools, benchmarks/store_throughput.py
    level sweep): level 3 stores 0.780x raw losslessly at ~8-10x the encode speed of level 7 (0.766x);
    level 1 is ~2x faster again but 4-5 % larger. ``fast`` uses level 1.
    """
    itemsize = int(np.dtype(dtype).itemsize)
    if preset == "image":
        # One frame per chunk, lossless; lz4 keeps background episode saves I/O-bound rather than CPU-bound.
        return {"filters": (), "serializer": BytesCodec(),
                "compressors": (BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle", typesize=1),)}
    if preset == "raw":
        return {"filters": (), "serializer": BytesCodec(), "compressors": ()}
    if preset not in ("default", "fast"):
        raise ValueError(f"unknown codec preset {preset!r} (default, fast, image, raw)")
    filters: tuple[Any, ...] = ()
    if ndim >= 2:
        # (rows, a, b, ...) -> (a, b, ..., rows): each channel's time series becomes contiguous.
        filters = (TransposeCodec(order=(*range(1, ndim), 0)),)
    is_float = np.dtype(dtype).kind == "f"
    shuffle = "noshuffle" if itemsize == 1 else ("shuffle" if is_float and not lossy else "bitshuffle")
    level = 3 if preset == "default" else 1
    return {"filters": filters, "serializer": BytesCodec(),
            "compressors": (BloscCodec(cname="zstd", clevel=level, shuffle=shuffle, typesize=itemsize),)}


def round_mantissa(values: np.ndarray, bits: int) -> np.ndarray:
    """Round floats to ``bits`` mantissa bits (round half to even); NaN and Inf pass through.

    float32 has 23 mantissa bits, float64 52. The result has the same dtype; relative error
    is at most ``2**-(bits+1)``.
    """
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        uint, total = np.uint32, 23
    elif arr.dtype == np.float64:
        uint, total = np.uint64, 52
    else:
        raise TypeError(f"mantissa rounding needs float32 or float64, got {arr.dtype}")
    if bits >= total:
        return arr.copy()
    drop = total - bits
    raw = arr.view(uint)
    one = uint(1)
    half = uint((1 << (drop - 1)) - 1)
    keep_mask = ~uint((1 << drop) - 1)
    lsb = (raw >> uint(drop)) & one
    rounded = ((raw + half + lsb) & keep_mask).view(arr.dtype)
    return np.where(np.isfinite(arr), rounded, arr)


def relative_error_bound(bits: int | None) -> float:
    """The stated error bound of a field stored with ``bits`` mantissa bits (0.0 when lossless)."""
    return 0.0 if bits is None else float(2.0 ** -(bits + 1))


def describe_codecs(array: Any) -> list[str]:
    """Short names of an array's codec chain, e.g. ``['transpose(1,0)', 'bytes', 'blosc(zstd,5,bitshuffle)']``."""
    out = []
    meta = array.metadata.to_dict()
    for codec in meta.get("codecs", []):
        name = codec.get("name")
        conf = codec.get("configuration", {}) or {}
        if name == "transpose":
            out.append(f"transpose{tuple(conf.get('order', ()))}")
        elif name == "blosc":
            out.append(f"blosc({conf.get('cname')},{conf.get('clevel')},{conf.get('shuffle')})")
        elif name == "zstd":
            out.append(f"zstd({conf.get('level')})")
        else:
            out.append(str(name))
    return out
