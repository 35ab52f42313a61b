"""Object storage through zarr's fsspec support, against a moto S3 server started on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import mimicdata as md
from mimicdata.query import sql
from tests.helpers import moto_s3, obs_batch

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict]:
    with moto_s3("robot-logs") as options:
        yield options


def test_create_append_reopen_query_on_s3(s3: dict) -> None:
    url = "s3://robot-logs/g1/run1.zarr"
    store = md.create(url, "observations", robot="g1_29dof", fps=50, dims={"obs": 160}, storage_options=s3)
    store["observations"].append(obs_batch(100))
    with pytest.raises(md.StoreLockedError):
        md.open(url, "a", storage_options=s3)
    store.close()
    again = md.open(url, "a", storage_options=s3)
    again["observations"].append(obs_batch(50, start=100))
    again.close()
    reader = md.open(url, storage_options=s3)
    np.testing.assert_array_equal(reader["observations"]["counter_step"], np.arange(150))
    frame = sql(url, "select count(*) as n from observations", storage_options=s3)
    assert frame["n"][0] == 150
    with pytest.raises(md.StoreExistsError):
        md.create(url, "observations", robot="g1_29dof", storage_options=s3)
