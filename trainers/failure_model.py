"""A simulated policy for exercising the adaptive sampler without a simulator (CLI, benchmarks, tests).

Kept apart from :mod:`mimicdata_trainers.adaptive`: the sampler is the training component; this is a
stand-in for the policy whose failures it feeds on, and has nothing to do in a real training run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mimicdata.errors import ConfigError, ValidationError

if TYPE_CHECKING:
    import torch

    import mimicdata as md

    from .adaptive import AdaptiveMotionSampler

__all__ = ["SpeedHazardFailureModel"]


class SpeedHazardFailureModel:
    """A stand-in tracking policy that fails more often where the reference motion is fast.

    It lets the sampler be exercised without a simulator, on the real clips of a store. Each bin
    ``b`` gets a per-second hazard that grows with its mean joint speed ``v_b`` (``|qvel[6:]|``,
    rad/s) relative to the median bin: the chance to fail while playing through one bin is

        h_b = 1 - exp(-rate * bin_seconds * (v_b / median_v) ** power)

    An episode starts at a sampled (clip, frame), plays bin after bin for ``episode_seconds`` and
    ends by failing (a Bernoulli draw per bin), at the clip's end, or at the time limit.
    """

    def __init__(self, sampler: AdaptiveMotionSampler, bin_speed: np.ndarray, *, rate: float = 0.05,
                 power: float = 2.0, seed: int | None = None) -> None:
        import torch

        speed = np.asarray(bin_speed, dtype=np.float64)
        if speed.shape != (sampler.num_bins,):
            raise ValidationError(f"bin_speed has shape {speed.shape}, the sampler has {sampler.num_bins} bins")
        if not np.isfinite(speed).all() or (speed < 0).any():
            raise ValidationError("bin_speed must be finite and >= 0")
        for name, value in (("rate", rate), ("power", power)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        self.sampler = sampler
        median = float(np.median(speed)) or 1.0
        seconds = sampler.bin_frames / sampler.fps
        hazard = 1.0 - np.exp(-rate * seconds * (speed / median) ** power)
        self.hazard = torch.as_tensor(hazard, dtype=torch.float64, device=sampler.device)
        self._generator = torch.Generator(device=sampler.device)
        self._generator.manual_seed(0 if seed is None else int(seed))

    @classmethod
    def from_store(cls, sampler: AdaptiveMotionSampler, source: str | Path | md.Store, *, stream: str = "frames",
                   rate: float = 0.05, power: float = 2.0, seed: int | None = None) -> SpeedHazardFailureModel:
        """Per-bin joint speed from the ``qvel`` field of the store the sampler was built on."""
        import mimicdata as md

        store = source if isinstance(source, md.Store) else md.open(source, "r")
        try:
            frames = store[stream]
            if "qvel" not in frames.fields:
                raise ValidationError(f"{store.location} {stream}: no qvel field to derive joint speeds from")
            qvel = frames.read("qvel")
            speed_rows = np.linalg.norm(qvel[:, 6:].astype(np.float64), axis=1)
        finally:
            if store is not source:
                store.close()
        lengths = sampler.clip_lengths
        clip = np.repeat(np.arange(lengths.size), lengths)
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # position of each clip's frame 0 below
        frame = np.arange(clip.size) - np.repeat(first, lengths)
        rows = sampler.clip_starts[clip] + frame
        if rows.size and rows.max() >= speed_rows.size:
            raise ValidationError(f"{stream} has {speed_rows.size} rows; the sampler's clips need {rows.max() + 1}")
        bins = sampler.bin_offset[clip] + frame // sampler.bin_frames
        total = np.bincount(bins, weights=speed_rows[rows], minlength=sampler.num_bins)
        count = np.bincount(bins, minlength=sampler.num_bins)
        return cls(sampler, total / np.maximum(count, 1), rate=rate, power=power, seed=seed)

    def run_episodes(self, clip: torch.Tensor, frame: torch.Tensor,
                     episode_seconds: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Play episodes from (clip, frame); returns the (clip, frame) each ended at and whether it failed."""
        import torch

        s = self.sampler
        clip = torch.as_tensor(clip, device=s.device).to(torch.int64)
        frame = torch.as_tensor(frame, device=s.device).to(torch.int64).clone()
        lengths = torch.as_tensor(s.clip_lengths, device=s.device).index_select(0, clip)
        failed = torch.zeros_like(clip, dtype=torch.bool)
        alive = torch.ones_like(failed)
        steps = max(1, math.ceil(episode_seconds * s.fps / s.bin_frames))
        for _ in range(steps):
            bins = s.bins_of(clip, frame)
            draw = torch.rand(clip.numel(), dtype=torch.float64, device=s.device, generator=self._generator)
            fails_now = alive & (draw < self.hazard.index_select(0, bins))
            failed |= fails_now
            alive &= ~fails_now
            advanced = frame + s.bin_frames
            done = alive & (advanced >= lengths)  # reached the end of the clip: not a failure
            alive &= ~done
            frame = torch.where(alive, advanced, torch.where(done, lengths - 1, frame))
        return clip, frame, failed
