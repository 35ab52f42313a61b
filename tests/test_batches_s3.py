"""Windows and batches from ``s3://`` (moto on 127.0.0.1) behave as from a local path."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import mimicdata as md
from tests.test_windows import coded_frames, coded_store

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="train")
    yield options
    server.stop()


def test_s3_batches_match_local(s3: dict, tmp_path) -> None:
    lengths = [120, 7, 90, 200]
    coded_store(str(tmp_path / "local.zarr"), lengths, chunk_rows=32)
    url = "s3://train/expert.zarr"
    store = md.create(url, storage_options=s3)
    store.add_stream("frames", {"code": {"dtype": "int64", "shape": [2]}, "x": {"dtype": "float32", "shape": [3]},
                                "label": {"dtype": "string", "shape": []}}, fps=50, chunk_rows=32)
    store.add_stream("episodes", {"episode_index": {"dtype": "int64", "shape": []},
                                  "start": {"dtype": "int64", "shape": []}, "end": {"dtype": "int64", "shape": []}},
                     segments_of="frames")
    for seg, n in enumerate(lengths):
        store.append_segment("episodes", coded_frames(seg, n))
    store.close()
    local = md.WindowDataset(tmp_path / "local.zarr", fields=["code", "x"], offsets=[-4, 0, 2])
    remote = md.WindowDataset(url, fields=["code", "x"], offsets=[-4, 0, 2], storage_options=s3)
    assert len(remote) == len(local) and remote.segments.tolist() == local.segments.tolist()
    for cache in ("none", "memory"):
        for a, b in zip(md.batches(local, 64, seed=5, cache="memory"),
                        md.batches(remote, 64, seed=5, cache=cache, prefetch=2), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(remote[3]["x"], local[3]["x"])
