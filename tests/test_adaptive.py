"""Adaptive motion sampling: bins per clip, failure EMA, smoothing kernel, a true uniform floor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mimicdata_trainers.adaptive import AdaptiveMotionSampler, AdaptiveSamplingConfig  # noqa: E402
from scipy import stats  # noqa: E402

from tests.test_per_snapshot import expert_store  # noqa: E402


def test_bins_are_one_second_per_clip() -> None:
    # 50 fps: 120 frames -> bins of 50, 50, 20; 50 frames -> one bin; 1 frame -> one bin
    s = AdaptiveMotionSampler([120, 50, 1], fps=50.0, seed=0)
    assert s.num_bins == 5 and s.bin_frames == 50
    assert s._bin_clip.tolist() == [0, 0, 0, 1, 2]
    assert s._bin_start.tolist() == [0, 50, 100, 0, 0]
    assert s._bin_len.tolist() == [50, 50, 20, 50, 1]
    assert s.bins_of(torch.tensor([0, 0, 1, 2]), torch.tensor([49, 119, 0, 0])).tolist() == [0, 2, 3, 4]
    with pytest.raises(IndexError, match="frame 120 is outside clip 0"):
        s.bins_of(torch.tensor([0]), torch.tensor([120]))


def test_no_failures_means_uniform_over_time() -> None:
    s = AdaptiveMotionSampler([100, 30], fps=10.0, seed=1)
    clip, frame = s.sample(40_000)
    assert bool((frame >= 0).all()) and bool((frame < torch.tensor([100, 30])[clip]).all())
    rows = torch.where(clip == 0, frame, 100 + frame)
    per_bin = torch.bincount(rows // 10, minlength=13).numpy()  # every 10-frame bin equally likely
    assert stats.chisquare(per_bin).pvalue > 1e-3
    m = s.metrics()
    assert m["entropy_normalized"] == pytest.approx(1.0) and m["top1_prob"] == pytest.approx(1 / 13)


def test_failures_raise_their_bin_with_ema() -> None:
    cfg = AdaptiveSamplingConfig(ema_alpha=0.5, uniform_ratio=0.2)
    s = AdaptiveMotionSampler([40], fps=10.0, config=cfg, seed=2)  # 4 bins
    s.update(torch.tensor([0, 0, 0, 0]), torch.tensor([25, 27, 5, 39]), torch.tensor([True, True, False, True]))
    np.testing.assert_allclose(s.failure_ema.numpy(), [0, 0, 1.0, 0.5])  # 0.5 * counts (2 in bin 2, 1 in bin 3)
    s.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))  # a step without failures decays
    np.testing.assert_allclose(s.failure_ema.numpy(), [0, 0, 0.5, 0.25])
    q = s.probabilities().numpy()
    np.testing.assert_allclose(q, 0.8 * np.array([0, 0, 2 / 3, 1 / 3]) + 0.2 / 4)
    assert s.metrics()["top1_bin"] == 2 and s.failures_seen == 3


def test_floor_holds_under_extreme_failure_counts() -> None:
    cfg = AdaptiveSamplingConfig(ema_alpha=1.0, uniform_ratio=0.1)
    s = AdaptiveMotionSampler([500, 300, 200], fps=10.0, config=cfg, seed=3)  # 100 bins
    failed = torch.ones(10**6, dtype=torch.bool)
    s.update(torch.zeros(10**6, dtype=torch.int64), torch.full((10**6,), 7), failed)  # a million in bin 0
    s._failure_ema[1] = 1e300  # and an absurd count next to it
    q = s.probabilities()
    floor = 0.1 / s.num_bins
    assert float(q.min()) >= floor * (1 - 1e-12)
    assert float(q.sum()) == pytest.approx(1.0)
    # BeyondMimic's formula (uniform term added to raw counts) would give these bins ~1e-302: no floor
    beyond = (s._failure_ema + 0.1 / s.num_bins) / (s._failure_ema + 0.1 / s.num_bins).sum()
    assert float(beyond.min()) < 1e-290
    # and the draws honour the floor: every bin is visited about as often as the floor promises
    clip, frame = s.sample(200_000)
    bins = s.bins_of(clip, frame)
    counts = torch.bincount(bins, minlength=s.num_bins).double()
    low = counts[2:]
    assert float(low.min()) > 0 and float(low.mean()) == pytest.approx(200_000 * floor, rel=0.05)


def test_kernel_spreads_failures_back_within_the_clip() -> None:
    cfg = AdaptiveSamplingConfig(ema_alpha=1.0, kernel_size=3, kernel_lambda=0.5, uniform_ratio=0.0)
    s = AdaptiveMotionSampler([50, 30], fps=10.0, config=cfg, seed=4)  # bins: 5 + 3
    s.update(torch.tensor([1]), torch.tensor([5]), torch.tensor([True]))  # clip 1, bin 0 (global 5)
    q = s.probabilities().numpy()
    assert q[:5].sum() == 0.0, "a failure in clip 1 must not leak into clip 0"
    s2 = AdaptiveMotionSampler([50], fps=10.0, config=cfg, seed=4)
    s2.update(torch.tensor([0]), torch.tensor([45]), torch.tensor([True]))  # last bin (4)
    k = np.array([1, 0.5, 0.25]) / 1.75
    # bin i takes k[j] * ema[min(i + j, 4)]: bins 2, 3, 4 see the failure (4 via replicate padding)
    expected = np.array([0, 0, k[2], k[1] + k[2], 1.0])
    np.testing.assert_allclose(q[5:], [1.0, 0.0, 0.0])  # clip 1 alone: its failure sits in its first bin
    np.testing.assert_allclose(s2.probabilities().numpy(), expected / expected.sum())


def test_sampler_from_store_and_state_round_trip(tmp_path: Path) -> None:
    store = expert_store(tmp_path / "e.zarr", clip_lengths=(30, 1, 12), fps=10.0)
    s = AdaptiveMotionSampler.from_store(store, AdaptiveSamplingConfig(ema_alpha=0.3), seed=5)
    assert s.num_bins == 3 + 1 + 2
    assert s.rows(torch.tensor([2, 0]), torch.tensor([3, 7])).tolist() == [34, 7]
    s.update(torch.tensor([0, 2]), torch.tensor([12, 11]), torch.tensor([True, True]))
    s.save(store, name="adaptive")
    store.close()
    back = AdaptiveMotionSampler.load(tmp_path / "e.zarr", name="adaptive")
    assert torch.equal(back.failure_ema, s.failure_ema) and back.config == s.config
    assert (back.updates, back.failures_seen) == (1, 2)
    a, b = s.sample(64), back.sample(64)  # same generator state: same draws
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bin_seconds": 0.0}, r"bin_seconds must be in \(0.0, inf\]"),
        ({"ema_alpha": 0.0}, r"ema_alpha must be in \(0.0, 1.0\]"),
        ({"ema_alpha": 1.5}, "ema_alpha must be in"),
        ({"kernel_size": 0}, "kernel_size must be an int >= 1"),
        ({"kernel_size": 2.0}, "kernel_size must be an int >= 1"),
        ({"kernel_lambda": float("nan")}, "kernel_lambda must be a finite number"),
        ({"uniform_ratio": -0.1}, r"uniform_ratio must be in \[0.0, 1.0\]"),
    ],
)
def test_bad_config_values_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveSamplingConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_sampler_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one clip"):
        AdaptiveMotionSampler([], fps=50.0)
    with pytest.raises(ValueError, match="clip 1 has 0 frames"):
        AdaptiveMotionSampler([10, 0], fps=50.0)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        AdaptiveMotionSampler([10], fps=math.nan)
    s = AdaptiveMotionSampler([10], fps=5.0)
    with pytest.raises(ValueError, match="2 episodes but 1 failure flags"):
        s.update(torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([True]))
    with pytest.raises(IndexError, match="clip index outside"):
        s.update(torch.tensor([3]), torch.tensor([1]), torch.tensor([True]))
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        s.sample(0)
