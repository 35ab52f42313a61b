"""Store locations: memory:// stores are freed when their writer closes."""

from __future__ import annotations

import numpy as np
import pytest

import mimicdata as md
from mimicdata import storage


def test_memory_store_is_freed_when_its_writer_closes() -> None:
    url = "memory://storage-freed"
    store = md.create(url, None, overwrite=True)
    store.add_stream("s", {"v": {"dtype": "float32", "shape": []}})
    store["s"].append({"v": np.arange(5, dtype=np.float32)})
    reader = md.open(url)  # opened while the writer holds it
    with pytest.raises(md.StoreLockedError):
        md.open(url, "a")
    store.close()
    assert url not in storage._MEMORY and url not in storage._MEMORY_LOCKS
    np.testing.assert_array_equal(reader["s"].read("v"), np.arange(5))  # open handles keep their data
    with pytest.raises(md.StoreNotFoundError):
        md.open(url)
    with pytest.raises(md.StoreNotFoundError):
        md.open(url, "a")
    assert url not in storage._MEMORY  # a failed open leaves nothing behind
    md.create(url, None).close()  # the name is free again
    assert url not in storage._MEMORY
