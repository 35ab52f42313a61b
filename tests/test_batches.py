"""md.batches: every window once per epoch, same seed same batches, chunk-grouped reads, weights, outputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import mimicdata as md
from tests.test_windows import LENGTHS, check_window, coded_store

URL = "memory://batches"


@pytest.fixture(scope="module")
def ds() -> md.WindowDataset:
    coded_store(URL, [*LENGTHS, 200, 150], chunk_rows=64)
    return md.WindowDataset(URL, fields=["code", "x"], offsets=[-2, 0, 3])


def drawn(batches: md.Batches) -> list[tuple[int, int]]:
    out = []
    for batch in batches:
        for code, seg, frame in zip(batch["code"], batch["segment"], batch["frame"], strict=True):
            check_window(np.asarray(code), int(seg), int(frame), np.array([-2, 0, 3]))
            out.append((int(seg), int(frame)))
    return out


@pytest.mark.parametrize("cache", ["memory", "none", "auto"])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_every_window_once_per_epoch(ds: md.WindowDataset, cache: str, prefetch: int) -> None:
    everything = sorted(zip(*(a.tolist() for a in ds.windows()), strict=True))
    got = drawn(md.batches(ds, 32, shuffle=True, seed=1, cache=cache, prefetch=prefetch, epochs=2,
                           chunk_cache_bytes=16384))
    assert sorted(got[:len(ds)]) == everything and sorted(got[len(ds):]) == everything
    assert got[:len(ds)] != got[len(ds):], "each epoch gets its own permutation"
    assert drawn(md.batches(ds, 50, shuffle=False, cache=cache, prefetch=prefetch)) == everything


def test_shapes_sizes_and_drop_last(ds: md.WindowDataset) -> None:
    full = list(md.batches(ds, 64, seed=0))
    assert len(md.batches(ds, 64)) == len(full) == -(-len(ds) // 64)
    assert full[0]["code"].shape == (64, 3, 2) and full[0]["x"].shape == (64, 3, 3)
    assert full[0]["x"].dtype == np.float32 and full[0]["segment"].dtype == np.int64
    assert full[-1]["x"].shape[0] == len(ds) - 64 * (len(full) - 1)
    dropped = list(md.batches(ds, 64, seed=0, drop_last=True))
    assert len(dropped) == len(ds) // 64 and all(b["x"].shape[0] == 64 for b in dropped)


def test_same_seed_same_batches_whatever_the_cache(ds: md.WindowDataset) -> None:
    a = [b["frame"] for b in md.batches(ds, 40, seed=7, cache="memory", prefetch=0)]
    b = [b["frame"] for b in md.batches(ds, 40, seed=7, cache="none", prefetch=3)]
    c = [b["frame"] for b in md.batches(ds, 40, seed=8, cache="memory")]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_uncached_reads_are_grouped_by_chunk(tmp_path) -> None:
    coded_store(str(tmp_path / "s.zarr"), [500, 300, 700], chunk_rows=64)
    local = md.WindowDataset(tmp_path / "s.zarr", fields=["x"], window=4)
    reader = local.chunk_reader(max_bytes=1 << 30)
    batch = local.gather(np.arange(0, len(local), 7), reader)
    chunks = -(-1500 // 64)
    assert reader.chunks_read == chunks  # every chunk once, not once per item
    np.testing.assert_array_equal(batch["x"][:, 0, 0] % 1000, batch["frame"])
    local.gather(np.arange(0, len(local), 5), reader)
    assert reader.chunks_read == chunks  # a big enough cache is never read twice
    small = local.chunk_reader(max_bytes=64 * 12 * 4)  # room for 4 chunks of x
    small.chunks_read = 0
    for idx in np.array_split(np.arange(len(local)), 40):
        local.gather(idx, small)
    assert small.chunks_read <= chunks + 40  # in-order batches: each chunk about once
    assert len(small._cache) <= 4 + 1


def test_weights_per_segment_and_per_window_are_respected(ds: md.WindowDataset) -> None:
    from scipy import stats

    segments = ds.index.num_segments
    w = np.arange(1, segments + 1, dtype=np.float64)
    w[ds.index.counts == 0] = 0
    draws = np.concatenate([b["segment"] for b in md.batches(ds, 512, seed=3, weights=w, epochs=12)])
    observed = np.bincount(draws, minlength=segments)
    keep = w > 0
    assert observed[~keep].sum() == 0
    expected = w[keep] / w[keep].sum() * len(draws)
    assert stats.chisquare(observed[keep], expected).pvalue > 1e-3
    per_window = np.zeros(len(ds))
    per_window[:10] = 1.0
    per_window[-5:] = 3.0
    picks = np.concatenate([_window_ids(ds, b)
                            for b in md.batches(ds, 256, seed=4, weights=lambda: per_window, epochs=6)])
    counts = np.bincount(picks, minlength=len(ds))
    assert counts[10:-5].sum() == 0
    expected = per_window[per_window > 0] / per_window.sum() * len(picks)
    assert stats.chisquare(counts[per_window > 0], expected).pvalue > 1e-3


def _window_ids(ds: md.WindowDataset, batch: dict) -> np.ndarray:
    return ds.index.first[batch["segment"]] + batch["frame"] + ds.index.lo


def test_adaptive_sampler_probabilities_plug_in(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from mimicdata_trainers.adaptive import AdaptiveMotionSampler

    coded_store(str(tmp_path / "a.zarr"), [120, 80])
    local = md.WindowDataset(tmp_path / "a.zarr", fields=["x"], window=1)
    sampler = AdaptiveMotionSampler.from_store(tmp_path / "a.zarr", seed=0)
    sampler.update(torch.tensor([0, 0, 1]), torch.tensor([5, 6, 70]), torch.tensor([True, True, True]))
    seg, frame = local.windows()
    bins = sampler.bins_of(torch.as_tensor(seg), torch.as_tensor(frame))
    lengths = torch.bincount(bins, minlength=sampler.num_bins)
    draws = np.concatenate([sampler.bins_of(torch.as_tensor(b["segment"]), torch.as_tensor(b["frame"])).numpy()
                            for b in md.batches(local, 500, seed=0, epochs=25,
                                                weights=lambda: (sampler.probabilities()[bins] / lengths[bins]))])
    from scipy import stats

    expected = sampler.probabilities().numpy() * len(draws)
    assert stats.chisquare(np.bincount(draws, minlength=sampler.num_bins), expected).pvalue > 1e-3


def test_outputs_torch_and_jax(ds: md.WindowDataset) -> None:
    torch = pytest.importorskip("torch")
    batch = next(iter(md.batches(ds, 16, seed=0, to="torch")))
    assert isinstance(batch["x"], torch.Tensor) and batch["x"].shape == (16, 3, 3)
    assert batch["segment"].dtype == torch.int64
    cpu = next(iter(md.batches(ds, 16, seed=0, to="torch", device="cpu")))
    assert cpu["x"].device.type == "cpu" and torch.equal(cpu["x"], batch["x"])
    jax = pytest.importorskip("jax")
    jbatch = next(iter(md.batches(ds, 16, seed=0, to="jax")))
    assert isinstance(jbatch["x"], jax.Array)
    np.testing.assert_array_equal(np.asarray(jbatch["x"]), batch["x"].numpy())


def test_errors_reach_the_caller_and_an_early_break_stops_the_thread(ds: md.WindowDataset) -> None:
    with pytest.raises(md.ValidationError, match="batch_size"):
        md.batches(ds, 0)
    with pytest.raises(md.ValidationError, match="cache must be"):
        md.batches(ds, 8, cache="disk")
    with pytest.raises(md.ValidationError, match="to must be"):
        md.batches(ds, 8, to="tf")
    with pytest.raises(md.ValidationError, match="weights"):
        md.batches(ds, 8, weights=[1.0, 2.0])
    with pytest.raises(md.ValidationError, match="drop_last"):
        md.batches(ds, len(ds) + 1, drop_last=True)
    bad = md.batches(ds, 8, weights=lambda: np.ones(len(ds)), epochs=2)
    bad.weights = lambda: [np.nan] * len(ds)
    with pytest.raises(md.ValidationError, match="finite"):
        list(bad)  # raised in the prefetch thread, re-raised here
    before = threading.active_count()
    for i, _ in enumerate(md.batches(ds, 8, seed=0, prefetch=2, epochs=None)):
        if i == 3:
            break
    assert threading.active_count() == before
