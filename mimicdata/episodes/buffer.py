"""EpisodeBuffer: the frames of the episode being recorded, in preallocated blocks.

Frames are copied into blocks allocated ahead of time, so ``add_frame`` costs one small copy per field
and never a reallocation of the whole episode (growing one array by doubling would copy hundreds of
megabytes of camera frames at unpredictable moments of the control loop). Blocks double from
``block_frames`` up to ``MAX_BLOCK_FRAMES`` (few blocks per long episode, at most one block of slack).
At save time camera frames are written block by block (:meth:`EpisodeBuffer.spans`), never joined:
that would copy the whole episode once more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mimicdata.errors import ValidationError

BLOCK_FRAMES = 64
MAX_BLOCK_FRAMES = 256


class EpisodeBuffer:
    """Frames of one episode. ``layout`` maps field -> (dtype, per-frame shape) and is fixed by frame 0."""

    def __init__(self, episode_index: int, block_frames: int = BLOCK_FRAMES) -> None:
        self.episode_index = int(episode_index)
        self.block_frames = int(block_frames)
        self.num_frames = 0
        self.layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._blocks: dict[str, list[np.ndarray]] = {}
        self._starts: list[int] = []        # first frame of each block
        self._capacity = 0
        self.tasks: list[str] = []          # one per frame
        self.nbytes = 0
        self.success = -1                   # set when the episode is saved: 1, 0 or -1 (unknown)
        self.metadata = "{}"                # user metadata, JSON text

    def __len__(self) -> int:
        return self.num_frames

    def _grow(self) -> None:
        size = min(MAX_BLOCK_FRAMES, self.block_frames << len(self._starts)) if self._starts else self.block_frames
        size = max(size, self.block_frames)
        self._starts.append(self._capacity)
        self._capacity += size
        for name, (dtype, shape) in self.layout.items():
            block = np.empty((size, *shape), dtype)
            self._blocks[name].append(block)
            self.nbytes += block.nbytes

    def _slot(self) -> int:
        """Position of the next frame in the last block, growing a block when full."""
        if self.num_frames == self._capacity:
            self._grow()
        return self.num_frames - self._starts[-1]

    def add(self, values: Mapping[str, np.ndarray], task: str) -> None:
        """Append one validated frame (arrays already of the layout's dtype and shape)."""
        if not self.layout:
            self.layout = {k: (v.dtype, v.shape) for k, v in values.items()}
            self._blocks = {k: [] for k in values}
        slot = self._slot()
        for name, value in values.items():
            # a 0-d object array (a string) would be stored as the array itself, not its content
            self._blocks[name][-1][slot] = value[()] if value.dtype == object else value
        self.tasks.append(task)
        self.num_frames += 1

    def extend(self, batch: Mapping[str, np.ndarray], tasks: list[str]) -> None:
        """Append ``n`` validated frames at once (bulk import)."""
        n = len(tasks)
        if not self.layout:
            self.layout = {k: (v.dtype, v.shape[1:]) for k, v in batch.items()}
            self._blocks = {k: [] for k in batch}
        done = 0
        while done < n:
            slot = self._slot()
            take = min(n - done, self._capacity - self.num_frames)
            for name, values in batch.items():
                self._blocks[name][-1][slot:slot + take] = values[done:done + take]
            self.num_frames += take
            done += take
        self.tasks.extend(tasks)

    def column(self, name: str) -> np.ndarray:
        """All frames of one field as one array ``(num_frames, *shape)``."""
        if name not in self._blocks:
            raise KeyError(f"episode buffer has no field {name!r}; fields: {list(self._blocks)}")
        blocks = self._blocks[name]
        if not blocks:
            dtype, shape = self.layout[name]
            return np.empty((0, *shape), dtype)
        return np.concatenate(blocks, axis=0)[: self.num_frames]

    def spans(self) -> list[tuple[int, int, int]]:
        """``(block, first frame, end frame)`` of each block holding frames."""
        ends = [*self._starts[1:], self._capacity]
        return [(i, a, min(b, self.num_frames)) for i, (a, b) in enumerate(zip(self._starts, ends, strict=True))
                if a < self.num_frames]

    def block(self, name: str, index: int) -> np.ndarray:
        """The frames of one field held by block ``index`` (a view, no copy)."""
        start = self._starts[index]
        return self._blocks[name][index][: min(len(self._blocks[name][index]), self.num_frames - start)]

    def to_batch(self) -> dict[str, np.ndarray]:
        """Every field joined into one batch (copies; called on the saving thread)."""
        return {name: self.column(name) for name in self._blocks}

    def describe(self) -> dict[str, Any]:
        return {"episode_index": self.episode_index, "frames": self.num_frames, "bytes": self.nbytes,
                "fields": {k: (str(d), list(s)) for k, (d, s) in self.layout.items()}}


def check_layout(buffer: EpisodeBuffer, values: Mapping[str, np.ndarray], where: str) -> None:
    """Frames of one episode must have the same keys, shapes and dtypes as its first frame."""
    if not buffer.layout:
        return
    keys, expected = set(values), set(buffer.layout)
    if keys != expected:
        raise ValidationError(f"{where}: keys differ from frame 0 of the episode: missing "
                              f"{sorted(expected - keys)}, unexpected {sorted(keys - expected)}")
    for name, value in values.items():
        dtype, shape = buffer.layout[name]
        if value.shape != shape:
            raise ValidationError(f"{where}: {name!r} has shape {value.shape}, frame 0 had {shape}")
        if value.dtype != dtype:
            raise ValidationError(f"{where}: {name!r} has dtype {value.dtype}, frame 0 had {dtype}")
