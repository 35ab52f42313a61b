"""Failure-driven adaptive motion sampling for tracking training (BeyondMimic-style, fixed floor).

Every clip of an ``expert_trajectory`` store is cut into bins of ``bin_seconds`` (the last bin of a
clip may be shorter). Episodes that *fail* (terminate, not time out) add one count to the bin they
failed in; the per-bin counts are smoothed in time with an exponential moving average. Start states
are drawn from

    q = (1 - uniform_ratio) * normalise(kernel * ema) + uniform_ratio / B

where ``kernel`` spreads a failure back over the ``kernel_size - 1`` bins before it (weights
``kernel_lambda ** i``, within the clip), so training starts a little before the hard part.

The mixture is the difference from BeyondMimic (whole_body_tracking #40, #73; mjlab #1153): there the
uniform term is added to the raw counts before normalising, so once counts are large it vanishes and
an easy bin can starve. Here every bin keeps probability >= ``uniform_ratio / B`` whatever the counts.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mimicdata.errors import ConfigError, OutOfRangeError, StateError, ValidationError

if TYPE_CHECKING:
    import torch

    import mimicdata as md

__all__ = ["ADAPTIVE_ATTR", "AdaptiveMotionSampler", "AdaptiveSamplingConfig"]

ADAPTIVE_ATTR = "adaptive_sampler_states"


@dataclass(frozen=True)
class AdaptiveSamplingConfig:
    """Parameters of :class:`AdaptiveMotionSampler` (defaults: BeyondMimic's).

    Args:
        bin_seconds: length of one bin in seconds (> 0).
        ema_alpha: weight of the newest failure counts in the moving average, in (0, 1].
        kernel_size: bins a failure is spread back over (>= 1; 1 = no smoothing).
        kernel_lambda: decay of the smoothing kernel per bin, in (0, 1].
        uniform_ratio: mixture weight of the uniform distribution, in [0, 1].
    """

    bin_seconds: float = 1.0
    ema_alpha: float = 0.001
    kernel_size: int = 1
    kernel_lambda: float = 0.8
    uniform_ratio: float = 0.1

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float, lo_open: bool) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"adaptive sampling: {name} must be a finite number, got {value!r}")
            if value > hi or value < lo or (lo_open and value == lo):
                raise ConfigError(f"adaptive sampling: {name} must be in {'(' if lo_open else '['}{lo}, {hi}], "
                                  f"got {value!r}")

        number("bin_seconds", 0.0, math.inf, True)
        number("ema_alpha", 0.0, 1.0, True)
        number("kernel_lambda", 0.0, 1.0, True)
        number("uniform_ratio", 0.0, 1.0, False)
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 1:
            raise ConfigError(f"adaptive sampling: kernel_size must be an int >= 1, got {self.kernel_size!r}")


class AdaptiveMotionSampler:
    """Draw (clip, start frame) pairs weighted by where the policy fails.

    Args:
        clip_lengths: frames per clip.
        fps: frame rate of the clips (one rate for all, as in one store).
        config: sampling parameters.
        clip_starts: first store row of each clip (default: clips laid end to end from row 0); only
            used by :meth:`rows` to turn (clip, frame) into store rows.
        device: torch device of the returned tensors.
        seed: seed of the sampler's own generator (None: nondeterministic).
    """

    def __init__(
        self,
        clip_lengths: Sequence[int],
        fps: float,
        config: AdaptiveSamplingConfig | None = None,
        *,
        clip_starts: Sequence[int] | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        import torch

        self.config = config or AdaptiveSamplingConfig()
        lengths = np.asarray(clip_lengths, dtype=np.int64).reshape(-1)
        if lengths.size == 0:
            raise ValidationError("adaptive sampling needs at least one clip")
        if (lengths < 1).any():
            raise ValidationError(f"clip {int(np.argmax(lengths < 1))} has {int(lengths.min())} frames; "
                                  "clips need >= 1")
        if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
            raise ValidationError(f"fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self.device = torch.device(device)
        self.clip_lengths = lengths
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if clip_starts is None else np.asarray(clip_starts)
        if starts.shape != lengths.shape:
            raise ValidationError(f"clip_starts has {starts.size} entries for {lengths.size} clips")
        self.clip_starts = starts.astype(np.int64)
        self.bin_frames = max(1, round(self.config.bin_seconds * self.fps))
        bins_per_clip = -(-lengths // self.bin_frames)  # ceil
        self.bin_offset = np.concatenate([[0], np.cumsum(bins_per_clip)]).astype(np.int64)  # clip -> first bin
        self.num_bins = int(self.bin_offset[-1])
        bin_clip = np.repeat(np.arange(lengths.size), bins_per_clip)
        bin_in_clip = np.arange(self.num_bins) - self.bin_offset[bin_clip]
        bin_start = bin_in_clip * self.bin_frames
        as_t = lambda a: torch.as_tensor(a, dtype=torch.int64, device=self.device)  # noqa: E731
        self._bin_clip = as_t(bin_clip)
        self._bin_start = as_t(bin_start)
        self._bin_len = as_t(np.minimum(self.bin_frames, lengths[bin_clip] - bin_start))
        self._clip_first_bin = as_t(self.bin_offset[:-1])
        self._clip_last_bin = as_t(self.bin_offset[1:] - 1)
        self._failure_ema = torch.zeros(self.num_bins, dtype=torch.float64, device=self.device)
        self._kernel = torch.tensor([self.config.kernel_lambda**i for i in range(self.config.kernel_size)],
                                    dtype=torch.float64, device=self.device)
        self._kernel /= self._kernel.sum()
        self.updates = 0
        self.failures_seen = 0
        self._generator = torch.Generator(device=self.device)
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))

    @classmethod
    def from_store(
        cls,
        source: str | Path | md.Store,
        config: AdaptiveSamplingConfig | None = None,
        *,
        stream: str = "frames",
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> AdaptiveMotionSampler:
        """A sampler over the clips (segments) of ``stream`` in a store such as ``expert_trajectory``."""
        import mimicdata as md

        store = source if isinstance(source, md.Store) else md.open(source, "r")
        try:
            frames = store[stream]
            if frames.segment_stream() is None:
                raise ValidationError(f"{store.location} {stream}: no segment table (clips/episodes) to bin")
            segments = frames.segments()
            fps = frames.fps or store.fps
            if not fps:
                raise ValidationError(f"{store.location} {stream}: no frame rate; bins need fps")
            return cls(segments[:, 1] - segments[:, 0], fps, config, clip_starts=segments[:, 0],
                       device=device, seed=seed)
        finally:
            if store is not source:
                store.close()

    # ------------------------------------------------------------------ feedback
    def bins_of(self, clip: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Global bin index of each (clip, frame within clip); out-of-range values are refused."""
        import torch

        clip = torch.as_tensor(clip, device=self.device).to(torch.int64).reshape(-1)
        frame = torch.as_tensor(frame, device=self.device).to(torch.int64).reshape(-1)
        if clip.shape != frame.shape:
            raise ValidationError(f"{clip.numel()} clips but {frame.numel()} frames")
        if clip.numel() == 0:
            return clip
        if int(clip.min()) < 0 or int(clip.max()) >= self.clip_lengths.size:
            raise OutOfRangeError(f"clip index outside [0, {self.clip_lengths.size})")
        lengths = torch.as_tensor(self.clip_lengths, device=self.device).index_select(0, clip)
        bad = (frame < 0) | (frame >= lengths)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise OutOfRangeError(f"frame {int(frame[i])} is outside clip {int(clip[i])} "
                                  f"({int(lengths[i])} frames)")
        return self._clip_first_bin.index_select(0, clip) + torch.div(frame, self.bin_frames, rounding_mode="floor")

    def update(self, clip: torch.Tensor, frame: torch.Tensor, failed: torch.Tensor) -> None:
        """Feed back the episodes that ended: the (clip, frame) each ended at and whether it failed.

        Only failures count (a time-out is not a failure). One call is one EMA step, as in BeyondMimic.
        """
        import torch

        failed = torch.as_tensor(failed, device=self.device).reshape(-1).to(torch.bool)
        bins = self.bins_of(clip, frame)
        if bins.numel() != failed.numel():
            raise ValidationError(f"{bins.numel()} episodes but {failed.numel()} failure flags")
        counts = torch.bincount(bins[failed], minlength=self.num_bins).to(torch.float64)
        alpha = self.config.ema_alpha
        self._failure_ema.mul_(1.0 - alpha).add_(counts, alpha=alpha)
        self.updates += 1
        self.failures_seen += int(failed.sum())

    # ------------------------------------------------------------------ distribution
    def probabilities(self) -> torch.Tensor:
        """Sampling probability of every bin (float64, sums to 1, each >= uniform_ratio / B)."""
        import torch

        smoothed = torch.zeros_like(self._failure_ema)
        bins = torch.arange(self.num_bins, device=self.device)
        last = self._clip_last_bin.index_select(0, self._bin_clip)
        for offset, weight in enumerate(self._kernel.tolist()):
            # bin i takes weight from bin i + offset of the same clip; past the clip's end the
            # last bin repeats (BeyondMimic pads with 'replicate').
            smoothed.add_(self._failure_ema.index_select(0, torch.minimum(bins + offset, last)), alpha=weight)
        ratio = self.config.uniform_ratio
        uniform = 1.0 / self.num_bins
        total = float(smoothed.sum())
        if not total > 0:
            return torch.full_like(smoothed, uniform)
        return smoothed.div_(total).mul_(1.0 - ratio).add_(ratio * uniform)

    def sample(self, num_envs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw start states: ``(clip, frame within clip)``, int64 tensors of length ``num_envs``."""
        import torch

        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValidationError(f"num_envs must be a positive int, got {num_envs!r}")
        bins = torch.multinomial(self.probabilities(), num_envs, replacement=True, generator=self._generator)
        offset = torch.rand(num_envs, dtype=torch.float64, device=self.device, generator=self._generator)
        lengths = self._bin_len.index_select(0, bins)
        within = (offset * lengths).to(torch.int64).clamp_max_(lengths - 1)
        return self._bin_clip.index_select(0, bins), self._bin_start.index_select(0, bins) + within

    def rows(self, clip: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Store rows of (clip, frame within clip) pairs."""
        import torch

        self.bins_of(clip, frame)  # range check
        starts = torch.as_tensor(self.clip_starts, device=self.device)
        return starts.index_select(0, torch.as_tensor(clip, device=self.device).to(torch.int64)) + frame

    # ------------------------------------------------------------------ logging
    def metrics(self) -> dict[str, float]:
        """Entropy (nats and normalised to [0, 1]), top-1 probability and where it is."""
        q = self.probabilities()
        entropy = float(-(q * q.log()).sum())
        top = int(q.argmax())
        clip = int(self._bin_clip[top])
        return {
            "entropy": entropy,
            "entropy_normalized": entropy / math.log(self.num_bins) if self.num_bins > 1 else 1.0,
            "top1_prob": float(q[top]),
            "top1_clip": clip,
            "top1_bin": int(top - self.bin_offset[clip]),
            "num_bins": self.num_bins,
            "failures_seen": self.failures_seen,
        }

    @property
    def failure_ema(self) -> torch.Tensor:
        """Per-bin moving average of failure counts (a copy)."""
        return self._failure_ema.clone()

    # ------------------------------------------------------------------ state
    def save(self, target: str | Path | md.Store, name: str = "adaptive_sampler", *, overwrite: bool = False) -> None:
        """Write the per-bin state as stream ``name`` (rows: clip, bin, start_frame, frames, failure_ema)
        and the scalars under the store attribute ``adaptive_sampler_states`` (written last)."""
        import mimicdata as md

        store = target if isinstance(target, md.Store) else md.create(target, None, overwrite=overwrite)
        try:
            spec = {
                "clip": {"dtype": "int64", "shape": [], "unit": "clip"},
                "bin": {"dtype": "int64", "shape": [], "unit": "bin", "description": "bin within the clip"},
                "start_frame": {"dtype": "int64", "shape": [], "unit": "frame"},
                "frames": {"dtype": "int64", "shape": [], "unit": "frame"},
                "failure_ema": {"dtype": "float64", "shape": [], "unit": "failures"},
            }
            stream = store.add_stream(name, fields=spec)
            clip = self._bin_clip.cpu().numpy()
            stream.append({"clip": clip, "bin": np.arange(self.num_bins) - self.bin_offset[clip],
                           "start_frame": self._bin_start.cpu().numpy(), "frames": self._bin_len.cpu().numpy(),
                           "failure_ema": self._failure_ema.cpu().numpy()})
            states = dict(store.attrs.get(ADAPTIVE_ATTR, {}))
            states[name] = {
                "config": asdict(self.config), "fps": self.fps, "updates": self.updates,
                "failures_seen": self.failures_seen, "clip_lengths": self.clip_lengths.tolist(),
                "clip_starts": self.clip_starts.tolist(),
                "rng": base64.b64encode(self._generator.get_state().numpy().tobytes()).decode("ascii"),
            }
            store.update_attrs({ADAPTIVE_ATTR: states})
        finally:
            if store is not target:
                store.close()

    @classmethod
    def load(
        cls, source: str | Path | md.Store, name: str = "adaptive_sampler", *, device: str | torch.device = "cpu"
    ) -> AdaptiveMotionSampler:
        """Rebuild a sampler saved by :meth:`save` (failure averages, counters, generator state)."""
        import torch

        import mimicdata as md

        store = source if isinstance(source, md.Store) else md.open(source, "r")
        try:
            state = store.attrs.get(ADAPTIVE_ATTR, {}).get(name)
            if state is None:
                raise StateError(f"{store.location}: no adaptive sampler state {name!r}")
            sampler = cls(state["clip_lengths"], state["fps"], AdaptiveSamplingConfig(**state["config"]),
                          clip_starts=state["clip_starts"], device=device, seed=0)
            stream = store[name]
            if stream.num_rows != sampler.num_bins:
                raise StateError(f"{store.location} {name}: {stream.num_rows} bins stored, "
                                 f"the saved clip layout gives {sampler.num_bins}")
            if not np.array_equal(stream.read("clip"), sampler._bin_clip.cpu().numpy()):
                raise StateError(f"{store.location} {name}: stored bins do not match the saved clip layout")
            ema = torch.from_numpy(stream.read("failure_ema")).to(sampler.device)
            if bool((ema < 0).any()) or not bool(torch.isfinite(ema).all()):
                raise StateError(f"{store.location} {name}: failure_ema holds negative or non-finite values")
            sampler._failure_ema.copy_(ema)
            sampler.updates = int(state["updates"])
            sampler.failures_seen = int(state["failures_seen"])
            rng = np.frombuffer(base64.b64decode(state["rng"]), dtype=np.uint8).copy()
            sampler._generator.set_state(torch.from_numpy(rng))
            return sampler
        finally:
            if store is not source:
                store.close()
