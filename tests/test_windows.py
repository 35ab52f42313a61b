"""WindowDataset: windows inside one segment, item shapes, committed rows only, clear errors on bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mimicdata as md
from mimicdata.storage import forget_memory_store
from mimicdata.windows import WindowIndex, epoch_order, resolve_offsets

LENGTHS = [37, 5, 64, 1, 20, 9]


def coded_store(url: str, lengths: list[int] = LENGTHS, *, chunk_rows: int = 16, close: bool = True) -> md.Store:
    """Segments whose rows say where they are: ``code = (segment, frame)``, ``x = 1000 * segment + frame``."""
    forget_memory_store(url) if url.startswith("memory://") else None
    store = md.create(url, overwrite=True)
    store.add_stream("frames", {"code": {"dtype": "int64", "shape": [2]}, "x": {"dtype": "float32", "shape": [3]},
                                "label": {"dtype": "string", "shape": []}}, fps=50, chunk_rows=chunk_rows)
    store.add_stream("episodes", {"episode_index": {"dtype": "int64", "shape": []},
                                  "start": {"dtype": "int64", "shape": []}, "end": {"dtype": "int64", "shape": []}},
                     segments_of="frames")
    for seg, n in enumerate(lengths):
        store.append_segment("episodes", coded_frames(seg, n))
    if close:
        store.close()
    return store


def coded_frames(seg: int, n: int) -> dict[str, np.ndarray]:
    frame = np.arange(n)
    code = np.stack([np.full(n, seg), frame], axis=1).astype(np.int64)
    x = np.repeat((1000.0 * seg + frame)[:, None], 3, axis=1).astype(np.float32)
    return {"code": code, "x": x, "label": np.array(["a"] * n)}


def check_window(item_code: np.ndarray, segment: int, frame: int, offsets: np.ndarray) -> None:
    assert (item_code[:, 0] == segment).all(), "window crosses a segment boundary"
    np.testing.assert_array_equal(item_code[:, 1], frame + offsets)


@pytest.mark.parametrize("spec", [{"window": 10}, {"window": 1}, {"offsets": [-8, -4, -2, -1, 0]},
                                  {"offsets": [1, 2, 4, 8, 16]}, {"offsets": [3, -3, 0, 0]}])
def test_every_window_lies_in_one_segment_and_all_are_enumerated(spec: dict) -> None:
    coded_store("memory://win-all")
    ds = md.WindowDataset("memory://win-all", fields=["code", "x"], **spec)
    offsets = resolve_offsets(spec.get("window"), spec.get("offsets"))
    lo, hi = min(int(offsets.min()), 0), max(int(offsets.max()), 0)  # the anchor lies in the segment too
    expected = {(s, f - lo) for s, n in enumerate(LENGTHS) for f in range(max(0, n - (hi - lo)))}
    assert len(ds) == len(expected)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        assert item["code"].shape == (len(offsets), 2) and item["x"].shape == (len(offsets), 3)
        check_window(item["code"], item["segment"], item["frame"], offsets)
        np.testing.assert_array_equal(item["x"][:, 0], 1000 * item["segment"] + item["frame"] + offsets)
        seen.add((item["segment"], item["frame"]))
    assert seen == expected
    ds.close()


def test_item_types_and_stream_picked_from_segment_table() -> None:
    coded_store("memory://win-types")
    ds = md.WindowDataset("memory://win-types", fields=["x"], window=4)
    assert ds.stream == "frames"
    item = ds[-1]
    assert set(item) == {"x", "segment", "frame"}
    assert isinstance(item["segment"], int) and isinstance(item["frame"], int)
    assert item["x"].dtype == np.float32
    assert (item["segment"], item["frame"]) == (len(LENGTHS) - 1, LENGTHS[-1] - 4)
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert md.WindowDataset("memory://win-types", window=2).fields == ["code", "x"]  # strings left out


def test_plain_stream_is_one_segment(tmp_path) -> None:
    store = md.create(tmp_path / "log.zarr")
    store.add_stream("imu", {"acc": {"dtype": "float32", "shape": [3]}}, fps=200, chunk_rows=64)
    store["imu"].append({"acc": np.arange(300 * 3, dtype=np.float32).reshape(300, 3)})
    store.close()
    ds = md.WindowDataset(tmp_path / "log.zarr", fields=["acc"], offsets=[-2, -1, 0])
    assert len(ds) == 298 and ds.segments.tolist() == [[0, 300]]
    item = ds[0]
    assert item["frame"] == 2 and item["acc"][:, 0].tolist() == [0.0, 3.0, 6.0]


def test_only_committed_rows_are_read_while_a_writer_appends(tmp_path) -> None:
    url = tmp_path / "live.zarr"
    writer = coded_store(str(url), [30, 30], close=False)
    # frames of an unfinished segment: committed in the frames stream, but no segment row yet
    writer["frames"].append(coded_frames(2, 25))
    ds = md.WindowDataset(url, fields=["code"], window=5)
    assert ds.rows == 60 and len(ds) == 2 * 26
    batch = ds.gather(np.arange(len(ds)))
    assert batch["code"][:, :, 0].max() == 1
    writer.append_segment("episodes")  # closes segment 2; the open dataset keeps its snapshot
    assert len(ds) == 52
    assert len(md.WindowDataset(url, fields=["code"], window=5)) == 3 * 26 - 5
    writer.close()


def test_bad_input_gets_one_clear_error(tmp_path) -> None:
    coded_store("memory://win-bad")
    with pytest.raises(md.ValidationError, match=r"longer than every segment.*64 frames"):
        md.WindowDataset("memory://win-bad", fields=["x"], window=65)
    with pytest.raises(md.ValidationError, match=r"unknown field\(s\) \['qpos'\].*frames: \['code', 'x', 'label'\]"):
        md.WindowDataset("memory://win-bad", fields=["qpos"])
    with pytest.raises(md.ValidationError, match="offsets must be integers"):
        md.WindowDataset("memory://win-bad", fields=["x"], offsets=[0, 1.5])
    with pytest.raises(md.ValidationError, match="offsets must be integers"):
        md.WindowDataset("memory://win-bad", fields=["x"], offsets=["a"])
    with pytest.raises(md.ValidationError, match="window must be a positive integer"):
        md.WindowDataset("memory://win-bad", fields=["x"], window=0)
    with pytest.raises(md.ValidationError, match="either window= or offsets="):
        md.WindowDataset("memory://win-bad", fields=["x"], window=2, offsets=[0, 1])
    with pytest.raises(md.ValidationError, match="string fields cannot be batched"):
        md.WindowDataset("memory://win-bad", fields=["label"])
    with pytest.raises(md.ValidationError, match="no stream 'nope'"):
        md.WindowDataset("memory://win-bad", stream="nope")
    empty = md.create(tmp_path / "empty.zarr", "expert_trajectory", robot="g1_29dof", fps=50)
    empty.close()
    with pytest.raises(md.ValidationError, match="no committed rows"):
        md.WindowDataset(tmp_path / "empty.zarr", fields=["qpos"])
    with pytest.raises(md.StoreNotFoundError):
        md.WindowDataset(tmp_path / "missing.zarr")


def test_index_maths_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        lengths = rng.integers(0, 12, size=rng.integers(1, 6))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        segments = np.stack([starts, starts + lengths], axis=1)
        offsets = rng.integers(-4, 5, size=rng.integers(1, 4))
        index = WindowIndex(segments, offsets)
        brute = [(s, a - lo) for s, (lo, hi) in enumerate(segments.tolist()) for a in range(lo, hi)
                 if all(lo <= a + o < hi for o in offsets.tolist())]
        seg, frame, rows = index.locate(np.arange(len(index)))
        assert list(zip(seg.tolist(), frame.tolist(), strict=True)) == brute
        np.testing.assert_array_equal(rows, segments[seg, 0] + frame)
        assert list(zip(*(a.tolist() for a in index.windows()), strict=True)) == brute


def test_epoch_order_is_a_permutation_and_weights_are_normalised() -> None:
    rng = np.random.default_rng(0)
    order = epoch_order(1000, shuffle=True, rng=rng)
    assert sorted(order.tolist()) == list(range(1000))
    index = WindowIndex(np.array([[0, 10], [10, 12], [12, 30]]), np.arange(3))
    p = index.window_probabilities([1.0, 0.0, 3.0])
    assert p.sum() == pytest.approx(1.0)
    per_segment = [p[index.first[s]:index.first[s + 1]].sum() for s in range(3)]
    np.testing.assert_allclose(per_segment, [0.25, 0.0, 0.75])
    for bad in ([-1.0, 1, 1], [np.nan, 1, 1], [0.0, 0, 0], [1.0, 2.0]):
        with pytest.raises(md.ValidationError):
            index.window_probabilities(bad)
    assert list(itertools.islice(epoch_order(5, shuffle=False, rng=rng), 5)) == [0, 1, 2, 3, 4]
