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
