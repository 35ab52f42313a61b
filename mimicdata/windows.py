"""Index maths of windowed training data: which windows exist, where they lie, in what order to draw them.

No IO here (see :mod:`mimicdata.dataset` and :mod:`mimicdata.batching`). A *window* is a set of frames
``anchor + offsets`` inside ONE segment (episode, clip, trajectory); ``window=N`` is ``offsets=range(N)``
(the anchor is the first frame), a history is ``offsets=[-4, -3, -2, -1, 0]`` (the anchor is the newest
frame). Windows are numbered segment by segment, anchors in time order, so window ``i`` maps to
``(segment, frame)`` by one binary search and never needs a per-window table.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from mimicdata.errors import ValidationError


def resolve_offsets(window: int | None, offsets: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """The frame offsets of a window relative to its anchor, as int64 (order kept, repeats allowed)."""
    if window is not None and offsets is not None:
        raise ValidationError("pass either window= or offsets=, not both")
    if offsets is None:
        window = 1 if window is None else window
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
            raise ValidationError(f"window must be a positive integer number of frames, got {window!r}")
        return np.arange(int(window), dtype=np.int64)
    values = list(np.asarray(offsets, dtype=object).reshape(-1)) if not isinstance(offsets, str) else [offsets]
    if not values:
        raise ValidationError("offsets must list at least one frame offset")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
    if bad:
        raise ValidationError(f"offsets must be integers (frames relative to the anchor), got {bad[0]!r} "
                              f"in {list(offsets)}")
    return np.asarray([int(v) for v in values], dtype=np.int64)


class WindowIndex:
    """The valid windows of a set of segments for one offset pattern.

    Args:
        segments: ``(S, 2)`` row ranges ``[start, end)`` of the segments, in store rows.
        offsets: frame offsets of every window relative to its anchor frame.
    """

    def __init__(self, segments: np.ndarray, offsets: np.ndarray) -> None:
        segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        self.segments = segments
        self.offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        # the anchor itself must lie in the segment too (its frame is reported), even if 0 is no offset
        self.lo, self.hi = min(int(self.offsets.min()), 0), max(int(self.offsets.max()), 0)
        self.span = self.hi - self.lo + 1  # frames from the first to the last of anchor and offsets
        lengths = segments[:, 1] - segments[:, 0]
        self.counts = np.maximum(lengths - (self.span - 1), 0)  # valid anchors per segment
        self.first = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)  # first window of each
        self.first_anchor = segments[:, 0] - self.lo  # store row of the first valid anchor
        self.size = int(self.first[-1])

    def __len__(self) -> int:
        return self.size

    @property
    def num_segments(self) -> int:
        return len(self.segments)

    def check(self, indices: np.ndarray) -> np.ndarray:
        """Indices as int64, negatives counted from the end; out of range raises IndexError."""
        idx = np.asarray(indices, dtype=np.int64)
        idx = np.where(idx < 0, idx + self.size, idx)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.size):
            flat = idx.reshape(-1)
            bad = int(np.asarray(indices).reshape(-1)[np.argmax((flat < 0) | (flat >= self.size))])
            raise IndexError(f"window {bad} is out of range for {self.size} windows")
        return idx

    def locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(segment, frame in segment, store row)`` of the anchors of windows ``indices`` (checked)."""
        idx = self.check(indices)
        seg = np.searchsorted(self.first, idx, side="right") - 1
        within = idx - self.first[seg]
        rows = self.first_anchor[seg] + within
        return seg, rows - self.segments[seg, 0], rows

    def rows(self, anchor_rows: np.ndarray) -> np.ndarray:
        """``(n, W)`` store rows of the windows anchored at ``anchor_rows``."""
        return anchor_rows[:, None] + self.offsets[None, :]

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(segment, frame)`` of every window, in window order (for computing per-window weights)."""
        seg = np.repeat(np.arange(self.num_segments, dtype=np.int64), self.counts)
        within = np.arange(self.size, dtype=np.int64) - self.first[seg]
        return seg, within - self.lo

    # ------------------------------------------------------------------------------------- sampling
    def window_probabilities(self, weights: Sequence[float] | np.ndarray, per: str | None = None) -> np.ndarray:
        """Per-window sampling probabilities from weights per segment or per window.

        A segment's weight is shared evenly by its windows (so the segment is drawn with probability
        proportional to its weight). ``per`` is ``"segment"`` or ``"window"``; None infers it from the length.
        """
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if per is None:
            if len(w) == self.num_segments and len(w) == self.size and (self.counts != 1).any():
                raise ValidationError(f"{len(w)} weights fit both the segments and the windows; pass "
                                      f"weights_per='segment' or 'window'")
            per = "segment" if len(w) == self.num_segments else "window"
        if per not in ("segment", "window"):
            raise ValidationError(f"weights_per must be 'segment' or 'window', not {per!r}")
        expected = self.num_segments if per == "segment" else self.size
        if len(w) != expected:
            raise ValidationError(f"{len(w)} weights, but there are {self.num_segments} segments and "
                                  f"{self.size} windows")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValidationError("sampling weights must be finite and >= 0")
        if per == "segment":
            share = np.divide(w, self.counts, out=np.zeros_like(w), where=self.counts > 0)
            w = np.repeat(share, self.counts)
        total = float(w.sum())
        if not total > 0:
            raise ValidationError("sampling weights put no mass on any window")
        return w / total


def epoch_order(size: int, *, shuffle: bool, rng: np.random.Generator,
                probabilities: np.ndarray | None = None, draws: int | None = None) -> np.ndarray:
    """Window indices of one epoch.

    Unweighted: every window once (a permutation when shuffling). Weighted: ``draws`` (default ``size``)
    independent draws with replacement, by inverse-CDF sampling (O(n log n), exact in float64).
    """
    if probabilities is None:
        return rng.permutation(size) if shuffle else np.arange(size, dtype=np.int64)
    cdf = np.cumsum(probabilities)
    u = rng.random(size if draws is None else int(draws)) * cdf[-1]
    picks = np.searchsorted(cdf, u, side="right")
    return np.minimum(picks, size - 1).astype(np.int64)
