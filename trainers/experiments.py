"""The experiments behind `mimic-train per` and `mimic-train adaptive`, as library code.

Each is a small object built from a store plus a ``run(...)`` generator that does the loop and yields one
progress record per report, so the CLI only prints them and a notebook or benchmark can collect them:

>>> exp = ReplayExperiment.from_store("expert.zarr", fields=["qpos", "qvel"], seed=0)   # doctest: +SKIP
>>> for r in exp.run(iterations=200, batch=256):                                        # doctest: +SKIP
...     print(r.iteration, r.beta, r.share_on_hard)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimicdata.errors import MimicDataError, ValidationError

from .adaptive import AdaptiveMotionSampler, AdaptiveSamplingConfig
from .failure_model import SpeedHazardFailureModel
from .snapshot import buffer_from_store, transition_errors

if TYPE_CHECKING:
    import mimicdata as md

    from .per import ExperienceBuffer

__all__ = ["AdaptiveExperiment", "AdaptiveRound", "ReplayExperiment", "ReplayRound"]


def _report_iterations(iterations: int, reports: int) -> set[int]:
    every = max(1, iterations // reports)
    return {it for it in range(1, iterations + 1) if it % every == 0 or it == iterations}


@dataclass(frozen=True)
class ReplayRound:
    """Progress of a :class:`ReplayExperiment` after ``iteration`` sample/update steps."""

    iteration: int
    beta: float
    mean_error: float      # mean error of the batch drawn at this iteration
    share_on_hard: float   # share of every draw so far on the 1 % largest-error transitions (0.01 if uniform)


class ReplayExperiment:
    """Prioritised replay over a store's transitions, with a known error signal fed back as priority.

    ``errors`` (every transition's error before training) and ``hard`` (its top 1 %) are fixed at build
    time, so the share of draws landing on ``hard`` shows how strongly replay prioritises.
    """

    def __init__(self, buffer: ExperienceBuffer, signal: str = "constant_velocity", dt: float | None = None) -> None:
        import torch

        self.buffer, self.signal, self.dt = buffer, signal, dt
        everything = buffer.gather(torch.arange(buffer.get_sample_count(), device=buffer.device))
        self.errors = transition_errors(everything, signal, dt)
        self.hard = self.errors >= torch.quantile(self.errors, 0.99)

    @classmethod
    def from_store(cls, source: str | Path | md.Store, stream: str = "frames", fields: Sequence[str] = ("qpos", "qvel"),
                   signal: str = "constant_velocity", **buffer_kwargs: Any) -> ReplayExperiment:
        """One transition per consecutive pair of rows of ``stream`` (see :func:`buffer_from_store`);
        ``dt`` of the signal is ``1 / fps`` of the stream."""
        import mimicdata as md

        store = source if isinstance(source, md.Store) else md.open(source, "r")
        try:
            fps = store[stream].fps or store.fps
            try:
                buffer = buffer_from_store(store, stream, list(fields), **buffer_kwargs)
            except ValueError as exc:  # buffer_from_store still raises bare ValueErrors for bad fields
                if isinstance(exc, MimicDataError):
                    raise
                raise ValidationError(str(exc)) from None
        finally:
            if store is not source:
                store.close()
        return cls(buffer, signal, 1.0 / fps if fps else None)

    @property
    def error_p99(self) -> float:
        """The error above which a transition counts as hard."""
        return float(self.errors[self.hard].min())

    def run(self, iterations: int, batch: int, reports: int = 10) -> Iterator[ReplayRound]:
        """Draw ``batch`` transitions by priority, feed their errors back; ``reports`` records in all."""
        buf = self.buffer
        report_at = _report_iterations(iterations, reports)
        drawn_hard = drawn = 0
        for it in range(1, iterations + 1):
            sample = buf.sample(batch)
            errors = transition_errors(sample, self.signal, self.dt)
            buf.update_priorities(sample["indices"], errors)
            drawn += batch
            drawn_hard += int(self.hard.index_select(0, sample["indices"]).sum())
            if it in report_at:
                yield ReplayRound(it, float(buf.beta), float(errors.mean()), drawn_hard / drawn)


@dataclass(frozen=True)
class AdaptiveRound:
    """Progress of an :class:`AdaptiveExperiment` at round ``iteration`` (values of that round)."""

    iteration: int
    entropy_normalized: float
    top1_prob: float
    top1_clip: int
    top1_bin: int
    failure_rate: float
    share_on_hardest: float   # share of this round's starts in the hardest 10 % of bins


class AdaptiveExperiment:
    """The adaptive sampler against :class:`SpeedHazardFailureModel` on a store's clips: each round samples
    start states, plays the episodes and feeds the failures back."""

    def __init__(self, sampler: AdaptiveMotionSampler, model: SpeedHazardFailureModel) -> None:
        import torch

        self.sampler, self.model = sampler, model
        self.hardest = model.hazard >= torch.quantile(model.hazard, 0.9)

    @classmethod
    def from_store(cls, source: str | Path | md.Store, config: AdaptiveSamplingConfig | None = None, *,
                   hazard_rate: float = 0.05, hazard_power: float = 2.0, device: str = "cpu",
                   seed: int = 0) -> AdaptiveExperiment:
        """Sampler over the store's clips (generator ``seed``), failure model from its ``qvel`` (``seed + 1``)."""
        import mimicdata as md

        store = source if isinstance(source, md.Store) else md.open(source, "r")
        try:
            sampler = AdaptiveMotionSampler.from_store(store, config, device=device, seed=seed)
            model = SpeedHazardFailureModel.from_store(sampler, store, rate=hazard_rate, power=hazard_power,
                                                       seed=seed + 1)
        finally:
            if store is not source:
                store.close()
        return cls(sampler, model)

    @property
    def hardest_time_share(self) -> float:
        """Share of the bins that count as hardest (about 10 %)."""
        return float(self.hardest.double().mean())

    def run(self, iterations: int, num_envs: int, episode_seconds: float, reports: int = 10) -> Iterator[AdaptiveRound]:
        """``iterations`` rounds of sample -> play -> update; ``reports`` records in all."""
        sampler = self.sampler
        report_at = _report_iterations(iterations, reports)
        for it in range(1, iterations + 1):
            clip, frame = sampler.sample(num_envs)
            end_clip, end_frame, failed = self.model.run_episodes(clip, frame, episode_seconds)
            sampler.update(end_clip, end_frame, failed)
            if it in report_at:
                share = float(self.hardest.index_select(0, sampler.bins_of(clip, frame)).double().mean())
                m = sampler.metrics()
                yield AdaptiveRound(it, m["entropy_normalized"], m["top1_prob"], m["top1_clip"], m["top1_bin"],
                                    float(failed.double().mean()), share)

