"""A vectorised k-ary sum tree in torch for proportional prioritised sampling.

Every operation works on whole batches of indices with tensor ops; nothing loops in Python over
elements. The loops that remain run over tree levels (two descents for a million leaves).

Design choices, each made for a measured or documented reason:

* **float64 everywhere.** 32-bit trees (torchrl's default, cpprb always) resolve single-item
  probabilities at 10^6 items only to ~1 %, and tiny priorities can become impossible to draw.
* **No drift.** An update never adds a delta to a parent; each touched parent is recomputed from its
  children, so the root is always the (rounded) sum of the current leaves however long the run.
* **Fan-out 16 instead of 2.** A binary tree needs 20 levels for 10^6 leaves and each level costs a
  handful of tensor calls; 16 children per node cut that to five levels, the top ones handled by a
  closed-form count instead of a descent (see :meth:`SumTree._top_nodes`).
* **Branch-free search.** ``searchsorted`` on fresh random targets mispredicts its branches and
  measured 2-3x slower than counting ``inclusive <= target`` over a node's 16 children.
* **Repeated indices in one update: the last value wins**, exactly as if the updates had been
  applied one after the other (torch's scatter leaves duplicates undefined).
* **Empty leaves hold 0 and are never drawn**; the descent keeps each target strictly below the
  node's mass, so rounding cannot land on a zero-mass child.
* **Extrema without a min-tree.** The smallest non-zero leaf (importance-weight normalisation) and
  the largest (priority of new entries) are tracked with a count of leaves at that value; only when
  the last such leaf changes are the stale 16-leaf blocks rescanned.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mimicdata.errors import ConfigError, OutOfRangeError, StateError, ValidationError

if TYPE_CHECKING:  # torch is imported lazily so `import mimicdata_trainers` stays light
    import torch

__all__ = ["SumTree"]

# Levels at or below this many nodes are resolved by the closed-form count of _top_nodes.
_TOP_LEVEL_MAX = 4096


class SumTree:
    """Sum tree over ``capacity`` non-negative float64 leaves.

    Args:
        capacity: number of leaves (items that can hold a priority).
        fanout: children per node (>= 2; powers of two index with shifts).
        device: torch device for all tensors.
    """

    def __init__(self, capacity: int, *, fanout: int = 16, device: str | torch.device = "cpu") -> None:
        import torch

        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"SumTree capacity must be a positive int, got {capacity!r}")
        if isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 2:
            raise ConfigError(f"SumTree fanout must be an int >= 2, got {fanout!r}")
        self.capacity = capacity
        self.fanout = fanout
        self.device = torch.device(device)
        depth = 1  # pad the leaf count to a power of the fan-out: every level reshapes to (-1, fanout)
        while fanout**depth < capacity:
            depth += 1
        self._levels: list[torch.Tensor] = [
            torch.zeros(fanout ** (depth - k), dtype=torch.float64, device=self.device) for k in range(depth + 1)
        ]
        self._top = next(k for k, level in enumerate(self._levels) if level.numel() <= _TOP_LEVEL_MAX)
        self._top_cumsum: torch.Tensor | None = None
        self._shift = fanout.bit_length() - 1 if fanout & (fanout - 1) == 0 else None
        blocks = self._levels[1].numel()
        # Extrema over non-zero leaves: value and how many leaves hold it (None: unknown, rescan).
        self._min: tuple[float, int] | None = (math.inf, 0)
        self._max: tuple[float, int] | None = (0.0, 0)
        self._block_min = torch.full((blocks,), math.inf, dtype=torch.float64, device=self.device)
        self._block_max = torch.zeros(blocks, dtype=torch.float64, device=self.device)
        self._stale = torch.zeros(blocks, dtype=torch.bool, device=self.device)
        # Scratch for last-write-wins de-duplication: slot -> position of its last occurrence.
        self._last_pos = torch.full((self._levels[0].numel(),), -1, dtype=torch.int32, device=self.device)
        self._work: dict[int, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ reading
    @property
    def leaves(self) -> torch.Tensor:
        """The ``capacity`` leaf values (a view; do not write to it)."""
        return self._levels[0][: self.capacity]

    def total(self) -> float:
        """Sum of all leaves, as held at the root."""
        return float(self._levels[-1].sum())

    def min_nonzero(self) -> float:
        """Smallest non-zero leaf (``inf`` when every leaf is empty)."""
        if self._min is None:
            self._rescan()
        return self._min[0]  # type: ignore[index]

    def max(self) -> float:
        """Largest leaf (0 when every leaf is empty)."""
        if self._max is None:
            self._rescan()
        return self._max[0]  # type: ignore[index]

    def get(self, indices: torch.Tensor) -> torch.Tensor:
        """Leaf values at ``indices``."""
        return self._levels[0].index_select(0, indices)

    # ------------------------------------------------------------------ writing
    def update(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        """Set leaves ``indices`` to ``values``; a repeated index takes its last value.

        Raises:
            IndexError: an index outside ``[0, capacity)``.
            ValueError: a value that is negative, NaN or infinite.
        """
        import torch

        indices = torch.as_tensor(indices, device=self.device).reshape(-1).to(torch.int64)
        values = torch.as_tensor(values, device=self.device).reshape(-1).to(torch.float64)
        if indices.numel() != values.numel():
            raise ValidationError(f"SumTree.update: {indices.numel()} indices but {values.numel()} values")
        if indices.numel() == 0:
            return
        self.check_indices(indices)
        self.check_values(values)
        self.update_unchecked(indices, values)

    def update_unchecked(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        """:meth:`update` for int64 ``indices`` and float64 ``values`` the caller has already checked."""
        values, is_last = self._last_write_wins(indices, values)
        leaves = self._levels[0]
        old = leaves.index_select(0, indices)
        leaves.scatter_(0, indices, values)
        self._stale.index_fill_(0, self._parent(indices), True)
        self._track_extrema(old, values, is_last)
        self._refresh_parents(indices)

    def fill(self, values: torch.Tensor) -> None:
        """Replace every leaf at once (``values`` has ``capacity`` entries) and rebuild all levels."""
        import torch

        values = torch.as_tensor(values, device=self.device).reshape(-1).to(torch.float64)
        if values.numel() != self.capacity:
            raise ValidationError(f"SumTree.fill: expected {self.capacity} values, got {values.numel()}")
        self.check_values(values)
        self._levels[0].zero_()
        self._levels[0][: self.capacity] = values
        self._rebuild()

    def clear(self) -> None:
        """Set every leaf to 0."""
        self._levels[0].zero_()
        self._rebuild()

    # ------------------------------------------------------------------ sampling
    def sample_stratified(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` leaves with probability proportional to their value, one per stratum.

        The total mass is cut into ``n`` equal strata and one uniform target is drawn in each
        (lower variance than independent draws; each draw's marginal over a random stratum is
        exactly ``value / total``). The batch is returned in random order (cpprb's is sorted).

        Returns:
            ``(indices int64, leaf values float64)``, each of length ``n``.
        """
        import torch

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValidationError(f"sample size must be a positive int, got {n!r}")
        fan = self.fanout
        top = self._levels[self._top]
        if self._top_cumsum is None:
            self._top_cumsum = torch.cumsum(top, 0)
        cum = self._top_cumsum
        total = float(cum[-1])
        if not total > 0:
            raise StateError("cannot sample: every priority in the tree is zero (is the buffer empty?)")
        work = self._workspace(n)
        jitter = torch.rand(n, dtype=torch.float64, device=self.device, generator=generator, out=work["jitter"])
        step = total / n
        # Stratum i holds target_i = (i + U_i) * step, so the targets come out sorted.
        target = torch.add(work["arange"], jitter, out=work["target"]).mul_(step)
        node = self._top_nodes(cum, jitter, step, n)
        target.sub_(cum.index_select(0, node).sub_(top.index_select(0, node))).clamp_min_(0.0)
        for k in range(self._top - 1, -1, -1):
            children = torch.index_select(self._levels[k].view(-1, fan), 0, node, out=work["children"])
            inclusive = torch.cumsum(children, 1, out=work["inclusive"])
            # Strictly below the node's mass, so rounding can never step past its last non-empty child.
            torch.minimum(target, torch.nextafter(inclusive[:, -1], work["zeros"]), out=target)
            # child = how many children have inclusive sum <= target: the first child past the
            # target has positive mass, so an empty leaf is never chosen.
            below = torch.le(inclusive, target.unsqueeze(1), out=work["mask"])
            child = torch.sum(below, 1, out=work["child"]).unsqueeze(1)
            target.sub_(inclusive.gather(1, child).squeeze(1)).add_(children.gather(1, child).squeeze(1))
            target.clamp_min_(0.0)
            node = node * fan + child.squeeze(1)
        node = node.index_select(0, torch.randperm(n, device=self.device, generator=generator))
        return node, self._levels[0].index_select(0, node)

    # ------------------------------------------------------------------ checks
    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise IndexError unless every index is in ``[0, capacity)``."""
        lo, hi = (int(v) for v in indices.aminmax())
        if lo < 0 or hi >= self.capacity:
            raise OutOfRangeError(f"priority index {lo if lo < 0 else hi} is outside [0, {self.capacity})")

    @staticmethod
    def check_values(values: torch.Tensor, what: str = "priority") -> None:
        """Raise ValueError naming the first value that is negative, NaN or infinite."""
        import torch

        if values.numel() == 0:
            return
        lo, hi = (float(v) for v in values.aminmax())  # NaN propagates into both
        if lo >= 0 and hi < math.inf:
            return
        ok = (values >= 0) & (values < math.inf)
        first = int(torch.nonzero(~ok)[0, 0])
        value = float(values[first])
        kind = "NaN" if math.isnan(value) else ("infinite" if math.isinf(value) else "negative")
        raise ValidationError(f"{what} at position {first} is {kind} ({value}); it must be finite and >= 0")

    # ------------------------------------------------------------------ internals
    def _parent(self, nodes: torch.Tensor) -> torch.Tensor:
        return nodes >> self._shift if self._shift is not None else nodes // self.fanout

    def _top_nodes(self, cum: torch.Tensor, jitter: torch.Tensor, step: float, n: int) -> torch.Tensor:
        """Index of the top-level node holding each sorted stratified target, without a search.

        ``node_i = #{j : cum_j <= target_i}``. Counted the other way round it is closed-form: the
        number of targets below ``c`` is ``k + [U_k < c/step - k]`` with ``k = floor(c/step)``, since
        every stratum before ``k`` lies wholly below ``c`` and every one after it wholly above. The
        histogram of those counts, cumulated, gives ``node_i``. The count is monotone in ``c``, so a
        node of zero mass (same ``cum`` as its predecessor) is never chosen. O(top + n), branch-free.
        """
        import torch

        scaled = cum / step
        k = scaled.floor().clamp_(max=n)
        k_idx = k.to(torch.int64)
        padded = torch.cat((jitter, jitter.new_full((1,), math.inf)))  # k == n: past every stratum
        below = k_idx + (padded.index_select(0, k_idx) < scaled.sub_(k)).to(torch.int64)
        node = torch.cumsum(torch.bincount(below, minlength=n + 1)[:n], 0)
        return node.clamp_(max=cum.numel() - 1)

    def _workspace(self, n: int) -> dict[str, torch.Tensor]:
        """Reusable buffers for a batch of ``n`` draws (fresh 512 KiB temporaries cost more)."""
        import torch

        work = self._work.get(n)
        if work is None:
            f64, dev, fan = torch.float64, self.device, self.fanout
            work = {
                "jitter": torch.empty(n, dtype=f64, device=dev),
                "arange": torch.arange(n, dtype=f64, device=dev),
                "target": torch.empty(n, dtype=f64, device=dev),
                "zeros": torch.zeros(n, dtype=f64, device=dev),
                "children": torch.empty(n, fan, dtype=f64, device=dev),
                "inclusive": torch.empty(n, fan, dtype=f64, device=dev),
                "mask": torch.empty(n, fan, dtype=torch.bool, device=dev),
                "child": torch.empty(n, dtype=torch.int64, device=dev),
            }
            self._work = {n: work}  # keep one size: batch sizes rarely change
        return work

    def _last_write_wins(self, indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values with every repeat of an index replaced by its last one, and a mask of last repeats."""
        import torch

        # Record, per slot, the latest batch position that writes it; every copy of a repeated index
        # then reads the value from that position. O(n), no sort; the scratch is reset after use.
        positions = torch.arange(indices.numel(), dtype=torch.int32, device=self.device)
        self._last_pos.scatter_reduce_(0, indices, positions, reduce="amax")
        latest = self._last_pos.index_select(0, indices)
        self._last_pos.scatter_(0, indices, -1)
        return values.index_select(0, latest), latest == positions

    def _refresh_parents(self, indices: torch.Tensor) -> None:
        fan = self.fanout
        nodes = indices
        for k in range(1, len(self._levels)):
            below = self._levels[k - 1].view(-1, fan)
            level = self._levels[k]
            nodes = self._parent(nodes)
            if level.numel() <= nodes.numel():
                level.copy_(below.sum(1))  # cheaper to recompute a small level than to gather into it
            else:
                # Repeated parents all write the same sum, recomputed from the children.
                level.scatter_(0, nodes, below.index_select(0, nodes).sum(1))
        self._top_cumsum = None

    def _track_extrema(self, old: torch.Tensor, new: torch.Tensor, unique: torch.Tensor) -> None:
        """Update (value, count) of the smallest and largest non-zero leaf after ``old -> new``.

        ``unique`` marks one position per distinct slot, so a repeated index is counted once. All
        counts come from one stacked comparison.
        """
        import torch

        if self._min is None and self._max is None:
            return  # both unknown: the next request rescans
        low, high = torch.stack((torch.where(new > 0, new, math.inf).min(), new.max())).tolist()
        m = self._min[0] if self._min is not None else math.nan  # NaN compares false: counts become 0
        big = self._max[0] if self._max is not None else math.nan
        # rows: slots leaving min, arriving at min, holding the new low, leaving max, arriving, new high
        targets = torch.tensor([[m], [m], [low], [big], [big], [high]], dtype=torch.float64, device=self.device)
        c = ((torch.stack((old, new, new, old, new, new)) == targets) & unique).sum(1).tolist()
        if self._min is not None:
            self._min = self._merge(self._min, low, c[0], c[1], c[2], low < self._min[0])
        if self._max is not None:
            self._max = self._merge(self._max, high, c[3], c[4], c[5], high > self._max[0])

    @staticmethod
    def _merge(
        current: tuple[float, int], best_new: float, gone: float, came: float, at_best: float, better: bool
    ) -> tuple[float, int] | None:
        if better:
            return best_new, int(at_best)
        if math.isinf(current[0]) or current[0] == 0:  # empty before and no non-zero value arrived
            return current
        count = current[1] - int(gone) + int(came)
        return (current[0], count) if count > 0 else None  # last holder left: rescan when asked

    def _rescan(self) -> None:
        """Recompute the extrema from the per-block ones, refreshing only stale blocks."""
        import torch

        stale = torch.nonzero(self._stale).squeeze(1)
        if stale.numel():
            children = self._levels[0].view(-1, self.fanout).index_select(0, stale)
            self._block_max.index_copy_(0, stale, children.amax(1))
            self._block_min.index_copy_(0, stale, torch.where(children > 0, children, math.inf).amin(1))
            self._stale.zero_()
        low = float(self._block_min.min())
        high = float(self._block_max.max())
        self._min = (low, self._count_equal(self._block_min, low)) if math.isfinite(low) else (math.inf, 0)
        self._max = (high, self._count_equal(self._block_max, high)) if high > 0 else (0.0, 0)

    def _count_equal(self, block_extreme: torch.Tensor, value: float) -> int:
        import torch

        blocks = torch.nonzero(block_extreme == value).squeeze(1)
        children = self._levels[0].view(-1, self.fanout).index_select(0, blocks)
        return int((children == value).sum())

    def _rebuild(self) -> None:
        fan = self.fanout
        for k in range(1, len(self._levels)):
            self._levels[k].copy_(self._levels[k - 1].view(-1, fan).sum(1))
        self._stale.fill_(True)
        self._min = None
        self._max = None
        self._top_cumsum = None
