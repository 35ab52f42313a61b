"""Time-range pushdown: predicates on sorted fields read only the chunks they need, with the same rows."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from zarr.storage import LocalStore

import mimicdata as md
from mimicdata.pushdown import Interval, bounds, row_range, still_sorted
from mimicdata.query import rows_matching, sql

T0 = 1_790_000_000_000_000_000
CHUNK = 64


def _log(path: Path, rows: int = 2000, *, step_back_at: int | None = None) -> Path:
    """A 1 kHz log with sorted timestamp/counter_step, a repeated segment-like index and noisy values."""
    rng = np.random.default_rng(0)
    store = md.create(path, None)
    stream = store.add_stream("log", {
        "counter_step": {"dtype": "int64", "shape": [], "unit": "1"},
        "phase": {"dtype": "int32", "shape": [], "unit": "1"},
        "noise": {"dtype": "float32", "shape": [], "unit": "1"},
        "q": {"dtype": "float32", "shape": [29], "unit": "rad"},
    }, time_field="timestamp", fps=1000, chunk_rows=CHUNK)
    steps = np.arange(rows, dtype=np.int64)
    if step_back_at is not None:
        steps[step_back_at:] -= 5  # a counter reset: no longer sorted from there on
    done = 0
    for n in (1, 37, 500, 3, 900, rows):  # batches of many sizes, across chunk boundaries
        n = min(n, rows - done)
        if n <= 0:
            break
        sl = slice(done, done + n)
        stream.append({"counter_step": steps[sl], "phase": (np.arange(done, done + n) // 300).astype(np.int32),
                       "noise": rng.normal(size=n).astype(np.float32),
                       "q": rng.normal(size=(n, 29)).astype(np.float32),
                       "timestamp": T0 + np.arange(done, done + n, dtype=np.int64) * 1_000_000})
        done += n
    store.close()
    return path


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _log(tmp_path_factory.mktemp("pushdown") / "s.zarr")


@pytest.fixture
def chunk_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts chunk objects read from local stores, per array."""
    counts: Counter[str] = Counter()
    original = LocalStore.get_sync

    def counting(self: LocalStore, key: str, **kwargs: object) -> object:
        if "/c/" in key:
            counts[key.split("/c/")[0]] += 1
        return original(self, key, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalStore, "get_sync", counting)
    yield counts


def _when(ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 / 1e9, dt.UTC) + dt.timedelta(milliseconds=ms)


PREDICATES = [
    pl.col("counter_step").is_between(700, 710),
    (pl.col("counter_step") >= 700) & (pl.col("counter_step") < 1300) & (pl.col("noise") > 0),
    (pl.col("timestamp") >= _when(1000)) & (pl.col("timestamp") < _when(1010)),
    pl.col("counter_step") == 1999,
    pl.col("counter_step") > 5000,
    (pl.col("phase") == 3) & (pl.col("counter_step") < 1000),
    (pl.col("counter_step") < 10) | (pl.col("counter_step") > 1990),  # `or`: no pushdown, same rows
    pl.col("noise") > 1.5,  # not a sorted field
]


@pytest.mark.parametrize("predicate", PREDICATES, ids=[str(i) for i in range(len(PREDICATES))])
def test_pushdown_gives_the_rows_of_a_full_filter(log_path: Path, predicate: pl.Expr) -> None:
    path = log_path
    full = pl.from_arrow(md.open(path)["log"].to_arrow())
    assert isinstance(full, pl.DataFrame)
    got = md.scan(path, "log").filter(predicate).collect()
    assert got.equals(full.filter(predicate))


def test_a_window_reads_only_the_chunks_it_needs(log_path: Path, chunk_reads: Counter[str]) -> None:
    path = log_path
    store = md.open(path)
    assert set(store["log"].meta["sorted_fields"]) == {"counter_step", "phase", "timestamp"}
    window = pl.col("counter_step").is_between(700, 710)
    got = md.scan(path, "log").filter(window).select("q", "counter_step").collect()
    assert got["counter_step"].to_list() == list(range(700, 711))
    chunks = -(-2000 // CHUNK)
    assert chunk_reads["log/q"] == 2  # rows 700-710 lie in chunks 10 and 11 only
    assert chunk_reads["log/counter_step"] <= 2 * (int(np.log2(chunks)) + 2)  # the binary search
    chunk_reads.clear()
    md.scan(path, "log").select("q", "counter_step").collect()
    assert chunk_reads["log/q"] == chunks  # without a predicate every chunk is read


def test_sql_window_is_pushed_down(log_path: Path, chunk_reads: Counter[str]) -> None:
    path = log_path
    out = sql(path, "select counter_step, q from log where counter_step between 1280 and 1290 and noise < 9")
    assert out["counter_step"].to_list() == list(range(1280, 1291))
    assert chunk_reads["log/q"] == 1  # rows 1280-1290 lie in chunk 20 only


def test_a_field_that_steps_back_is_no_longer_sorted(tmp_path: Path) -> None:
    path = _log(tmp_path / "s.zarr", step_back_at=1000)
    stream = md.open(path)["log"]
    assert "counter_step" not in stream.meta["sorted_fields"] and "timestamp" in stream.meta["sorted_fields"]
    window = pl.col("counter_step").is_between(996, 998)
    assert rows_matching(stream, window) == (0, 2000)  # no pushdown
    got = md.scan(path, "log").filter(window).collect()
    assert sorted(got["counter_step"].to_list()) == [996, 996, 997, 997, 998, 998]


def test_row_index_predicate_is_a_row_range(log_path: Path) -> None:
    path = log_path
    stream = md.open(path)["log"]
    assert rows_matching(stream, (pl.col("row") >= 10) & (pl.col("row") < 20), row_index=True) == (10, 20)
    got = md.scan(path, "log", row_index=True).filter(pl.col("row").is_between(5, 7)).collect()
    assert got["row"].to_list() == [5, 6, 7]


def test_bounds_of_serialised_predicates() -> None:
    def of(expr: pl.Expr) -> dict[str, Interval]:
        return bounds(expr.meta.serialize(format="json"))

    assert of((pl.col("a") > 3) & (pl.col("a") <= 9)) == {"a": Interval(3, 9, False, True)}
    assert of(pl.col("a").is_between(1, 2, closed="left")) == {"a": Interval(1, 2, True, False)}
    assert of(pl.lit(5) < pl.col("a")) == {"a": Interval(low=5, low_closed=False)}
    assert of((pl.col("a") > 1) | (pl.col("a") < 0)) == {}
    stamp = of(pl.col("t") >= dt.datetime(2026, 1, 1, tzinfo=dt.UTC))["t"]
    assert stamp.low == 1_767_225_600_000_000_000


def test_row_range_with_repeated_values() -> None:
    values = np.repeat(np.arange(10), 7)  # a segment index: each value on 7 rows

    def chunk(i: int) -> np.ndarray:
        return values[i * 8:(i + 1) * 8]

    assert row_range(Interval(3, 3), len(values), 8, chunk) == (21, 28)
    assert row_range(Interval(3, 5, False, False), len(values), 8, chunk) == (28, 35)
    assert row_range(Interval(low=20), len(values), 8, chunk) == (70, 70)
    assert row_range(Interval(high=-1), len(values), 8, chunk) == (0, 0)


def test_still_sorted_checks_the_join_and_nan() -> None:
    batch = {"a": np.array([3, 4]), "b": np.array([1.0, np.nan]), "c": np.array([5, 6]), "v": np.zeros((2, 3))}
    assert still_sorted(["a", "b", "c", "v"], batch, {"a": 3, "c": 7}) == ["a"]
