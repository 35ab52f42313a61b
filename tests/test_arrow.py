"""Arrow tables, lazy Polars scans and SQL over stores."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import mimicdata as md
from mimicdata.arrow import iter_batches
from mimicdata.query import sql
from tests.helpers import act_batch, episode_frames, obs_batch


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("arrow") / "log.zarr"
    store = md.create(path, ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 160})
    store["observations"].append(obs_batch(10_000))
    store["actions"].append(act_batch(10_000))
    store.close()
    return str(path)


def test_arrow_types_and_zero_copy_layout(log: str) -> None:
    obs = md.open(log)["observations"]
    table = obs.to_arrow()
    assert table.schema.field("joint_pos").type == pa.list_(pa.float32(), 29)
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("counter_step").type == pa.int64()
    assert table.schema.metadata[b"mimicdata.schema"] == b"observations"
    flat = table.column("joint_pos").combine_chunks().flatten().to_numpy()
    np.testing.assert_array_equal(flat.reshape(-1, 29), obs["joint_pos"])
    assert table.column("joint_pos").type.list_size == 29


def test_nested_and_string_fields() -> None:
    store = md.create("memory://arrow-ep", "episodes", robot="g1_29dof", dims={"state": 29, "action": 29},
                      overwrite=True)
    store.append_segment("episodes", frames=episode_frames(6, image=(4, 5), task="pour"), row={"task": "pour"})
    table = store["frames"].to_arrow()
    assert table.schema.field("image.front").type == pa.list_(pa.list_(pa.list_(pa.uint8(), 3), 5), 4)
    assert table.schema.field("task").type == pa.dictionary(pa.int32(), pa.string())
    assert table.column("task").to_pylist() == ["pour"] * 6
    store.close()


def test_scan_is_lazy_projects_and_streams_in_chunks(log: str) -> None:
    lf = md.scan(log, "observations")
    assert isinstance(lf, pl.LazyFrame)
    out = lf.filter(pl.col("counter_step") >= 9990).select("counter_step", "joint_pos").collect()
    assert out["counter_step"].to_list() == list(range(9990, 10_000))
    assert out.schema["joint_pos"] == pl.Array(pl.Float32, 29)
    assert md.scan(log, "observations").head(3).collect().height == 3
    batches = list(iter_batches(md.open(log)["observations"], ["counter_step"], batch_rows=4096))
    assert [b.num_rows for b in batches] == [4096, 4096, 1808]  # memory bounded by the batch size


def test_sql_joins_streams(log: str) -> None:
    frame = sql(log, "select count(*) as n, max(o.counter_step) as last from observations o "
                     "join actions a on o.counter_step = a.counter_step")
    assert frame["n"][0] == 10_000 and frame["last"][0] == 9999


def test_scan_needs_a_stream_name_when_ambiguous(log: str) -> None:
    with pytest.raises(ValueError, match="name one"):
        md.scan(log)
