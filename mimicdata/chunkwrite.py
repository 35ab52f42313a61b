"""Appending rows by encoding whole chunks directly with the array's own codecs.

zarr-python's generic write path reads, decodes, merges and re-encodes the partial last chunk through
several layers of asyncio machinery: several milliseconds per array per append. An append only ever
touches the chunks from the one holding row ``start`` to the one holding row ``stop - 1``, and the
writer knows every row of them (the committed tail of the first chunk is cached), so it can encode those
chunks itself — transpose, little-endian bytes, blosc, exactly the codec chain in the array's
``zarr.json`` — and store them with one ``set`` each. Arrays with any other codec chain use zarr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numcodecs import Blosc

Encoder = Callable[[np.ndarray], bytes]
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def chunk_encoder(array: Any) -> Encoder | None:
    """An encoder for one full chunk of ``array``, or None when its layout is not one this module knows."""
    meta = array.metadata.to_dict()
    grid = meta.get("chunk_grid", {})
    keys = meta.get("chunk_key_encoding", {})
    if grid.get("name") != "regular" or keys.get("name") != "default":
        return None
    if keys.get("configuration", {}).get("separator", "/") != "/":
        return None
    if tuple(array.chunks[1:]) != tuple(array.shape[1:]):
        return None  # only one chunk across the non-row dimensions
    order: tuple[int, ...] | None = None
    blosc: Blosc | None = None
    for codec in meta.get("codecs", []):
        name, conf = codec.get("name"), codec.get("configuration", {}) or {}
        if name == "transpose":
            order = tuple(conf["order"])
        elif name == "bytes":
            if conf.get("endian", "little") != "little":
                return None
        elif name == "blosc" and blosc is None:
            blosc = Blosc.from_config({"cname": conf["cname"], "clevel": conf["clevel"],
                                       "shuffle": _SHUFFLE[conf["shuffle"]], "blocksize": conf.get("blocksize", 0),
                                       "typesize": conf.get("typesize", array.dtype.itemsize)})
        else:
            return None
    little = np.dtype(array.dtype).newbyteorder("<")

    def encode(chunk: np.ndarray) -> bytes:
        data = chunk.transpose(order) if order else chunk
        raw = np.ascontiguousarray(data, dtype=little).tobytes()
        return bytes(blosc.encode(raw)) if blosc is not None else raw

    return encode


def chunk_key(array: Any, chunk_row: int) -> str:
    """Store key of the chunk holding rows ``chunk_row * chunk_rows ...`` (default v3 key encoding)."""
    return f"{array.path}/c/" + "/".join([str(chunk_row)] + ["0"] * (len(array.shape) - 1))


def encode_rows(array: Any, encoder: Encoder, tail: np.ndarray, values: np.ndarray, start: int,
                fill: Any = 0) -> tuple[list[tuple[str, bytes]], np.ndarray]:
    """Encode the chunks covering rows ``[start - len(tail), start + len(values))``.

    ``tail`` holds the committed rows of the chunk containing ``start`` that precede it. Returns the
    (key, bytes) pairs to store and the new tail (rows of the last, partly filled chunk).
    """
    rows = array.chunks[0]
    first = start - len(tail)
    assert first % rows == 0, "the cached tail must start at a chunk boundary"
    data = np.concatenate([tail, values]) if len(tail) else values
    out = []
    for offset in range(0, len(data), rows):
        piece = data[offset:offset + rows]
        if len(piece) < rows:
            full = np.full((rows, *piece.shape[1:]), fill, dtype=array.dtype)
            full[:len(piece)] = piece
            piece = full
        out.append((chunk_key(array, (first + offset) // rows), encoder(piece)))
    kept = len(data) % rows
    new_tail = data[len(data) - kept:].copy() if kept else data[:0].copy()
    return out, new_tail
