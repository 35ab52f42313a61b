"""Per-feature statistics (min, max, mean, std, count) that merge exactly, episode by episode.

Vectors (state, action) keep a count, mean and sum of squared deviations per component; two
summaries merge with Chan et al.'s parallel formula, so dataset statistics are updated from each
new episode's summary without re-reading stored frames. uint8 images keep a 256-bin histogram per
channel instead: it gives the exact min, max, mean, std *and* quantiles, and merging is a sum.

Large arrays are processed in slices of a few frames: a background saver computing statistics
must not hold the GIL for long stretches while the control loop runs in the main thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

STAT_KEYS = ("min", "max", "mean", "std", "count")
_SLICE_BYTES = 1 << 20  # about 1 MiB of input per numpy call (a few ms at most)


@dataclass
class VectorStats:
    """Summary of rows of a vector feature, per component."""

    count: int
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from the mean
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> VectorStats:
        """Statistics of ``values`` with shape ``(rows, *shape)`` over the rows."""
        arr = np.asarray(values)
        if arr.ndim == 1:
            arr = arr[:, None]
        if len(arr) == 0:
            raise ValueError("statistics of zero rows are undefined")
        step = max(1, _SLICE_BYTES // max(1, arr[0].nbytes))
        out: VectorStats | None = None
        for begin in range(0, len(arr), step):
            part = arr[begin:begin + step].astype(np.float64)
            mean = part.mean(axis=0)
            piece = cls(len(part), mean, ((part - mean) ** 2).sum(axis=0), part.min(axis=0), part.max(axis=0))
            out = piece if out is None else out.merge(piece)
        assert out is not None
        return out

    def merge(self, other: VectorStats) -> VectorStats:
        """Statistics of the union of both row sets (Chan, Golub & LeVeque)."""
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return VectorStats(n, mean, m2, np.minimum(self.min, other.min), np.maximum(self.max, other.max))

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0, as numpy and LeRobot)."""
        return np.sqrt(np.maximum(self.m2 / self.count, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min.tolist(), "max": self.max.tolist(), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "count": int(self.count)}

    @classmethod
    def from_summary(cls, count: int, mean: np.ndarray, std: np.ndarray, vmin: np.ndarray,
                     vmax: np.ndarray) -> VectorStats:
        """Rebuild a mergeable summary from stored min/max/mean/std/count."""
        mean = np.asarray(mean, np.float64)
        return cls(int(count), mean, np.asarray(std, np.float64) ** 2 * int(count),
                   np.asarray(vmin, np.float64), np.asarray(vmax, np.float64))


@dataclass
class ImageStats:
    """Per-channel 256-bin histograms of uint8 images (frames, H, W, C)."""

    hist: np.ndarray  # (C, 256) int64

    @classmethod
    def of(cls, images: np.ndarray) -> ImageStats:
        arr = np.asarray(images)
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise ValueError(f"image statistics need uint8 (frames, H, W, C), got {arr.dtype} {arr.shape}")
        channels = arr.shape[-1]
        flat = np.zeros(channels * 256, np.int64)
        # one bincount over all channels: value + 256 * channel (faster than a strided pass per channel)
        offsets = (np.arange(channels, dtype=np.uint16) * 256)
        rows = max(1, _SLICE_BYTES // max(1, channels * arr.shape[-2]))
        pixels = arr.reshape(-1, arr.shape[-2], channels)
        for begin in range(0, len(pixels), rows):
            part = pixels[begin:begin + rows]
            flat += np.bincount((part + offsets).ravel(), minlength=channels * 256)
        return cls(flat.reshape(channels, 256))

    def merge(self, other: ImageStats) -> ImageStats:
        return ImageStats(self.hist + other.hist)

    @property
    def pixels(self) -> int:
        """Pixels per channel."""
        return int(self.hist[0].sum())

    def vector(self) -> VectorStats:
        """The same numbers as a per-channel :class:`VectorStats` (pixel values 0..255)."""
        levels = np.arange(256, dtype=np.float64)
        n = self.hist.sum(axis=1).astype(np.float64)
        mean = (self.hist * levels).sum(axis=1) / n
        m2 = (self.hist * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1)
        nonzero = self.hist > 0
        vmin = np.argmax(nonzero, axis=1).astype(np.float64)
        vmax = (255 - np.argmax(nonzero[:, ::-1], axis=1)).astype(np.float64)
        return VectorStats(int(n[0]), mean, m2, vmin, vmax)

    def quantiles(self, qs: Iterable[float]) -> np.ndarray:
        """Exact per-channel quantiles with numpy's default (linear) interpolation: ``(len(qs), C)``."""
        cum = np.cumsum(self.hist, axis=1)
        n = cum[:, -1]
        rows = []
        for q in qs:
            pos = q * (n - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, n - 1)
            # value of the k-th smallest pixel = first level whose cumulative count exceeds k
            v_lo = np.array([np.searchsorted(cum[c], lo[c], side="right") for c in range(len(n))], np.float64)
            v_hi = np.array([np.searchsorted(cum[c], hi[c], side="right") for c in range(len(n))], np.float64)
            rows.append(v_lo + (pos - lo) * (v_hi - v_lo))
        return np.asarray(rows)


Summary = VectorStats | ImageStats


def summarize(values: np.ndarray, *, image: bool = False) -> Summary:
    """Statistics of one episode's values of one feature."""
    return ImageStats.of(values) if image else VectorStats.of(values)


def merge_all(summaries: Iterable[Summary]) -> Summary | None:
    """Merge a sequence of summaries of the same feature (None for an empty sequence)."""
    out: Summary | None = None
    for s in summaries:
        out = s if out is None else out.merge(s)  # type: ignore[arg-type]
    return out


def as_dict(summary: Summary) -> dict[str, Any]:
    """min/max/mean/std/count as JSON-ready lists (images: per channel, pixel values 0..255)."""
    vec = summary.vector() if isinstance(summary, ImageStats) else summary
    return vec.to_dict()


def dataset_stats(per_feature: Mapping[str, Summary]) -> dict[str, dict[str, Any]]:
    """JSON-ready statistics of every feature."""
    return {name: as_dict(s) for name, s in per_feature.items()}
