"""The whole-chunk append path writes exactly what zarr's own path would, across chunk boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

import mimicdata as md
from mimicdata.chunkwrite import ChunkCodec


def test_small_appends_across_chunk_boundaries_and_reopen(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "c.zarr"
    store = md.create(path, None)
    stream = store.add_stream("s", {
        "vec": {"dtype": "float32", "shape": [7], "unit": "1"},
        "img": {"dtype": "uint8", "shape": [4, 5, 3], "unit": "rgb", "codec": "image", "chunk_rows": 3},
        "flag": {"dtype": "bool", "shape": [], "unit": "1"},
        "n": {"dtype": "int64", "shape": [], "unit": "1"},
    }, chunk_rows=64)
    want: dict[str, list[np.ndarray]] = {"vec": [], "img": [], "flag": [], "n": []}
    total = 0
    for step in range(40):
        n = int(rng.integers(1, 50))
        batch = {"vec": rng.normal(size=(n, 7)).astype(np.float32),
                 "img": rng.integers(0, 255, (n, 4, 5, 3), dtype=np.uint8),
                 "flag": rng.random(n) > 0.5, "n": np.arange(total, total + n)}
        if step == 20:  # reopen: the first append must read the committed tail back from disk
            store.close()
            store = md.open(path, "a")
            stream = store["s"]
        stream.append(batch)
        for k, v in batch.items():
            want[k].append(v)
        total += n
    assert all(ChunkCodec.for_array(stream.array(f)) is not None for f in stream.fields)  # the fast path was used
    store.close()
    for field, parts in want.items():
        expected = np.concatenate(parts)
        plain = zarr.open_array(str(path / "s" / field), mode="r")[:]  # decoded by zarr itself
        np.testing.assert_array_equal(plain, expected, err_msg=field)
    assert total > 64 * 10  # many chunk boundaries were crossed


def test_filling_chunk_is_lz4_while_writing_and_the_arrays_codec_after_close(tmp_path: Path) -> None:
    """A blosc frame names its own compressor: the still-filling chunk is cheap lz4 (plain zarr decodes it),
    re-encoded with the array's zstd on close; shapes grow a chunk at a time and are trimmed on close."""
    from numcodecs import blosc

    path = tmp_path / "c.zarr"
    store = md.create(path, None)
    stream = store.add_stream("s", {"q": {"dtype": "float32", "shape": [5], "unit": "1"}}, chunk_rows=64)
    values = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    for start in range(0, 100, 10):
        stream.append({"q": values[start:start + 10]})
    chunk = path / "s" / "q" / "c" / "1" / "0"
    assert blosc.cbuffer_complib(chunk.read_bytes()) == "LZ4"  # rows 64-99: still filling
    assert blosc.cbuffer_complib((path / "s" / "q" / "c" / "0" / "0").read_bytes()) == "Zstd"  # full
    plain = zarr.open_array(str(path / "s" / "q"), mode="r")
    assert plain.shape == (128, 5)  # grown to the end of the last chunk; rows past committed_rows are not data
    np.testing.assert_array_equal(plain[:100], values)
    assert md.open(path)["s"].num_rows == 100
    # the training data path decodes the lz4 chunk itself and returns committed rows only (100, not 128)
    from mimicdata.gather import ChunkGather, ChunkSource

    reader = md.open(path)["s"]
    source = ChunkSource(reader.array("q"), reader.store.zstore, reader.num_rows, "s/q")
    assert source.codec is not None and [len(c) for c in source.read([0, 1])] == [64, 36]
    np.testing.assert_array_equal(ChunkGather({"q": source}, {}).gather(np.arange(100)[::-1])["q"], values[::-1])
    store.close()
    assert blosc.cbuffer_complib(chunk.read_bytes()) == "Zstd"
    plain = zarr.open_array(str(path / "s" / "q"), mode="r")
    assert plain.shape == (100, 5)
    np.testing.assert_array_equal(plain[:], values)
