"""What training needs from an expert store before the first batch: one streaming pass over its clips.

Per clip it derives the CMG frames and smoothed commands (see :mod:`features`) to accumulate the
normalisation statistics (with the mirrored data, since training mirrors), checks for non-finite
values, and records each frame's command speed, from which the windows' speed-balanced sampling
weights follow. Memory is one clip at a time. Windows themselves are read later through
``md.WindowDataset`` / ``md.batches``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mimicdata_trainers.cmg.features import Mirror, frames_from_qpos, smoothed_commands

from mimicdata.errors import ValidationError


@dataclass
class StoreSummary:
    """Statistics and per-frame command speeds of a store's clips."""

    frame_mean: np.ndarray
    frame_std: np.ndarray
    command_mean: np.ndarray
    command_std: np.ndarray
    speed: list[np.ndarray]  # per clip: command speed (m/s) at each frame (NaN where no command)
    segments: np.ndarray     # (S, 2) frame rows
    command_min: np.ndarray
    command_max: np.ndarray


class _Moments:
    def __init__(self) -> None:
        self.n, self.s, self.ss = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        x = x.reshape(-1, x.shape[-1]).astype(np.float64)
        self.n += x.shape[0]
        self.s = self.s + x.sum(0)
        self.ss = self.ss + (x * x).sum(0)

    def result(self, floor: float) -> tuple[np.ndarray, np.ndarray]:
        mean = self.s / self.n
        std = np.sqrt(np.maximum(self.ss / self.n - mean * mean, 0.0))
        return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


def summarise(frames_stream: object, num_joints: int, half_window: int, mirror: Mirror,
              train_segments: np.ndarray, std_floor: float) -> StoreSummary:
    """One pass over the clips of an expert store's ``frames`` stream (qpos/qvel)."""
    segments = frames_stream.segments()  # type: ignore[attr-defined]
    frames_m, commands_m = _Moments(), _Moments()
    speeds: list[np.ndarray] = []
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    train = set(int(i) for i in train_segments)
    for i, (start, end) in enumerate(segments):
        qpos = frames_stream.read("qpos", int(start), int(end))  # type: ignore[attr-defined]
        qvel = frames_stream.read("qvel", int(start), int(end))  # type: ignore[attr-defined]
        frames = frames_from_qpos(qpos, qvel)
        if not np.isfinite(frames).all():
            bad = int(np.argwhere(~np.isfinite(frames).all(1))[0, 0])
            raise ValidationError(f"clip {i}: non-finite qpos/qvel at frame {bad}")
        speed = np.full(len(frames), np.nan, np.float32)
        if len(frames) > 2 * half_window:
            cmd = smoothed_commands(frames, num_joints, half_window)
            speed[half_window:len(frames) - half_window] = np.linalg.norm(cmd[:, :2], axis=1)
            if i in train:
                commands_m.add(cmd)
                commands_m.add(mirror.commands(cmd))
                both = np.concatenate([cmd, mirror.commands(cmd)])
                lo, hi = np.minimum(lo, both.min(0)), np.maximum(hi, both.max(0))
        if i in train:
            frames_m.add(frames)
            frames_m.add(mirror.frames(frames))
        speeds.append(speed)
    if frames_m.n == 0 or commands_m.n == 0:
        raise ValidationError(f"no training clip is longer than the command window ({2 * half_window + 1} frames)")
    fm, fs = frames_m.result(std_floor)
    cm, cs = commands_m.result(std_floor)
    return StoreSummary(fm, fs, cm, cs, speeds, segments, lo.astype(np.float32), hi.astype(np.float32))


def split_segments(num_segments: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` clip numbers: whole clips are held out, so validation is unseen motion."""
    order = np.random.default_rng(seed).permutation(num_segments)
    n_val = round(val_fraction * num_segments) if num_segments > 1 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and num_segments > 1 else 0), num_segments - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def speed_weights(window_segment: np.ndarray, window_frame: np.ndarray, speeds: list[np.ndarray],
                  train_segments: np.ndarray, offset: int, bins: int) -> np.ndarray:
    """Per-window sampling weights: each speed bin gets equal total weight (slow walking and running
    alike), validation clips get zero. ``offset`` is the window frame whose command speed counts."""
    base = np.concatenate([[0], np.cumsum([len(s) for s in speeds])])
    speed = np.concatenate(speeds).astype(np.float64)[base[window_segment] + window_frame + offset]
    train = np.isin(window_segment, train_segments) & np.isfinite(speed)
    weights = np.zeros(len(speed))
    if not train.any():
        raise ValidationError("no training windows (every clip is held out or too short)")
    top = float(speed[train].max()) or 1.0
    which = np.minimum((speed[train] / top * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    weights[train] = 1.0 / counts[which]
    return weights / weights.sum()
