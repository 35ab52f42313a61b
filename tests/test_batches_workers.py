"""A torch DataLoader with worker processes reads a WindowDataset (zarr's IO thread does not survive fork)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import mimicdata as md
from tests.test_windows import check_window, coded_store

torch = pytest.importorskip("torch")


def test_pickles_as_url_and_index_and_reopens(tmp_path) -> None:
    coded_store(str(tmp_path / "p.zarr"), [40, 30])
    ds = md.WindowDataset(tmp_path / "p.zarr", fields=["code"], window=3)
    ds.load()  # loaded data and open handles stay behind
    blob = pickle.dumps(ds)
    assert len(blob) < 4096
    again = pickle.loads(blob)
    assert len(again) == len(ds) and again.fields == ["code"]
    np.testing.assert_array_equal(again[10]["code"], ds[10]["code"])


def test_dataloader_with_two_forked_workers(tmp_path) -> None:
    coded_store(str(tmp_path / "w.zarr"), [300, 17, 250], chunk_rows=64)
    ds = md.WindowDataset(tmp_path / "w.zarr", fields=["code", "x"], offsets=[-3, -1, 0])
    ds.gather(np.arange(len(ds)))  # the parent has used zarr: its event-loop thread is running before the fork
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2,
                                         multiprocessing_context="fork", timeout=120,
                                         generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in loader:
        assert batch["code"].shape[1:] == (3, 2) and batch["x"].dtype == torch.float32
        for code, seg, frame in zip(batch["code"].numpy(), batch["segment"].tolist(), batch["frame"].tolist(),
                                    strict=True):
            check_window(code, seg, frame, np.array([-3, -1, 0]))
            seen.append((seg, frame))
    assert sorted(seen) == sorted(zip(*(a.tolist() for a in ds.windows()), strict=True))
