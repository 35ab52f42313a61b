"""Old stores: a committed v1.0 fixture is read through a migration view and rewritten on append."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.report import validate_store
from tests.helpers import obs_batch

FIXTURE = Path(__file__).parent / "fixtures" / "deploy_v1_0.zarr"
START_NS = 1_763_700_000 * 10**9


def test_fixture_really_is_v1_0() -> None:
    meta = json.loads((FIXTURE / "observations" / "zarr.json").read_text())["attributes"]["mimicdata"]
    assert meta["version"] == "1.0" and "_timestamp" in meta["fields_present"]
    assert (FIXTURE / "observations" / "_timestamp" / "zarr.json").exists()


def test_read_v1_0_through_migration_view() -> None:
    before = sorted(p.name for p in (FIXTURE / "observations").iterdir())
    store = md.open(FIXTURE)
    obs = store["observations"]
    assert obs.schema_version == "1.1" and "timestamp" in obs.fields and "_timestamp" not in obs.fields
    stamps = obs.timestamps()
    assert stamps is not None and stamps.dtype == np.int64
    np.testing.assert_array_equal(stamps, START_NS + np.arange(60) * 20_000_000)
    assert any("migration v1.0 -> v1.1" in w for w in store.warnings)
    assert str(obs.to_arrow(["timestamp"]).schema.field("timestamp").type) == "timestamp[ns, tz=UTC]"
    assert validate_store(str(FIXTURE)) == []
    assert sorted(p.name for p in (FIXTURE / "observations").iterdir()) == before  # reading changes nothing


def test_open_for_append_migrates_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "old.zarr"
    shutil.copytree(FIXTURE, path)
    old = md.open(path)["observations"]["joint_pos"]
    store = md.open(path, "a")
    obs = store["observations"]
    assert obs.schema_version == "1.1"
    obs.append(obs_batch(5, start=60))
    store.close()
    meta = json.loads((path / "observations" / "zarr.json").read_text())["attributes"]["mimicdata"]
    assert meta["version"] == "1.1" and meta["migrated_from"] == "1.0"
    assert not (path / "observations" / "_timestamp").exists()
    again = md.open(path)
    np.testing.assert_array_equal(again["observations"]["joint_pos"][:60], old)
    assert again["observations"].num_rows == 65 and again.warnings == []
    root = json.loads((path / "zarr.json").read_text())["attributes"]["mimicdata"]
    assert {s["version"] for s in root["schemas"]} == {"1.1"}


def test_migration_chain_is_declared_in_the_newer_schema() -> None:
    doc = md.load_schema("observations", "1.1")
    ops = doc.migrate_from["1.0"]
    assert {"op": "rename", "from": "_timestamp", "to": "timestamp"} in ops
    with pytest.raises(md.SchemaVersionError, match="newer"):
        md.load_schema("observations", "9.0")
