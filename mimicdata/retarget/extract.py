"""The extract step: choose clips by name pattern, duration and frame range into a manifest.

A manifest is a small JSON file listing (source file, clip name, frame range, fps); ``retarget``
accepts it in place of motion files. Only headers and array shapes are read here, so choosing
clips from a large library is fast.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.motion.io import SUFFIXES, detect_format
from mimicdata.motion.types import MotionFormatError
from mimicdata.retarget.clip import ClipSpec

MANIFEST_KIND = "mimicdata.retarget.manifest"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One selected clip: frames [start, stop) of clip `clip_in_file` of `source`."""

    source: str
    name: str
    fps: float
    start: int
    stop: int
    clip_in_file: int = 0

    @property
    def duration(self) -> float:
        """Seconds from the first to the last selected frame."""
        return (self.stop - self.start - 1) / self.fps

    def spec(self) -> ClipSpec:
        """The clip spec `retarget` runs on."""
        return ClipSpec(source=self.source, name=self.name, clip_in_file=self.clip_in_file,
                        start=self.start, stop=self.stop)


def clip_headers(path: str | Path, source_fps: float | None = None) -> list[tuple[str, int, int, float]]:
    """(name, clip_in_file, frames, fps) of every clip in a file, from headers/shapes only."""
    from mimicdata.motion.bvh import read_bvh_header
    from mimicdata.motion.positions import sidecar_fps

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "bvh":
        header = read_bvh_header(path)
        return [(path.stem, 0, header.num_frames, header.fps)]
    if fmt == "unitree_csv":
        frames = sum(1 for line in path.read_text().splitlines() if line.strip() and line[0] in "-+.0123456789")
        return [(path.stem, 0, frames, source_fps or 30.0)]
    if path.suffix == ".npy":
        frames = int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        fps = source_fps or sidecar_fps(path)
        if fps is None:
            raise MotionFormatError(path, "frame rate unknown: pass --source-fps")
        return [(path.stem, 0, frames, float(fps))]
    with np.load(path, allow_pickle=False) as data:
        if fmt == "locomujoco":
            splits = data["split_points"] if "split_points" in data.files else [0, data["xpos"].shape[0]]
            fps = float(np.asarray(data["frequency"]).reshape(-1)[0])
            n = len(splits) - 1
            return [(f"{path.stem}_{c}" if n > 1 else path.stem, c, int(splits[c + 1] - splits[c]), fps)
                    for c in range(n)]
        key = "body_pos_w" if fmt == "beyondmimic" else next(
            (k for k in ("positions", "joint_positions", "global_positions") if k in data.files), None)
        if key is None:
            raise MotionFormatError(path, f"no positions array in {data.files}")
        fps_key = next((k for k in ("fps", "frequency", "framerate", "mocap_framerate") if k in data.files), None)
        fps = source_fps or (float(np.asarray(data[fps_key]).reshape(-1)[0]) if fps_key else None)
        if fps is None:
            raise MotionFormatError(path, "frame rate unknown: pass --source-fps")
        return [(path.stem, 0, int(data[key].shape[0]), fps)]


def build_manifest(inputs: Iterable[str | Path], *, patterns: Sequence[str] = (),
                   min_duration: float | None = None, max_duration: float | None = None,
                   frames: tuple[int, int | None] | None = None,
                   source_fps: float | None = None) -> list[ManifestEntry]:
    """Select clips: name/path glob `patterns` (any may match), duration bounds (s) after the
    frame range `frames` = (start, stop) is applied to each clip."""
    def wanted(name: str, path: Path) -> bool:
        return not patterns or any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(str(path), p) for p in patterns)

    entries = []
    for path in _motion_files(inputs):
        # One clip per file except LocoMuJoCo .npz: filter before reading anything else.
        if path.suffix.lower() != ".npz" and not wanted(path.stem, path):
            continue
        for name, clip, count, fps in clip_headers(path, source_fps):
            if not wanted(name, path):
                continue
            start, stop = 0, count
            if frames is not None:
                start = min(frames[0], count)
                stop = count if frames[1] is None else min(frames[1], count)
            if stop - start < 2:
                continue
            entry = ManifestEntry(source=str(path), name=name, fps=fps, start=start, stop=stop, clip_in_file=clip)
            if min_duration is not None and entry.duration < min_duration:
                continue
            if max_duration is not None and entry.duration > max_duration:
                continue
            entries.append(entry)
    return entries


def _motion_files(inputs: Iterable[str | Path]) -> list[Path]:
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def write_manifest(entries: Sequence[ManifestEntry], path: str | Path) -> Path:
    """Write entries as a manifest JSON file (paths made absolute so it works from anywhere)."""
    path = Path(path)
    doc: dict[str, Any] = {"kind": MANIFEST_KIND, "manifest_format": MANIFEST_FORMAT,
                           "clips": [{**asdict(e), "source": str(Path(e.source).resolve())} for e in entries]}
    path.write_text(json.dumps(doc, indent=1))
    return path


def is_manifest(path: str | Path) -> bool:
    """Whether `path` is a manifest written by :func:`write_manifest`."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("kind") == MANIFEST_KIND
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return False


def read_manifest(path: str | Path) -> list[ClipSpec]:
    """Clip specs from a manifest (clear errors for unknown versions or missing fields)."""
    path = Path(path)
    doc = json.loads(path.read_text())
    if doc.get("manifest_format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: manifest_format {doc.get('manifest_format')!r} is not supported "
                         f"(this mimicdata reads {MANIFEST_FORMAT})")
    specs = []
    for i, clip in enumerate(doc.get("clips", [])):
        try:
            specs.append(ManifestEntry(**clip).spec())
        except TypeError as exc:
            raise ValueError(f"{path}: clip {i} is malformed: {exc}") from None
    return specs
