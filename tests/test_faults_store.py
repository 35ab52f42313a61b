"""Real faults for the store: a full disk and a read-only file system (a small tmpfs, see conftest.py).

Each case must end in one project error (never a bare OSError) and leave what was committed readable.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

import mimicdata as md
from mimicdata.report import validate_store
from tests.conftest import SmallDisk
from tests.helpers import act_batch, obs_batch


def _log(path: object, rows: int) -> md.Store:
    store = md.create(path, ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 160})
    store["observations"].append(obs_batch(rows))
    store["actions"].append(act_batch(rows))
    return store


def test_create_on_a_full_disk_fails_clearly_and_leaves_nothing(small_disk: SmallDisk) -> None:
    (small_disk.path / "given").mkdir()  # an empty folder the caller made for the store
    small_disk.fill()
    with pytest.raises(md.StorageFullError, match="No space left"):
        _log(small_disk.path / "new.zarr", rows=10)
    assert not (small_disk.path / "new.zarr").exists()  # no half-made store to trip the next create
    with pytest.raises(md.StorageFullError, match="No space left"):
        _log(small_disk.path / "given", rows=10)
    assert list((small_disk.path / "given").iterdir()) == []  # emptied, not removed
    small_disk.free()
    _log(small_disk.path / "new.zarr", rows=10).close()  # the same path works once there is room
    assert md.open(small_disk.path / "new.zarr")["observations"].num_rows == 10


def test_append_that_fills_the_disk_keeps_the_committed_rows(small_disk: SmallDisk) -> None:
    path = small_disk.path / "full.zarr"
    store = _log(path, rows=100)
    small_disk.fill()
    with pytest.raises(md.StorageFullError, match=r"observations.*committed row 100.*No space left") as info:
        store["observations"].append(obs_batch(2000, start=100))
    assert isinstance(info.value, OSError) and info.value.errno == 28
    assert store["observations"].num_rows == 100
    reader = md.open(path)
    assert reader["observations"].num_rows == 100
    np.testing.assert_array_equal(reader["observations"]["counter_step"], np.arange(100))
    assert validate_store(str(path)) == []
    # with room again the same open store goes on from where it stood
    small_disk.free()
    store["observations"].append(obs_batch(50, start=100))
    store.close()
    assert md.open(path)["observations"].num_rows == 150
    np.testing.assert_array_equal(md.open(path)["observations"]["counter_step"], np.arange(150))
    assert validate_store(str(path)) == []


def test_opening_for_append_on_a_full_disk(small_disk: SmallDisk) -> None:
    path = small_disk.path / "s.zarr"
    _log(path, rows=20).close()
    small_disk.fill()
    with pytest.raises(md.StorageFullError, match="writer lock"):
        md.open(path, "a")
    assert not (path / "mimicdata.lock").exists()
    assert md.open(path)["actions"].num_rows == 20


def test_read_only_file_system(small_disk: SmallDisk) -> None:
    path = small_disk.path / "s.zarr"
    _log(path, rows=5).close()
    small_disk.read_only()
    with pytest.raises(md.ReadOnlyError, match="Read-only file system"):
        md.create(small_disk.path / "new.zarr", "observations", robot="g1_29dof")
    with pytest.raises(md.ReadOnlyError, match="Read-only file system"):
        md.open(path, "a")
    store = md.open(path)
    assert store["observations"].num_rows == 5
    assert validate_store(str(path)) == []


def test_remounted_read_only_under_an_open_writer(small_disk: SmallDisk) -> None:
    path = small_disk.path / "w.zarr"
    store = _log(path, rows=30)
    small_disk.read_only()
    with pytest.raises(md.ReadOnlyError, match=r"actions.*committed row 30"):
        store["actions"].append(act_batch(10, start=30))
    try:  # closing trims arrays to the committed rows where a write got half-way: one clear error if so
        store.close()
    except md.ReadOnlyError as exc:
        assert "Read-only file system" in str(exc)
    assert store.closed  # either way closed; the lock it cannot remove names a finished process
    assert md.open(path)["actions"].num_rows == 30


def test_stale_lock_on_a_read_only_file_system(small_disk: SmallDisk) -> None:
    """A writer died (its lock stays), then the disk came back read-only: opening to append says so."""
    path = small_disk.path / "s.zarr"
    _log(path, rows=5).close()
    (path / "mimicdata.lock").write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname()}))
    small_disk.read_only()
    with pytest.raises(md.ReadOnlyError, match="stale writer lock"):
        md.open(path, "a")
    assert md.open(path)["observations"].num_rows == 5
