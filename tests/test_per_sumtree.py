"""The vectorised float64 sum tree under the PER buffer: exact sums, extrema, sampling, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mimicdata_trainers.sumtree import SumTree  # noqa: E402
from scipy import stats  # noqa: E402


def _check_levels(tree: SumTree) -> None:
    """Every internal node equals the sum of its children (no drift anywhere, not only at the root)."""
    for k in range(1, len(tree._levels)):
        children = tree._levels[k - 1].view(-1, tree.fanout)
        assert torch.allclose(tree._levels[k], children.sum(1), rtol=1e-15, atol=0.0), f"level {k} drifted"


@pytest.mark.parametrize("capacity", [1, 15, 16, 17, 1000, 70_000])
def test_random_updates_keep_leaves_sums_and_extrema_exact(capacity: int) -> None:
    gen = torch.Generator().manual_seed(capacity)
    tree = SumTree(capacity)
    reference = np.zeros(capacity)
    for step in range(120):
        n = int(torch.randint(1, 64, (1,), generator=gen))
        idx = torch.randint(0, capacity, (n,), generator=gen)
        values = torch.rand(n, dtype=torch.float64, generator=gen) * (torch.rand(n, generator=gen) < 0.8)
        if step % 9 == 0:
            values *= 1e-12  # tiny priorities must stay exact in float64
        tree.update(idx, values)
        for i, v in zip(idx.tolist(), values.tolist(), strict=True):
            reference[i] = v  # sequential semantics: the last write of a repeated index wins
        np.testing.assert_array_equal(tree.leaves.numpy(), reference)
        nonzero = reference[reference > 0]
        assert tree.min_nonzero() == (nonzero.min() if nonzero.size else math.inf)
        assert tree.max() == reference.max()
        assert tree.total() == pytest.approx(math.fsum(reference), rel=1e-13, abs=1e-300)
    _check_levels(tree)


def test_repeated_indices_in_one_update_last_value_wins() -> None:
    tree = SumTree(100)
    tree.update(torch.tensor([3, 7, 3, 3, 7]), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64))
    assert tree.get(torch.tensor([3, 7])).tolist() == [4.0, 5.0]
    assert tree.total() == 9.0
    # the counts behind min/max must count a repeated slot once: drop both and the extrema follow
    tree.update(torch.tensor([7, 7]), torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert (tree.min_nonzero(), tree.max()) == (0.25, 4.0)


def test_million_random_updates_do_not_drift() -> None:
    capacity, batch = 100_000, 4096
    gen = torch.Generator().manual_seed(0)
    tree = SumTree(capacity)
    tree.fill(torch.rand(capacity, dtype=torch.float64, generator=gen))
    updates = 0
    while updates < 1_000_000:
        idx = torch.randint(0, capacity, (batch,), generator=gen)
        # values spanning 12 decades: the regime where delta-updating trees lose small priorities
        tree.update(idx, torch.rand(batch, dtype=torch.float64, generator=gen) * 10.0 ** -torch.randint(0, 12, (batch,),
                                                                                                          generator=gen))
        updates += batch
    leaves = tree.leaves.numpy()
    assert tree.total() == pytest.approx(math.fsum(leaves), rel=1e-12)
    _check_levels(tree)
    assert tree.min_nonzero() == leaves[leaves > 0].min()
    assert tree.max() == leaves.max()


def test_sampling_frequencies_match_values_chi_square() -> None:
    values = torch.tensor([5.0, 1.0, 0.0, 3.0, 0.25, 8.0, 2.0, 0.0, 0.5, 4.0] * 3, dtype=torch.float64)
    tree = SumTree(len(values))
    tree.fill(values)
    gen = torch.Generator().manual_seed(1)
    counts = torch.zeros(len(values))
    for _ in range(100):
        idx, leaf = tree.sample_stratified(1000, generator=gen)
        assert torch.equal(leaf, values[idx])
        counts += torch.bincount(idx, minlength=len(values))
    assert counts[values == 0].sum() == 0, "an empty leaf was drawn"
    nz = values > 0
    expected = (values[nz] / values.sum() * counts.sum()).numpy()
    assert stats.chisquare(counts[nz].numpy(), expected).pvalue > 1e-3
    # the test has power: the same counts are far from uniform
    uniform = np.full(int(nz.sum()), counts.sum().item() / int(nz.sum()))
    assert stats.chisquare(counts[nz].numpy(), uniform).pvalue < 1e-12


def test_stratified_batch_is_shuffled_and_low_variance() -> None:
    tree = SumTree(1000)
    tree.fill(torch.ones(1000, dtype=torch.float64))
    idx, _ = tree.sample_stratified(1000, generator=torch.Generator().manual_seed(2))
    assert sorted(idx.tolist()) == list(range(1000))  # one draw per stratum: every equal leaf exactly once
    assert idx.tolist() != sorted(idx.tolist())  # but not returned in index order (cpprb's pitfall)


def test_tiny_priorities_are_drawable_next_to_huge_ones() -> None:
    capacity = 200_000
    values = torch.full((capacity,), 1e-9, dtype=torch.float64)
    values[0] = 1.0  # one huge item; the rest share ~1.7e-4 of the mass
    tree = SumTree(capacity)
    tree.fill(values)
    gen = torch.Generator().manual_seed(3)
    hits = sum(int((tree.sample_stratified(4096, generator=gen)[0] != 0).sum()) for _ in range(50))
    expected = 50 * 4096 * (1 - 1.0 / float(values.sum()))
    assert hits == pytest.approx(expected, rel=0.25)


def test_never_draws_empty_leaves_at_block_edges() -> None:
    # leaves alternate filled/empty across block boundaries; rounding must not land on a zero
    capacity = 4096 * 16 + 5
    values = torch.zeros(capacity, dtype=torch.float64)
    values[::17] = torch.rand(len(values[::17]), dtype=torch.float64) * 1e-300 + 1e-300
    values[5::31] = 1e300
    tree = SumTree(capacity)
    tree.fill(values)
    for seed in range(20):
        _, leaf = tree.sample_stratified(4096, generator=torch.Generator().manual_seed(seed))
        assert bool((leaf > 0).all())


@pytest.mark.parametrize("bad, kind", [(float("nan"), "NaN"), (-1.0, "negative"), (float("inf"), "infinite")])
def test_bad_values_are_refused_and_change_nothing(bad: float, kind: str) -> None:
    tree = SumTree(10)
    tree.update(torch.arange(10), torch.ones(10, dtype=torch.float64))
    with pytest.raises(ValueError, match=f"position 2 is {kind}"):
        tree.update(torch.tensor([0, 1, 2]), torch.tensor([0.5, 0.5, bad], dtype=torch.float64))
    assert tree.total() == 10.0 and tree.leaves.tolist() == [1.0] * 10


def test_bad_indices_sizes_and_empty_tree_are_refused() -> None:
    tree = SumTree(10)
    with pytest.raises(IndexError, match="index 10 is outside"):
        tree.update(torch.tensor([10]), torch.tensor([1.0]))
    with pytest.raises(IndexError, match="index -1 is outside"):
        tree.update(torch.tensor([-1]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="2 indices but 1 values"):
        tree.update(torch.tensor([1, 2]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="every priority in the tree is zero"):
        tree.sample_stratified(4)
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        SumTree(0)
    with pytest.raises(ValueError, match="fanout must be an int >= 2"):
        SumTree(10, fanout=1)


@pytest.mark.parametrize("fanout", [2, 3, 16, 32])
def test_other_fanouts_sample_correctly(fanout: int) -> None:
    values = torch.arange(1, 301, dtype=torch.float64)
    tree = SumTree(300, fanout=fanout)
    tree.fill(values)
    gen = torch.Generator().manual_seed(fanout)
    counts = sum(torch.bincount(tree.sample_stratified(3000, generator=gen)[0], minlength=300) for _ in range(40))
    assert stats.chisquare(counts.numpy(), (values / values.sum() * counts.sum()).numpy()).pvalue > 1e-3
    tree.update(torch.tensor([0, 299]), torch.tensor([7.0, 0.0], dtype=torch.float64))
    assert tree.total() == pytest.approx(float(values.sum()) - 1 + 7 - 300)
