"""Windows and batches from ``s3://`` (moto on 127.0.0.1) behave as from a local path."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import mimicdata as md
from tests.helpers import moto_s3
from tests.test_windows import coded_store

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict]:
    with moto_s3("train") as options:
        yield options


def test_s3_batches_match_local(s3: dict, tmp_path) -> None:
    import s3fs

    coded_store(str(tmp_path / "local.zarr"), [120, 7, 90, 200], chunk_rows=32)
    s3fs.S3FileSystem(**s3).put(str(tmp_path / "local.zarr"), "train/expert.zarr", recursive=True)
    url = "s3://train/expert.zarr"
    local = md.WindowDataset(tmp_path / "local.zarr", fields=["code", "x"], offsets=[-4, 0, 2])
    remote = md.WindowDataset(url, fields=["code", "x"], offsets=[-4, 0, 2], storage_options=s3)
    assert len(remote) == len(local) and remote.segments.tolist() == local.segments.tolist()
    for cache in ("none", "memory"):
        for a, b in zip(md.batches(local, 64, seed=5, cache="memory"),
                        md.batches(remote, 64, seed=5, cache=cache, prefetch=2), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(remote[3]["x"], local[3]["x"])
